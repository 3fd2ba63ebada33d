//! Azure quotas are per deployment, and the metrics say what happened: a throttled deployment
//! leaves the resource's other deployments open; a stream that broke is not a success; the
//! `model` label of a legacy route is the deployment the path names.

use mock::MockOptions;

use crate::harness::*;

fn legacy(deployment: &str) -> String {
    format!("/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21")
}

/// One client on a small deployment that is out of quota must not make another client's
/// requests to a large, idle deployment of the same resource fail: before, the 429 for the small
/// one cooled down the whole backend and the large one got `all_backends_throttled`.
#[tokio::test]
async fn a_throttled_deployment_leaves_the_others_of_its_resource_open() {
    let backend = mock_with(MockOptions {
        throttled_deployments: vec!["small".into()],
        retry_after_ms: 30_000,
        ..opts("eus")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("eus", backend.url())], "")).await;
    for _ in 0..3 {
        let r = post(gw.addr, &legacy("small"), CHAT_BODY).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("x-gateway-error"), "all_backends_throttled");
    }
    for _ in 0..5 {
        let r = post(gw.addr, &legacy("large"), CHAT_BODY).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The same holds on v1, where the deployment is the body's model.
    let v1 = |model: &str| format!(r#"{{"model":"{model}","messages":[]}}"#);
    assert_eq!(
        post(gw.addr, "/openai/v1/chat/completions", &v1("small"))
            .await
            .status,
        429
    );
    assert_eq!(
        post(gw.addr, "/openai/v1/chat/completions", &v1("large"))
            .await
            .status,
        200
    );
    // Only the small deployment was tried once: the others were skipped while it cooled down.
    let text = metrics(&gw).await;
    let cooldown = |deployment: &str| {
        metric_sum(
            &text,
            "gateway_backend_cooldown_seconds",
            &["backend=\"eus\"", &format!("deployment=\"{deployment}\"")],
        )
    };
    assert!(cooldown("small") > 20.0, "{text}");
    assert_eq!(cooldown("large"), 0.0);
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["outcome=\"skipped_cooldown\""]
        ),
        3.0
    );
}

/// Deployment names come from clients: a name the backend does not know (it answers 404) takes
/// no quota state and no metric series, so junk names can neither crowd the real deployments
/// into the shared overflow slot nor blow up the metrics' cardinality. A name the backend
/// answered for gets its own.
#[tokio::test]
async fn names_a_backend_does_not_know_take_no_quota_state() {
    let backend = mock_with(MockOptions {
        status_override: Some(404),
        ..opts("eus")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("eus", backend.url())], "")).await;
    for i in 0..proxy::backend::MAX_DEPLOYMENTS + 10 {
        let r = post(gw.addr, &legacy(&format!("junk{i}")), CHAT_BODY).await;
        assert_eq!(r.status, 404);
    }
    backend.set_options(MockOptions {
        status_override: None,
        ..backend.options()
    });
    assert_eq!(post(gw.addr, &legacy("real"), CHAT_BODY).await.status, 200);
    let text = metrics(&gw).await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gateway_backend_cooldown_seconds{"))
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(series[0].contains("deployment=\"real\""), "{series:?}");
}

/// A stream that broke after its head went out (the client saw 200, then an error event) counts
/// as what broke it, not as a 200 success, and its attempt as `stream_error`, not `ok`.
#[tokio::test]
async fn a_stream_that_broke_is_not_counted_as_a_success() {
    let backend = mock_with(MockOptions {
        disconnect_after_chunks: Some(2),
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let r = post(gw.addr, CHAT, STREAM_BODY).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("event: error"), "{}", r.text());
    let text = metrics(&gw).await;
    let requests = |status: &str| {
        metric_sum(
            &text,
            "gateway_requests_total",
            &[&format!("status=\"{status}\"")],
        )
    };
    assert_eq!((requests("200"), requests("502")), (0.0, 1.0), "{text}");
    let attempts = |outcome: &str| {
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &[&format!("outcome=\"{outcome}\"")],
        )
    };
    assert_eq!(
        (attempts("ok"), attempts("stream_error")),
        (0.0, 1.0),
        "{text}"
    );
    // A whole stream is a success, counted once.
    backend.set_options(MockOptions {
        disconnect_after_chunks: None,
        ..backend.options()
    });
    assert!(
        post(gw.addr, CHAT, STREAM_BODY)
            .await
            .text()
            .ends_with("[DONE]\n\n")
    );
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_backend_attempts_total", &["outcome=\"ok\""]),
        1.0
    );
}

/// On legacy routes the deployment in the path is what Azure serves: it is the `model` label,
/// whatever the body says (a client writing a new model name per request must not grow the
/// metrics, nor file its tokens under a model it did not get).
#[tokio::test]
async fn the_model_label_of_a_legacy_route_is_its_deployment() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let body = r#"{"model":"whatever-the-client-wrote","messages":[]}"#;
    assert_eq!(post(gw.addr, &legacy("gpt-4o"), body).await.status, 200);
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_requests_total", &["model=\"gpt-4o\""]),
        1.0
    );
    assert!(!text.contains("whatever-the-client-wrote"), "{text}");
    assert!(
        metric_sum(&text, "gateway_tokens_total", &["model=\"gpt-4o\""]) > 0.0,
        "{text}"
    );
}
