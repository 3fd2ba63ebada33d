//! Server-sent events: splitting a byte stream into events, and the few checks the gateway
//! makes on them (a throttling error as the first event, the usage chunk) without parsing
//! every chunk as JSON.

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// Error codes that, as the first event of a 200 stream, mean "try another backend".
const RETRYABLE_STREAM_CODES: &[&str] = &[
    "too_many_requests",
    "rate_limit_exceeded",
    "429",
    "server_error",
    "internal_error",
    "service_unavailable",
];

/// Splits bytes into complete SSE events (each returned with its terminating blank line).
#[derive(Debug, Default)]
pub struct Framer {
    buf: BytesMut,
}

impl Framer {
    /// Appends a chunk and returns every event now complete, in order. When nothing is pending
    /// from earlier chunks (the usual case: one read, whole events) the events are slices of
    /// `chunk` itself; only an unfinished tail is copied.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        if self.buf.is_empty() {
            let mut start = 0;
            while let Some(end) = event_end(&chunk[start..]) {
                out.push(chunk.slice(start..start + end));
                start += end;
            }
            if start < chunk.len() {
                self.buf.extend_from_slice(&chunk[start..]);
            }
            return;
        }
        self.buf.extend_from_slice(&chunk);
        while let Some(end) = event_end(&self.buf) {
            out.push(self.buf.split_to(end).freeze());
        }
    }

    /// Bytes of an unfinished event left at the end of the stream.
    pub fn take_rest(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// End offset (exclusive) of the first complete event: the first blank line (`\n\n`, `\r\n\r\n`, `\r\r`).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let at = i + pos;
        let rest = &buf[at..];
        if rest.starts_with(b"\r\n\r\n") {
            return Some(at + 4);
        }
        if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            return Some(at + 2);
        }
        if rest.len() < 4
            && (rest == b"\r" || rest == b"\r\n" || rest == b"\r\n\r" || rest == b"\n")
        {
            return None;
        }
        i = at + 1;
    }
    None
}

/// The `event:` name and first `data:` payload of an event.
pub fn parts(event: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let mut name = None;
    let mut data = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = line.strip_prefix(b"event:") {
            name = Some(trim_space(v));
        } else if let Some(v) = line.strip_prefix(b"data:")
            && data.is_none()
        {
            data = Some(trim_space(v));
        }
    }
    (name, data)
}

fn trim_space(v: &[u8]) -> &[u8] {
    v.strip_prefix(b" ").unwrap_or(v)
}

/// What the first events of a stream say about the attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// Bookkeeping events (`response.created`, `response.in_progress`, comments): keep looking.
    Preamble,
    /// A throttling / server error before any output: fail over.
    RetryableError { code: String },
    /// Real output (or an error that is not retryable): commit to this backend.
    Commit,
}

/// Classifies one event at the start of a stream.
pub fn opening(event: &[u8]) -> Opening {
    let (name, data) = parts(event);
    let Some(data) = data else {
        return Opening::Preamble; // comment or keep-alive
    };
    if matches!(name, Some(b"response.created" | b"response.in_progress")) {
        return Opening::Preamble;
    }
    let maybe_error = matches!(name, Some(b"error" | b"response.failed"))
        || memmem::find(data, b"\"error\"").is_some()
        || data.starts_with(b"{\"type\":\"error\"");
    if !maybe_error {
        return Opening::Commit;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Opening::Commit;
    };
    let code = value
        .pointer("/error/code")
        .or_else(|| value.pointer("/response/error/code"))
        .or_else(|| (value.get("type")?.as_str()? == "error").then(|| value.get("code"))?);
    let code = match code {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Opening::Commit,
    };
    if RETRYABLE_STREAM_CODES.contains(&code.as_str()) {
        Opening::RetryableError { code }
    } else {
        Opening::Commit
    }
}

/// Whether a chat event is the usage-only chunk (`"choices":[]` plus a usage object) that the
/// gateway asked for on the client's behalf.
pub fn is_usage_only_chunk(data: &[u8]) -> bool {
    memmem::find(data, b"\"choices\":[]").is_some() && crate::usage::mentions_usage_object(data)
}

/// Searchers for the member [`strip_null_usage`] removes, built once (it runs on every event).
static NULL_USAGE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\":null"));

/// Removes the `"usage":null` member that `include_usage` adds to every chunk, so a client that
/// did not ask for usage sees the chunks it would have seen without it. The event comes back as
/// the slices around the member (no copy: they leave in the same write).
pub fn strip_null_usage(event: Bytes) -> (Bytes, Option<Bytes>) {
    const MEMBER: usize = b"\"usage\":null".len();
    let Some(at) = NULL_USAGE.find(&event) else {
        return (event, None);
    };
    // With the comma before it (`,"usage":null`), else the one after it (`"usage":null,`).
    let (at, len) = if at > 0 && event[at - 1] == b',' {
        (at - 1, MEMBER + 1)
    } else if event.get(at + MEMBER) == Some(&b',') {
        (at, MEMBER + 1)
    } else {
        return (event, None);
    };
    let tail = event.slice(at + len..);
    (event.slice(..at), Some(tail))
}

/// A final `event: error` carrying the gateway error shape, sent when a stream breaks mid-way.
pub fn error_event(code: &str, message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": { "code": code, "message": message, "type": "gateway_error" }
    });
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&'static [u8]]) -> Vec<Bytes> {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            framer.push(Bytes::from_static(c), &mut out);
        }
        out
    }

    #[test]
    fn splits_events_across_chunk_boundaries() {
        let events = frame(&[b"data: a\n", b"\ndata: b\r\n\r", b"\ndata: [DONE]\n\n"]);
        assert_eq!(
            events,
            vec![&b"data: a\n\n"[..], b"data: b\r\n\r\n", b"data: [DONE]\n\n"]
        );
        assert!(frame(&[b"data: partial\n"]).is_empty());
    }

    #[test]
    fn classifies_openings() {
        assert_eq!(
            opening(b"data: {\"error\":{\"code\":\"too_many_requests\",\"message\":\"x\"}}\n\n"),
            Opening::RetryableError {
                code: "too_many_requests".into()
            }
        );
        assert_eq!(
            opening(b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\"}}}\n\n"),
            Opening::RetryableError { code: "server_error".into() }
        );
        assert_eq!(
            opening(b"event: response.created\ndata: {}\n\n"),
            Opening::Preamble
        );
        assert_eq!(opening(b": keep-alive\n\n"), Opening::Preamble);
        assert_eq!(
            opening(b"data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\n"),
            Opening::Commit
        );
        assert_eq!(
            opening(b"data: {\"error\":{\"code\":\"content_filter\"}}\n\n"),
            Opening::Commit
        );
    }

    #[test]
    fn usage_chunk_and_null_usage() {
        assert!(is_usage_only_chunk(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!is_usage_only_chunk(
            br#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
        let joined =
            |(head, tail): (Bytes, Option<Bytes>)| [head, tail.unwrap_or_default()].concat();
        let stripped = strip_null_usage(Bytes::from_static(b"data: {\"a\":1,\"usage\":null}\n\n"));
        assert_eq!(joined(stripped), b"data: {\"a\":1}\n\n");
        let stripped = strip_null_usage(Bytes::from_static(b"data: {\"usage\":null,\"a\":1}\n\n"));
        assert_eq!(joined(stripped), b"data: {\"a\":1}\n\n");
        let alone = Bytes::from_static(b"data: {\"usage\":null}\n\n");
        assert_eq!(strip_null_usage(alone.clone()), (alone, None));
    }
}
