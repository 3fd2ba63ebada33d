//! A cursor over JSON text that reads only what the gateway needs (usage counters, a few request
//! fields, a response id, an error code) and skips everything else without building values:
//! bodies and streamed chunks are never parsed whole on the request path.
//!
//! What it reads it reads as `serde_json` would: any whitespace, any key order, keys compared
//! after their escapes are decoded, the last of duplicate keys wins, nesting bounded at
//! [`MAX_DEPTH`] like `serde_json`'s own limit, and never by recursion (a hostile document
//! nested a million levels costs a counter, not the stack). What it skips it checks less: a
//! skipped string is found by its quotes (its escapes and control characters are not checked), a
//! skipped number or literal is any run of `[A-Za-z0-9+.-]`, and the members of a skipped
//! container are not checked for their commas and colons (only its brackets, which must match).
//! So a document the scanner accepts may still be one `serde_json` refuses, but a fact it
//! returns from a document `serde_json` accepts is the fact `serde_json` sees; the differential
//! tests in `scan/differential.rs` hold it to that.
//!
//! [`Scan`] walks forwards. `back` walks an object's members from its end, for facts that sit
//! at the end of large bodies (the usage of a megabyte of embeddings). `text` decodes strings and
//! holds the key-name prefilters; `facts` reads the response id and error codes.

mod back;
mod facts;
mod text;

// Public (behind `fuzzing`) for the fuzz targets, which hold fuzzed text to the same checks.
#[cfg(any(test, feature = "fuzzing"))]
pub mod differential;
#[cfg(any(test, feature = "fuzzing"))]
pub mod generate;

pub(crate) use back::{Walk, members_rev};
pub use facts::{created_response_id, error_code, stream_error_code};
pub(crate) use text::KeyName;
pub use text::decode;

use std::borrow::Cow;

use memchr::memchr2;

/// Deepest nesting read, as `serde_json` counts it: 127 arrays or objects inside each other are
/// accepted, 128 are not.
pub const MAX_DEPTH: u32 = 127;

