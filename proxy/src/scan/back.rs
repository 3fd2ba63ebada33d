//! Walking an object's members from its closing brace backwards, for facts that sit at the end
//! of large bodies: the usage after a megabyte of embeddings is a few hundred bytes from the end.
//!
//! Read backwards, JSON is as unambiguous as forwards when it is valid: a string ends at a
//! quote and starts at the nearest quote before it that is not escaped (preceded by an even run
//! of backslashes; no backslash can stand outside a string), and brackets nest the same way.
//! The walk checks what it passes (member syntax, matching brackets, the depth bound) but not
//! what lies before the point where its caller stops it: a document that is broken only there
//! is read as if it were whole. Keys are decoded as [`super::Scan::members`] decodes them.

use std::ops::{ControlFlow, Range};

use memchr::memrchr;

use super::text::{self, KEY_MAX};
use super::{MAX_DEPTH, is_literal_byte, is_space, prev_structural};

/// One member of an object, met walking backwards.
pub struct Member<'k> {
    /// The decoded key (raw when too long, see [`super::Scan::members`]).
    pub key: &'k [u8],
    /// Where the value is in the text (no surrounding whitespace).
    pub value: Range<usize>,
    /// Where the key's opening quote is.
    pub key_start: usize,
    /// With a member before this one: where that member's value ends. `None` when this is the
    /// object's first member.
    pub previous_end: Option<usize>,
}

/// How a walk ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Walk {
    /// Every member was walked; the object opens at this offset.
    Finished { open: usize },
    /// The caller stopped it.
    Stopped,
}

/// Walks the members of the object whose `}` is the last non-space byte of `text[..end]`, from
/// the last member to the first, `depth` objects or arrays deep. `None` when what was walked is
/// not JSON.
pub fn members_rev(
    text: &[u8],
    end: usize,
    depth: u32,
    mut member: impl FnMut(Member<'_>) -> ControlFlow<()>,
) -> Option<Walk> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut at = before_space(text, end);
    if at == 0 || text[at - 1] != b'}' {
        return None;
    }
    at -= 1;
    let first = before_space(text, at);
    if first > 0 && text[first - 1] == b'{' {
        return Some(Walk::Finished { open: first - 1 });
    }
    loop {
        let value_end = before_space(text, at);
        let value_start = value_start(text, value_end, depth + 1)?;
        let colon = before_space(text, value_start);
        if colon == 0 || text[colon - 1] != b':' {
            return None;
        }
        let key_end = before_space(text, colon - 1);
        if key_end == 0 || text[key_end - 1] != b'"' {
            return None;
        }
        let key_start = string_start(text, key_end - 1)?;
        let separator = before_space(text, key_start);
        let previous_end = match separator.checked_sub(1).map(|at| text[at]) {
            Some(b',') => Some(before_space(text, separator - 1)),
            Some(b'{') => None,
            _ => return None,
        };
        let mut buffer = [0; KEY_MAX];
        let key = text::key(&text[key_start + 1..key_end - 1], &mut buffer)?;
        let flow = member(Member {
            key,
            value: value_start..value_end,
            key_start,
            previous_end,
        });
        if flow.is_break() {
            return Some(Walk::Stopped);
        }
        match previous_end {
            Some(previous_end) => at = previous_end,
            None => {
                return Some(Walk::Finished {
                    open: separator - 1,
                });
            }
        }
    }
}

/// The offset after the last non-space byte of `text[..end]`.
pub fn before_space(text: &[u8], end: usize) -> usize {
    text[..end]
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(0, |at| at + 1)
}

/// Where the value that ends at `end` starts, the value being `depth` levels deep.
fn value_start(text: &[u8], end: usize, depth: u32) -> Option<usize> {
    let last = *text.get(end.checked_sub(1)?)?;
    match last {
        b'"' => string_start(text, end - 1),
        b'}' | b']' => container_start(text, end - 1, depth),
        _ => {
            let start = text[..end]
                .iter()
                .rposition(|&b| !is_literal_byte(b))
                .map_or(0, |at| at + 1);
            (start < end).then_some(start)
        }
    }
}

/// Where the string whose closing quote is at `close` opens.
fn string_start(text: &[u8], close: usize) -> Option<usize> {
    let mut end = close;
    loop {
        let quote = memrchr(b'"', &text[..end])?;
        let backslashes = text[..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        end = quote;
    }
}

/// Where the container whose closing bracket is at `close` opens, matching bracket kinds.
fn container_start(text: &[u8], close: usize, depth: u32) -> Option<usize> {
    let room = MAX_DEPTH.checked_sub(depth)?;
    let mut kinds: u128 = 0;
    let mut open = 0;
    let mut at = close + 1;
    loop {
        at = prev_structural(&text[..at])?;
        match text[at] {
            b'"' => {
                at = string_start(text, at)?;
                continue;
            }
            close @ (b'}' | b']') => {
                if open == room {
                    return None;
                }
                kinds = (kinds << 1) | u128::from(close == b'}');
                open += 1;
            }
            opening => {
                if open == 0 || (kinds & 1 == 1) != (opening == b'{') {
                    return None;
                }
                kinds >>= 1;
                open -= 1;
                if open == 0 {
                    return Some(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &[u8]) -> Option<(Vec<String>, Walk)> {
        let mut seen = Vec::new();
        let walk = members_rev(text, text.len(), 0, |member| {
            let value = String::from_utf8_lossy(&text[member.value]).into_owned();
            seen.push(format!("{}={value}", String::from_utf8_lossy(member.key)));
            ControlFlow::Continue(())
        })?;
        Some((seen, walk))
    }

    #[test]
    fn members_are_met_last_first_with_their_values() {
        let text = br#" { "a" : [1, {"]": "}"}] ,"b\u0063":"x\"y\\", "d":null, "e": {"f":{}} } "#;
        let (seen, walk) = keys(text).unwrap();
        assert_eq!(
            seen,
            [
                r#"e={"f":{}}"#,
                "d=null",
                r#"bc="x\"y\\""#,
                r#"a=[1, {"]": "}"}]"#
            ]
        );
        assert_eq!(walk, Walk::Finished { open: 1 });
        assert_eq!(keys(b"{}").unwrap(), (vec![], Walk::Finished { open: 0 }));
    }

    #[test]
    fn what_is_walked_must_be_json() {
        for bad in [
            &br#"{"a":1"#[..],
            br#"{"a" 1}"#,
            br#"{"a":}"#,
            br#"{"a":[1}}"#,
            br#"{"a":{1]}"#,
            br#"{"a":1,}"#,
            br#"["a",1}"#,
            br#"{a:1}"#,
            br#"{"a\q":1}"#,
            b"}",
            b"",
        ] {
            assert_eq!(keys(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let deep =
            |levels: usize| format!(r#"{{"a":{}{}}}"#, "[".repeat(levels), "]".repeat(levels));
        assert!(keys(deep(MAX_DEPTH as usize - 1).as_bytes()).is_some());
        assert_eq!(keys(deep(MAX_DEPTH as usize).as_bytes()), None);
        assert_eq!(keys(deep(1_000_000).as_bytes()), None);
    }
}
