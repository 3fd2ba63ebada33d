//! Token usage found in backend responses: the `usage` object of chat/completions/embeddings,
//! the final usage chunk of a stream, or `response.usage` of the Responses API.
//!
//! Only the `usage` object is parsed, located by a byte search, so large bodies (embeddings) and
//! streamed chunks are never parsed whole.

use std::sync::LazyLock;

use memchr::memmem;
use serde::Deserialize;

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

#[derive(Deserialize)]
struct RawUsage {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "output_tokens")]
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    #[serde(alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
    #[serde(alias = "output_tokens_details")]
    completion_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
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
        {
            let mut stream = serde_json::Deserializer::from_slice(value).into_iter::<RawUsage>();
            if let Some(Ok(raw)) = stream.next() {
                let prompt = raw.prompt_tokens.unwrap_or(0);
                let completion = raw.completion_tokens.unwrap_or(0);
                return Some(Usage {
                    prompt,
                    completion,
                    total: raw.total_tokens.unwrap_or(prompt + completion),
                    cached: raw
                        .prompt_tokens_details
                        .and_then(|d| d.cached_tokens)
                        .unwrap_or(0),
                    reasoning: raw
                        .completion_tokens_details
                        .and_then(|d| d.reasoning_tokens)
                        .unwrap_or(0),
                });
            }
        }
        end = at;
    }
    None
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
}
