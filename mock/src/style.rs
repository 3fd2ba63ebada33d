//! How the mock lays out the JSON it writes ([`JsonStyle`], and `shuffle_keys`), so that tests
//! can check that a client of the real thing copes with every valid layout: Python's
//! `json.dumps` (`", "` and `": "`), pretty-printed (one member per line, which in an SSE event
//! means one `data:` line per JSON line), and keys in any order.
//!
//! The mock builds its JSON compact, in Azure's key order; [`Restyle`] rewrites a finished body
//! or event. It reads only the mock's own output (valid JSON, nesting bounded by the
//! `serde_json` parse of the request it echoes parts of).

use bytes::Bytes;

/// Layout of the JSON the mock writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum JsonStyle {
    /// No whitespace, as Azure writes it.
    #[default]
    Compact,
    /// `", "` between members and `": "` after keys, as Python's `json.dumps` writes it.
    Spaced,
    /// Indented, one member or element per line (`json.dumps(indent=2)`).
    Pretty,
}

/// A layout applied to bodies and events: `None` when the mock writes as it always did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Restyle {
    style: JsonStyle,
    shuffle_keys: bool,
}

impl Restyle {
    pub(crate) fn new(style: JsonStyle, shuffle_keys: bool) -> Option<Self> {
        (style != JsonStyle::Compact || shuffle_keys).then_some(Self {
            style,
            shuffle_keys,
        })
    }

    /// A JSON text in this layout; anything that is not JSON comes back as it was.
    pub(crate) fn json(&self, text: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(text).ok()?;
        // Only JSON is rewritten (`[DONE]` is not); the tree below keeps keys and scalars as
        // written, so it needs no checks of its own.
        serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
        let mut parser = Parser { text, at: 0 };
        let mut node = parser.value()?;
        parser.space();
        if parser.at != text.len() {
            return None;
        }
        if self.shuffle_keys {
            shuffle(&mut node);
        }
        let mut out = String::with_capacity(text.len() * 2);
        self.write(&node, 0, &mut out);
        Some(out)
    }

    /// An SSE event with the JSON of its `data:` line in this layout (one `data:` line per line
    /// of it); events without JSON data (`[DONE]`) come back as they were.
    pub(crate) fn event(&self, event: &Bytes) -> Bytes {
        let Ok(text) = std::str::from_utf8(event) else {
            return event.clone();
        };
        let mut out = String::with_capacity(event.len() * 2);
        let mut changed = false;
        for line in text.split_inclusive('\n') {
            let content = line.trim_end_matches('\n');
            let styled = content
                .strip_prefix("data: ")
                .and_then(|data| self.json(data.as_bytes()));
            match styled {
                Some(json) => {
                    for json_line in json.split('\n') {
                        out.push_str("data: ");
                        out.push_str(json_line);
                        out.push('\n');
                    }
                    changed = true;
                }
                None => out.push_str(line),
            }
        }
        if changed {
            Bytes::from(out)
        } else {
            event.clone()
        }
    }

    fn write(&self, node: &Node<'_>, indent: usize, out: &mut String) {
        let (items, open, close) = match node {
            Node::Atom(text) => return out.push_str(text),
            Node::Array(items) => (items.iter().map(|item| (None, item)).collect(), '[', ']'),
            Node::Object(members) => (
                members
                    .iter()
                    .map(|(key, value)| (Some(*key), value))
                    .collect::<Vec<_>>(),
                '{',
                '}',
            ),
        };
        out.push(open);
        for (i, (key, value)) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
                if self.style == JsonStyle::Spaced {
                    out.push(' ');
                }
            }
            if self.style == JsonStyle::Pretty {
                newline(out, indent + 1);
            }
            if let Some(key) = key {
                out.push_str(key);
                out.push(':');
                if self.style != JsonStyle::Compact {
                    out.push(' ');
                }
            }
            self.write(value, indent + 1, out);
        }
        if self.style == JsonStyle::Pretty && !items.is_empty() {
            newline(out, indent);
        }
        out.push(close);
    }
}

fn newline(out: &mut String, indent: usize) {
    out.push('\n');
    for _ in 0..indent {
        out.push_str("  ");
    }
}

/// Every object's members in a random order, at every level.
fn shuffle(node: &mut Node<'_>) {
    match node {
        Node::Atom(_) => {}
        Node::Array(items) => items.iter_mut().for_each(shuffle),
        Node::Object(members) => {
            fastrand::shuffle(members);
            members.iter_mut().for_each(|(_, value)| shuffle(value));
        }
    }
}

