//! Server-sent events: splitting a byte stream into events, reading an event's fields in any
//! framing the SSE format allows (`\n`, `\r\n` or `\r` line ends, `data:` with or without a
//! space, a payload over several `data:` lines, `id:`/`retry:` lines and comments between them),
//! and the few checks the gateway makes on them (a throttling error as the first event, the
//! usage chunk it asked for, the `"usage":null` members that asking added).
//!
//! The JSON inside is read with the scanner (`crate::scan`), structurally: any whitespace, any
//! key order, escaped keys. A key-name search ([`KeyName`]) runs first, only to skip the walk
//! when the key cannot be there. An event with one `data:` line (every backend's usual framing)
//! is read in place; only a payload spread over several lines is joined into a new buffer.

use std::borrow::Cow;
use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::{memchr, memchr2};

use crate::scan::{KeyName, Walk, is_space, members_rev};

/// Error codes that, as the first event of a 200 stream, mean "try another backend".
const RETRYABLE_STREAM_CODES: &[&str] = &[
    "too_many_requests",
    "rate_limit_exceeded",
    "429",
    "server_error",
    "internal_error",
    "service_unavailable",
];

/// Key names looked for before a walk, built once (they run on every event).
static USAGE: LazyLock<KeyName> = LazyLock::new(|| KeyName::new(b"\"usage\""));
static CHOICES: LazyLock<KeyName> = LazyLock::new(|| KeyName::new(b"\"choices\""));
static ERROR: LazyLock<KeyName> = LazyLock::new(|| KeyName::new(b"\"error\""));

/// Longest unfinished event a [`Framer`] holds: a backend that never ends its event would
/// otherwise grow the buffer without bound. A Responses `response.completed` event repeats the
/// whole output, so this is generous.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// An event grew past [`MAX_EVENT_BYTES`] without ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTooLarge;

/// Splits bytes into complete SSE events (each returned with its terminating blank line).
#[derive(Debug, Default)]
pub struct Framer {
    buf: BytesMut,
    /// How far `buf` was searched for the end of its first event.
    searched: Searched,
}

/// Progress of the search for an event's end, kept so that an event arriving in many pieces is
/// searched once, not once per piece.
#[derive(Debug, Default, Clone, Copy)]
struct Searched {
    /// Where to look for the next line end.
    at: usize,
    /// Where the current line starts.
    line_start: usize,
}

