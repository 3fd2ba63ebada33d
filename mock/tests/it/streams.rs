//! SSE streams: chunk order, usage chunk, pacing, in-stream errors, cut and abandoned streams.

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use mock::{MockOptions, MockServer};
use serde_json::{Value, json};

use crate::support::{
    CHAT_LEGACY, SAFETY_TIMEOUT, client, open, parse, post_json, request, sse_data,
};

fn stream_body(include_usage: bool) -> Value {
    json!({
        "messages": [{"role": "user", "content": "count to three"}],
        "stream": true,
        "stream_options": {"include_usage": include_usage},
    })
}

#[tokio::test]
async fn chat_stream_sends_role_deltas_finish_and_done() {
    let server = MockServer::start(MockOptions {
        chunk_count: 3,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let reply = post_json(&server, CHAT_LEGACY, &stream_body(false)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "text/event-stream");

    let data = sse_data(reply.text());
    assert_eq!(data.len(), 1 + 3 + 1 + 1, "{data:?}");
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| parse(d)).collect();
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["model"], "gpt-4o");
        assert!(
            chunk.get("usage").is_none(),
            "no usage unless asked: {chunk}"
        );
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(server.stats().streams_started(), 1);
    assert_eq!(server.stats().streams_completed(), 1);
}

#[tokio::test]
async fn include_usage_adds_null_usage_and_a_final_usage_chunk() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let reply = post_json(&server, CHAT_LEGACY, &stream_body(true)).await;
    let data = sse_data(reply.text());
    assert_eq!(data.len(), 1 + 8 + 1 + 1 + 1);
    assert_eq!(data[data.len() - 1], "[DONE]");
    let usage_chunk = parse(&data[data.len() - 2]);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 3);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 8);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 11);
    for data in &data[..data.len() - 2] {
        let chunk = parse(data);
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.get("usage").is_some());
    }
}

#[tokio::test]
async fn completions_stream_text_chunks() {
    let server = MockServer::start(MockOptions {
        chunk_count: 2,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let path = "/openai/v1/completions";
    let body = json!({"model": "davinci", "prompt": "hi", "stream": true});
    let reply = post_json(&server, path, &body).await;
    let data = sse_data(reply.text());
    assert_eq!(data.len(), 2 + 1 + 1);
    assert_eq!(parse(&data[0])["choices"][0]["text"], "tok0 ");
    assert_eq!(parse(&data[0])["object"], "text_completion");
    assert_eq!(parse(&data[2])["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[3], "[DONE]");
}

#[tokio::test]
async fn deltas_are_paced_by_chunk_interval() {
    // A long interval: after the first delta arrives the stream must still be running.
    let server = MockServer::start(MockOptions {
        chunk_count: 4,
        chunk_interval: Duration::from_secs(30),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let headers = [("content-type", "application/json")];
    let req = request(
        &server,
        Method::POST,
        CHAT_LEGACY,
        &headers,
        stream_body(false).to_string(),
    );
    let mut body = open(&client(), req).await.into_body();
    let mut seen = String::new();
    while !seen.contains("tok0") {
        let frame = body.frame().await.expect("a frame").expect("no error");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(!seen.contains("tok1"), "{seen}");
    assert_eq!(server.stats().streams_completed(), 0);
}

#[tokio::test]
async fn stream_error_first_sends_only_the_error_event() {
    let server = MockServer::start(MockOptions {
        stream_error_first: Some("too_many_requests".to_owned()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let reply = post_json(&server, CHAT_LEGACY, &stream_body(true)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "text/event-stream");
    let data = sse_data(reply.text());
    assert_eq!(data.len(), 1, "{data:?}");
    let event = parse(&data[0]);
    assert_eq!(event["error"]["code"], "too_many_requests");
    assert!(event["error"]["message"].is_string());
}

#[tokio::test]
async fn disconnect_after_chunks_cuts_the_body() {
    let server = MockServer::start(MockOptions {
        disconnect_after_chunks: Some(2),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let headers = [("content-type", "application/json")];
    let body = stream_body(false).to_string();
    let response = open(
        &client(),
        request(&server, Method::POST, CHAT_LEGACY, &headers, body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    let mut body = response.into_body();
    let mut received = Vec::new();
    // No terminating chunk: the client sees a body error, not a clean end.
    loop {
        match body.frame().await {
            Some(Ok(frame)) => received.extend(frame.into_data().unwrap()),
            Some(Err(_)) => break,
            None => panic!("body ended cleanly: {}", String::from_utf8_lossy(&received)),
        }
    }
    let received = String::from_utf8(received).unwrap();
    assert!(received.contains("tok1 "), "{received}");
    assert!(!received.contains("tok2 "), "{received}");
    assert!(!received.contains("[DONE]"), "{received}");
    assert_eq!(server.stats().streams_disconnected(), 1);
}

#[tokio::test]
async fn a_client_dropping_a_stream_counts_as_aborted() {
    let server = MockServer::start(MockOptions {
        chunk_count: 100_000,
        chunk_interval: Duration::from_millis(2),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let aborted = server.stats().wait_for_streams_aborted(1);
    let headers = [("content-type", "application/json")];
    let body = stream_body(false).to_string();
    let client = client();
    let response = open(
        &client,
        request(&server, Method::POST, CHAT_LEGACY, &headers, body),
    )
    .await;
    let mut body = response.into_body();
    for _ in 0..3 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    drop(client);

    tokio::time::timeout(SAFETY_TIMEOUT, aborted)
        .await
        .expect("the server notices the abandoned stream");
    let stats = server.stats();
    assert_eq!(stats.streams_aborted(), 1);
    assert_eq!(stats.streams_started(), 1);
    assert_eq!(stats.streams_completed(), 0);
}
