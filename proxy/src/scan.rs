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
            // Keys and short values end within a few bytes: a plain loop finds the end sooner
            // than setting up the vectorised search, which takes over for long text.
            let near = &rest[..rest.len().min(32)];
            let offset = match near.iter().position(|&b| b == b'"' || b == b'\\') {
                Some(offset) => offset,
                None if rest.len() > near.len() => {
                    near.len() + memchr2(b'"', b'\\', &rest[near.len()..])?
                }
                None => return None,
            };
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
