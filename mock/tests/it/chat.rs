//! Non-streaming operations, routing, headers and the request log.

use bytes::Bytes;
use http::{Method, StatusCode};
use mock::{MockOptions, MockServer};
use serde_json::json;

use crate::support::{CHAT_LEGACY, CHAT_V1, client, get, h2c_client, post_json, request, send};

fn chat_body() -> serde_json::Value {
    json!({"messages": [
        {"role": "system", "content": "You are brief"},
        {"role": "user", "content": [{"type": "text", "text": "Say hello world"}]},
    ]})
}

#[tokio::test]
async fn chat_completion_has_the_azure_shape_and_deterministic_usage() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("x-request-id", "req-42"),
    ];
    let body = chat_body().to_string();
    let reply = send(
        &client(),
        request(&server, Method::POST, CHAT_LEGACY, &headers, body),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("x-mock-backend"), "mock");
    assert_eq!(reply.header("x-ms-region"), "mock");
    assert_eq!(reply.header("x-request-id"), "req-42");
    assert_eq!(reply.header("apim-request-id").len(), 36);
    assert!(
        reply
            .header("x-ratelimit-remaining-tokens")
            .parse::<u64>()
            .is_ok()
    );
    assert!(
        reply
            .header("x-ratelimit-remaining-requests")
            .parse::<u64>()
            .is_ok()
    );

    let body = reply.json();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["content_filter_results"]["hate"]["filtered"], false);
    assert_eq!(body["prompt_filter_results"][0]["prompt_index"], 0);
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], 6);
    assert_eq!(usage["completion_tokens"], 8);
    assert_eq!(usage["total_tokens"], 14);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(server.stats().status_count(200), 1);
}

#[tokio::test]
async fn v1_takes_the_model_from_the_body_and_requires_it() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let mut body = chat_body();
    body["model"] = json!("gpt-4o-mini");
    let reply = post_json(&server, CHAT_V1, &body).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["model"], "gpt-4o-mini");

    let reply = post_json(&server, CHAT_V1, &chat_body()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["param"], "model");
}

#[tokio::test]
async fn legacy_paths_require_an_api_version() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let path = "/openai/deployments/gpt-4o/chat/completions";
    let reply = post_json(&server, path, &chat_body()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], "MissingApiVersionParameter");
}

#[tokio::test]
async fn bodies_that_are_not_json_are_rejected() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let bad = request(&server, Method::POST, CHAT_LEGACY, &[], "{not json");
    let reply = send(&client(), bad).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    let empty = request(&server, Method::POST, CHAT_LEGACY, &[], Bytes::new());
    assert_eq!(send(&client(), empty).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_paths_get_azure_404() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    for path in ["/", "/openai/files?api-version=2024-10-21", "/healthz"] {
        let reply = get(&server, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            reply.text(),
            r#"{"error":{"code":"404","message":"Resource not found"}}"#
        );
        assert_eq!(reply.header("x-mock-backend"), "mock");
    }
    assert_eq!(server.stats().status_count(404), 3);
}

#[tokio::test]
async fn models_are_listed() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let reply = get(&server, "/openai/v1/models").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    assert!(body["data"].as_array().unwrap().len() >= 2);
    assert_eq!(body["data"][0]["object"], "model");
}

#[tokio::test]
async fn other_operations_are_echoed_and_logged_byte_for_byte() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let multipart: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let content_type = "multipart/form-data; boundary=xyz";
    let path = "/openai/deployments/whisper/audio/transcriptions?api-version=2024-10-21";
    let headers = [("content-type", content_type), ("x-custom", "kept")];
    let body = Bytes::from(multipart.clone());
    let reply = send(
        &client(),
        request(&server, Method::POST, path, &headers, body),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK);
    let echo = reply.json();
    assert_eq!(echo["object"], "mock.echo");
    assert_eq!(
        echo["path"],
        "/openai/deployments/whisper/audio/transcriptions"
    );
    assert_eq!(echo["content_type"], content_type);
    assert_eq!(echo["body_len"], 1000);

    let log = server.stats().requests_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path_and_query, path);
    assert_eq!(log[0].header("x-custom"), Some("kept"));
    assert_eq!(log[0].body, multipart);
}

#[tokio::test]
async fn completions_use_the_text_completion_shape() {
    let server = MockServer::start(MockOptions {
        chunk_count: 2,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let path = "/openai/deployments/davinci/completions?api-version=2024-10-21";
    let reply = post_json(&server, path, &json!({"prompt": "one two three"})).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "tok0 tok1 ");
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let headers = [("content-type", "application/json")];
    let body = chat_body().to_string();
    let request = request(&server, Method::POST, CHAT_LEGACY, &headers, body);
    let response = h2c_client().request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn new_options_apply_to_the_next_request() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    server.set_options(MockOptions {
        name: "swc".to_owned(),
        ratelimit_headers: false,
        ..server.options()
    });
    assert_eq!(server.options().name, "swc");
    let reply = post_json(&server, CHAT_LEGACY, &chat_body()).await;
    assert_eq!(reply.header("x-mock-backend"), "swc");
    assert!(!reply.headers.contains_key("x-ratelimit-remaining-tokens"));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let addr = server.addr();
    assert_eq!(
        get(&server, "/openai/v1/models").await.status,
        StatusCode::OK
    );
    server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
