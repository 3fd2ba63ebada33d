//! Token usage found in backend responses: the `usage` object of chat/completions/embeddings,
//! the final usage chunk of a stream, or `response.usage` of the Responses API.
//!
//! Only the `usage` object is parsed, located by a byte search, so large bodies (embeddings) and
//! streamed chunks are never parsed whole.

use std::sync::LazyLock;

use memchr::memmem;

/// Searchers built once: `memmem::find` would rebuild one for every streamed event.
static USAGE_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\":"));
static USAGE_KEY_REV: LazyLock<memmem::FinderRev<'static>> =
    LazyLock::new(|| memmem::FinderRev::new(b"\"usage\""));

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// Finds the last `"usage":{...}` object in a JSON text and reads it.
pub fn find_usage(json: &[u8]) -> Option<Usage> {
    let mut end = json.len();
    while let Some(at) = USAGE_KEY_REV.rfind(&json[..end]) {
        let after = &json[at + 7..];
        let value = after
            .iter()
            .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b':'))
            .map(|skip| &after[skip..]);
        if let Some(value) = value
            && value.first() == Some(&b'{')
            && let Some(usage) = read_usage(value)
        {
            return Some(usage);
        }
        end = at;
    }
    None
}

/// Reads a usage object (`{` first) with a small scanner instead of a JSON parser: only the
/// counters are read, everything else is skipped. `None` if it is not well-formed JSON.
fn read_usage(object: &[u8]) -> Option<Usage> {
    let mut scan = Scan {
        text: object,
        at: 0,
    };
    let mut usage = Usage::default();
    let mut total = None;
    scan.members(|scan, key| {
        match key {
            b"prompt_tokens" | b"input_tokens" => usage.prompt = scan.number()?,
            b"completion_tokens" | b"output_tokens" => usage.completion = scan.number()?,
            b"total_tokens" => total = Some(scan.number()?),
            b"prompt_tokens_details" | b"input_tokens_details" => {
                scan.details(b"cached_tokens", &mut usage.cached)?;
            }
            b"completion_tokens_details" | b"output_tokens_details" => {
                scan.details(b"reasoning_tokens", &mut usage.reasoning)?;
            }
            _ => scan.skip_value()?,
        }
        Some(())
    })?;
    usage.total = total.unwrap_or(usage.prompt + usage.completion);
    Some(usage)
}

/// A cursor over JSON text that can walk an object's members and skip any value.
struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.text.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.text.get(self.at).copied()
    }

    /// A string's raw contents (escapes left as they are); the cursor moves past it.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            let offset = memchr::memchr2(b'"', b'\\', self.text.get(self.at..)?)?;
            self.at += offset;
            if self.text[self.at] == b'\\' {
                self.at += 2;
            } else {
                let raw = &self.text[start..self.at];
                self.at += 1;
                return Some(raw);
            }
        }
    }

    /// An unsigned integer (a fraction or exponent is not a token count).
    fn number(&mut self) -> Option<u64> {
        self.space();
        let start = self.at;
        while self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.text[start..self.at]).ok()?;
        let value = digits.parse().ok()?;
        match self.text.get(self.at) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }

    /// Calls `member` with each key of the object under the cursor; `member` must consume the
    /// value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            // Keys are compared raw: the ones read here never contain escapes.
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Reads one counter out of a details object (`null` or absent leaves it at 0).
    fn details(&mut self, wanted: &[u8], into: &mut u64) -> Option<()> {
        if self.peek()? == b'n' {
            return self.skip_value();
        }
        self.members(|scan, key| {
            if key == wanted {
                *into = scan.number()?;
                Some(())
            } else {
                scan.skip_value()
            }
        })
    }

    /// Skips any JSON value.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                // Nesting is counted; strings are skipped whole so their brackets do not count.
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                // Number or literal: up to the next delimiter.
                let start = self.at;
                while self.text.get(self.at).is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                }) {
                    self.at += 1;
                }
                (self.at > start).then_some(())
            }
        }
    }
}

/// Whether a JSON text contains a usage object (cheap pre-check before [`find_usage`]): one
/// pass for `"usage":`, then a look at what follows (`{`, not `null`).
pub fn mentions_usage_object(json: &[u8]) -> bool {
    let mut rest = json;
    while let Some(at) = USAGE_KEY.find(rest) {
        rest = &rest[at + b"\"usage\":".len()..];
        let value = rest
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        if value == Some(&b'{') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(mentions_usage_object(
            br#"{"usage":null,"x":{"usage":{"total_tokens":2}}}"#
        ));
        assert!(!mentions_usage_object(br#"{"usage":"#));
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
        // The last usage object wins; a broken one is passed over for an earlier good one.
        let two = br#"{"usage":{"total_tokens":1}} {"usage":{"total_tokens":2}}"#;
        assert_eq!(find_usage(two).map(|u| u.total), Some(2));
        let broken = br#"{"usage":{"total_tokens":1}} {"usage":{"total_tokens":2"#;
        assert_eq!(find_usage(broken).map(|u| u.total), Some(1));
        for bad in [
            &br#"{"usage":{"prompt_tokens":1.5}}"#[..],
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{"usage":{"prompt_tokens" 1}}"#,
            br#"{"usage":{"a":"unterminated}}"#,
            br#"{"usage":{"a":"ends in a backslash\"#,
        ] {
            assert_eq!(find_usage(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
