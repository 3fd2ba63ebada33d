//! What a mock backend does ([`MockOptions`]) and the per-options data derived once from it
//! ([`Profile`]) so that the request path only clones an `Arc`.

use std::time::Duration;

use http::HeaderValue;

use crate::style::{JsonStyle, Restyle};

/// Behaviour of one mock backend. `Default` is an instant, healthy backend named `mock`.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Echoed in `x-mock-backend` (and `x-ms-region`) on every response.
    pub name: String,
    /// Delay before the response headers of every request.
    pub latency: Duration,
    /// Delay between two streamed content deltas.
    pub chunk_interval: Duration,
    /// Number of content deltas in a stream; also the completion token count.
    pub chunk_count: usize,
    /// Probability (0..=1) of answering 429 with `retry_after_ms`.
    pub rate_429: f64,
    /// `retry-after-ms` of injected 429s (`retry-after` is its ceiling in seconds).
    pub retry_after_ms: u64,
    /// Probability (0..=1) of answering 500.
    pub rate_5xx: f64,
    /// Answer every request with this status and an Azure-shaped error body.
    pub status_override: Option<u16>,
    /// Tokens per sliding minute, per deployment (as Azure counts them: the legacy path's
    /// deployment, else the body's `model`); past it requests get a real 429 with the time
    /// until enough tokens free up.
    pub tpm_limit: Option<u64>,
    /// Deployments whose quota is spent: every request for one of them (by the legacy path's
    /// deployment or the body's `model`) gets a 429 with `retry_after_ms`, while the others
    /// answer.
    pub throttled_deployments: Vec<String>,
    /// In a 200 SSE stream, send only `data: {"error":{"code":<this>,...}}` and end the stream.
    pub stream_error_first: Option<String>,
    /// Abort the connection (no terminating chunk, no `[DONE]`) after this many delta events.
    pub disconnect_after_chunks: Option<usize>,
    /// Send the usage chunk of a stream when `stream_options.include_usage` asks for it (default
    /// true; some backends and Azure stand-ins never do).
    pub stream_usage: bool,
    /// Add `x-ratelimit-remaining-tokens` / `x-ratelimit-remaining-requests` to successes.
    pub ratelimit_headers: bool,
    /// When set, requests must carry `api-key: <key>` or `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// A second key accepted as well, as an Azure resource's key 2: a key rotation moves
    /// clients to one key while the other stays valid.
    pub secondary_api_key: Option<String>,
    /// Layout of every JSON the mock writes: bodies, SSE chunks (a pretty chunk takes one
    /// `data:` line per JSON line), error bodies.
    pub json_style: JsonStyle,
    /// Write every object's keys in a random order.
    pub shuffle_keys: bool,
    /// Keep every request in [`crate::MockStats::requests_log`] (default true; the binary, which
    /// has no way to read the log, turns it off so that a benchmark does not grow memory).
    pub record_requests: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            name: "mock".to_owned(),
            latency: Duration::ZERO,
            chunk_interval: Duration::ZERO,
            chunk_count: 8,
            rate_429: 0.0,
            retry_after_ms: 1000,
            rate_5xx: 0.0,
            status_override: None,
            tpm_limit: None,
            throttled_deployments: Vec::new(),
            stream_error_first: None,
            disconnect_after_chunks: None,
            stream_usage: true,
            ratelimit_headers: true,
            api_key: None,
            secondary_api_key: None,
            json_style: JsonStyle::Compact,
            shuffle_keys: false,
            record_requests: true,
        }
    }
}

/// JSON of Azure's "nothing filtered" content filter verdicts.
pub(crate) const FILTER_RESULTS_JSON: &str = concat!(
    r#"{"hate":{"filtered":false,"severity":"safe"},"#,
    r#""self_harm":{"filtered":false,"severity":"safe"},"#,
    r#""sexual":{"filtered":false,"severity":"safe"},"#,
    r#""violence":{"filtered":false,"severity":"safe"}}"#
);

/// Options plus everything derived from them, built once per [`crate::MockServer::set_options`].
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) options: MockOptions,
    /// `name` as a header value (`mock` if the name is not a valid header value).
    pub(crate) name_header: HeaderValue,
    /// The whole completion text: `tok0 tok1 ... ` (`chunk_count` words).
    pub(crate) completion_text: String,
    /// `completion_text` as a JSON string literal, quotes included.
    pub(crate) completion_text_json: String,
    /// Injected 429s: `retry-after-ms`, and `retry-after` in whole seconds rounded up.
    pub(crate) retry_after: RetryAfter,
    /// The layout bodies and events are rewritten into, unless it is the mock's own.
    pub(crate) restyle: Option<Restyle>,
}

/// The retry hint of a 429, in the units of each header that carries it.
#[derive(Clone, Debug)]
pub(crate) struct RetryAfter {
    pub(crate) millis: u64,
    pub(crate) seconds: u64,
}

impl RetryAfter {
    pub(crate) fn from_millis(millis: u64) -> Self {
        Self {
            millis,
            seconds: millis.div_ceil(1000),
        }
    }
}

impl Profile {
    /// Whether requests for `deployment` are refused with a 429.
    pub(crate) fn throttles(&self, deployment: &str) -> bool {
        self.options
            .throttled_deployments
            .iter()
            .any(|throttled| throttled == deployment)
    }

    pub(crate) fn new(options: MockOptions) -> Self {
        let name_header =
            HeaderValue::from_str(&options.name).unwrap_or(HeaderValue::from_static("mock"));
        let completion_text: String = (0..options.chunk_count).map(delta_text).collect();
        let completion_text_json = json_string(&completion_text);
        let retry_after = RetryAfter::from_millis(options.retry_after_ms);
        let restyle = Restyle::new(options.json_style, options.shuffle_keys);
        Self {
            options,
            name_header,
            completion_text,
            completion_text_json,
            retry_after,
            restyle,
        }
    }
}

/// Text of the content delta number `index` (`tok3 `); never needs JSON escaping.
pub(crate) fn delta_text(index: usize) -> String {
    format!("tok{index} ")
}

/// `text` as a JSON string literal, quotes included.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_derives_text_and_retry_hint() {
        let profile = Profile::new(MockOptions {
            chunk_count: 3,
            retry_after_ms: 1500,
            name: "bad\nname".to_owned(),
            ..MockOptions::default()
        });
        assert_eq!(profile.completion_text, "tok0 tok1 tok2 ");
        assert_eq!(profile.completion_text_json, "\"tok0 tok1 tok2 \"");
        assert_eq!(profile.retry_after.seconds, 2);
        assert_eq!(profile.name_header, "mock");
    }
}
