//! The SSE framer (`proxy::sse::Framer`) and the event readers.
//!
//! Any bytes, fed whole, one byte at a time (up to 512 of them) and in pseudo-random pieces, come
//! out as the same events and the same unfinished tail; the events and the tail put back together
//! are the input; the events are where a reference splitter written here from the SSE
//! specification puts them (an event ends at its first blank line; a line ends at CRLF, LF or CR,
//! and a CR last waits for the next byte); each event's data is what the specification's reader
//! (`proxy::scan::generate::reference_data`, the differential tests' reference) reads in it; and
//! no event check panics.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proxy::scan::generate::reference_data;
use proxy::sse;

fuzz_target!(|stream: &[u8]| {
    let whole = frame(&[stream]);
    let (events, rest) = &whole;
    let restored: Vec<u8> = events.iter().chain(rest).flat_map(|b| b.to_vec()).collect();
    assert_eq!(restored, stream, "events and tail are the input");
    assert_eq!(
        (events.clone(), rest.clone()),
        reference_events(stream),
        "events split where the specification splits them"
    );

    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frame(&bytes), whole, "one byte at a time");
    }
    let pieces = gateway_fuzz::pieces(stream);
    let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
    assert_eq!(frame(&pieces), whole, "pieces of {lengths:?}");

    for event in events {
        if std::str::from_utf8(event).is_ok() {
            let data = sse::data(event).map(|d| String::from_utf8_lossy(&d).into_owned());
            assert_eq!(data, reference_data(event), "data of {event:?}");
        }
        let (_, data) = sse::parts(event);
        let _ = sse::opening(event);
        let _ = sse::is_usage_only_chunk(data.unwrap_or_default());
        let _ = sse::strip_null_usage(event.clone());
    }
});

fn frame(pieces: &[&[u8]]) -> (Vec<Bytes>, Option<Bytes>) {
    let mut framer = sse::Framer::default();
    let mut events = Vec::new();
    for piece in pieces {
        let pushed = framer.push(Bytes::copy_from_slice(piece), &mut events);
        // Fuzzed streams are far below the 16 MiB an unfinished event may grow to.
        assert!(
            pushed.is_ok(),
            "an unfinished event under MAX_EVENT_BYTES refused"
        );
    }
    (events, framer.take_rest())
}

/// The events of a stream as the SSE specification splits them, and the unfinished tail.
fn reference_events(stream: &[u8]) -> (Vec<Bytes>, Option<Bytes>) {
    let mut events = Vec::new();
    let (mut event_start, mut line_start, mut at) = (0, 0, 0);
    while at < stream.len() {
        let next = match (stream[at], stream.get(at + 1)) {
            (b'\r', None) => break, // perhaps the first half of a CRLF
            (b'\r', Some(b'\n')) => at + 2,
            (b'\r' | b'\n', _) => at + 1,
            _ => {
                at += 1;
                continue;
            }
        };
        if at == line_start {
            events.push(Bytes::copy_from_slice(&stream[event_start..next]));
            event_start = next;
        }
        line_start = next;
        at = next;
    }
    let rest = (event_start < stream.len()).then(|| Bytes::copy_from_slice(&stream[event_start..]));
    (events, rest)
}
