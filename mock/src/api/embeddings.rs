//! Embeddings (`embeddings`): deterministic unit vectors per input, as float arrays or as base64
//! of little-endian `f32`s (`encoding_format: "base64"`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Rejection, parse_json};
use crate::reply::{self, MockResponse};

/// Dimensions when the request does not ask for a number.
const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: usize = 4096;

#[derive(Deserialize)]
struct EmbeddingsRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// One input: text, or a list of token ids.
struct Input {
    seed: u64,
    tokens: u64,
}

pub(super) fn create(call: &mut Call<'_>) -> Result<MockResponse, Rejection> {
    let body = call.body.clone();
    let request: EmbeddingsRequest = parse_json(&body)?;
    let model = call.model(request.model.as_deref())?.to_owned();
    let Some(inputs) = inputs(&request.input) else {
        return Err(Box::new(reply::invalid_request(
            "invalid_value",
            "'input' must be a non-empty string, array of strings, or array of token arrays.",
            Some("input"),
        )));
    };
    let dimensions = request
        .dimensions
        .unwrap_or(DEFAULT_DIMENSIONS)
        .clamp(1, MAX_DIMENSIONS);
    let base64 = request.encoding_format.as_deref() == Some("base64");
    let prompt_tokens: u64 = inputs.iter().map(|input| input.tokens).sum();
    call.spend(&model, prompt_tokens)?;

    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = vector(input.seed, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::from(BASE64.encode(bytes))
            } else {
                Value::from(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Ok(reply::json_value(StatusCode::OK, &body))
}

/// The inputs of a request, or `None` when `input` is missing, empty or of the wrong type.
fn inputs(input: &Value) -> Option<Vec<Input>> {
    let inputs = match input {
        Value::String(text) => vec![text_input(text)],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
            vec![tokens_input(items)]
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Some(text_input(text)),
                Value::Array(tokens) if tokens.iter().all(Value::is_number) => {
                    Some(tokens_input(tokens))
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    (!inputs.is_empty()).then_some(inputs)
}

fn text_input(text: &str) -> Input {
    Input {
        seed: fnv1a(text.as_bytes()),
        tokens: (text.split_whitespace().count() as u64).max(1),
    }
}

fn tokens_input(tokens: &[Value]) -> Input {
    Input {
        seed: fnv1a(Value::from(tokens).to_string().as_bytes()),
        tokens: (tokens.len() as u64).max(1),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A unit vector derived from `seed` alone, so equal inputs embed equally.
fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let raw: Vec<f32> = (0..dimensions).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        raw.iter().map(|x| x / norm).collect()
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_accept_the_documented_shapes() {
        let count = |value: Value| inputs(&value).map(|inputs| inputs.len());
        assert_eq!(count(json!("hello world")), Some(1));
        assert_eq!(count(json!(["a", "b c"])), Some(2));
        assert_eq!(count(json!([1, 2, 3])), Some(1));
        assert_eq!(count(json!([[1, 2], [3]])), Some(2));
        assert_eq!(count(json!([])), None);
        assert_eq!(count(json!(null)), None);
        assert_eq!(count(json!([{"x": 1}])), None);
    }

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = vector(fnv1a(b"same"), 8);
        assert_eq!(a, vector(fnv1a(b"same"), 8));
        assert_ne!(a, vector(fnv1a(b"other"), 8));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
