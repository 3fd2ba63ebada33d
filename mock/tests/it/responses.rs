//! The Responses API: lifecycle, chaining and streaming events.

use http::{Method, StatusCode};
use mock::{MockOptions, MockServer};
use serde_json::{Value, json};

use crate::support::{client, get, parse, post_json, request, send, sse_events};

const V1: &str = "/openai/v1/responses";
const LEGACY: &str = "/openai/responses?api-version=2025-04-01-preview";

#[tokio::test]
async fn create_get_cancel_delete() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let created = post_json(
        &server,
        V1,
        &json!({"model": "gpt-4o", "input": "hi there"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK);
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_"));
    assert_eq!(created["object"], "response");
    assert_eq!(created["status"], "completed");
    assert_eq!(created["model"], "gpt-4o");
    let message = &created["output"][0];
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"][0]["type"], "output_text");
    assert_eq!(message["content"][0]["annotations"], json!([]));
    assert_eq!(created["usage"]["input_tokens"], 2);
    assert_eq!(created["usage"]["output_tokens"], 8);
    assert_eq!(created["usage"]["total_tokens"], 10);
    assert_eq!(
        created["usage"]["output_tokens_details"]["reasoning_tokens"],
        0
    );

    let fetched = get(&server, &format!("{V1}/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.json(), created);

    let items = get(&server, &format!("{V1}/{id}/input_items")).await.json();
    assert_eq!(items["object"], "list");
    assert_eq!(items["has_more"], false);

    let cancel = request(&server, Method::POST, &format!("{V1}/{id}/cancel"), &[], "");
    let cancelled = send(&client(), cancel).await;
    assert_eq!(cancelled.json()["status"], "cancelled");

    let delete = request(&server, Method::DELETE, &format!("{V1}/{id}"), &[], "");
    let deleted = send(&client(), delete).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        deleted.json(),
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    assert_eq!(
        get(&server, &format!("{V1}/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let again = request(&server, Method::DELETE, &format!("{V1}/{id}"), &[], "");
    assert_eq!(send(&client(), again).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn previous_response_id_only_verifies_where_it_was_created() {
    let origin = MockServer::start(MockOptions::default()).await.unwrap();
    let other = MockServer::start(MockOptions::default()).await.unwrap();
    let first = post_json(&origin, LEGACY, &json!({"model": "gpt-4o", "input": "a"})).await;
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let follow_up = json!({"model": "gpt-4o", "input": "b", "previous_response_id": id});

    let chained = post_json(&origin, LEGACY, &follow_up).await;
    assert_eq!(chained.status, StatusCode::OK);
    assert_eq!(chained.json()["previous_response_id"], id.as_str());

    let elsewhere = post_json(&other, LEGACY, &follow_up).await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        elsewhere.json(),
        json!({"error": {
            "code": "invalid_encrypted_content",
            "message": "The encrypted content could not be verified.",
            "type": "invalid_request_error",
        }})
    );
}

#[tokio::test]
async fn streamed_response_events_accumulate_to_the_final_text() {
    let server = MockServer::start(MockOptions {
        chunk_count: 3,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let body = json!({"model": "gpt-4o", "input": "stream please", "stream": true});
    let reply = post_json(&server, V1, &body).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "text/event-stream");

    let events = sse_events(reply.text());
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let payloads: Vec<Value> = events.iter().map(|(_, data)| parse(data)).collect();
    let mut text = String::new();
    for (sequence, (payload, (kind, _))) in payloads.iter().zip(&events).enumerate() {
        assert_eq!(payload["type"], kind.as_str());
        assert_eq!(payload["sequence_number"], sequence);
        if kind == "response.output_text.delta" {
            text.push_str(payload["delta"].as_str().unwrap());
        }
    }
    assert_eq!(payloads[0]["response"]["status"], "in_progress");
    assert_eq!(payloads[7]["text"], text.as_str());
    let completed = &payloads[10]["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["content"][0]["text"], text.as_str());
    assert_eq!(completed["usage"]["output_tokens"], 3);

    let id = completed["id"].as_str().unwrap();
    let stored = get(&server, &format!("{V1}/{id}")).await;
    assert_eq!(&stored.json(), completed);
}
