//! Generated JSON for the differential tests: a value tree that keeps key order and duplicate
//! keys (which `serde_json::Value` cannot), proptest strategies biased towards the shapes the
//! gateway reads (chunks, usage objects, Responses events, error bodies), writers for every
//! layout a backend may use, and SSE framings of a document.

use proptest::prelude::*;

/// A JSON value as written: members in order, duplicates kept, numbers as their text.
#[derive(Clone, Debug)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn object(members: Vec<(&str, Json)>) -> Self {
        Self::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// The members of an object (none for anything else).
    pub fn members(&self) -> &[(String, Json)] {
        match self {
            Self::Object(members) => members,
            _ => &[],
        }
    }
}

/// `serde_json`'s reading of a text as a tree that keeps what `Value` drops (key order,
/// duplicate keys), so fuzzed text can be checked like generated text. Numbers keep the value
/// `serde_json` read, written back (the checks never look at their text).
impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Number(value.to_string()))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
        Ok(Json::Number(value.to_string()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
        Ok(Json::Number(value.to_string()))
    }

    fn visit_str<E>(self, value: &str) -> Result<Json, E> {
        Ok(Json::String(value.to_owned()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

/// How a document is laid out.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    Compact,
    /// Python's `json.dumps`: `", "` and `": "`.
    Spaced,
    /// One member or element per line, indented.
    Pretty,
    /// Any JSON whitespace (0 to 3 bytes) between every two tokens.
    Random,
}

/// How strings are escaped.
#[derive(Clone, Copy, Debug)]
pub enum Escapes {
    /// Only what must be (`"`, `\`, control characters), as `serde_json` does.
    Minimal,
    /// Also every non-ASCII character as `\uXXXX` (Python's default `ensure_ascii`).
    Ascii,
    /// Also some ASCII letters as `\u00XX` and `/` as `\/`, keys included.
    Heavy,
}

#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub layout: Layout,
    pub escapes: Escapes,
    /// Drives the random choices of `Random` and `Heavy`.
    pub seed: u64,
}

pub fn style() -> impl Strategy<Value = Style> {
    let layout = prop_oneof![
        Just(Layout::Compact),
        Just(Layout::Spaced),
        Just(Layout::Pretty),
        Just(Layout::Random)
    ];
    let escapes = prop_oneof![
        Just(Escapes::Minimal),
        Just(Escapes::Ascii),
        Just(Escapes::Heavy)
    ];
    (layout, escapes, any::<u64>()).prop_map(|(layout, escapes, seed)| Style {
        layout,
        escapes,
        seed,
    })
}

/// A small deterministic generator for the writer's choices (xorshift).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// Writes `json` in `style`.
pub fn write(json: &Json, style: Style) -> String {
    let mut writer = Writer {
        out: String::new(),
        style,
        dice: Dice(style.seed | 1),
    };
    writer.value(json, 0);
    writer.space();
    writer.out
}

struct Writer {
    out: String,
    style: Style,
    dice: Dice,
}

impl Writer {
    /// Whitespace where any may go (only `Random` puts some).
    fn space(&mut self) {
        if let Layout::Random = self.style.layout {
            for _ in 0..self.dice.roll(4) {
                self.out
                    .push([' ', '\t', '\n', '\r'][self.dice.roll(4) as usize]);
            }
        }
    }

    fn newline(&mut self, indent: usize) {
        self.out.push('\n');
        self.out.push_str(&"  ".repeat(indent));
    }

    fn value(&mut self, json: &Json, indent: usize) {
        self.space();
        match json {
            Json::Null => self.out.push_str("null"),
            Json::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Json::Number(text) => self.out.push_str(text),
            Json::String(text) => self.string(text),
            Json::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separator(i, indent);
                    self.value(item, indent + 1);
                    self.space();
                }
                self.close(']', items.is_empty(), indent);
            }
            Json::Object(members) => {
                self.out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    self.separator(i, indent);
                    self.space();
                    self.string(key);
                    self.space();
                    self.out.push(':');
                    if !matches!(self.style.layout, Layout::Compact) {
                        self.out.push(' ');
                    }
                    self.value(value, indent + 1);
                    self.space();
                }
                self.close('}', members.is_empty(), indent);
            }
        }
    }

    fn separator(&mut self, index: usize, indent: usize) {
        if index > 0 {
            self.out.push(',');
        }
        match self.style.layout {
            Layout::Pretty => self.newline(indent + 1),
            Layout::Spaced if index > 0 => self.out.push(' '),
            _ => {}
        }
    }

    fn close(&mut self, bracket: char, empty: bool, indent: usize) {
        if let (Layout::Pretty, false) = (self.style.layout, empty) {
            self.newline(indent);
        }
        self.space();
        self.out.push(bracket);
    }

    fn string(&mut self, text: &str) {
        self.out.push('"');
        for c in text.chars() {
            let heavy = matches!(self.style.escapes, Escapes::Heavy) && self.dice.roll(3) == 0;
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '/' if heavy => self.out.push_str("\\/"),
                '\n' => self.out.push_str("\\n"),
                '\t' => self.out.push_str("\\t"),
                c if (c as u32) < 0x20 => self.unicode(c),
                c if !c.is_ascii() && !matches!(self.style.escapes, Escapes::Minimal) => {
                    self.unicode(c);
                }
                c if heavy => self.unicode(c),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn unicode(&mut self, c: char) {
        let upper = self.dice.roll(2) == 0;
        let mut units = [0; 2];
        for unit in c.encode_utf16(&mut units) {
            let hex = if upper {
                format!("\\u{unit:04X}")
            } else {
                format!("\\u{unit:04x}")
            };
            self.out.push_str(&hex);
        }
    }
}

/// Frames a document as one SSE event: one `data:` line per line of it (a layout with line
/// breaks gives several), with or without the space, with any line end, sometimes with a
/// comment or an `id:` among them.
pub fn frame(text: &str, seed: u64) -> Vec<u8> {
    let mut dice = Dice(seed | 1);
    let ends: [&[u8]; 3] = [b"\n", b"\r\n", b"\r"];
    let mut event = Vec::new();
    let end = ends[dice.roll(3) as usize];
    if dice.roll(4) == 0 {
        event.extend_from_slice(b"event: chunk");
        event.extend_from_slice(end);
    }
    let lines: Vec<&str> = text
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 && dice.roll(6) == 0 {
            event.extend_from_slice([&b": note"[..], b"id: 7"][dice.roll(2) as usize]);
            event.extend_from_slice(end);
        }
        // Without the space a line starting with one would lose it: harmless whitespace.
        event.extend_from_slice(if dice.roll(2) == 0 {
            b"data: "
        } else {
            b"data:"
        });
        event.extend_from_slice(line.as_bytes());
        event.extend_from_slice(end);
    }
    event.extend_from_slice(end);
    event
}