impl Framer {
    /// Appends a chunk and returns every event now complete, in order. When nothing is pending
    /// from earlier chunks (the usual case: one read, whole events) the events are slices of
    /// `chunk` itself; only an unfinished tail is copied. `Err` when the unfinished event is
    /// longer than [`MAX_EVENT_BYTES`] (the events before it are in `out`).
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), EventTooLarge> {
        if self.buf.is_empty() {
            let mut start = 0;
            let mut searched = Searched::default();
            while let Some(end) = event_end(&chunk[start..], &mut searched) {
                out.push(chunk.slice(start..start + end));
                start += end;
                searched = Searched::default();
            }
            if start < chunk.len() {
                self.buf.extend_from_slice(&chunk[start..]);
                self.searched = searched;
            }
        } else {
            self.buf.extend_from_slice(&chunk);
            while let Some(end) = event_end(&self.buf, &mut self.searched) {
                out.push(self.buf.split_to(end).freeze());
                self.searched = Searched::default();
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// Bytes of an unfinished event left at the end of the stream.
    pub fn take_rest(&mut self) -> Option<Bytes> {
        self.searched = Searched::default();
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// End offset (exclusive) of the first complete event: after its first empty line. `None` while
/// that is not known yet, including when the buffer ends in a `\r` (the first half of a `\r\n`,
/// perhaps): the split then never depends on where reads happened to end.
fn event_end(buf: &[u8], searched: &mut Searched) -> Option<usize> {
    loop {
        let Some(found) = memchr2(b'\n', b'\r', &buf[searched.at..]) else {
            searched.at = buf.len();
            return None;
        };
        let at = searched.at + found;
        let next = match (buf[at], buf.get(at + 1)) {
            (b'\r', None) => {
                searched.at = at;
                return None;
            }
            (b'\r', Some(b'\n')) => at + 2,
            _ => at + 1,
        };
        if at == searched.line_start {
            return Some(next);
        }
        *searched = Searched {
            at: next,
            line_start: next,
        };
    }
}

/// A line of `text` starting at `start`: where its content ends and where the next line starts.
fn line_at(text: &[u8], start: usize) -> (usize, usize) {
    match memchr2(b'\n', b'\r', &text[start..]) {
        None => (text.len(), text.len()),
        Some(found) => {
            let end = start + found;
            let crlf = text[end] == b'\r' && text.get(end + 1) == Some(&b'\n');
            (end, end + 1 + usize::from(crlf))
        }
    }
}

/// A field line's name and where its value starts (after the colon and one optional space);
/// `None` for a comment. A line without a colon is a field with an empty value.
fn field(line: &[u8]) -> Option<(&[u8], usize)> {
    if line.first() == Some(&b':') {
        return None;
    }
    Some(match memchr(b':', line) {
        None => (line, line.len()),
        Some(colon) => (
            &line[..colon],
            colon + 1 + usize::from(line.get(colon + 1) == Some(&b' ')),
        ),
    })
}

/// Where an event's fields are.
#[derive(Default)]
struct Fields {
    /// The value of the last `event:` line.
    name: Option<Range<usize>>,
    /// From the first `data:` value to the end of the last one.
    data: Option<Range<usize>>,
    data_lines: usize,
    /// Where the line after the blank line that ends the event starts.
    end: usize,
}

/// Reads the fields of the first event in `event`.
fn fields(event: &[u8]) -> Fields {
    let mut fields = Fields::default();
    let mut start = 0;
    while start < event.len() {
        let (end, next) = line_at(event, start);
        if end == start {
            fields.end = next;
            return fields;
        }
        if let Some((name, value)) = field(&event[start..end]) {
            let value = start + value..end;
            match name {
                b"event" => fields.name = Some(value),
                b"data" => {
                    fields.data_lines += 1;
                    let first = fields.data.as_ref().map_or(value.start, |data| data.start);
                    fields.data = Some(first..value.end);
                }
                _ => {}
            }
        }
        start = next;
    }
    fields.end = event.len();
    fields
}

/// The `event:` name and the data of the first event in `event`. The data is as it stands in
/// the event: for one `data:` line (the usual framing) that line's value, the payload itself;
/// for several, the span from the first value to the end of the last `data:` line, which
/// [`join_data`] turns into the payload ([`data`] does both).
pub fn parts(event: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let fields = fields(event);
    (
        fields.name.map(|name| &event[name]),
        fields.data.map(|data| &event[data]),
    )
}

/// The payload of the first event in `event`: its `data:` values joined with `\n`. Borrowed
/// from the event unless it spreads over several lines.
pub fn data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    payload(event, &fields(event))
}

fn payload<'e>(event: &'e [u8], fields: &Fields) -> Option<Cow<'e, [u8]>> {
    let data = &event[fields.data.clone()?];
    Some(if fields.data_lines == 1 {
        Cow::Borrowed(data)
    } else {
        join_data(data)
    })
}

/// Calls `each` with the payload of every event in an SSE text that has data, in order.
pub fn each_data(text: &[u8], mut each: impl FnMut(&[u8])) {
    let mut rest = text;
    while !rest.is_empty() {
        let fields = fields(rest);
        if let Some(data) = payload(rest, &fields) {
            each(&data);
        }
        rest = &rest[fields.end..];
    }
}

/// The payload of data as [`parts`] returns it: the data itself when it is one line, else its
/// `data:` values joined with `\n` (other fields and comments between them left out).
pub fn join_data(data: &[u8]) -> Cow<'_, [u8]> {
    let (first_end, mut start) = line_at(data, 0);
    if first_end == data.len() {
        return Cow::Borrowed(data);
    }
    let mut joined = data[..first_end].to_vec();
    while start < data.len() {
        let (end, next) = line_at(data, start);
        if let Some((b"data", value)) = field(&data[start..end]) {
            joined.push(b'\n');
            joined.extend_from_slice(&data[start + value..end]);
        }
        start = next;
    }
    Cow::Owned(joined)
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

/// Classifies one event at the start of a stream. Only an event named `error` or
/// `response.failed`, or one that may hold an `"error"` key or string, is read (structurally,
/// see [`crate::scan::stream_error_code`]).
pub fn opening(event: &[u8]) -> Opening {
    let (name, data) = parts(event);
    let Some(data) = data else {
        return Opening::Preamble; // comment or keep-alive
    };
    if matches!(name, Some(b"response.created" | b"response.in_progress")) {
        return Opening::Preamble;
    }
    let maybe_error = matches!(name, Some(b"error" | b"response.failed")) || ERROR.may_occur(data);
    if !maybe_error {
        return Opening::Commit;
    }
    match crate::scan::stream_error_code(&join_data(data)) {
        Some(code) if RETRYABLE_STREAM_CODES.contains(&&*code) => Opening::RetryableError {
            code: code.into_owned(),
        },
        _ => Opening::Commit,
    }
}

/// Whether a chat event is the usage-only chunk (top-level `choices` an empty array, top-level
/// `usage` an object) that the gateway asked for on the client's behalf. `data` is the event's
/// data as [`parts`] returns it.
pub fn is_usage_only_chunk(data: &[u8]) -> bool {
    if !CHOICES.may_occur(data) || !USAGE.may_occur(data) {
        return false;
    }
    let json = join_data(data);
    let empty_array = |value: &Range<usize>| match &json[value.clone()] {
        [b'[', inside @ .., b']'] => inside.iter().all(|&b| is_space(b)),
        _ => false,
    };
    let is_object = |value: &Range<usize>| json[value.start] == b'{';
    // Walking from the end, the first of duplicate keys met is the one a parse keeps; a wrong
    // one of the two ends the walk at once.
    let (mut choices, mut usage) = (None, None);
    let walk = members_rev(&json, json.len(), 0, |member| {
        match member.key {
            b"choices" if choices.is_none() => choices = Some(empty_array(&member.value)),
            b"usage" if usage.is_none() => usage = Some(is_object(&member.value)),
            _ => {}
        }
        let decided = choices.is_some() && usage.is_some();
        if decided || choices == Some(false) || usage == Some(false) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let whole = match walk {
        Some(Walk::Finished { open }) => json[..open].iter().all(|&b| is_space(b)),
        Some(Walk::Stopped) => true,
        None => false,
    };
    whole && choices == Some(true) && usage == Some(true)
}

/// Removes the top-level `"usage": null` member (any whitespace, any position) that
/// `include_usage` adds to every chunk, so a client that did not ask for usage sees the chunks
/// it would have seen without it. A single-line event comes back as the slices around the
/// member (no copy: they leave in the same write); one whose payload spreads over several
/// `data:` lines is rewritten. Anything else (no such member, a `usage` that is not `null`, a
/// duplicate `usage` key, not a JSON object) comes back unchanged.
pub fn strip_null_usage(event: Bytes) -> (Bytes, Option<Bytes>) {
    let first = USAGE.find_quoted(&event);
    if first.is_none() && !USAGE.may_be_escaped(&event) {
        return (event, None);
    }
    let fields = fields(&event);
    let Some(data) = fields.data.clone() else {
        return (event, None);
    };
    if fields.data_lines == 1 {
        // Where the name first appears, for the walk to know the member it finds is the only one.
        let first = first.and_then(|at| at.checked_sub(data.start));
        let Some(cut) = null_usage(&event[data.clone()], first) else {
            return (event, None);
        };
        let tail = event.slice(data.start + cut.end..);
        return (event.slice(..data.start + cut.start), Some(tail));
    }
    let json = join_data(&event[data]);
    let Some(cut) = null_usage(&json, None) else {
        return (event, None);
    };
    let stripped = [&json[..cut.start], &json[cut.end..]].concat();
    (rewrite(&event, &fields, &stripped), None)
}

/// The span to remove for the top-level `"usage": null` member of `json`, with the comma and
/// whitespace that separate it from a neighbour. `first_quoted` is where `"usage"` first
/// appears in `json`, when known.
fn null_usage(json: &[u8], first_quoted: Option<usize>) -> Option<Range<usize>> {
    let mut cut = None;
    let mut duplicate = false;
    let mut next_key = None;
    let walk = members_rev(json, json.len(), 0, |member| {
        if member.key == b"usage" {
            if cut.is_some() {
                duplicate = true;
                return ControlFlow::Break(());
            }
            if json[member.value.clone()] != *b"null" {
                return ControlFlow::Break(());
            }
            cut = Some(match (member.previous_end, next_key) {
                (Some(previous_end), _) => previous_end..member.value.end,
                (None, Some(next_key)) => member.key_start..next_key,
                (None, None) => member.key_start..member.value.end,
            });
            // No other spelling of the key before it: it is the only one.
            let before = &json[..member.key_start];
            let quoted_before = match first_quoted {
                Some(first) => first < member.key_start,
                None => USAGE.find_quoted(before).is_some(),
            };
            if !quoted_before && !USAGE.may_be_escaped(before) {
                return ControlFlow::Break(());
            }
        }
        next_key = Some(member.key_start);
        ControlFlow::Continue(())
    })?;
    if let Walk::Finished { open } = walk
        && !json[..open].iter().all(|&b| is_space(b))
    {
        return None;
    }
    if duplicate { None } else { cut }
}

/// `event` with its data replaced by `data` (one `data:` line per line of it, where the first
/// `data:` line was), its other lines as they were.
fn rewrite(event: &[u8], fields: &Fields, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(event.len());
    let mut start = 0;
    let mut data_written = false;
    while start < fields.end {
        let (end, next) = line_at(event, start);
        let line = &event[start..end];
        match field(line) {
            Some((b"data", _)) if data_written => {}
            Some((b"data", _)) => {
                for data_line in data.split(|&b| b == b'\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(data_line);
                    out.push(b'\n');
                }
                data_written = true;
            }
            _ if line.is_empty() => out.push(b'\n'),
            _ => {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        start = next;
    }
    out.extend_from_slice(&event[fields.end..]);
    Bytes::from(out)
}

/// A final `event: error` carrying the gateway error shape, sent when a stream breaks mid-way.
pub fn error_event(code: &str, message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": { "code": code, "message": message, "type": "gateway_error" }
    });
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

#[cfg(test)]
mod tests;
