//! Unit and property tests of SSE framing and the event checks; `scan/differential.rs` checks
//! the JSON side against `serde_json`.

use proptest::prelude::*;

use super::*;

fn frame(chunks: &[&[u8]]) -> (Vec<Bytes>, Option<Bytes>) {
    let mut framer = Framer::default();
    let mut out = Vec::new();
    for chunk in chunks {
        framer
            .push(Bytes::copy_from_slice(chunk), &mut out)
            .unwrap();
    }
    (out, framer.take_rest())
}

/// An event that never ends is refused once it passes the bound, the events before it kept.
#[test]
fn an_event_that_never_ends_is_bounded() {
    let mut framer = Framer::default();
    let mut out = Vec::new();
    let endless = Bytes::from(vec![b'x'; 1024 * 1024]);
    framer
        .push(Bytes::from_static(b"data: first\n\ndata: "), &mut out)
        .unwrap();
    let mut refused = false;
    for _ in 0..=MAX_EVENT_BYTES / endless.len() {
        if framer.push(endless.clone(), &mut out).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused);
    assert_eq!(out, [Bytes::from_static(b"data: first\n\n")]);
}

#[test]
fn splits_events_across_chunk_boundaries() {
    let (events, rest) = frame(&[b"data: a\n", b"\ndata: b\r\n\r", b"\ndata: [DONE]\n\n"]);
    assert_eq!(
        events,
        vec![&b"data: a\n\n"[..], b"data: b\r\n\r\n", b"data: [DONE]\n\n"]
    );
    assert_eq!(rest, None);
    assert!(frame(&[b"data: partial\n"]).0.is_empty());
}

#[test]
fn every_blank_line_ends_an_event_whatever_its_line_ends() {
    // LF, CRLF, CR, and the mixes: a CR then LF is one line end, LF then CR two.
    let stream =
        b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\r\ndata: e\r\n\ndata: f\n\rdata: g\r";
    let (events, rest) = frame(&[stream]);
    assert_eq!(
        events,
        vec![
            &b"data: a\n\n"[..],
            b"data: b\r\n\r\n",
            b"data: c\r\r",
            b"data: d\n\r\n",
            b"data: e\r\n\n",
            b"data: f\n\r",
        ]
    );
    // A CR last may be the first half of a CRLF: the event waits for the next byte.
    assert_eq!(rest.as_deref(), Some(&b"data: g\r"[..]));
}