/// JSON as written: keys and scalars are kept as their text.
enum Node<'a> {
    Atom(&'a str),
    Array(Vec<Node<'a>>),
    Object(Vec<(&'a str, Node<'a>)>),
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn space(&mut self) {
        let rest = &self.text[self.at..];
        self.at += rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn value(&mut self) -> Option<Node<'a>> {
        match self.peek()? {
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                if self.eat(b'}').is_none() {
                    loop {
                        let key = self.string()?;
                        self.eat(b':')?;
                        members.push((key, self.value()?));
                        if self.eat(b',').is_none() {
                            self.eat(b'}')?;
                            break;
                        }
                    }
                }
                Some(Node::Object(members))
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']').is_none() {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
                Some(Node::Array(items))
            }
            b'"' => self.string().map(Node::Atom),
            _ => {
                let start = self.at;
                let rest = &self.text.as_bytes()[start..];
                let len = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                    .unwrap_or(rest.len());
                self.at += len;
                (len > 0).then(|| Node::Atom(&self.text[start..start + len]))
            }
        }
    }

    /// A string with its quotes, as written.
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        let bytes = self.text.as_bytes();
        let mut at = start + 1;
        loop {
            match bytes.get(at)? {
                b'\\' => at += 2,
                b'"' => break,
                _ => at += 1,
            }
        }
        self.at = at + 1;
        Some(&self.text[start..self.at])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn samples() -> Vec<Value> {
        vec![
            json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 0}}}),
            json!({"choices": [{"delta": {"content": "a \"quoted\" \\ {text}, [here]: ok"}}], "usage": null}),
            json!({"error": {"code": "429", "message": "Please retry after 1 seconds."}}),
            json!({"object": "list", "data": [{"embedding": [0.25, -1.5e-7, 3]}], "empty": {}, "none": []}),
            json!([1, "two", [3, [4]], {"five": {"six": null}}, true, false]),
        ]
    }

    #[test]
    fn every_style_parses_to_the_same_value() {
        for value in samples() {
            let compact = value.to_string();
            for style in [JsonStyle::Compact, JsonStyle::Spaced, JsonStyle::Pretty] {
                for shuffle_keys in [false, true] {
                    let Some(restyle) = Restyle::new(style, shuffle_keys) else {
                        continue;
                    };
                    let styled = restyle.json(compact.as_bytes()).expect("restyled");
                    let parsed: Value = serde_json::from_str(&styled).expect("valid JSON");
                    assert_eq!(parsed, value, "{style:?} {shuffle_keys}: {styled}");
                }
            }
        }
        assert!(Restyle::new(JsonStyle::Compact, false).is_none());
    }

    #[test]
    fn spaced_and_pretty_look_like_python_json_dumps() {
        let compact = br#"{"a":[1,2],"b":{},"c":{"d":"x, y: z"}}"#;
        let spaced = Restyle::new(JsonStyle::Spaced, false).unwrap();
        assert_eq!(
            spaced.json(compact).unwrap(),
            r#"{"a": [1, 2], "b": {}, "c": {"d": "x, y: z"}}"#
        );
        let pretty = Restyle::new(JsonStyle::Pretty, false).unwrap();
        assert_eq!(
            pretty.json(compact).unwrap(),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": {\n    \"d\": \"x, y: z\"\n  }\n}"
        );
        assert_eq!(pretty.json(b"[DONE]"), None);
    }

    #[test]
    fn events_get_one_data_line_per_json_line() {
        let pretty = Restyle::new(JsonStyle::Pretty, true).unwrap();
        let event = Bytes::from_static(b"event: response.completed\ndata: {\"a\":1,\"b\":[]}\n\n");
        let styled = pretty.event(&event);
        let text = std::str::from_utf8(&styled).unwrap();
        assert!(
            text.starts_with("event: response.completed\ndata: {\n"),
            "{text}"
        );
        assert!(text.ends_with("\ndata: }\n\n"), "{text}");
        let data: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .collect();
        let parsed: Value = serde_json::from_str(&data.join("\n")).unwrap();
        assert_eq!(parsed, json!({"a": 1, "b": []}));
        let done = Bytes::from_static(b"data: [DONE]\n\n");
        assert_eq!(pretty.event(&done), done);
    }
}
