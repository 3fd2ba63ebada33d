//! Unit tests of the usage reader; `scan/differential.rs` checks it against `serde_json` on
//! generated documents.

use super::*;

fn total(json: &[u8]) -> Option<u64> {
    find_usage(json).map(|usage| usage.total)
}

#[test]
fn reads_chat_and_responses_usage() {
    let chat = br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
    assert_eq!(
        find_usage(chat),
        Some(Usage {
            prompt: 3,
            completion: 5,
            total: 8,
            cached: 1,
            reasoning: 2
        })
    );
    let responses = br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":4,"output_tokens":6,"total_tokens":10,"output_tokens_details":{"reasoning_tokens":1}}}}"#;
    assert_eq!(
        find_usage(responses),
        Some(Usage {
            prompt: 4,
            completion: 6,
            total: 10,
            cached: 0,
            reasoning: 1
        })
    );
    assert_eq!(find_usage(br#"{"usage":null}"#), None);
    assert!(!mentions_usage_object(br#"{"usage":null}"#));
    assert!(mentions_usage_object(
        br#"{"a":1,"usage": {"total_tokens":2}}"#
    ));
    assert!(!mentions_usage_object(br#"{"usage":"#));
}

#[test]
fn only_the_real_usage_object_counts() {
    // In content, in a nested object that is not `response`, in a string: not the usage.
    for not_usage in [
        &br#"{"usage":null,"x":{"usage":{"total_tokens":2}}}"#[..],
        br#"{"choices":[{"delta":{"content":"\"usage\":{\"total_tokens\":9}"}}],"usage":null}"#,
        br#"{"data":[{"usage":{"total_tokens":9}}]}"#,
        br#"{"kind":"usage","note":{"usage":{"total_tokens":9}}}"#,
        br#"{"response":{"output":[{"usage":{"total_tokens":9}}]}}"#,
        br#"["usage",{"usage":{"total_tokens":9}}]"#,
        // A key that ends in `"usage` (an escaped quote): the bytes `"usage"` are in it.
        br#"{"\"usage":{"total_tokens":9}}"#,
        br#"{"usage":null,"x\\\"usage":{"total_tokens":9}}"#,
    ] {
        let text = String::from_utf8_lossy(not_usage);
        assert_eq!(total(not_usage), None, "{text}");
        assert!(!mentions_usage_object(not_usage), "{text}");
    }
    // Wherever the real one stands, whatever the whitespace and the spelling of its key.
    let real: [&[u8]; 5] = [
        br#"{"usage":{"total_tokens":3},"data":[{"usage":{"total_tokens":9}}]}"#,
        b"{\n  \"usage\" :\n  {\n    \"total_tokens\" : 3\n  } ,\n  \"x\": {\"usage\": {\"total_tokens\": 9}}\n}\n",
        br#"{"\u0075sage":{"total_tokens":3}}"#,
        br#"{"response":{"usage":{"total_tokens":3},"output":[{"usage":{"total_tokens":9}}]}}"#,
        br#"{"usage":{"total_tokens":3},"response":{"usage":{"total_tokens":9}}}"#,
    ];
    for json in real {
        let text = String::from_utf8_lossy(json);
        assert_eq!(total(json), Some(3), "{text}");
        assert!(mentions_usage_object(json), "{text}");
    }
    // The last of duplicate keys is the one a parse keeps.
    assert_eq!(
        total(br#"{"usage":{"total_tokens":1},"usage":{"total_tokens":2}}"#),
        Some(2)
    );
    assert_eq!(total(br#"{"usage":{"total_tokens":1},"usage":null}"#), None);
    assert_eq!(
        total(br#"{"usage":{"total_tokens":1,"total_tokens":4}}"#),
        Some(4)
    );
}

#[test]
fn the_scanner_skips_what_it_does_not_read_and_refuses_broken_json() {
    let odd = br#"{"usage": { "note": "a \"}\" b", "x": [1, {"y": [2]}], "prompt_tokens" : 7 ,
        "prompt_tokens_details": null, "flag": true, "completion_tokens": 1,
        "completion_tokens_details": {"audio_tokens": 0, "reasoning_tokens": 4}}}"#;
    assert_eq!(
        find_usage(odd),
        Some(Usage {
            prompt: 7,
            completion: 1,
            total: 8,
            cached: 0,
            reasoning: 4
        })
    );
    for bad in [
        &br#"{"usage":{"prompt_tokens":1.5}}"#[..],
        br#"{"usage":{"prompt_tokens":-1}}"#,
        br#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
        br#"{"usage":{"prompt_tokens":01}}"#,
        br#"{"usage":{"prompt_tokens" 1}}"#,
        br#"{"usage":{"a":"unterminated}}"#,
        br#"{"usage":{"a":"ends in a backslash\"#,
        br#"{"usage":{"prompt_tokens_details":{"cached_tokens":null}}}"#,
        br#"{"usage":{"prompt_tokens_details":7}}"#,
        br#"{"usage":{"total_tokens":1}"#,
    ] {
        assert_eq!(find_usage(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    // Counts no request can have are not trusted (they would wrap the token counters); the
    // largest trusted ones do not overflow their sum.
    let huge = br#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}"#;
    assert_eq!(find_usage(huge), None);
    let most = format!(
        r#"{{"usage":{{"prompt_tokens":{max},"completion_tokens":{max}}}}}"#,
        max = MAX_TOKENS
    );
    assert_eq!(total(most.as_bytes()), Some(2 * MAX_TOKENS));
    let over = format!(r#"{{"usage":{{"total_tokens":{}}}}}"#, MAX_TOKENS + 1);
    assert_eq!(find_usage(over.as_bytes()), None);
}

#[test]
fn large_bodies_cost_what_their_end_costs() {
    // An embeddings answer: the usage follows a long array. Walking from the end, the array is
    // never entered, which a broken array shows: the walk stops before reaching it.
    let padding = format!("[{}]", "0.1,".repeat(100_000) + "0.1");
    let body = format!(r#"{{"data":{padding},"model":"m","usage":{{"total_tokens":5}}}}"#);
    assert_eq!(total(body.as_bytes()), Some(5));
    let broken = body.replacen("[0.1", "[}", 1);
    assert_eq!(total(broken.as_bytes()), Some(5), "the front is not read");
    // Usage first: the walk crosses the array (brackets only) and still finds it.
    let first = format!(r#"{{"usage":{{"total_tokens":6}},"data":{padding}}}"#);
    assert_eq!(total(first.as_bytes()), Some(6));
}

#[test]
fn sse_events_and_streams_are_read_by_their_data() {
    let event = b"data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}\n\n";
    assert_eq!(total(event), Some(7));
    assert!(mentions_usage_object(event));
    let pretty = b"data: {\r\ndata:   \"choices\": [],\r\n: a comment\r\ndata:   \"usage\": {\"total_tokens\": 7}\r\ndata: }\r\n\r\n";
    assert_eq!(total(pretty), Some(7));
    let responses = b"event: response.completed\ndata:{\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":2,\"output_tokens\":3}}}\n\n";
    assert_eq!(total(responses), Some(5));
    let stream = [
        &b"data: {\"usage\":null}\n\n"[..],
        event,
        b"data: [DONE]\n\n",
    ]
    .concat();
    assert_eq!(total(&stream), Some(7));
    assert!(!mentions_usage_object(b"data: {\"usage\":null}\n\n"));
    assert!(!mentions_usage_object(b"data: [DONE]\n\n"));
}

/// The text bytes of a document as `serde_json` reads it: every string value of a text key, at
/// any depth, decoded.
fn text_bytes_by_serde(json: &[u8]) -> u64 {
    fn walk(value: &serde_json::Value) -> u64 {
        match value {
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(key, value)| match value {
                    serde_json::Value::String(text) if TEXT_KEYS.contains(&key.as_bytes()) => {
                        text.len() as u64
                    }
                    other => walk(other),
                })
                .sum(),
            serde_json::Value::Array(items) => items.iter().map(walk).sum(),
            _ => 0,
        }
    }
    walk(&serde_json::from_slice(json).unwrap())
}

#[test]
fn text_bytes_agree_with_serde_json_in_any_layout() {
    let documents: [&[u8]; 6] = [
        br#"{"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#,
        b"{ \"choices\" : [ { \"delta\" : { \"role\" : \"assistant\" ,\n \"content\" : \"h\\u00e9\\n\" } } ] ,\"id\":\"x\" }",
        br#"{"type":"response.output_text.delta","delta":"wor","item_id":"i"}"#,
        br#"{"choices":[{"text":"abc","index":0},{"index":1,"text":"de"}],"usage":null}"#,
        br#"{"choices":[{"message":{"content":null,"tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#,
        br#"{"id":"content","object":"text","model":"delta"}"#,
    ];
    for document in documents {
        assert_eq!(
            text_bytes(document),
            text_bytes_by_serde(document),
            "{}",
            String::from_utf8_lossy(document)
        );
    }
    // SSE: every event's data counts; what is not JSON counts nothing.
    let sse = b"data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\ndata: [DONE]\n\n";
    assert_eq!(text_bytes(sse), 2);
    assert_eq!(text_bytes(b"not json"), 0);
}

#[test]
fn an_estimate_counts_four_bytes_a_token_and_the_completion_cap_per_choice() {
    let mut estimate = Estimate::new(400, Some(50), Some(2));
    assert_eq!((estimate.prompt, estimate.completion_cap), (100, 100));
    estimate.text_bytes = 41;
    assert_eq!(
        estimate.usage(),
        Usage {
            prompt: 100,
            completion: 11,
            total: 111,
            ..Usage::default()
        }
    );
    assert_eq!(Estimate::new(0, None, None).prompt, 1);
}
