//! The chunked body decoder (`proxy::http1::Framing::decode`), two properties.
//!
//! 1. Reads do not matter: the same bytes fed whole, one byte at a time (short inputs), in every
//!    two pieces (shorter ones), in reads of 1000 bytes and in pseudo-random pieces give the same
//!    body, the same end state and the same bytes left after the body (or the same error).
//! 2. It agrees with a reference decoder written here from RFC 9112 §7.1 alone (strict: CRLF
//!    only, the chunk-ext and trailer grammar checked). A body the reference reads whole is read
//!    whole with the same data and the same end; a valid body cut short waits, with the data of
//!    the cut-short body so far; only the gateway's documented limits (more than 15 hex digits in
//!    a size, an unfinished line over 4 KiB, 16 KiB of extensions and trailers) may turn either
//!    into an error. A body the reference
//!    refuses may be read (the gateway is more lenient) unless the `strict` feature is on.
//!
//! Why a reference decoder rather than hyper's: hyper exposes its decoder only inside a server
//! or client connection, so every input would cost a runtime and a connection over an in-memory
//! duplex (orders of magnitude fewer executions a second), and hyper has its own leniencies and
//! limits (whitespace after a size, extension bytes unchecked, 16 KiB of extensions and of
//! trailers) that we would have to mirror; the RFC's grammar is the thing both should match, and
//! it fits in 150 lines.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proxy::http1::{Framing, MAX_CHUNK_OVERHEAD};

/// The decoder's own limits (`proxy/src/http1.rs`): the longest line it waits for, the most hex
/// digits in a chunk size (and `MAX_CHUNK_OVERHEAD`, extension and trailer bytes per body).
const MAX_LINE: usize = 4096;
const MAX_SIZE_DIGITS: usize = 15;

fuzz_target!(|wire: &[u8]| {
    let whole = decode(&[wire]);
    check_reads(wire, &whole);
    check_reference(wire, &whole);
});

/// What the gateway's decoder made of some bytes.
#[derive(Debug, PartialEq, Eq)]
enum Ours {
    /// The body ended; `rest` is what followed it.
    Done {
        body: Vec<u8>,
        rest: Vec<u8>,
    },
    /// More bytes are needed.
    Waiting {
        body: Vec<u8>,
        state: Framing,
        rest: Vec<u8>,
    },
    Failed(String),
}

/// Feeds `pieces` to a chunked decoder one read at a time, as `poll_body` does.
fn decode(pieces: &[&[u8]]) -> Ours {
    let mut framing = Framing::chunked();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match framing.decode(&mut buf) {
                Ok(Some(data)) => {
                    assert!(!data.is_empty(), "an empty piece of body");
                    body.extend_from_slice(&data);
                }
                Ok(None) => break,
                Err(error) => return Ours::Failed(error.to_string()),
            }
        }
    }
    if framing.is_done() {
        Ours::Done {
            body,
            rest: buf.to_vec(),
        }
    } else {
        Ours::Waiting {
            body,
            state: framing,
            rest: buf.to_vec(),
        }
    }
}

fn check_reads(wire: &[u8], whole: &Ours) {
    if wire.len() <= 512 {
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(&decode(&bytes), whole, "one byte at a time");
    }
    // Reads of a fixed size, as a socket gives them (smaller than the gateway's 8 KiB so that
    // inputs of libFuzzer's lengths see several).
    let reads: Vec<&[u8]> = wire.chunks(1000).collect();
    assert_eq!(&decode(&reads), whole, "reads of 1000 bytes");
    if wire.len() <= 64 {
        for at in 0..=wire.len() {
            let (a, b) = wire.split_at(at);
            assert_eq!(&decode(&[a, b]), whole, "split at {at}");
        }
    }
    let pieces = gateway_fuzz::pieces(wire);
    let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
    assert_eq!(&decode(&pieces), whole, "pieces of {lengths:?}");
}

