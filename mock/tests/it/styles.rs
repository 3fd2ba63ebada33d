//! JSON layouts: every body and event the mock writes, in every style, says what the compact
//! one says; and looks the way the style says (`json.dumps` spacing, one `data:` line per line).

use http::StatusCode;
use mock::{JsonStyle, MockOptions, MockServer};
use serde_json::{Value, json};

use crate::support::{CHAT_LEGACY, get, parse, post_json, sse_events, stable};

const STYLES: [(JsonStyle, bool); 4] = [
    (JsonStyle::Spaced, false),
    (JsonStyle::Pretty, false),
    (JsonStyle::Pretty, true),
    (JsonStyle::Compact, true),
];

async fn styled(json_style: JsonStyle, shuffle_keys: bool) -> MockServer {
    MockServer::start(MockOptions {
        json_style,
        shuffle_keys,
        chunk_count: 3,
        ..MockOptions::default()
    })
    .await
    .unwrap()
}

async fn compact() -> MockServer {
    styled(JsonStyle::Compact, false).await
}

/// Each request's answer, as values, from `server`: whole bodies, and each event's data.
async fn answers(server: &MockServer) -> Vec<(String, Value)> {
    let chat = json!({"messages": [{"role": "user", "content": "two words"}]});
    let stream = json!({"messages": [{"role": "user", "content": "x"}], "stream": true,
        "stream_options": {"include_usage": true}});
    let responses = json!({"model": "gpt-4o", "input": "hi", "metadata": {"k": "v"}});
    let responses_stream = json!({"model": "gpt-4o", "input": "hi", "stream": true});
    let embeddings = json!({"model": "e", "input": ["a", "b c"]});
    let mut out = Vec::new();
    for (path, body) in [
        (CHAT_LEGACY, &chat),
        (CHAT_LEGACY, &stream),
        ("/openai/v1/responses", &responses),
        ("/openai/v1/responses", &responses_stream),
        ("/openai/v1/embeddings", &embeddings),
        ("/openai/v1/chat/completions", &json!({"messages": []})),
    ] {
        let reply = post_json(server, path, body).await;
        if reply.header("content-type") == "text/event-stream" {
            for (kind, data) in sse_events(reply.text()) {
                let value = if data == "[DONE]" {
                    json!("[DONE]")
                } else {
                    parse(&data)
                };
                out.push((kind, stable(&value)));
            }
        } else {
            out.push((reply.status.to_string(), stable(&reply.json())));
        }
    }
    for path in ["/nowhere", "/openai/v1/responses/resp_missing"] {
        let reply = get(server, path).await;
        out.push((reply.status.to_string(), reply.json()));
    }
    out
}

#[tokio::test]
async fn every_style_says_what_compact_says() {
    let want = answers(&compact().await).await;
    assert!(want.len() > 10, "{want:?}");
    for (style, shuffle) in STYLES {
        let got = answers(&styled(style, shuffle).await).await;
        assert_eq!(got, want, "{style:?}, shuffled: {shuffle}");
    }
}

#[tokio::test]
async fn spaced_is_json_dumps_and_pretty_takes_a_data_line_per_json_line() {
    let stream = json!({"messages": [{"role": "user", "content": "x"}], "stream": true,
        "stream_options": {"include_usage": true}});
    let spaced = post_json(
        &styled(JsonStyle::Spaced, false).await,
        CHAT_LEGACY,
        &stream,
    )
    .await;
    let text = spaced.text();
    assert!(
        text.contains(r#""choices": [], "usage": {"prompt_tokens": 1, "#),
        "{text}"
    );
    assert!(
        text.contains(r#""finish_reason": null}], "usage": null}"#),
        "{text}"
    );

    let pretty = post_json(
        &styled(JsonStyle::Pretty, false).await,
        CHAT_LEGACY,
        &stream,
    )
    .await;
    let text = pretty.text();
    let first = text.split("\n\n").next().unwrap();
    assert!(first.starts_with("data: {\ndata:   \"id\": "), "{first}");
    assert!(
        first.contains("\ndata:   \"usage\": null\ndata: }"),
        "{first}"
    );
    assert!(text.contains("\ndata:   \"choices\": [],\n"), "{text}");
    assert!(text.ends_with("\n\ndata: [DONE]\n\n"), "{text}");

    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    let whole = post_json(&styled(JsonStyle::Pretty, false).await, CHAT_LEGACY, &body).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert!(
        whole.text().starts_with("{\n  \"id\": \"chatcmpl-"),
        "{}",
        whole.text()
    );
}

#[tokio::test]
async fn shuffled_keys_change_the_order_not_the_content() {
    // Two dozen members in Azure's order: a shuffle that keeps them all in place is 1 in 24!.
    let body = json!({"model": "gpt-4o", "input": "hi"});
    let plain = post_json(&compact().await, "/openai/v1/responses", &body).await;
    let shuffled = post_json(
        &styled(JsonStyle::Compact, true).await,
        "/openai/v1/responses",
        &body,
    )
    .await;
    let keys = |text: &str| -> Vec<String> {
        let value: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        let mut order: Vec<(usize, String)> = value
            .keys()
            .map(|key| (text.find(&format!("\"{key}\":")).unwrap(), key.clone()))
            .collect();
        order.sort();
        order.into_iter().map(|(_, key)| key).collect()
    };
    let (plain_keys, shuffled_keys) = (keys(plain.text()), keys(shuffled.text()));
    assert_ne!(plain_keys, shuffled_keys);
    let mut sorted = (plain_keys.clone(), shuffled_keys.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1);
    assert_eq!(stable(&plain.json()), stable(&shuffled.json()));
}
