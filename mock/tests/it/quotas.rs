//! Quotas are per deployment, as Azure keeps them: the token window of one deployment does not
//! throttle another, and a deployment out of quota refuses while the others of the same
//! resource answer.

use http::StatusCode;
use mock::{MockOptions, MockServer};
use serde_json::json;

use crate::support::{get, post_json};

fn legacy_chat(deployment: &str) -> String {
    format!("/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21")
}

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello world"}]})
}

#[tokio::test]
async fn the_token_window_is_kept_per_deployment() {
    // Each request costs 2 prompt words + 8 completion tokens = 10 tokens.
    let server = MockServer::start(MockOptions {
        tpm_limit: Some(20),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            post_json(&server, &legacy_chat("a"), &chat("a"))
                .await
                .status,
            StatusCode::OK
        );
    }
    let spent = post_json(&server, &legacy_chat("a"), &chat("a")).await;
    assert_eq!(spent.status, StatusCode::TOO_MANY_REQUESTS);
    // The same model named in a v1 body is the same deployment.
    let v1 = post_json(&server, "/openai/v1/chat/completions", &chat("a")).await;
    assert_eq!(v1.status, StatusCode::TOO_MANY_REQUESTS);
    // Another deployment of the same resource has its whole minute.
    let other = post_json(&server, &legacy_chat("b"), &chat("b")).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("x-ratelimit-remaining-tokens"), "10");
    let v1_other = post_json(&server, "/openai/v1/chat/completions", &chat("c")).await;
    assert_eq!(v1_other.header("x-ratelimit-remaining-tokens"), "10");
}

#[tokio::test]
async fn throttled_deployments_refuse_while_the_others_answer() {
    let server = MockServer::start(MockOptions {
        throttled_deployments: vec!["gpt-4o".to_owned()],
        retry_after_ms: 1500,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let refused = [
        post_json(&server, &legacy_chat("gpt-4o"), &chat("ignored")).await,
        post_json(&server, "/openai/v1/chat/completions", &chat("gpt-4o")).await,
        post_json(
            &server,
            "/openai/v1/responses",
            &json!({"model": "gpt-4o", "input": "x"}),
        )
        .await,
        post_json(
            &server,
            "/openai/v1/embeddings",
            &json!({"model": "gpt-4o", "input": "x"}),
        )
        .await,
        post_json(
            &server,
            "/openai/deployments/gpt-4o/images/generations?api-version=2024-10-21",
            &json!({"prompt": "x"}),
        )
        .await,
    ];
    for reply in &refused {
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
        assert_eq!(reply.header("retry-after-ms"), "1500");
        assert_eq!(reply.header("retry-after"), "2");
        assert_eq!(reply.json()["error"]["code"], "429");
    }
    for (path, model) in [
        (legacy_chat("gpt-4o-mini"), "gpt-4o"),
        ("/openai/v1/chat/completions".to_owned(), "gpt-4o-mini"),
    ] {
        let reply = post_json(&server, &path, &chat(model)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    assert_eq!(
        get(&server, "/openai/v1/models").await.status,
        StatusCode::OK
    );
    assert_eq!(server.stats().status_count(429), refused.len() as u64);
}
