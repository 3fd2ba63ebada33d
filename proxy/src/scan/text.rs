//! Strings: decoding their escapes as `serde_json` does (and refusing what it refuses), keys
//! decoded into a stack buffer so that comparing them allocates nothing, and [`KeyName`], the
//! cheap "could this text hold that key at all" check that runs before a structural read.

use std::borrow::Cow;

use memchr::memmem;

/// Longest decoded key [`key`] compares; longer keys are passed raw.
pub const KEY_MAX: usize = 64;

/// The decoded text of a string's raw contents (what [`super::Scan::string`] returns), or `None`
/// where `serde_json` would refuse the document: a control character, an unknown escape, a lone
/// surrogate, bytes that are not UTF-8. Borrowed when there is nothing to decode.
pub fn decode(raw: &[u8]) -> Option<Cow<'_, str>> {
    if !raw.contains(&b'\\') {
        if raw.iter().any(|&b| b < 0x20) {
            return None;
        }
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(raw.len());
    unescape(raw, |bytes| {
        out.extend_from_slice(bytes);
        Some(())
    })?;
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// A key as compared: `raw` itself when it has no escapes (the usual case), else decoded into
/// `buffer`; raw again when the decoded key does not fit (see [`super::Scan::members`]).
/// `None` for an escape `serde_json` refuses.
pub fn key<'k>(raw: &'k [u8], buffer: &'k mut [u8; KEY_MAX]) -> Option<&'k [u8]> {
    if !raw.contains(&b'\\') {
        return Some(raw);
    }
    let mut len = 0;
    let mut fits = true;
    unescape(raw, |bytes| {
        match buffer.get_mut(len..len + bytes.len()) {
            Some(slot) if fits => slot.copy_from_slice(bytes),
            _ => fits = false,
        }
        len += bytes.len();
        Some(())
    })?;
    Some(if fits { &buffer[..len] } else { raw })
}

/// Walks the raw contents of a string, handing `out` each run of literal bytes and each decoded
/// escape (as UTF-8).
fn unescape(raw: &[u8], mut out: impl FnMut(&[u8]) -> Option<()>) -> Option<()> {
    let mut rest = raw;
    while let Some(at) = rest.iter().position(|&b| b == b'\\' || b < 0x20) {
        if rest[at] != b'\\' {
            return None; // a control character
        }
        out(&rest[..at])?;
        let escape = *rest.get(at + 1)?;
        rest = &rest[at + 2..];
        let simple = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (c, after) = unicode_escape(rest)?;
                rest = after;
                out(c.encode_utf8(&mut [0; 4]).as_bytes())?;
                continue;
            }
            _ => return None,
        };
        out(&[simple])?;
    }
    out(rest)
}

/// The character of a `\u` escape whose four hex digits start `rest` (a surrogate pair takes a
/// second escape), and what follows it.
fn unicode_escape(rest: &[u8]) -> Option<(char, &[u8])> {
    let high = hex4(rest)?;
    let rest = &rest[4..];
    match high {
        0xD800..=0xDBFF => {
            let low = rest.strip_prefix(b"\\u").and_then(hex4)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            Some((char::from_u32(code)?, &rest[6..]))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(high)?, rest)),
    }
}

fn hex4(text: &[u8]) -> Option<u32> {
    let digits = text.get(..4)?;
    digits.iter().try_fold(0, |value, &digit| {
        Some(value * 16 + char::from(digit).to_digit(16)?)
    })
}

/// Searchers for `\u00`, the start of any escape that spells an ASCII letter.
static ESCAPE: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"\\u00"));

/// A key name to look for before reading structurally: if [`KeyName::may_occur`] says no, no
/// key (nor string) in the text decodes to the name, and the walk can be skipped. Either the
/// name appears with its quotes, or one of its letters is written as a `\u00XX` escape.
pub struct KeyName {
    quoted: memmem::Finder<'static>,
    quoted_rev: memmem::FinderRev<'static>,
    quoted_len: usize,
    letters: &'static [u8],
}

impl KeyName {
    /// `quoted` is the name with its quotes (`"usage"`).
    pub fn new(quoted: &'static [u8]) -> Self {
        let letters = quoted
            .strip_prefix(b"\"")
            .and_then(|name| name.strip_suffix(b"\""))
            .unwrap_or(quoted);
        Self {
            quoted: memmem::Finder::new(quoted),
            quoted_rev: memmem::FinderRev::new(quoted),
            quoted_len: quoted.len(),
            letters,
        }
    }

    /// Whether `text` may hold a key (or string) that decodes to the name: never `false` when it
    /// does.
    pub fn may_occur(&self, text: &[u8]) -> bool {
        self.quoted.find(text).is_some() || self.may_be_escaped(text)
    }

