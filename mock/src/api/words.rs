//! Deterministic prompt "tokens": whitespace-separated words of the text in a request, counted
//! while deserializing, without building a JSON tree.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Words in a JSON value: a string counts its words, an array sums its elements, an object sums
/// its `content` and `text` members (chat messages, content parts, Responses input items).
/// Anything else counts zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WordCount(pub(crate) u64);

impl WordCount {
    /// The count as prompt tokens: never zero.
    pub(crate) fn tokens(self) -> u64 {
        self.0.max(1)
    }
}

impl<'de> Deserialize<'de> for WordCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WordVisitor)
    }
}

struct WordVisitor;

impl<'de> Visitor<'de> for WordVisitor {
    type Value = WordCount;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<WordCount, E> {
        Ok(WordCount(text.split_whitespace().count() as u64))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<WordCount, E> {
        Ok(WordCount(0))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<WordCount, E> {
        Ok(WordCount(0))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<WordCount, E> {
        Ok(WordCount(0))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<WordCount, E> {
        Ok(WordCount(0))
    }

    fn visit_unit<E: de::Error>(self) -> Result<WordCount, E> {
        Ok(WordCount(0))
    }

    fn visit_none<E: de::Error>(self) -> Result<WordCount, E> {
        Ok(WordCount(0))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<WordCount, D::Error> {
        WordCount::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WordCount, A::Error> {
        let mut total = 0u64;
        while let Some(WordCount(words)) = seq.next_element()? {
            total = total.saturating_add(words);
        }
        Ok(WordCount(total))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WordCount, A::Error> {
        let mut total = 0u64;
        while let Some(TextKey(counts)) = map.next_key()? {
            if counts {
                let WordCount(words) = map.next_value()?;
                total = total.saturating_add(words);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(WordCount(total))
    }
}

/// An object key; true when its value holds text to count.
struct TextKey(bool);

impl<'de> Deserialize<'de> for TextKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(TextKeyVisitor)
    }
}

struct TextKeyVisitor;

impl Visitor<'_> for TextKeyVisitor {
    type Value = TextKey;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<TextKey, E> {
        Ok(TextKey(matches!(key, "content" | "text")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(json: &str) -> u64 {
        serde_json::from_str::<WordCount>(json).expect("json").0
    }

    #[test]
    fn counts_words_in_messages_and_parts() {
        assert_eq!(count(r#""two  words""#), 2);
        assert_eq!(
            count(
                r#"[{"role":"system","content":"be brief"},
                    {"role":"user","name":"x y","content":[
                        {"type":"text","text":"hello there world"},
                        {"type":"image_url","image_url":{"url":"http://x"}}]},
                    {"role":"assistant","content":null,"tool_calls":[]}]"#
            ),
            5
        );
        assert_eq!(count("[1, 2.5, true, null, {}]"), 0);
    }

    #[test]
    fn tokens_are_at_least_one() {
        assert_eq!(WordCount(0).tokens(), 1);
        assert_eq!(WordCount(7).tokens(), 7);
    }
}