/// The payload of an SSE event, read as the specification says (test-side reference).
pub fn reference_data(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut values = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            break;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            values.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
        }
    }
    (!values.is_empty()).then(|| values.join("\n"))
}

fn number() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => (0u64..200).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "18446744073709551615", "18446744073709551616", "-9223372036854775808",
            "-9223372036854775809", "-0", "0.0", "1.5", "1e3", "1E+2", "2.5e-3", "-0.25E1",
            "123456789012345678901234567890",
        ])
        .prop_map(str::to_owned),
    ]
    .prop_map(Json::Number)
}

/// Text with what is hard to read: quotes, backslashes, control characters, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_]{0,8}",
        1 => prop::sample::select(vec![
            "usage", "choices", "response", "error", "\"usage\":{", "\\", "\"", "a\\\"b",
            "\u{1}\t\n", "café", "日本", "😀", "/", "}]\"", "server_error",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

/// Keys, mostly the ones the gateway reads.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "usage", "choices", "response", "id", "error", "code", "type", "object", "data",
            "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
            "output_tokens", "prompt_tokens_details", "completion_tokens_details",
            "input_tokens_details", "output_tokens_details", "cached_tokens",
            "reasoning_tokens", "delta", "content", "\"usage", "x\\\"usage", "\\usage",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
}

/// Any JSON value, a few levels deep.
pub fn value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number(),
        text().prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(Json::Object),
        ]
    })
}

