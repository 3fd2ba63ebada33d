//! Embeddings as float arrays and as base64 of little-endian `f32`s.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use mock::{MockOptions, MockServer};
use serde_json::json;

use crate::support::post_json;

const PATH: &str = "/openai/deployments/embed/embeddings?api-version=2024-10-21";

#[tokio::test]
async fn embeddings_return_one_vector_per_input() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let reply = post_json(&server, PATH, &json!({"input": ["one two", "three"]})).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "embed");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], index);
        assert_eq!(item["embedding"].as_array().unwrap().len(), 8);
    }
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["total_tokens"], 3);
}

#[tokio::test]
async fn base64_encoding_decodes_to_the_same_floats() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let floats = post_json(&server, PATH, &json!({"input": "hello"}))
        .await
        .json();
    let encoded = post_json(
        &server,
        PATH,
        &json!({"input": "hello", "encoding_format": "base64"}),
    )
    .await
    .json();

    let text = encoded["data"][0]["embedding"].as_str().unwrap();
    let bytes = STANDARD.decode(text).unwrap();
    assert_eq!(bytes.len(), 8 * 4);
    let decoded: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let expected: Vec<f64> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(decoded.len(), expected.len());
    for (got, want) in decoded.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[tokio::test]
async fn missing_input_is_a_bad_request() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let reply = post_json(&server, PATH, &json!({"input": []})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}
