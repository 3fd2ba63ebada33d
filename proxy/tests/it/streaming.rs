//! SSE relay: chunk by chunk, cancellation, usage accounting, mid-stream failures.

use std::time::Duration;

use http::Method;
use mock::MockOptions;

use crate::harness::*;

#[tokio::test]
async fn first_chunk_reaches_client_before_backend_finished() {
    let slow = mock_with(MockOptions {
        chunk_interval: Duration::from_millis(300),
        chunk_count: 5,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", slow.url())], "")).await;
    let response = open(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("content-type", "application/json")],
        STREAM_BODY,
    ))
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().get("content-length").is_none());
    let mut body = response.into_body();
    let first = next_chunk(&mut body).await.unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    assert_eq!(
        slow.stats().streams_completed(),
        0,
        "the backend was still streaming"
    );
    let mut all = first.to_vec();
    while let Some(chunk) = next_chunk(&mut body).await {
        all.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(all).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("tok").count(), 5);
    assert_eq!(slow.stats().streams_completed(), 1);
}

#[tokio::test]
async fn client_disconnect_cancels_the_backend_stream() {
    let long = mock_with(MockOptions {
        chunk_interval: Duration::from_millis(50),
        chunk_count: 1000,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", long.url())], "")).await;
    let response = open(request(Method::POST, gw.addr, CHAT, &[], STREAM_BODY)).await;
    let mut body = response.into_body();
    next_chunk(&mut body).await.unwrap();
    drop(body);
    tokio::time::timeout(
        Duration::from_secs(10),
        long.stats().wait_for_streams_aborted(1),
    )
    .await
    .expect("backend stream was not cancelled");
    assert_eq!(long.stats().streams_completed(), 0);
}

#[tokio::test]
async fn usage_is_counted_but_hidden_from_clients_that_did_not_ask() {
    let backend = mock_with(MockOptions {
        chunk_count: 4,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let reply = post(gw.addr, CHAT, STREAM_BODY).await;
    let text = reply.text();
    assert!(
        !text.contains("\"usage\""),
        "client saw usage it did not ask for: {text}"
    );
    assert!(!text.contains("\"choices\":[]"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    // The backend was asked for usage on the client's behalf...
    let sent: serde_json::Value =
        serde_json::from_slice(&backend.stats().requests_log()[0].body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // ...and it was counted.
    let m = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &m,
            "gateway_tokens_total",
            &["kind=\"prompt\"", "backend=\"a\""]
        ),
        2.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "gateway_tokens_total",
            &["kind=\"completion\"", "backend=\"a\""]
        ),
        4.0
    );
}

#[tokio::test]
async fn clients_that_ask_for_usage_get_the_usage_chunk() {
    let backend = mock_with(MockOptions {
        chunk_count: 3,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let body = r#"{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three"}]}"#;
    let text = post(gw.addr, CHAT, body).await.text();
    assert!(text.contains("\"choices\":[]"), "{text}");
    assert!(text.contains("\"prompt_tokens\":3"), "{text}");
    let m = metrics(&gw).await;
    assert_eq!(
        metric_sum(&m, "gateway_tokens_total", &["kind=\"prompt\""]),
        3.0
    );
}

#[tokio::test]
async fn non_streaming_usage_is_counted_per_consumer() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(
        &[b("a", backend.url())],
        "clients:\n  consumers:\n    - { name: team-a, key: ka }\n",
    ))
    .await;
    let reply = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("api-key", "ka")],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(reply.status, 200);
    let m = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &m,
            "gateway_tokens_total",
            &["consumer=\"team-a\"", "kind=\"prompt\"", "model=\"gpt-4o\""]
        ),
        2.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "gateway_requests_total",
            &["consumer=\"team-a\"", "status=\"200\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn mid_stream_failure_ends_with_an_error_event_and_no_retry() {
    let breaking = mock_with(MockOptions {
        disconnect_after_chunks: Some(2),
        chunk_interval: Duration::from_millis(20),
        ..opts("a")
    })
    .await;
    let spare = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("a", breaking.url())
            },
            b("b", spare.url()),
        ],
        "",
    ))
    .await;
    let reply = post(gw.addr, CHAT, STREAM_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-gateway-backend"), "a");
    let text = reply.text();
    assert!(text.contains("tok0"), "{text}");
    assert!(
        text.ends_with("\n\n") && text.contains("event: error\ndata: {\"error\":"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        spare.stats().requests(),
        0,
        "bytes already reached the client: no retry"
    );
}

#[tokio::test]
async fn responses_stream_usage_comes_from_response_completed() {
    let backend = mock_with(MockOptions {
        chunk_count: 5,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let reply = post(
        gw.addr,
        "/openai/v1/responses",
        r#"{"model":"gpt-4o","input":"four words right here","stream":true}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(
        text.contains("event: response.created") && text.contains("event: response.completed"),
        "{text}"
    );
    let m = metrics(&gw).await;
    assert_eq!(
        metric_sum(&m, "gateway_tokens_total", &["kind=\"completion\""]),
        5.0
    );
}

#[tokio::test]
async fn a_stream_that_goes_silent_ends_with_a_timeout_error_event() {
    // The opening events come at once, then the backend stalls longer than the read timeout.
    let stalling = mock_with(MockOptions {
        chunk_interval: Duration::from_secs(30),
        chunk_count: 3,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(
        &[b("a", stalling.url())],
        "upstream:\n  read_timeout: 300ms\n",
    ))
    .await;
    let reply = post(gw.addr, CHAT, STREAM_BODY).await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(text.contains("tok0"), "{text}");
    assert!(
        text.ends_with("\n\n")
            && text.contains("event: error\ndata: {\"error\":{\"code\":\"timeout\""),
        "{text}"
    );
}