/// A value for a counter: mostly an unsigned integer, sometimes anything.
fn counter() -> impl Strategy<Value = Json> {
    prop_oneof![
        6 => (0u64..10_000).prop_map(|n| Json::Number(n.to_string())),
        1 => number(),
        1 => value(),
    ]
}

/// A usage object (chat or Responses names, details, noise, duplicates), or not quite one.
fn usage() -> impl Strategy<Value = Json> {
    let details = |name: &'static str| {
        prop_oneof![
            3 => prop::collection::vec(
                prop_oneof![Just(name.to_owned()), key()].prop_flat_map(|k| (Just(k), counter())),
                0..3,
            )
            .prop_map(Json::Object),
            1 => Just(Json::Null),
            1 => value(),
        ]
    };
    let member = prop_oneof![
        4 => prop::sample::select(vec![
            "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
            "output_tokens",
        ])
        .prop_flat_map(|k| (Just(k.to_owned()), counter())),
        1 => prop::sample::select(vec!["prompt_tokens_details", "input_tokens_details"])
            .prop_flat_map(move |k| (Just(k.to_owned()), details("cached_tokens"))),
        1 => prop::sample::select(vec!["completion_tokens_details", "output_tokens_details"])
            .prop_flat_map(move |k| (Just(k.to_owned()), details("reasoning_tokens"))),
        1 => (key(), value()),
    ];
    prop_oneof![
        8 => prop::collection::vec(member, 0..7).prop_map(Json::Object),
        1 => Just(Json::Null),
        1 => value(),
    ]
}

/// An error object: `code` a string, an integer, or anything.
fn error() -> impl Strategy<Value = Json> {
    let code = prop_oneof![
        3 => prop::sample::select(vec!["too_many_requests", "server_error", "content_filter", "429"])
            .prop_map(|c| Json::String(c.to_owned())),
        1 => number(),
        1 => value(),
    ];
    prop_oneof![
        4 => (code, value()).prop_map(|(code, message)| Json::object(vec![("code", code), ("message", message)])),
        1 => value(),
    ]
}

/// A document shaped like what backends send: chat chunks and bodies, Responses events and
/// objects, error bodies, with noise, in shuffled order, sometimes with duplicate keys.
pub fn document() -> impl Strategy<Value = Json> {
    let id = prop_oneof![
        3 => "resp_[a-z0-9]{1,6}".prop_map(Json::String),
        1 => value(),
    ];
    let choices = prop_oneof![
        Just(Json::Array(vec![])),
        prop::collection::vec(value(), 1..3).prop_map(Json::Array),
        value(),
    ];
    let response = prop::collection::vec(
        prop_oneof![
            (Just("usage".to_owned()), usage()),
            (Just("id".to_owned()), id.clone()),
            (Just("error".to_owned()), error()),
            (key(), value()),
        ],
        0..4,
    )
    .prop_map(Json::Object);
    let response = prop_oneof![4 => response, 1 => value()];
    let kind = prop_oneof![
        Just(Json::String("error".to_owned())),
        Just(Json::String("response.completed".to_owned())),
        value(),
    ];
    let member = prop_oneof![
        3 => (Just("usage".to_owned()), usage()),
        1 => (Just("usage".to_owned()), Just(Json::Null)),
        2 => (Just("choices".to_owned()), choices),
        2 => (Just("response".to_owned()), response),
        1 => (Just("id".to_owned()), id),
        1 => (Just("error".to_owned()), error()),
        1 => (Just("type".to_owned()), kind),
        1 => (Just("code".to_owned()), error().prop_map(|e| match e {
            Json::Object(mut members) if !members.is_empty() => members.swap_remove(0).1,
            other => other,
        })),
        2 => (key(), value()),
    ];
    prop_oneof![
        8 => prop::collection::vec(member, 0..7)
            .prop_shuffle()
            .prop_map(Json::Object),
        1 => value(),
    ]
}
