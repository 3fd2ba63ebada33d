//! Differential tests: every fact the scanner, the usage reader and the SSE checks report about a
//! generated document, in every layout and framing, against what `serde_json` sees in it; and
//! arbitrary bytes through all of them, which must never panic. [`check_text`] and
//! [`read_everything`] hold the fuzz target `fuzz/fuzz_targets/json_scan.rs` to the same checks.

use std::borrow::Cow;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

use super::generate::{self, Json};
use super::*;
use crate::sse;
use crate::usage::{self, Usage};

/// `serde_json`'s reading of a text the writer produced (always valid JSON).
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("writer made invalid JSON ({e}): {text}"))
}

/// The usage object as the gateway defines it: the top-level `usage` when it is an object,
/// else `response.usage` when that is one.
fn reference_usage_object(v: &Value) -> Option<&serde_json::Map<String, Value>> {
    v.get("usage")
        .and_then(Value::as_object)
        .or_else(|| v.get("response")?.as_object()?.get("usage")?.as_object())
}

fn reference_usage(v: &Value) -> Option<Usage> {
    let usage = reference_usage_object(v)?;
    // Every counter present must be an unsigned integer no larger than `MAX_TOKENS`; chat
    // names win over Responses names.
    let count = |value: &Value| value.as_u64().filter(|&n| n <= usage::MAX_TOKENS);
    let counter = |name: &str| -> Option<Option<u64>> {
        usage
            .get(name)
            .map_or(Some(None), |value| count(value).map(Some))
    };
    let detail = |name: &str, wanted: &str| -> Option<Option<u64>> {
        match usage.get(name) {
            None => Some(None),
            Some(Value::Null) => Some(Some(0)),
            Some(Value::Object(details)) => match details.get(wanted) {
                None => Some(Some(0)),
                Some(value) => count(value).map(Some),
            },
            Some(_) => None,
        }
    };
    let prompt = counter("prompt_tokens")?;
    let input = counter("input_tokens")?;
    let completion = counter("completion_tokens")?;
    let output = counter("output_tokens")?;
    let total = counter("total_tokens")?;
    let cached = detail("prompt_tokens_details", "cached_tokens")?;
    let cached_input = detail("input_tokens_details", "cached_tokens")?;
    let reasoning = detail("completion_tokens_details", "reasoning_tokens")?;
    let reasoning_output = detail("output_tokens_details", "reasoning_tokens")?;
    let prompt = prompt.or(input).unwrap_or(0);
    let completion = completion.or(output).unwrap_or(0);
    Some(Usage {
        prompt,
        completion,
        total: total.unwrap_or(prompt.saturating_add(completion)),
        cached: cached.or(cached_input).unwrap_or(0),
        reasoning: reasoning.or(reasoning_output).unwrap_or(0),
    })
}

fn reference_usage_only(v: &Value) -> bool {
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(Value::is_object)
}

fn reference_response_id(v: &Value) -> Option<&str> {
    let nested = v
        .get("response")
        .and_then(Value::as_object)
        .map(|r| r.get("id"));
    match nested {
        Some(Some(Value::String(id))) => Some(id),
        _ => v.get("id")?.as_str(),
    }
}

