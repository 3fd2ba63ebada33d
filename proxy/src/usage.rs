//! Token usage found in backend responses: the top-level `usage` object of chat, completions and
//! embeddings bodies and chunks (and of a Responses object), or `response.usage` of a Responses
//! event (`response.completed`).
//!
//! Bodies and chunks are never parsed whole. A key-name prefilter ([`KeyName`]: one vectorised
//! search) turns away text that cannot hold a `usage` key; the top-level members are then walked
//! from the end ([`members_rev`]), where the usage is (after a megabyte of embeddings, or as the
//! last member of a chunk), so a large body costs what its last members cost. Only the usage
//! object itself is read, by the forward scanner. A `usage` key anywhere else (inside a string,
//! in nested content) is not the usage.
//!
//! Both functions take a JSON text or SSE text (an event as the relay frames it, or a whole
//! buffered stream): text that does not start with `{` is read as SSE, each event's `data`
//! being one document.

use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use crate::scan::{KeyName, Scan, Walk, members_rev};

/// The key names looked for before any walk, built once (they run on every streamed event).
static USAGE: LazyLock<KeyName> = LazyLock::new(|| KeyName::new(b"\"usage\""));
static RESPONSE: LazyLock<KeyName> = LazyLock::new(|| KeyName::new(b"\"response\""));

/// Texts longer than this skip the key-name search: it would cross the whole text, where the
/// walk from the end stops after the last members.
const SEARCH_MAX: usize = 16 * 1024;

/// Whether `text` may hold the key `name`, searched for in small texts only.
fn may_hold(name: &KeyName, text: &[u8]) -> bool {
    text.len() > SEARCH_MAX || name.may_occur(text)
}

/// Whether `text` may hold a `usage` key with an object value (a chunk's `"usage":null` is
/// ruled out at once), searched for in small texts only.
fn may_hold_usage_object(text: &[u8]) -> bool {
    text.len() > SEARCH_MAX || USAGE.may_occur_with_value(text, |b| b == b'{')
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// Reads the usage object of a JSON text, or the last one of an SSE text's events. `None` when
/// there is none, or when one of the counters it reads is not an unsigned integer (a usage that
/// says `"prompt_tokens": -1` or `1.5` is not trusted).
pub fn find_usage(json: &[u8]) -> Option<Usage> {
    if !may_hold_usage_object(json) {
        return None;
    }
    let mut found = None;
    documents(json, |document| {
        let usage = last_member_usage(document).or_else(|| {
            locate_walking_back(document).and_then(|(object, depth)| read(object, depth))
        });
        if usage.is_some() {
            found = usage;
        }
    });
    found
}

/// Keys whose string values are generated text, in chat, completions and Responses answers and
/// chunks (`delta` is a Responses text event's piece; in chat chunks it is an object).
pub(crate) const TEXT_KEYS: [&[u8]; 6] = [
    b"content",
    b"text",
    b"delta",
    b"refusal",
    b"arguments",
    b"transcript",
];

/// Bytes of generated text in a JSON text (or in each event of an SSE text): the UTF-8 length of
/// every (decoded) string value of a [`TEXT_KEYS`] member, at any depth. What the gateway estimates usage
/// from when a backend reports none. Text that is not JSON counts nothing.
pub fn text_bytes(json: &[u8]) -> u64 {
    fn walk(scan: &mut Scan<'_>, total: &mut u64) -> Option<()> {
        match scan.peek()? {
            b'{' => scan.members(|scan, key| {
                if scan.peek()? == b'"' && TEXT_KEYS.contains(&key) {
                    *total += scan.string_value()?.len() as u64;
                    Some(())
                } else {
                    walk(scan, total)
                }
            }),
            b'[' => scan.elements(|scan| walk(scan, total)),
            _ => scan.skip_value(),
        }
    }
    let mut total = 0;
    documents(json, |document| {
        let mut found = 0;
        if walk(&mut Scan::new(document), &mut found).is_some() {
            total += found;
        }
    });
    total
}

/// What a request is estimated to spend, for limits to reserve before it is sent and to settle
/// with when its backend reports no usage. The approximation (documented in docs/proxy.md,
/// "Limits"): four bytes of text per token, the whole request body counting as prompt (so
/// JSON punctuation errs on the high side), the generated text as completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Prompt tokens: the request body's bytes / 4, at least 1.
    pub prompt: u64,
    /// Most completion tokens the request asked for (`max_tokens` × `n`), 0 when unbounded.
    pub completion_cap: u64,
    /// Generated text relayed so far (see [`text_bytes`]).
    pub text_bytes: u64,
}

impl Estimate {
    pub fn new(body_bytes: usize, max_tokens: Option<u64>, choices: Option<u64>) -> Self {
        Self {
            prompt: tokens_of(body_bytes as u64).max(1),
            completion_cap: max_tokens
                .unwrap_or(0)
                .saturating_mul(choices.unwrap_or(1).max(1)),
            text_bytes: 0,
        }
    }