#[test]
fn fields_are_read_in_every_valid_framing() {
    type Case = (&'static [u8], Option<&'static [u8]>, Option<&'static [u8]>);
    let cases: [Case; 8] = [
        (b"data: {\"a\":1}\n\n", None, Some(b"{\"a\":1}")),
        (b"data:{\"a\":1}\r\n\r\n", None, Some(b"{\"a\":1}")),
        (
            b"event:x\rdata:  two spaces\r\r",
            Some(b"x"),
            Some(b" two spaces"),
        ),
        (
            b": comment\nid: 7\nretry: 10\ndata: {}\n\n",
            None,
            Some(b"{}"),
        ),
        (
            b"data: {\ndata:  \"a\": 1\n: note\nid: 3\ndata: }\n\n",
            None,
            Some(b"{\n \"a\": 1\n}"),
        ),
        (b"data\ndata\n\n", None, Some(b"\n")),
        (b"event: first\nevent: last\n\n", Some(b"last"), None),
        (b"data: one\n\ndata: two\n\n", None, Some(b"one")),
    ];
    for (event, name, payload) in cases {
        let text = String::from_utf8_lossy(event);
        assert_eq!(parts(event).0, name, "{text}");
        assert_eq!(data(event).as_deref(), payload, "{text}");
    }
    // One data line is read in place.
    assert!(matches!(data(b"data: {}\n\n"), Some(Cow::Borrowed(_))));
}

#[test]
fn classifies_openings() {
    let retryable = |code: &str| Opening::RetryableError { code: code.into() };
    let cases: [(&[u8], Opening); 10] = [
        (b"data: {\"error\":{\"code\":\"too_many_requests\",\"message\":\"x\"}}\n\n", retryable("too_many_requests")),
        (b"data: {\r\ndata:   \"error\" : {\r\ndata:     \"message\" : \"x\",\r\ndata:     \"code\" : \"too_many_requests\"\r\ndata:   }\r\ndata: }\r\n\r\n", retryable("too_many_requests")),
        (b"data: {\ndata:   \"error\": {\"code\": 429}\ndata: }\n\n", retryable("429")),
        (b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\"}}}\n\n", retryable("server_error")),
        (b"event: error\ndata: {\"code\":\"rate_limit_exceeded\",\"type\":\"error\"}\n\n", retryable("rate_limit_exceeded")),
        (b"data: {\"\\u0065rror\":{\"code\":\"server_error\"}}\n\n", retryable("server_error")),
        (b"event: response.created\ndata: {}\n\n", Opening::Preamble),
        (b": keep-alive\n\n", Opening::Preamble),
        (b"data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"error\\\":{\\\"code\\\":\\\"server_error\\\"}}\"}}]}\n\n", Opening::Commit),
        (b"data: {\"error\":{\"code\":\"content_filter\"}}\n\n", Opening::Commit),
    ];
    for (event, want) in cases {
        assert_eq!(opening(event), want, "{}", String::from_utf8_lossy(event));
    }
}

#[test]
fn the_usage_only_chunk_is_told_apart_in_any_layout() {
    let usage_only: [&[u8]; 4] = [
        br#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
        br#"{"usage": {"prompt_tokens": 1}, "choices": [ ]}"#,
        b"{\t\"choices\" :\t[\t] ,\t\"usage\" : {\"prompt_tokens\": 1}\t}",
        br#"{"ch\u006fices":[],"usage":{}}"#,
    ];
    for data in usage_only {
        assert!(
            is_usage_only_chunk(data),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
    let not: [&[u8]; 5] = [
        br#"{"choices":[{"delta":{}}],"usage":null}"#,
        br#"{"choices":[],"usage":null}"#,
        br#"{"x":{"choices":[],"usage":{}},"choices":[{}]}"#,
        br#"{"choices":[{"delta":{"content":"\"choices\":[],"}}],"usage":{}}"#,
        br#"{"choices":[],"usage":{},"choices":[1]}"#,
    ];
    for data in not {
        assert!(
            !is_usage_only_chunk(data),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
    // As the relay calls it: with the data of a pretty-printed event.
    let event =
        b"data: {\ndata:   \"choices\": [],\ndata:   \"usage\": {\"total_tokens\": 3}\ndata: }\n\n";
    assert!(is_usage_only_chunk(parts(event).1.unwrap()));
}

fn joined((head, tail): (Bytes, Option<Bytes>)) -> Vec<u8> {
    [head, tail.unwrap_or_default()].concat()
}

#[test]
fn null_usage_is_removed_in_any_layout_without_a_copy() {
    let cases: [(&[u8], &[u8]); 7] = [
        (
            b"data: {\"a\":1,\"usage\":null}\n\n",
            b"data: {\"a\":1}\n\n",
        ),
        (
            b"data: {\"usage\":null,\"a\":1}\n\n",
            b"data: {\"a\":1}\n\n",
        ),
        (
            b"data:{\"a\": 1, \"usage\" : null , \"b\": 2}\r\n\r\n",
            b"data:{\"a\": 1 , \"b\": 2}\r\n\r\n",
        ),
        (b"data: {\"usage\":null}\n\n", b"data: {}\n\n"),
        (
            b"data: {\"a\":{\"usage\":null},\"usage\":null}\n\n",
            b"data: {\"a\":{\"usage\":null}}\n\n",
        ),
        (
            b"data: {\"us\\u0061ge\":null,\"a\":1}\n\n",
            b"data: {\"a\":1}\n\n",
        ),
        (
            b"data: {\"a\":1,\"usage\":null}\n: usage\nid: 1\n\n",
            b"data: {\"a\":1}\n: usage\nid: 1\n\n",
        ),
    ];
    for (event, want) in cases {
        let event = Bytes::copy_from_slice(event);
        let (head, tail) = strip_null_usage(event.clone());
        assert_eq!(
            joined((head.clone(), tail)),
            want,
            "{}",
            String::from_utf8_lossy(&event)
        );
        // The head is a slice of the event, not a copy.
        assert_eq!(head.as_ptr(), event.as_ptr());
    }
    let unchanged: [&[u8]; 6] = [
        b"data: {\"a\":{\"usage\":null}}\n\n",
        b"data: {\"a\":\"\\\"usage\\\":null\",\"b\":1}\n\n",
        b"data: {\"usage\":{\"total_tokens\":1},\"a\":1}\n\n",
        b"data: {\"usage\":null,\"usage\":null}\n\n",
        b"data: [DONE]\n\n",
        b": usage\n\n",
    ];
    for event in unchanged {
        let event = Bytes::copy_from_slice(event);
        let (head, tail) = strip_null_usage(event.clone());
        assert_eq!(
            (&head, tail),
            (&event, None),
            "{}",
            String::from_utf8_lossy(&event)
        );
    }
}

#[test]
fn null_usage_is_removed_from_a_payload_over_several_lines() {
    let event = Bytes::from_static(
        b"event: chunk\r\ndata: {\r\ndata:   \"a\": 1,\r\n: note\r\ndata:   \"usage\": null\r\ndata: }\r\n\r\n",
    );
    let stripped = joined(strip_null_usage(event));
    assert_eq!(
        stripped,
        b"event: chunk\ndata: {\ndata:   \"a\": 1\ndata: }\n: note\n\n"
    );
}

/// One event in a random but valid framing.
fn framed_event() -> impl Strategy<Value = Vec<u8>> {
    let line_end = prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])];
    let line = prop_oneof![
        "[a-z {}\":,]{0,12}".prop_map(|value| format!("data: {value}")),
        "[a-z {}\":,]{0,12}".prop_map(|value| format!("data:{value}")),
        "[a-z.]{0,8}".prop_map(|name| format!("event: {name}")),
        "[0-9]{1,3}".prop_map(|id| format!("id: {id}")),
        Just("retry: 100".to_owned()),
        "[ a-z]{0,8}".prop_map(|note| format!(":{note}")),
        Just("data".to_owned()),
    ];
    (
        prop::collection::vec((line, line_end.clone()), 1..5),
        line_end,
    )
        .prop_map(|(lines, blank)| {
            let mut event = Vec::new();
            for (line, end) in lines {
                event.extend_from_slice(line.as_bytes());
                event.extend_from_slice(end);
            }
            event.extend_from_slice(blank);
            event
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// However a stream is cut into reads, the same events come out, and nothing is lost.
    #[test]
    fn framing_does_not_depend_on_where_reads_end(
        events in prop::collection::vec(framed_event(), 1..6),
        tail in "[a-z:]{0,6}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let stream = [events.concat(), tail.into_bytes()].concat();
        let whole = frame(&[&stream]);
        let restored: Vec<u8> = whole.0.iter().chain(&whole.1).flat_map(|b| b.to_vec()).collect();
        prop_assert_eq!(&restored, &stream);
        for at in 0..=stream.len() {
            let (head, rest) = stream.split_at(at);
            prop_assert_eq!(&frame(&[head, rest]), &whole);
        }
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for point in points {
            pieces.push(&stream[start..point]);
            start = point;
        }
        pieces.push(&stream[start..]);
        prop_assert_eq!(&frame(&pieces), &whole);
    }

    /// Each framed event reads as the reference reader (the SSE specification's steps) reads it.
    #[test]
    fn fields_read_as_the_specification_reads_them(event in framed_event()) {
        let (name, payload) = reference_fields(&event);
        prop_assert_eq!(parts(&event).0.map(<[u8]>::to_vec), name);
        prop_assert_eq!(data(&event).map(Cow::into_owned), payload);
    }
}

/// The SSE specification's event reader, written plainly: lines split at CRLF, LF or CR; the
/// last `event` names it; `data` values are joined with LF.
fn reference_fields(event: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let text = String::from_utf8_lossy(event)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut name = None;
    let mut values = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            break;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.as_bytes().to_vec()),
            "data" => values.push(value),
            _ => {}
        }
    }
    (
        name,
        (!values.is_empty()).then(|| values.join("\n").into_bytes()),
    )
}
