//! The request-head parser (`proxy::server::parse_request`) against `httparse` read directly.
//!
//! Whatever the gateway accepts, httparse accepts too, with the same length, method, target,
//! version and fields (in order, as sent); the framing and keep-alive the gateway derives are
//! the ones RFC 9112 §6.1–6.3 and §9.3 give for those fields (and only `chunked` as a coding,
//! one `host` as §3.2 asks); every proper prefix of an accepted head waits for more; and a head
//! does not depend on the bytes that follow it. A head the gateway refuses may be one httparse
//! accepts: the gateway may be stricter, never looser.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proxy::http1::{Framing, MAX_HEADERS};
use proxy::server::{Head, parse_request};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let Ok(parsed) = parse_request(&mut buf) else {
        return;
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut reference = httparse::Request::new(&mut slots);
    let status = reference.parse(data);
    let Some(head) = parsed else {
        assert!(
            matches!(status, Ok(httparse::Status::Partial)),
            "the gateway waits for more where httparse says {status:?}"
        );
        assert_eq!(&buf[..], data, "a partial head stays in the buffer");
        return;
    };
    let Ok(httparse::Status::Complete(len)) = status else {
        panic!("the gateway accepted a head httparse reads as {status:?}");
    };
    assert_eq!(
        &buf[..],
        &data[len..],
        "the head is taken off the buffer, no more"
    );
    let seen = Seen::of(&head, &data[len..]);
    assert_eq!(
        seen,
        Seen::expected(&reference),
        "head differs from httparse's"
    );
    check_framing(&head, reference.headers, seen.http10);

    // Every proper prefix waits for more (sampled for long heads).
    let step = (len / 64).max(1);
    for end in (0..len).step_by(step).chain([len - 1]) {
        let mut prefix = BytesMut::from(&data[..end]);
        assert!(
            matches!(parse_request(&mut prefix), Ok(None)),
            "a prefix of {end} bytes of an accepted {len}-byte head is not partial"
        );
    }
    // The head alone reads the same as with what followed it.
    let mut alone = BytesMut::from(&data[..len]);
    match parse_request(&mut alone) {
        Ok(Some(again)) => assert_eq!(Seen::of(&again, b""), seen),
        _ => panic!("the head alone is not accepted"),
    }
});

/// What a parsed head says, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: Option<http::Uri>,
    http10: bool,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Seen {
    /// The gateway's head; `after` is what followed it (for `expect_continue`).
    fn of(head: &Head, after: &[u8]) -> Self {
        if head.expect_continue {
            assert!(after.is_empty(), "100 Continue owed though content arrived");
            assert!(!head.framing.is_done(), "100 Continue owed for no content");
        }
        let fields = &head.request.fields;
        // A lookup finds the first field of that name, in any case.
        for (name, _) in fields.iter() {
            let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
            let first = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
            assert_eq!(fields.get(&lower), first.map(|(_, v)| v));
        }
        Self {
            method: head.request.method.as_str().to_owned(),
            target: Some(head.request.uri.clone()),
            http10: head.http10,
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    fn expected(reference: &httparse::Request<'_, '_>) -> Self {
        Self {
            method: reference.method.unwrap_or_default().to_owned(),
            target: reference
                .path
                .and_then(|path| http::Uri::try_from(path).ok()),
            http10: reference.version == Some(0),
            fields: reference
                .headers
                .iter()
                .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
                .collect(),
        }
    }
}

/// The values of every field called `name`, in order.
fn values<'a>(
    fields: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The non-empty elements of the comma-separated lists in every field called `name`.
fn list<'a>(fields: &'a [httparse::Header<'a>], name: &'a str) -> Vec<&'a [u8]> {
    values(fields, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
        .collect()
}

/// RFC 9112 §6.3 (body length) and §9.3 (persistence), for a head the gateway accepted.
fn check_framing(head: &Head, fields: &[httparse::Header<'_>], http10: bool) {
    let codings = list(fields, "transfer-encoding");
    let coded = values(fields, "transfer-encoding").next().is_some();
    let lengths: Vec<&[u8]> = values(fields, "content-length").collect();
    if coded {
        // A request whose last coding is not chunked has no length it can be read to.
        assert!(
            codings
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")),
            "accepted a transfer-encoding that does not end in chunked: {codings:?}"
        );
        assert_eq!(
            codings.len(),
            1,
            "accepted codings besides chunked: {codings:?}"
        );
        assert_eq!(head.framing, Framing::chunked(), "transfer-encoding wins");
    } else if let Some(first) = lengths.first() {
        let parse = |v: &[u8]| -> Option<u64> {
            let v = v.trim_ascii();
            let digits = !v.is_empty() && v.iter().all(u8::is_ascii_digit);
            std::str::from_utf8(v).ok().filter(|_| digits)?.parse().ok()
        };
        let length = parse(first).unwrap_or_else(|| panic!("accepted content-length {first:?}"));
        assert!(
            lengths.iter().all(|v| parse(v) == Some(length)),
            "accepted differing content-lengths {lengths:?}"
        );
        assert_eq!(head.framing, Framing::Length(length));
    } else {
        assert_eq!(head.framing, Framing::Empty, "no framing field, no body");
    }

    // RFC 9112 §3.2: one host in an HTTP/1.1 request, at most one in HTTP/1.0.
    let hosts = values(fields, "host").count();
    assert!(
        hosts == 1 || (http10 && hosts == 0),
        "accepted {hosts} host fields"
    );

    let connection = list(fields, "connection");
    let has = |token: &[u8]| connection.iter().any(|t| t.eq_ignore_ascii_case(token));
    if has(b"close") {
        assert!(!head.keep_alive, "kept alive after connection: close");
    }
    if http10 && !has(b"keep-alive") {
        assert!(!head.keep_alive, "HTTP/1.0 kept alive without keep-alive");
    }
    if coded && (!lengths.is_empty() || http10) {
        assert!(!head.keep_alive, "kept alive after ambiguous framing");
    }
    if !http10 && !coded && connection.is_empty() {
        assert!(head.keep_alive, "an HTTP/1.1 request not kept alive");
    }
}