/// A code as the gateway reads it: a string, or an integer as written.
fn reference_code(code: &Value) -> Option<String> {
    match code {
        Value::String(code) => Some(code.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

fn reference_error_code(v: &Value) -> Option<String> {
    reference_code(v.pointer("/error/code")?)
}

fn reference_stream_error_code(v: &Value) -> Option<String> {
    let code = v
        .pointer("/error/code")
        .or_else(|| v.pointer("/response/error/code"))
        .or_else(|| (v.get("type")?.as_str()? == "error").then(|| v.get("code"))?)?;
    reference_code(code)
}

/// `v` without its top-level `usage` when that is the one `usage` key and `null`, as the tree
/// (which keeps duplicates) tells.
fn reference_stripped(json: &Json, v: &Value) -> Option<Value> {
    let usages: Vec<&Json> = json
        .members()
        .iter()
        .filter(|(k, _)| k == "usage")
        .map(|(_, v)| v)
        .collect();
    let [Json::Null] = usages[..] else {
        return None;
    };
    let mut stripped = v.clone();
    stripped.as_object_mut()?.remove("usage");
    Some(stripped)
}

/// Bytes of generated text as the document was written: every string value (decoded) of a
/// text member, at any depth, duplicates included; a document that is not an object is not
/// read as JSON (`usage::text_bytes` reads it as SSE).
fn reference_text_bytes(json: &Json) -> u64 {
    fn walk(json: &Json) -> u64 {
        match json {
            Json::Object(members) => members
                .iter()
                .map(|(key, value)| match value {
                    Json::String(text) if usage::TEXT_KEYS.contains(&key.as_bytes()) => {
                        text.len() as u64
                    }
                    other => walk(other),
                })
                .sum(),
            Json::Array(items) => items.iter().map(walk).sum(),
            _ => 0,
        }
    }
    match json {
        Json::Object(_) => walk(json),
        _ => 0,
    }
}

/// Whether the writer left a backslash in the raw id (`created_response_id` refuses those).
fn id_may_be_escaped(text: &str) -> bool {
    text.contains('\\')
}

fn check_document(json: &Json, text: &str, frame_seed: u64) -> Result<(), TestCaseError> {
    let v = parse(text);
    let bytes = text.as_bytes();

    // The scanner walks any document serde_json accepts, whole.
    let mut scan = Scan::new(bytes);
    prop_assert!(
        scan.skip_value().is_some() && scan.at_end(),
        "skip_value: {text}"
    );
    // Top-level members come in order, keys decoded; a key with escapes that decodes to more
    // than `KEY_MAX` bytes comes raw (`Scan::members`).
    if let Json::Object(members) = json {
        let mut keys = Vec::new();
        let walked = Scan::new(bytes).members(|scan, key| {
            keys.push(String::from_utf8_lossy(key).into_owned());
            scan.skip_value()
        });
        prop_assert!(walked.is_some());
        prop_assert_eq!(keys.len(), members.len());
        for (key, (want, _)) in keys.iter().zip(members) {
            if want.len() > super::text::KEY_MAX && key.contains('\\') {
                let decoded = decode(key.as_bytes());
                prop_assert_eq!(decoded.as_deref(), Some(want.as_str()));
            } else {
                prop_assert_eq!(key, want);
            }
        }
    }
    check_scalar(bytes, &v)?;

    // Facts.
    prop_assert_eq!(
        usage::find_usage(bytes),
        reference_usage(&v),
        "find_usage: {}",
        text
    );
    prop_assert_eq!(
        usage::mentions_usage_object(bytes),
        reference_usage_object(&v).is_some(),
        "mentions_usage_object: {}",
        text
    );
    match (created_response_id(bytes), reference_response_id(&v)) {
        (Some(id), want) => prop_assert_eq!(Some(id), want, "created_response_id: {}", text),
        (None, Some(_)) => prop_assert!(id_may_be_escaped(text), "created_response_id: {text}"),
        (None, None) => {}
    }
    prop_assert_eq!(
        usage::text_bytes(bytes),
        reference_text_bytes(json),
        "text_bytes: {}",
        text
    );
    prop_assert_eq!(
        error_code(bytes).map(Cow::into_owned),
        reference_error_code(&v),
        "error_code: {}",
        text
    );
    prop_assert_eq!(
        stream_error_code(bytes).map(Cow::into_owned),
        reference_stream_error_code(&v),
        "stream_error_code: {}",
        text
    );

    // The same document as an SSE event, in some framing.
    let event = generate::frame(text, frame_seed);
    let shown = String::from_utf8_lossy(&event).into_owned();
    prop_assert_eq!(
        sse::data(&event).map(|d| parse(&String::from_utf8_lossy(&d))),
        Some(v.clone())
    );
    prop_assert_eq!(
        usage::find_usage(&event),
        reference_usage(&v),
        "find_usage: {}",
        shown
    );
    prop_assert_eq!(
        usage::mentions_usage_object(&event),
        reference_usage_object(&v).is_some(),
        "mentions_usage_object: {}",
        shown
    );
    let data = sse::parts(&event).1.unwrap_or_default();
    prop_assert_eq!(
        sse::is_usage_only_chunk(data),
        reference_usage_only(&v),
        "usage only: {}",
        shown
    );
    let retryable = reference_stream_error_code(&v).filter(|code| {
        [
            "too_many_requests",
            "rate_limit_exceeded",
            "429",
            "server_error",
            "internal_error",
            "service_unavailable",
        ]
        .contains(&code.as_str())
    });
    let opening = match retryable {
        Some(code) => sse::Opening::RetryableError { code },
        None => sse::Opening::Commit,
    };
    prop_assert_eq!(sse::opening(&event), opening, "opening: {}", shown);

    let event = Bytes::from(event);
    let (head, tail) = sse::strip_null_usage(event.clone());
    match reference_stripped(json, &v) {
        None => prop_assert!(head == event && tail.is_none(), "strip changed: {shown}"),
        Some(want) => {
            let out = [head.clone(), tail.clone().unwrap_or_default()].concat();
            let data = generate::reference_data(&out).unwrap_or_default();
            prop_assert_eq!(
                parse(&data),
                want,
                "strip: {} -> {}",
                shown,
                String::from_utf8_lossy(&out)
            );
            if generate::reference_data(&event).is_some_and(|d| !d.contains('\n')) {
                prop_assert_eq!(head.as_ptr(), event.as_ptr(), "one line is not copied");
            }
        }
    }
    Ok(())
}

/// What the scalar readers say about a document that is one scalar.
fn check_scalar(bytes: &[u8], v: &Value) -> Result<(), TestCaseError> {
    let whole = |scan: &mut Scan<'_>| scan.at_end();
    let mut scan = Scan::new(bytes);
    let number = scan.number().filter(|_| whole(&mut scan));
    prop_assert_eq!(number, v.as_u64());
    let mut scan = Scan::new(bytes);
    let integer = scan
        .integer()
        .filter(|_| whole(&mut scan))
        .map(str::to_owned);
    let want = (v.is_u64() || v.is_i64()).then(|| v.to_string());
    prop_assert_eq!(integer, want);
    let mut scan = Scan::new(bytes);
    let flag = scan.flag().filter(|_| whole(&mut scan));
    let want = match v {
        Value::Bool(b) => Some(Some(*b)),
        Value::Null => Some(None),
        _ => None,
    };
    prop_assert_eq!(flag, want);
    let mut scan = Scan::new(bytes);
    let string = scan
        .string_value()
        .filter(|_| whole(&mut scan))
        .map(Cow::into_owned);
    prop_assert_eq!(string.as_deref(), v.as_str());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Documents shaped like backend answers, in every layout and escaping.
    #[test]
    fn facts_agree_with_serde_json_on_backend_shapes(
        json in generate::document(),
        style in generate::style(),
        frame_seed in any::<u64>(),
    ) {
        let text = generate::write(&json, style);
        check_document(&json, &text, frame_seed)?;
    }

    /// Any value at all, in every layout and escaping.
    #[test]
    fn facts_agree_with_serde_json_on_any_value(
        json in generate::value(),
        style in generate::style(),
        frame_seed in any::<u64>(),
    ) {
        let text = generate::write(&json, style);
        check_document(&json, &text, frame_seed)?;
    }

    /// Bytes of any kind, and documents with one byte changed, never panic a reader.
    #[test]
    fn no_input_panics_a_reader(
        bytes in prop::collection::vec(any::<u8>(), 0..96),
        json in generate::document(),
        style in generate::style(),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[]\":,\\ \n\ru0-a".to_vec()),
    ) {
        let mut mutated = generate::write(&json, style).into_bytes();
        if !mutated.is_empty() {
            let at = at.index(mutated.len());
            mutated[at] = byte;
        }
        for input in [&bytes[..], &mutated] {
            read_everything(input);
            let mut event = b"data: ".to_vec();
            event.extend_from_slice(input);
            event.extend_from_slice(b"\n\n");
            read_everything(&event);
        }
    }
}

/// The checks of the generated documents for any text `serde_json` reads (a fuzzer's); `Ok` for
/// text it refuses, about which the scanner promises nothing. `frame_seed` picks the SSE framing.
pub fn check_text(text: &str, frame_seed: u64) -> Result<(), String> {
    let Ok(json) = serde_json::from_str::<Json>(text) else {
        return Ok(());
    };
    check_document(&json, text, frame_seed).map_err(|failure| failure.to_string())
}

/// Every reader over `input`; none may panic, whatever the bytes.
pub fn read_everything(input: &[u8]) {
    let mut scan = Scan::new(input);
    let _ = scan.skip_value();
    let _ = scan.at_end();
    let _ = Scan::new(input).members(|scan, _| scan.skip_value());
    let _ = Scan::new(input).number();
    let _ = Scan::new(input).integer();
    let _ = Scan::new(input).flag();
    let _ = Scan::new(input).string_value();
    let _ = decode(input);
    let _ = members_rev(input, input.len(), 0, |_| {
        std::ops::ControlFlow::Continue(())
    });
    let _ = created_response_id(input);
    let _ = error_code(input);
    let _ = stream_error_code(input);
    let _ = usage::find_usage(input);
    let _ = usage::mentions_usage_object(input);
    let _ = sse::parts(input);
    let _ = sse::data(input);
    let _ = sse::opening(input);
    let _ = sse::is_usage_only_chunk(input);
    let _ = sse::strip_null_usage(Bytes::copy_from_slice(input));
    let mut framer = sse::Framer::default();
    let mut out = Vec::new();
    let _ = framer.push(Bytes::copy_from_slice(input), &mut out);
    let _ = framer.take_rest();
}
