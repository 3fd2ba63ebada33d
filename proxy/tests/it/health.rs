//! Passive health and readiness: which failures take a backend out of rotation, how it comes
//! back (half-open: one request decides), and why 5xx answers never make the replica unready.

use http::Method;
use mock::MockOptions;

use crate::harness::*;

fn up(text: &str, backend: &str) -> f64 {
    metric_sum(
        text,
        "gateway_backend_up",
        &[&format!("backend=\"{backend}\"")],
    )
}

async fn ready(gw: &proxy::RunningGateway) -> u16 {
    send(request(Method::GET, gw.admin_addr, "/readyz", &[], ""))
        .await
        .status
        .as_u16()
}

/// Requests that every backend answers with 500 are taken for requests nobody can serve: they
/// mark no backend, and the replica stays ready (before, three such requests marked every
/// backend and `/readyz` said 503 for 30 s, so an orchestrator would pull a healthy replica).
#[tokio::test]
async fn requests_every_backend_answers_with_500_mark_none() {
    let a = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("a")
    })
    .await;
    let b = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("b")
    })
    .await;
    let gw = gateway(&config_yaml(
        &[
            super::harness::b("a", a.url()),
            super::harness::b("b", b.url()),
        ],
        "upstream:\n  passive_health: { failures: 3, unhealthy_for: 30s }\n",
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 502);
    }
    let text = metrics(&gw).await;
    assert_eq!((up(&text, "a"), up(&text, "b")), (1.0, 1.0));
    assert_eq!(ready(&gw).await, 200);
    // Every request still tries both.
    assert_eq!((a.stats().requests(), b.stats().requests()), (5, 5));
}

/// A backend whose 5xx another backend then answers is marked; at the end of its window one
/// request decides (half-open): a failure marks it again at once, a success brings it back.
#[tokio::test]
async fn a_marked_backend_comes_back_through_one_trial() {
    let primary = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("primary")
    })
    .await;
    let spare = mock("spare").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("primary", primary.url())
            },
            b("spare", spare.url()),
        ],
        "upstream:\n  passive_health: { failures: 2, unhealthy_for: 300ms }\n",
    ))
    .await;
    for _ in 0..2 {
        let r = post(gw.addr, CHAT, CHAT_BODY).await;
        assert_eq!(
            (r.status.as_u16(), r.header("x-gateway-backend")),
            (200, "spare")
        );
    }
    assert_eq!(up(&metrics(&gw).await, "primary"), 0.0);
    assert_eq!(
        ready(&gw).await,
        200,
        "a 5xx mark never makes the replica unready"
    );
    // Marked: skipped while its window runs.
    let before = primary.stats().requests();
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend"),
        "spare"
    );
    assert_eq!(primary.stats().requests(), before);
    // After the window one request is let through; it fails, and the very next request skips
    // the primary again (one failure re-marks it; no run of `failures` needed).
    wait_until(async || {
        post(gw.addr, CHAT, CHAT_BODY).await;
        primary.stats().requests() > before
    })
    .await;
    let tried = primary.stats().requests();
    assert_eq!(tried, before + 1, "more than one trial");
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend"),
        "spare"
    );
    assert_eq!(primary.stats().requests(), tried);
    // The primary is back: at its next trial it answers, and takes its traffic again.
    primary.set_options(MockOptions {
        status_override: None,
        ..primary.options()
    });
    wait_until(async || {
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend")
            == "primary"
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            post(gw.addr, CHAT, CHAT_BODY)
                .await
                .header("x-gateway-backend"),
            "primary"
        );
    }
    assert_eq!(up(&metrics(&gw).await, "primary"), 1.0);
}

/// A backend that cannot be reached at all is what readiness is about: with every backend
/// unreachable the replica is not ready, and it is ready again once one can be reached.
#[tokio::test]
async fn an_unreachable_backend_comes_back_and_so_does_readiness() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let gw = gateway(&config_yaml(
        &[b("a", format!("http://{addr}"))],
        "upstream:\n  passive_health: { failures: 1, unhealthy_for: 200ms }\n",
    ))
    .await;
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 502);
    assert_eq!(ready(&gw).await, 503);
    let _backend = mock::MockServer::start_on(
        addr,
        MockOptions {
            api_key: Some(BACKEND_KEY.into()),
            ..opts("a")
        },
    )
    .await
    .unwrap();
    // Once its window is over the backend counts as reachable again, and its trial answers.
    wait_until(async || ready(&gw).await == 200).await;
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    assert_eq!(up(&metrics(&gw).await, "a"), 1.0);
}

/// A reload that turns active checks off lifts their verdict (no probe would ever lift it), and
/// a reload stops the previous generation's probes at once, even while one of its streams is
/// still running (before, they went on probing with the old path and key until that stream
/// ended, writing the state the new generation shares).
#[tokio::test]
async fn a_reload_ends_the_old_probes_and_their_verdict() {
    let down = mock_with(MockOptions {
        status_override: Some(503),
        ..opts("down")
    })
    .await;
    let streams = mock_with(MockOptions {
        chunk_interval: std::time::Duration::from_millis(50),
        chunk_count: 1000,
        ..opts("s")
    })
    .await;
    let probing = |path: &str| {
        format!(
            "upstream:\n  passive_health: {{ failures: 0 }}\n  active_health: {{ enabled: true, path: {path}, healthy_interval: 20ms, unhealthy_interval: 20ms, timeout: 1s }}\n"
        )
    };
    let config = |extra: &str| {
        let backends = [
            b("down", down.url()),
            B {
                priority: 1,
                ..b("s", streams.url())
            },
        ];
        proxy::GatewayConfig::parse("t.yaml", &config_yaml(&backends, extra)).unwrap()
    };
    let probes = |path: &str| {
        down.stats()
            .requests_log()
            .iter()
            .filter(|r| r.path_and_query == path)
            .count()
    };
    let gw = proxy::RunningGateway::start(config(&probing("/first")))
        .await
        .unwrap();
    wait_until(async || up(&metrics(&gw).await, "down") == 0.0).await;
    // A stream that holds the first generation alive through the reloads.
    let stream = open(request(Method::POST, gw.addr, CHAT, &[], STREAM_BODY)).await;
    assert_eq!(stream.headers()["x-gateway-backend"], "s");
    let mut stream = stream.into_body();
    next_chunk(&mut stream).await.unwrap();
    // Checks off: the verdict goes with them.
    gw.reload(config(""));
    assert_eq!(up(&metrics(&gw).await, "down"), 1.0);
    let stopped = probes("/first");
    // Probes of another path from a third generation: once several are seen, the first
    // generation's would have been seen too had they kept running.
    gw.reload(config(&probing("/third")));
    wait_until(async || probes("/third") >= 5).await;
    let late = probes("/first") - stopped;
    assert!(
        late <= 1,
        "{late} probes of the first generation after the reload"
    );
    assert!(next_chunk(&mut stream).await.is_some());
}
