//! Token usage found in backend responses: the `usage` object of chat/completions/embeddings,
//! the final usage chunk of a stream, or `response.usage` of the Responses API.
//!
//! Only the `usage` object is parsed, located by a byte search, so large bodies (embeddings) and
//! streamed chunks are never parsed whole.

use std::sync::LazyLock;

use memchr::memmem;

use crate::scan::Scan;

/// Searchers built once: `memmem::find` would rebuild one for every streamed event.
static USAGE_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\":"));
/// Bodies up to this size are searched forward for the usage key (vectorised, unlike the reverse
/// searcher, which walks byte by byte); larger ones from their end, where the usage is.
const FORWARD_SEARCH_MAX: usize = 16 * 1024;

/// The key without its colon (whitespace may come first), forwards and backwards.
static USAGE_NAME: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\""));
static USAGE_NAME_REV: LazyLock<memmem::FinderRev<'static>> =
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
    // Usually the last mention is the object. In a small body the vectorised forward search
    // finds it soonest; a large one (an embeddings answer runs to megabytes) is searched from
    // its end, where the usage is. Either way, walk back from there only if it is not.
    let last = if json.len() <= FORWARD_SEARCH_MAX {
        USAGE_NAME.find_iter(json).last()?
    } else {
        USAGE_NAME_REV.rfind(json)?
    };
    if let Some(usage) = usage_at(json, last) {
        return Some(usage);
    }
    let mut end = last;
    while let Some(at) = USAGE_NAME_REV.rfind(&json[..end]) {
        if let Some(usage) = usage_at(json, at) {
            return Some(usage);
        }
        end = at;
    }
    None
}

/// The usage object whose key starts at `at`, if that key has one.
fn usage_at(json: &[u8], at: usize) -> Option<Usage> {
    let after = &json[at + 7..];
    let skip = after
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b':'))?;
    let value = &after[skip..];
    if value.first() != Some(&b'{') {
        return None;
    }
    read_usage(value)
}

/// Reads a usage object (`{` first) with a small scanner instead of a JSON parser: only the
/// counters are read, everything else is skipped. `None` if it is not well-formed JSON.
fn read_usage(object: &[u8]) -> Option<Usage> {
    let mut scan = Scan::new(object);
    let mut usage = Usage::default();
    let mut total = None;
    scan.members(|scan, key| {
        match key {
            b"prompt_tokens" | b"input_tokens" => usage.prompt = scan.number()?,
            b"completion_tokens" | b"output_tokens" => usage.completion = scan.number()?,
            b"total_tokens" => total = Some(scan.number()?),
            b"prompt_tokens_details" | b"input_tokens_details" => {
                details(scan, b"cached_tokens", &mut usage.cached)?;
            }
            b"completion_tokens_details" | b"output_tokens_details" => {
                details(scan, b"reasoning_tokens", &mut usage.reasoning)?;
            }
            _ => scan.skip_value()?,
        }
        Some(())
    })?;
    usage.total = total.unwrap_or(usage.prompt + usage.completion);
    Some(usage)
}

/// Reads one counter out of a details object (`null` or absent leaves it at 0).
fn details(scan: &mut Scan<'_>, wanted: &[u8], into: &mut u64) -> Option<()> {
    if scan.peek()? == b'n' {
        return scan.skip_value();
    }
    scan.members(|scan, key| {
        if key == wanted {
            *into = scan.number()?;
            Some(())
        } else {
            scan.skip_value()
        }
    })
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
        // A later mention that is not an object (a string value) does not hide the object.
        let later = br#"{"usage":{"total_tokens":3},"kind":"usage","x":{"usage" :null}}"#;
        assert_eq!(find_usage(later).map(|u| u.total), Some(3));
        // Large bodies are searched from their end: the same answers, either way round.
        let padding = format!(r#""data":"{}","#, "x".repeat(FORWARD_SEARCH_MAX));
        let large_last = format!(r#"{{{padding}"usage":{{"total_tokens":5}}}}"#);
        assert_eq!(find_usage(large_last.as_bytes()).map(|u| u.total), Some(5));
        let large_earlier = format!(
            r#"{{"usage":{{"total_tokens":7}},{padding}"kind":"usage","x":{{"usage":null}}}}"#
        );
        assert_eq!(
            find_usage(large_earlier.as_bytes()).map(|u| u.total),
            Some(7)
        );
        for bad in [
            &br#"{"usage":{"prompt_tokens":1.5}}"#[..],
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
            br#"{"usage":{"prompt_tokens" 1}}"#,
            br#"{"usage":{"a":"unterminated}}"#,
            br#"{"usage":{"a":"ends in a backslash\"#,
        ] {
            assert_eq!(find_usage(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
