//! Injected failures: status overrides, random faults, the TPM window and authentication.

use bytes::Bytes;
use http::{Method, StatusCode};
use mock::{MockOptions, MockServer};
use serde_json::json;

use crate::support::{CHAT_LEGACY, CHAT_V1, client, get, post_json, request, send};

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]})
}

#[tokio::test]
async fn status_override_429_sends_retry_headers_and_azure_message() {
    let server = MockServer::start(MockOptions {
        status_override: Some(429),
        retry_after_ms: 2500,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let reply = post_json(&server, CHAT_LEGACY, &chat()).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header("retry-after"), "3");
    assert_eq!(reply.header("retry-after-ms"), "2500");
    assert_eq!(reply.header("x-ratelimit-reset-requests"), "3");
    assert_eq!(reply.header("x-ratelimit-reset-tokens"), "3");
    assert_eq!(reply.header("x-mock-backend"), "mock");
    assert!(!reply.headers.contains_key("x-ratelimit-remaining-tokens"));
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "429");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Requests to the ChatCompletions_Create Operation"),
        "{message}"
    );
    assert!(
        message.ends_with("Please retry after 3 seconds."),
        "{message}"
    );

    // Every request, even one to a path that does not exist.
    assert_eq!(
        get(&server, "/nowhere").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(server.stats().status_count(429), 2);
}

#[tokio::test]
async fn status_override_answers_other_statuses_azure_shaped() {
    let server = MockServer::start(MockOptions {
        status_override: Some(503),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let reply = post_json(&server, CHAT_V1, &chat()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"]["code"], "ServiceUnavailable");
}

#[tokio::test]
async fn certain_random_faults_always_fire() {
    let throttled = MockServer::start(MockOptions {
        rate_429: 1.0,
        retry_after_ms: 10,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let reply = post_json(&throttled, CHAT_LEGACY, &chat()).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header("retry-after-ms"), "10");
    assert_eq!(reply.header("retry-after"), "1");

    let failing = MockServer::start(MockOptions {
        rate_5xx: 1.0,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let reply = post_json(&failing, CHAT_LEGACY, &chat()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["error"]["code"], "InternalServerError");
}

#[tokio::test]
async fn tpm_limit_throttles_once_the_minute_is_spent() {
    // Each request costs 2 prompt words + 8 completion tokens = 10 tokens.
    let server = MockServer::start(MockOptions {
        tpm_limit: Some(20),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let first = post_json(&server, CHAT_LEGACY, &chat()).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-ratelimit-remaining-tokens"), "10");
    let second = post_json(&server, CHAT_LEGACY, &chat()).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("x-ratelimit-remaining-tokens"), "0");

    let third = post_json(&server, CHAT_LEGACY, &chat()).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_ms: u64 = third.header("retry-after-ms").parse().unwrap();
    assert!((50_000..=60_000).contains(&retry_ms), "{retry_ms}");
    assert_eq!(third.header("retry-after"), "60");
    assert!(
        third.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry after 60 seconds")
    );

    // Requests that spend no tokens still pass.
    assert_eq!(
        get(&server, "/openai/v1/models").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let server = MockServer::start(MockOptions {
        api_key: Some("secret".to_owned()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let body = chat().to_string();
    let cases: [(&[(&str, &str)], StatusCode); 5] = [
        (&[], StatusCode::UNAUTHORIZED),
        (&[("api-key", "wrong")], StatusCode::UNAUTHORIZED),
        (
            &[("authorization", "Bearer wrong")],
            StatusCode::UNAUTHORIZED,
        ),
        (&[("api-key", "secret")], StatusCode::OK),
        (&[("authorization", "Bearer secret")], StatusCode::OK),
    ];
    for (headers, status) in cases {
        let request = request(&server, Method::POST, CHAT_LEGACY, headers, body.clone());
        let reply = send(&client(), request).await;
        assert_eq!(reply.status, status, "{headers:?}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(reply.json()["error"]["code"], "401");
        }
    }
    assert_eq!(
        get(&server, "/openai/v1/models").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn hostile_input_gets_answers_not_crashes() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let bodies = [
        Bytes::from_static(b"\xff\xfe\x00garbage"),
        Bytes::from("[".repeat(10_000)),
        Bytes::from(json!({"messages": "x", "stream": "yes"}).to_string()),
        Bytes::from(json!({"model": 7, "input": {"a": [1, {"text": 2}]}}).to_string()),
        Bytes::from_static(b"[1, 2]"),
        Bytes::from_static(b"null"),
    ];
    let paths = [
        CHAT_LEGACY,
        CHAT_V1,
        "/openai/v1/completions",
        "/openai/v1/embeddings",
        "/openai/v1/responses",
        "/openai/v1/responses/resp_x/cancel",
        "/openai/deployments/%ff%00/chat/completions?api-version=x&api-version=",
        "/openai/v1/%ff/..",
    ];
    for path in paths {
        for body in &bodies {
            let request = request(&server, Method::POST, path, &[], body.clone());
            let reply = send(&client(), request).await;
            assert!(
                reply.status.is_success() || reply.status.is_client_error(),
                "{path}: {}",
                reply.status
            );
            assert_eq!(reply.header("x-mock-backend"), "mock");
        }
    }
    let requests = (paths.len() * bodies.len()) as u64;
    assert_eq!(server.stats().requests(), requests);
    assert_eq!(
        get(&server, "/openai/v1/models").await.status,
        StatusCode::OK
    );
}
