//! The per-event cost of the relay's checks, measured by hand for reports (run with
//! `--run-ignored only --no-capture`, built with `opt-level=3` for `proxy` and `memchr`). It
//! prints nanoseconds per call and asserts nothing about time.

use bytes::Bytes;

use crate::sse::*;

/// Per-event cost of the relay's checks, for the report (`--ignored --nocapture`, built with
/// `opt-level=3`). Prints nanoseconds per call; asserts nothing about time.
#[test]
#[ignore = "a measurement, not a test: run by hand"]
fn per_chunk_cost() {
    use std::hint::black_box;
    use std::time::Instant;
    // The fastest of five batches: the machine is shared, and other work only ever adds time.
    fn time(label: &str, rounds: u32, mut f: impl FnMut()) {
        let batch = (rounds / 5).max(1);
        let ns = (0..5)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..batch {
                    f();
                }
                start.elapsed().as_nanos() as f64 / f64::from(batch)
            })
            .fold(f64::INFINITY, f64::min);
        println!("{label:<48} {ns:>9.1} ns");
    }
    let filters = r#"{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}"#;
    let mock_chunk = Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-0123456789abcdef0123456789abcdef\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":\"gpt-4o\",\"system_fingerprint\":\"fp_mock\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok3 \"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
    );
    let azure_chunk = Bytes::from(format!(
        "data: {{\"choices\":[{{\"content_filter_results\":{filters},\"delta\":{{\"content\":\" world\"}},\"finish_reason\":null,\"index\":0,\"logprobs\":null}}],\"created\":1733000000,\"id\":\"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_abc123\",\"usage\":null}}\n\n"
    ));
    let plain_chunk = Bytes::from(format!(
        "data: {{\"choices\":[{{\"content_filter_results\":{filters},\"delta\":{{\"content\":\" world\"}},\"finish_reason\":null,\"index\":0,\"logprobs\":null}}],\"created\":1733000000,\"id\":\"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_abc123\"}}\n\n"
    ));
    let usage_chunk = Bytes::from_static(b"data: {\"id\":\"chatcmpl-0123456789abcdef0123456789abcdef\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":\"gpt-4o\",\"system_fingerprint\":\"fp_mock\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":64,\"total_tokens\":76,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n");
    let responses_delta = Bytes::from_static(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":7,\"item_id\":\"msg_0123456789abcdef0123456789abcdef\",\"output_index\":0,\"content_index\":0,\"delta\":\"tok3 \",\"logprobs\":[]}\n\n");
    // Python's json.dumps (ensure_ascii: é as \u00e9), and the same chunk pretty-printed over
    // several data: lines (the one layout that is joined, so allocates).
    let spaced_chunk = Bytes::from_static(b"data: {\"id\": \"chatcmpl-0123456789abcdef0123456789abcdef\", \"object\": \"chat.completion.chunk\", \"created\": 1733000000, \"model\": \"gpt-4o\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"caf\\u00e9 \"}, \"logprobs\": null, \"finish_reason\": null}], \"usage\": null}\n\n");
    let pretty_chunk = Bytes::from_static(b"data: {\ndata:   \"id\": \"chatcmpl-0123456789abcdef0123456789abcdef\",\ndata:   \"object\": \"chat.completion.chunk\",\ndata:   \"created\": 1733000000,\ndata:   \"model\": \"gpt-4o\",\ndata:   \"choices\": [\ndata:     {\ndata:       \"index\": 0,\ndata:       \"delta\": {\ndata:         \"content\": \"tok3 \"\ndata:       },\ndata:       \"logprobs\": null,\ndata:       \"finish_reason\": null\ndata:     }\ndata:   ],\ndata:   \"usage\": null\ndata: }\n\n");
    let rounds = 400_000;
    for (name, event) in [
        ("mock chunk, usage:null", &mock_chunk),
        ("azure chunk, usage:null", &azure_chunk),
        ("azure chunk, no usage", &plain_chunk),
        ("usage chunk", &usage_chunk),
        ("responses delta", &responses_delta),
        ("json.dumps chunk, usage: null", &spaced_chunk),
        ("pretty chunk over 17 data: lines", &pretty_chunk),
    ] {
        println!("-- {name} ({} bytes)", event.len());
        let mut framer = Framer::default();
        let mut out = Vec::with_capacity(4);
        time("Framer::push (one whole event)", rounds, || {
            framer.push(black_box(event.clone()), &mut out);
            black_box(&out);
            out.clear();
        });
        time("parts", rounds, || {
            black_box(parts(black_box(event)));
        });
        time("mentions_usage_object", rounds, || {
            black_box(crate::usage::mentions_usage_object(black_box(event)));
        });
        time("strip_null_usage", rounds, || {
            black_box(strip_null_usage(black_box(event.clone())));
        });
        time("opening", rounds, || {
            black_box(opening(black_box(event)));
        });
        let data = parts(event).1.unwrap_or_default().to_vec();
        time("is_usage_only_chunk (data)", rounds, || {
            black_box(is_usage_only_chunk(black_box(&data)));
        });
        time("find_usage (event)", rounds, || {
            black_box(crate::usage::find_usage(black_box(event)));
        });
    }
    let mut body = String::from("{\"object\":\"list\",\"data\":[");
    for item in 0..64 {
        if item > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"object\":\"embedding\",\"index\":{item},\"embedding\":["
        ));
        for d in 0..1536 {
            if d > 0 {
                body.push(',');
            }
            body.push_str(&format!("{:.8}", ((item * 1536 + d) as f64).sin() / 40.0));
        }
        body.push_str("]}");
    }
    body.push_str("],\"model\":\"text-embedding-3-small\",\"usage\":{\"prompt_tokens\":640,\"total_tokens\":640}}");
    println!("-- embeddings body ({} bytes)", body.len());
    time("find_usage (embeddings body)", 2_000, || {
        black_box(crate::usage::find_usage(black_box(body.as_bytes())));
    });
}