    /// The usage to count when the backend reported none.
    pub fn usage(&self) -> Usage {
        let completion = tokens_of(self.text_bytes);
        Usage {
            prompt: self.prompt,
            completion,
            total: self.prompt.saturating_add(completion),
            ..Usage::default()
        }
    }
}

/// Tokens of `bytes` bytes of text: four bytes a token, rounded up.
fn tokens_of(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

/// Whether a JSON text (or SSE text) has a usage object, the cheap check before [`find_usage`]:
/// for a chunk without a `usage` key, or with `"usage":null`, one vectorised search.
pub fn mentions_usage_object(json: &[u8]) -> bool {
    if !may_hold_usage_object(json) {
        return false;
    }
    let mut found = false;
    documents(json, |document| found |= locate(document).is_some());
    found
}

/// Calls `each` with every JSON document of `text`: the text itself when its first non-space
/// byte is `{`, else the data of each SSE event in it.
fn documents(text: &[u8], mut each: impl FnMut(&[u8])) {
    match text.iter().find(|&&b| !crate::scan::is_space(b)) {
        Some(b'{') => each(text),
        Some(_) => crate::sse::each_data(text, |data| each(data)),
        None => {}
    }
}

/// The usage object of a document (its bytes) and how many containers it is inside: the
/// top-level `usage` when it is an object, else `response.usage` when that is one.
fn locate(document: &[u8]) -> Option<(&[u8], u32)> {
    if let Some(object) = last_member_object(document) {
        return Some((object, 1));
    }
    locate_walking_back(document)
}

/// The common case, found forward at memchr speed: the last `"usage"` key written as is, whose
/// object value is followed by members that close the document, and nothing after. In valid JSON
/// only the outermost object's members are followed by its closing brace and then nothing, so
/// that is the top-level usage (the last of duplicates, when no later key spells `usage` with
/// escapes: a key with a backslash sends the search to the walk). `None` means "not shown this
/// way" (a `response.usage`, an escaped key, a usage nested deeper), and the walk decides.
/// Returns where the object is, and the cursor after it (for [`last_member_usage`] to read it).
fn last_member(document: &[u8]) -> Option<(usize, Scan<'_>)> {
    let at = USAGE.rfind_quoted(document)?;
    // A quote after an odd run of backslashes is inside a string (`"x\"usage": ...` is the
    // key `x"usage`): not the start of a key, so the walk decides.
    let backslashes = document[..at]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    if backslashes % 2 == 1 {
        return None;
    }
    let after_key = at + b"\"usage\"".len();
    let mut scan = Scan::nested(&document[after_key..], 1);
    scan.eat(b':')?;
    (scan.peek()? == b'{').then_some((after_key, scan))
}

/// Whether the members after the cursor close the document: `(, key: value)* }` and nothing.
fn closes_the_document(mut scan: Scan<'_>) -> bool {
    let mut close = || loop {
        match scan.peek()? {
            b',' => {
                scan.eat(b',')?;
                if scan.string()?.contains(&b'\\') {
                    return None;
                }
                scan.eat(b':')?;
                scan.skip_value()?;
            }
            b'}' => {
                scan.eat(b'}')?;
                return scan.at_end().then_some(());
            }
            _ => return None,
        }
    };
    close().is_some()
}

/// [`last_member`]'s object, located (for [`mentions_usage_object`]).
fn last_member_object(document: &[u8]) -> Option<&[u8]> {
    let (base, mut scan) = last_member(document)?;
    let start = base + scan.offset();
    scan.skip_value()?;
    let end = base + scan.offset();
    closes_the_document(scan).then(|| &document[start..end])
}

/// [`last_member`]'s object, read in the same pass (for [`find_usage`]).
fn last_member_usage(document: &[u8]) -> Option<Usage> {
    let (_, mut scan) = last_member(document)?;
    let usage = read_at(&mut scan)?;
    closes_the_document(scan).then_some(usage)
}

/// [`locate`] by walking the members from the end.
fn locate_walking_back(document: &[u8]) -> Option<(&[u8], u32)> {
    // Asked only when the top-level usage is not an object (a chunk's `"usage":null`).
    let mut may_hold_response = None;
    // Walking from the end, the first of duplicate keys met is the one a parse keeps.
    let (mut usage, mut response): (Option<Range<usize>>, Option<Range<usize>>) = (None, None);
    let is_object = |value: &Range<usize>| document[value.start] == b'{';
    let walk = members_rev(document, document.len(), 0, |member| {
        match member.key {
            b"usage" if usage.is_none() => usage = Some(member.value),
            b"response" if response.is_none() => response = Some(member.value),
            _ => {}
        }
        let done = match &usage {
            Some(value) => {
                is_object(value)
                    || response.is_some()
                    || !*may_hold_response.get_or_insert_with(|| may_hold(&RESPONSE, document))
            }
            None => false,
        };
        if done {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if let Walk::Finished { open } = walk
        && !document[..open].iter().all(|&b| crate::scan::is_space(b))
    {
        return None;
    }
    if let Some(value) = usage.filter(is_object) {
        return Some((&document[value], 1));
    }
    let response = response.filter(is_object)?;
    let mut inner = None;
    let walk = members_rev(document, response.end, 1, |member| {
        if member.key == b"usage" {
            inner = Some(member.value);
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if matches!(walk, Walk::Finished { open } if open != response.start) {
        return None;
    }
    let value = inner.filter(is_object)?;
    Some((&document[value], 2))
}

/// The largest token count believed for one request: far above any model's context.
pub const MAX_TOKENS: u64 = 1 << 32;

/// A counter as read: absent (`None`), not an unsigned integer (`Some(None)`), or its value.
type Counter = Option<Option<u64>>;

/// The counters of a usage object, each as its last occurrence says.
#[derive(Default)]
struct Counters {
    prompt: Counter,
    input: Counter,
    completion: Counter,
    output: Counter,
    total: Counter,
    prompt_details: Counter,
    input_details: Counter,
    completion_details: Counter,
    output_details: Counter,
}

/// Reads a usage object (`{` first) `depth` containers deep: only the counters are read,
/// everything else is skipped. Chat names win over Responses names when both are there.
fn read(object: &[u8], depth: u32) -> Option<Usage> {
    let mut scan = Scan::nested(object, depth);
    let usage = read_at(&mut scan)?;
    scan.at_end().then_some(usage)
}

/// Reads the usage object under the cursor, and moves it past the object.
fn read_at(scan: &mut Scan<'_>) -> Option<Usage> {
    let mut counters = Counters::default();
    scan.members(|scan, key| {
        let c = &mut counters;
        match key {
            b"prompt_tokens" => c.prompt = Some(counter(scan)?),
            b"input_tokens" => c.input = Some(counter(scan)?),
            b"completion_tokens" => c.completion = Some(counter(scan)?),
            b"output_tokens" => c.output = Some(counter(scan)?),
            b"total_tokens" => c.total = Some(counter(scan)?),
            b"prompt_tokens_details" => c.prompt_details = Some(details(scan, b"cached_tokens")?),
            b"input_tokens_details" => c.input_details = Some(details(scan, b"cached_tokens")?),
            b"completion_tokens_details" => {
                c.completion_details = Some(details(scan, b"reasoning_tokens")?);
            }
            b"output_tokens_details" => {
                c.output_details = Some(details(scan, b"reasoning_tokens")?);
            }
            _ => scan.skip_value()?,
        }
        Some(())
    })?;
    let c = counters;
    let either = |first: Counter, second: Counter| -> Option<u64> {
        match first.or(second) {
            None => Some(0),
            Some(value) => value,
        }
    };
    let all = [c.prompt, c.input, c.completion, c.output, c.total];
    let details = [
        c.prompt_details,
        c.input_details,
        c.completion_details,
        c.output_details,
    ];
    if all
        .iter()
        .chain(&details)
        .any(|counter| *counter == Some(None))
    {
        return None;
    }
    let prompt = either(c.prompt, c.input)?;
    let completion = either(c.completion, c.output)?;
    Some(Usage {
        prompt,
        completion,
        total: c
            .total
            .flatten()
            .unwrap_or(prompt.saturating_add(completion)),
        cached: either(c.prompt_details, c.input_details)?,
        reasoning: either(c.completion_details, c.output_details)?,
    })
}

/// A counter's value: `Some(None)` when it is not an unsigned integer (skipped), `None` when the
/// document is broken.
fn counter(scan: &mut Scan<'_>) -> Option<Option<u64>> {
    let mut number = scan.clone();
    if let Some(value) = number.number() {
        *scan = number;
        // A count no request can have is not trusted: added to a counter, a value near
        // `u64::MAX` would wrap it, which Prometheus reads as a reset.
        return Some((value <= MAX_TOKENS).then_some(value));
    }
    scan.skip_value()?;
    Some(None)
}

/// One counter of a details object; `null` (or the counter absent) is 0, any other value than
/// an object or `null` is not a count.
fn details(scan: &mut Scan<'_>, wanted: &[u8]) -> Option<Option<u64>> {
    if scan.peek()? != b'{' {
        let mut literal = scan.clone();
        if literal.flag() == Some(None) {
            *scan = literal;
            return Some(Some(0));
        }
        scan.skip_value()?;
        return Some(None);
    }
    let mut found = None;
    scan.members(|scan, key| {
        if key == wanted {
            found = Some(counter(scan)?);
            Some(())
        } else {
            scan.skip_value()
        }
    })?;
    Some(found.unwrap_or(Some(0)))
}

#[cfg(test)]
mod tests;