/// A cursor over JSON text that can walk an object's members and skip any value.
#[derive(Clone)]
pub struct Scan<'a> {
    text: &'a [u8],
    at: usize,
    /// Objects the cursor is inside (entered by [`Scan::members`]).
    depth: u32,
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const LOWS: u64 = u64::from_ne_bytes([0x7f; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// High bit set in each byte of `word` that is zero, and in none other.
const fn zero_bytes_exact(word: u64) -> u64 {
    !(((word & LOWS).wrapping_add(LOWS)) | word | LOWS)
}

/// High bit set in each byte of `word` that is zero (exact up to the first such byte: above
/// it, a borrow may mark more). Cheaper than [`zero_bytes_exact`]; fine for a forward search.
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// Where the first `"` or `\` of `text` is. Keys and short values end within a few bytes, and
/// text full of escapes (code: a `\n` every line) stops every few dozen: eight bytes at a time
/// (a word compared at once) find that sooner than setting up the vectorised search, which takes
/// over after 64 bytes.
fn string_end(text: &[u8]) -> Option<usize> {
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const NEAR: usize = 64;
    let near = &text[..text.len().min(NEAR)];
    let mut words = near.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let hits = zero_bytes(word ^ QUOTES) | zero_bytes(word ^ BACKSLASHES);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    if let Some(offset) = words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
    {
        return Some(at + offset);
    }
    if text.len() > NEAR {
        return Some(NEAR + memchr2(b'"', b'\\', &text[NEAR..])?);
    }
    None
}

/// The bytes that matter when skipping a container: `"` `{` `[` `}` `]`.
const fn is_structural(byte: u8) -> bool {
    matches!(byte, b'"' | b'{' | b'[' | b'}' | b']')
}

/// Marks the structural bytes of a word. `[` `]` are `{` `}` with bit 5 clear, so setting that
/// bit finds both brackets of a kind with one comparison; nothing else maps onto them.
fn structural_bytes(word: u64) -> u64 {
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const OPEN: u64 = u64::from_ne_bytes([b'{'; 8]);
    const CLOSE: u64 = u64::from_ne_bytes([b'}'; 8]);
    const BIT5: u64 = u64::from_ne_bytes([0x20; 8]);
    let folded = word | BIT5;
    zero_bytes_exact(word ^ QUOTES)
        | zero_bytes_exact(folded ^ OPEN)
        | zero_bytes_exact(folded ^ CLOSE)
}

/// Where the last structural byte of `text` is, eight bytes at a time from the end.
pub(crate) fn prev_structural(text: &[u8]) -> Option<usize> {
    let mut words = text.rchunks_exact(8);
    let mut end = text.len();
    for word in &mut words {
        let hits = structural_bytes(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        end -= 8;
        if hits != 0 {
            return Some(end + 7 - (hits.leading_zeros() / 8) as usize);
        }
    }
    words.remainder().iter().rposition(|&b| is_structural(b))
}

/// JSON whitespace (a form feed or a no-break space is not).
pub(crate) const fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// Whether a number or literal may end before `next`.
const fn ends_token(next: Option<&u8>) -> bool {
    match next {
        None => true,
        Some(&b) => is_space(b) || matches!(b, b',' | b'}' | b']'),
    }
}

/// Bytes of a number or literal, as skipped without being checked.
pub(crate) const fn is_literal_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.')
}

impl<'a> Scan<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Self::nested(text, 0)
    }

    /// Where the cursor is in its text.
    pub(crate) fn offset(&self) -> usize {
        self.at
    }

    /// A cursor over a value found `depth` objects or arrays deep in a larger document, so that
    /// the nesting bound counts from the document's top.
    pub(crate) fn nested(text: &'a [u8], depth: u32) -> Self {
        Self {
            text,
            at: 0,
            depth: depth.min(MAX_DEPTH),
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.space();
        self.at == self.text.len()
    }

    /// `true`, `false` or `null` (read as `None`); anything else (`nul`, `trueish`) is not a flag.
    pub fn flag(&mut self) -> Option<Option<bool>> {
        self.space();
        let rest = self.text.get(self.at..)?;
        for (word, value) in [
            (&b"true"[..], Some(true)),
            (b"false", Some(false)),
            (b"null", None),
        ] {
            if rest.starts_with(word) && ends_token(rest.get(word.len())) {
                self.at += word.len();
                return Some(value);
            }
        }
        None
    }

    fn space(&mut self) {
        while self.text.get(self.at).is_some_and(|&b| is_space(b)) {
            self.at += 1;
        }
    }

    pub fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.text.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    pub fn peek(&mut self) -> Option<u8> {
        self.space();
        self.text.get(self.at).copied()
    }

    /// A string's raw contents (escapes left as they are, not checked); the cursor moves past
    /// it. [`decode`] reads them.
    pub fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            let rest = self.text.get(self.at..)?;
            self.at += string_end(rest)?;
            if self.text[self.at] == b'\\' {
                self.at += 2;
            } else {
                let raw = &self.text[start..self.at];
                self.at += 1;
                return Some(raw);
            }
        }
    }

    /// A string, decoded and checked as `serde_json` checks it (escapes, control characters,
    /// UTF-8). Borrowed when it has no escapes.
    pub fn string_value(&mut self) -> Option<Cow<'a, str>> {
        decode(self.string()?)
    }

    /// An unsigned integer that fits in a `u64`, as JSON writes it (no leading zero, no sign):
    /// a fraction or an exponent is not a token count, even `1.0`.
    pub fn number(&mut self) -> Option<u64> {
        let digits = self.integer_digits()?;
        if digits.starts_with(b"-") {
            return None;
        }
        let mut value: u64 = 0;
        for &digit in digits {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
        }
        Some(value)
    }

    /// An integer as written (`-12`, `429`), if it is one `serde_json` reads as an integer:
    /// within `i64`/`u64`, and not `-0` (which it reads as a float).
    pub fn integer(&mut self) -> Option<&'a str> {
        let digits = self.integer_digits()?;
        let (negative, magnitude) = match digits.strip_prefix(b"-") {
            Some(magnitude) => (true, magnitude),
            None => (false, digits),
        };
        let mut value: u64 = 0;
        for &digit in magnitude {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
        }
        if negative && (value == 0 || value > i64::MIN.unsigned_abs()) {
            return None;
        }
        std::str::from_utf8(digits).ok()
    }

    /// The bytes of a JSON integer (`-`? digits, no leading zero) followed by a delimiter; the
    /// cursor moves past them.
    fn integer_digits(&mut self) -> Option<&'a [u8]> {
        self.space();
        let start = self.at;
        let sign = usize::from(self.text.get(start) == Some(&b'-'));
        let first = start + sign;
        let mut end = first;
        while self.text.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let leading_zero = end - first > 1 && self.text[first] == b'0';
        if end == first || leading_zero || !ends_token(self.text.get(end)) {
            return None;
        }
        self.at = end;
        Some(&self.text[start..end])
    }

    /// Calls `member` with each key of the object under the cursor (decoded: `"i\u0064"` is
    /// `id`); `member` must consume the value. A key whose decoded form is longer than
    /// [`text::KEY_MAX`] bytes is passed raw, escapes and all: no key the gateway reads is that
    /// long, and a raw key with a `\` equals none of them.
    pub fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        if self.eat(b'}').is_none() {
            // Filled only for a key with escapes; set up once, not per key.
            let mut buffer = [0; text::KEY_MAX];
            loop {
                let raw = self.string()?;
                self.eat(b':')?;
                member(self, text::key(raw, &mut buffer)?)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Calls `element` with the cursor at each value of the array under the cursor; `element`
    /// must consume the value. Nesting is bounded as for [`Scan::members`].
    pub fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        if self.eat(b']').is_none() {
            loop {
                element(self)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Skips any JSON value. Containers are skipped without recursion, from one structural byte
    /// to the next; their brackets must match, up to [`MAX_DEPTH`] levels.
    pub fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.skip_container(),
            _ => {
                let start = self.at;
                while self.text.get(self.at).is_some_and(|&b| is_literal_byte(b)) {
                    self.at += 1;
                }
                (self.at > start).then_some(())
            }
        }
    }

    /// Skips the array or object under the cursor, eight bytes at a time: in a word without a
    /// backslash, the quotes and brackets are found as bit masks, which brackets are inside
    /// strings follows from the quotes' running parity, and only the brackets outside strings
    /// are looked at one by one; a word with a backslash (or right after one) is read byte by
    /// byte. Dense JSON (filter verdicts, tool schemas) has a token every few bytes, which a
    /// token-by-token walk pays for each.
    fn skip_container(&mut self) -> Option<()> {
        let room = MAX_DEPTH - self.depth;
        let text = self.text;
        // One bit per open level, innermost lowest: 1 for an object, 0 for an array.
        let mut kinds: u128 = 0;
        let mut depth: u32 = 0;
        let mut in_string = false;
        let mut escaped = false;
        let mut at = self.at;
        // A bracket outside strings: `None` to go on, `Some(end)` when the container closed.
        let mut bracket = |byte: u8, position: usize| -> Option<Option<usize>> {
            if matches!(byte, b'{' | b'[') {
                if depth == room {
                    return None;
                }
                kinds = (kinds << 1) | u128::from(byte == b'{');
                depth += 1;
                return Some(None);
            }
            if depth == 0 || (kinds & 1 == 1) != (byte == b'}') {
                return None;
            }
            kinds >>= 1;
            depth -= 1;
            Some((depth == 0).then_some(position + 1))
        };
        while at < text.len() {
            let word = text
                .get(at..at + 8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
            match word {
                Some(word) if !escaped && !has_byte(word, b'\\') => {
                    // High bit of each byte: a quote there, a bracket there.
                    let quotes = zero_bytes_exact(word ^ u64::from_ne_bytes([b'"'; 8]));
                    let folded = word | u64::from_ne_bytes([0x20; 8]);
                    let brackets = zero_bytes_exact(folded ^ u64::from_ne_bytes([b'{'; 8]))
                        | zero_bytes_exact(folded ^ u64::from_ne_bytes([b'}'; 8]));
                    // Inside a string at byte i: an odd count of quotes up to it (prefix XOR of
                    // the high bits, byte by byte), flipped when the word starts in one.
                    let mut inside = quotes;
                    inside ^= inside << 8;
                    inside ^= inside << 16;
                    inside ^= inside << 32;
                    if in_string {
                        inside ^= HIGHS;
                    }
                    let mut outside = brackets & !inside;
                    while outside != 0 {
                        let i = (outside.trailing_zeros() / 8) as usize;
                        outside &= outside - 1;
                        if let Some(end) = bracket(text[at + i], at + i)? {
                            self.at = end;
                            return Some(());
                        }
                    }
                    in_string ^= quotes.count_ones() % 2 == 1;
                    at += 8;
                }
                _ => {
                    // Byte by byte: a word with a backslash, one right after one, or the tail.
                    let end = (at + 8).min(text.len());
                    for (position, &byte) in text.iter().enumerate().take(end).skip(at) {
                        if in_string {
                            if escaped {
                                escaped = false;
                            } else if byte == b'\\' {
                                escaped = true;
                            } else if byte == b'"' {
                                in_string = false;
                            }
                        } else if byte == b'"' {
                            in_string = true;
                        } else if matches!(byte, b'{' | b'[' | b'}' | b']')
                            && let Some(end) = bracket(byte, position)?
                        {
                            self.at = end;
                            return Some(());
                        }
                    }
                    at = end;
                }
            }
        }
        None
    }
}

/// Whether some byte of `word` is `byte`.
fn has_byte(word: u64, byte: u8) -> bool {
    zero_bytes(word ^ u64::from_ne_bytes([byte; 8])) != 0
}

#[cfg(test)]
mod tests;
