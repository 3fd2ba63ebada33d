//! A cursor over JSON text that reads only what the gateway needs (usage counters, a few request
//! fields) and skips everything else without building values: bodies and streamed chunks are
//! never parsed whole on the request path.

use memchr::memchr2;

/// A cursor over JSON text that can walk an object's members and skip any value. Lenient where
/// leniency is harmless (literals and numbers it skips are not checked), strict on structure.
pub struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

/// Where the first `"` or `\` of `text` is. Keys and short values end within a few bytes, and
/// text full of escapes (code: a `\n` every line) stops every few dozen: eight bytes at a time
/// (a word compared at once) find that sooner than setting up the vectorised search, which takes
/// over after 64 bytes.
fn string_end(text: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    /// High bit set in each byte of `word` that is zero (exact up to the first such byte).
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }
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

impl<'a> Scan<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Self { text, at: 0 }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.space();
        self.at == self.text.len()
    }

    /// `true`, `false` or `null` (read as `None`); anything else is not a flag.
    pub fn flag(&mut self) -> Option<Option<bool>> {
        self.space();
        let rest = self.text.get(self.at..)?;
        for (word, value) in [
            (&b"true"[..], Some(true)),
            (b"false", Some(false)),
            (b"null", None),
        ] {
            if rest.starts_with(word) {
                self.at += word.len();
                return Some(value);
            }
        }
        None
    }

    fn space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
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

    /// A string's raw contents (escapes left as they are); the cursor moves past it.
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

    /// An unsigned integer (a fraction or exponent is not a token count).
    pub fn number(&mut self) -> Option<u64> {
        self.space();
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(digit) = self.text.get(self.at).filter(|b| b.is_ascii_digit()) {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        match self.text.get(self.at) {
            _ if self.at == start => None,
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }

    /// Calls `member` with each key of the object under the cursor; `member` must consume the
    /// value.
    pub fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>,
    ) -> Option<()> {
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

    /// Skips any JSON value.
    pub fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                // Nesting is counted; strings are skipped whole so their brackets do not count.
                // Only structural bytes matter here: the cursor jumps from one to the next.
                let mut depth = 0usize;
                loop {
                    let rest = self.text.get(self.at..)?;
                    self.at += rest
                        .iter()
                        .position(|b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))?;
                    match self.text[self.at] {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        _ => depth -= 1,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_end_finds_the_first_quote_or_backslash_at_any_position() {
        // Every position in and around the word-sized steps and the vectorised tail, with the
        // byte that stops it alone, after the other one, and after near-misses (bytes one off).
        for len in 0..150 {
            for stop in [b'"', b'\\'] {
                for at in 0..len {
                    let mut text = vec![b'a'; len];
                    for (i, b) in text.iter_mut().enumerate() {
                        *b = [b'!', b'#', b'[', b']', b'a', 0x80 | b'"', 0xff][i % 7];
                    }
                    text[at] = stop;
                    if at + 1 < len {
                        text[at + 1] = if stop == b'"' { b'\\' } else { b'"' };
                    }
                    assert_eq!(string_end(&text), Some(at), "len {len}, at {at}");
                }
                let none = vec![b'!'; len];
                assert_eq!(string_end(&none), None, "len {len}");
            }
        }
    }

    #[test]
    fn strings_with_escapes_are_read_whole() {
        let text = br#""a\"b\\\\" , "c""#;
        let mut scan = Scan::new(text);
        assert_eq!(scan.string(), Some(&br#"a\"b\\\\"#[..]));
        assert_eq!(scan.eat(b','), Some(()));
        assert_eq!(scan.string(), Some(&b"c"[..]));
        assert_eq!(Scan::new(br#""unterminated\""#).string(), None);
    }
}