    /// Whether `text` may hold the name as a key whose value starts with a byte `value` accepts
    /// (`{` for an object): never `false` when it does. Each occurrence of the quoted name is
    /// looked at only as far as the first byte of its value: after `"usage"`, spaces, a colon
    /// and spaces, a byte that starts a JSON value (`{ [ " n t f -` or a digit) that `value`
    /// refuses rules that occurrence out, and so does a `,` `}` `]` in place of the colon (the
    /// name was a string value). Anything else keeps the text in, a line break above all: in an
    /// SSE event the next line may be a comment (`: note` is no colon and no `null`).
    pub fn may_occur_with_value(&self, text: &[u8], value: impl Fn(u8) -> bool) -> bool {
        let rules_out = |at: usize| {
            let mut rest = text[at + self.quoted_len..].iter().copied();
            let mut next = rest.find(|&b| !matches!(b, b' ' | b'\t'));
            if next != Some(b':') {
                return next.is_some_and(|b| matches!(b, b',' | b'}' | b']'));
            }
            next = rest.find(|&b| !matches!(b, b' ' | b'\t'));
            next.is_some_and(|b| {
                let starts_value = matches!(b, b'{' | b'[' | b'"' | b'n' | b't' | b'f' | b'-')
                    || b.is_ascii_digit();
                starts_value && !value(b)
            })
        };
        self.quoted.find_iter(text).any(|at| !rules_out(at)) || self.may_be_escaped(text)
    }

    /// Where the name last appears with its quotes, as written.
    pub fn rfind_quoted(&self, text: &[u8]) -> Option<usize> {
        self.quoted_rev.rfind(text)
    }

    /// Where the name first appears with its quotes, as written.
    pub fn find_quoted(&self, text: &[u8]) -> Option<usize> {
        self.quoted.find(text)
    }

    /// Whether one of the name's letters may be written as a `\u00XX` escape in `text` (the
    /// other half of [`KeyName::may_occur`]).
    pub fn may_be_escaped(&self, text: &[u8]) -> bool {
        let Some(backslash) = memchr::memchr(b'\\', text) else {
            return false;
        };
        let text = &text[backslash..];
        ESCAPE.find_iter(text).any(|at| {
            let digits = text.get(at + 4..at + 6).map(|pair| {
                pair.iter().try_fold(0u8, |value, &d| {
                    Some(value * 16 + char::from(d).to_digit(16)? as u8)
                })
            });
            digits
                .flatten()
                .is_some_and(|letter| self.letters.contains(&letter))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_as_serde_json_decodes_them() {
        let cases: [(&[u8], Option<&str>); 12] = [
            (b"plain", Some("plain")),
            (br#"a\"b\\c\/d"#, Some("a\"b\\c/d")),
            (br"\b\f\n\r\t", Some("\u{8}\u{c}\n\r\t")),
            (br"\u0041\u00e9\u4f60", Some("Aé你")),
            (br"\ud83d\ude00", Some("😀")),
            (br"\ud83d", None),
            (br"\ude00", None),
            (br"\ud83d\u0041", None),
            (br"\x", None),
            (br"\u12", None),
            (b"tab\there", None),
            (b"\xff", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                decode(raw).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
            let quoted = [&b"\""[..], raw, b"\""].concat();
            let serde = serde_json::from_slice::<String>(&quoted).ok();
            assert_eq!(decode(raw).map(String::from), serde);
        }
    }

    #[test]
    fn keys_decode_into_the_buffer_or_stay_raw() {
        let mut buffer = [0; KEY_MAX];
        assert_eq!(key(b"usage", &mut buffer), Some(&b"usage"[..]));
        assert_eq!(key(br"us\u0061ge", &mut buffer), Some(&b"usage"[..]));
        let long = format!(r"\u0061{}", "b".repeat(KEY_MAX));
        assert_eq!(key(long.as_bytes(), &mut buffer), Some(long.as_bytes()));
        assert_eq!(key(br"\q", &mut buffer), None);
    }

    #[test]
    fn the_value_prefilter_rules_out_only_what_cannot_be_the_value() {
        let usage = KeyName::new(b"\"usage\"");
        let object = |b: u8| b == b'{';
        assert!(!usage.may_occur_with_value(br#"{"usage":null}"#, object));
        assert!(!usage.may_occur_with_value(br#"{"usage" : [1], "x": "usage"}"#, object));
        assert!(usage.may_occur_with_value(br#"{"usage": {"a":1}}"#, object));
        assert!(usage.may_occur_with_value(b"{\"usage\":\n\t{}}", object));
        // Across a line break nothing is ruled out: in a multi-line SSE event the next line
        // may be a `data:` line, or a comment that looks like a colon and a `null`.
        assert!(usage.may_occur_with_value(b"data:  \"usage\":\ndata: {}", object));
        assert!(usage.may_occur_with_value(b"data: \"usage\"\n: note\ndata:: {}", object));
        assert!(usage.may_occur_with_value(b"{\"usage\"\r:null}", object));
        assert!(usage.may_occur_with_value(b"{\"usage\"", object));
        assert!(usage.may_occur_with_value(br#"{"\u0075sage":null}"#, object));
        assert!(!usage.may_occur_with_value(br#"{"a":1}"#, object));
    }

    #[test]
    fn the_prefilter_never_misses_an_escaped_spelling() {
        let usage = KeyName::new(b"\"usage\"");
        assert!(usage.may_occur(br#"{"usage":null}"#));
        assert!(usage.may_occur(br#"{"us\u0061ge":null}"#));
        assert!(usage.may_occur(br#"{"\u0075sage":null}"#));
        assert!(
            !usage.may_occur(br#"{"\u0055":1}"#),
            "U is not a letter of usage"
        );
        assert!(!usage.may_occur(br#"{"usages":null,"x":"usage "}"#));
        assert!(!usage.may_occur(br#"{"caf\u00e9":1}"#));
        assert!(!usage.may_occur(br"\u00"));
    }
}