fn check_reference(wire: &[u8], whole: &Ours) {
    let reference = Reference::decode(wire);
    let over_size_digits = reference.size_digits > MAX_SIZE_DIGITS;
    // The longest line (the unfinished one at the end included): the decoder refuses any
    // size or trailer line over MAX_LINE, whether its LF has arrived or not.
    let longest_line = wire
        .split(|&b| b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    let limited = |ours: &Ours| match ours {
        Ours::Failed(message) if message == "invalid chunk size" => over_size_digits,
        Ours::Failed(message) if message.ends_with("line too long") => longest_line > MAX_LINE,
        Ours::Failed(message) if message.starts_with("too many") => {
            wire.len() > MAX_CHUNK_OVERHEAD as usize
        }
        _ => false,
    };
    match reference.end {
        End::Complete(len) => {
            let want = Ours::Done {
                body: reference.body,
                rest: wire[len..].to_vec(),
            };
            assert!(
                *whole == want || limited(whole),
                "valid chunked body read as {whole:?}, want {want:?}"
            );
        }
        End::Incomplete => match whole {
            Ours::Waiting { body, .. } => {
                assert_eq!(body, &reference.body, "data of a valid body cut short");
            }
            other => assert!(limited(other), "a valid body cut short read as {other:?}"),
        },
        End::Invalid(why) => {
            if cfg!(feature = "strict") {
                assert!(
                    !matches!(whole, Ours::Done { .. }),
                    "read a body RFC 9112 refuses ({why}): {whole:?}"
                );
            }
        }
    }
}

/// How the reference decoder ended.
enum End {
    /// The body ended after this many bytes.
    Complete(usize),
    /// The bytes are a valid beginning of a chunked body.
    Incomplete,
    Invalid(&'static str),
}

/// Why the reference stopped before the end of a body.
enum Stop {
    Incomplete,
    Invalid(&'static str),
}

type Step<T = ()> = Result<T, Stop>;

/// RFC 9112 §7.1, as written:
///
/// ```text
/// chunked-body   = *chunk last-chunk trailer-section CRLF
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-size     = 1*HEXDIG
/// last-chunk     = 1*("0") [ chunk-ext ] CRLF
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// trailer-section = *( field-line CRLF )
/// field-line     = field-name ":" OWS field-value OWS
/// ```
struct Reference<'a> {
    wire: &'a [u8],
    at: usize,
    body: Vec<u8>,
    /// The most hex digits in a chunk size seen.
    size_digits: usize,
    end: End,
}

impl<'a> Reference<'a> {
    fn decode(wire: &'a [u8]) -> Self {
        let mut reference = Self {
            wire,
            at: 0,
            body: Vec::new(),
            size_digits: 0,
            end: End::Incomplete,
        };
        reference.end = match reference.chunked_body() {
            Ok(()) => End::Complete(reference.at),
            Err(Stop::Incomplete) => End::Incomplete,
            Err(Stop::Invalid(why)) => End::Invalid(why),
        };
        reference
    }

    fn chunked_body(&mut self) -> Step {
        loop {
            let size = self.chunk_size()?;
            self.chunk_ext()?;
            self.crlf("chunk size line not ended by CRLF")?;
            if size == 0 {
                break;
            }
            let available = (self.wire.len() - self.at) as u64;
            let take = size.min(available) as usize;
            self.body
                .extend_from_slice(&self.wire[self.at..self.at + take]);
            self.at += take;
            if (take as u64) < size {
                return Err(Stop::Incomplete);
            }
            self.crlf("chunk data not followed by CRLF")?;
        }
        while self.peek()? != b'\r' {
            self.field_line()?;
            self.crlf("trailer field not ended by CRLF")?;
        }
        self.crlf("chunked body not ended by CRLF")
    }

    fn peek(&self) -> Step<u8> {
        self.wire.get(self.at).copied().ok_or(Stop::Incomplete)
    }

    fn eat(&mut self, byte: u8) -> Step<bool> {
        let found = self.peek()? == byte;
        self.at += usize::from(found);
        Ok(found)
    }

    fn crlf(&mut self, why: &'static str) -> Step {
        if self.eat(b'\r')? && self.eat(b'\n')? {
            Ok(())
        } else {
            Err(Stop::Invalid(why))
        }
    }

    /// OWS / BWS: any spaces and tabs.
    fn ows(&mut self) -> Step {
        while matches!(self.peek()?, b' ' | b'\t') {
            self.at += 1;
        }
        Ok(())
    }

    fn chunk_size(&mut self) -> Step<u64> {
        let start = self.at;
        let mut size: u64 = 0;
        while let Some(digit) = (self.peek()? as char).to_digit(16) {
            size = size.saturating_mul(16).saturating_add(u64::from(digit));
            self.at += 1;
        }
        let digits = self.at - start;
        self.size_digits = self.size_digits.max(digits);
        match digits {
            0 => Err(Stop::Invalid("no chunk size")),
            1..=16 => Ok(size),
            _ if size == 0 => Ok(0),
            _ => Err(Stop::Invalid("chunk size beyond 64 bits")),
        }
    }

    fn chunk_ext(&mut self) -> Step {
        loop {
            let before = self.at;
            self.ows()?;
            if !self.eat(b';')? {
                self.at = before; // whitespace without an extension: the CRLF check refuses it
                return Ok(());
            }
            self.ows()?;
            self.token("invalid chunk extension name")?;
            let before_value = self.at;
            self.ows()?;
            if !self.eat(b'=')? {
                self.at = before_value;
                continue;
            }
            self.ows()?;
            if self.peek()? == b'"' {
                self.quoted_string()?;
            } else {
                self.token("invalid chunk extension value")?;
            }
        }
    }

    fn token(&mut self, why: &'static str) -> Step {
        let start = self.at;
        while is_tchar(self.peek()?) {
            self.at += 1;
        }
        if self.at == start {
            return Err(Stop::Invalid(why));
        }
        Ok(())
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 9110 §5.6.4).
    fn quoted_string(&mut self) -> Step {
        self.at += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.at += 1;
                    if !is_field_byte(self.peek()?) {
                        return Err(Stop::Invalid("invalid quoted-pair"));
                    }
                    self.at += 1;
                }
                byte if is_field_byte(byte) => self.at += 1,
                _ => return Err(Stop::Invalid("invalid byte in a quoted string")),
            }
        }
    }

    /// `field-name ":" OWS field-value OWS`: a token, a colon, then spaces, tabs, visible bytes
    /// and obs-text (no other control byte, no obs-fold).
    fn field_line(&mut self) -> Step {
        self.token("invalid trailer field name")?;
        if !self.eat(b':')? {
            return Err(Stop::Invalid("trailer field without a colon"));
        }
        while is_field_byte(self.peek()?) {
            self.at += 1;
        }
        Ok(())
    }
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// SP, HTAB, VCHAR or obs-text.
fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | 0x21..=0x7e | 0x80..=0xff)
}
