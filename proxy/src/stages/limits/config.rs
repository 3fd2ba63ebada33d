//! `limits`: the guardrails that count requests and tokens (the limits stage's config). Each
//! limit is off unless its section is there; `redis` moves every counter into Redis so that all
//! replicas share them.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::Problems;
use crate::secret::Secret;

pub const DEFAULT_TOKEN_WINDOW: Duration = Duration::from_secs(60);
pub const DEFAULT_REJECT_STATUS: u16 = 503;
pub const DEFAULT_REJECT_MESSAGE: &str = "rate limited";
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// `limits`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Token-aware limit per route and lane (or per consumer and lane), in fixed windows.
    pub tokens: Option<RawTokenLimit>,
    /// Request rate per client address (GCRA: a leaky bucket without a timer).
    pub rate: Option<RawRateLimit>,
    /// Request quota per window, and the window of the consumers' `token_quota`.
    pub quota: Option<RawQuota>,
    /// Keep every counter in Redis, shared by all replicas. Without it, counters are per process.
    pub redis: Option<RawRedis>,
}

/// `limits.tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenLimit {
    /// What is counted. Default `total_tokens`.
    pub strategy: Option<RawStrategy>,
    /// Window length. Default `60s`.
    pub window: Option<String>,
    /// Limit of the high lane (standard traffic) per window.
    pub high: u64,
    /// Limit of the low lane (`x-priority: low`, low consumers) per window.
    pub low: u64,
    /// One bucket per route and lane (default) or per consumer and lane.
    pub key: Option<RawLimitKey>,
    /// Status of a rejection, 400-599. Default 503.
    pub reject_status: Option<u16>,
    /// `error.message` of a rejection. Default `rate limited`.
    pub reject_message: Option<String>,
}

/// What a token limit counts.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawStrategy {
    TotalTokens,
    PromptTokens,
    CompletionTokens,
    Req,
}

/// What a token limit's buckets are keyed by (besides the lane).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawLimitKey {
    Route,
    Consumer,
}

/// `limits.rate`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Sustained requests per second per client address (> 0, may be fractional).
    pub per_second: f64,
    /// Requests beyond the sustained rate a client may send at once. Default 0.
    pub burst: Option<u32>,
}

/// `limits.quota`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// Window of the request quota and of every consumer's `token_quota`.
    pub window: String,
    /// Requests per window per consumer (per client address for requests without a known
    /// key). Absent: no request quota (the window may be there for token quotas only).
    pub requests: Option<u64>,
}

/// `limits.redis`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[:password@]host[:port][/db]` or `rediss://` (TLS). Secret.
    #[schemars(with = "String")]
    pub url: Secret,
    /// Longest wait for one Redis call. Default `50ms`, at most `10s`.
    pub timeout: Option<String>,
    /// When Redis is slow or down: `open` (default) admits, `closed` refuses with 503.
    pub on_failure: Option<RawFailure>,
}

/// What a limit does when its store cannot answer.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawFailure {
    Open,
    Closed,
}

/// What a token limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    TotalTokens,
    PromptTokens,
    CompletionTokens,
    Requests,
}

impl Strategy {
    pub fn label(self) -> &'static str {
        match self {
            Strategy::TotalTokens => "total_tokens",
            Strategy::PromptTokens => "prompt_tokens",
            Strategy::CompletionTokens => "completion_tokens",
            Strategy::Requests => "req",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    Route,
    Consumer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenLimitConfig {
    pub strategy: Strategy,
    pub window: Duration,
    pub high: u64,
    pub low: u64,
    pub key: LimitKey,
    pub reject_status: http::StatusCode,
    pub reject_message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    pub window: Duration,
    pub requests: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Open,
    Closed,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub timeout: Duration,
    pub on_failure: Failure,
}

#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    pub tokens: Option<TokenLimitConfig>,
    pub rate: Option<RateLimitConfig>,
    pub quota: Option<QuotaConfig>,
    pub redis: Option<RedisConfig>,
}

/// Longest a request may wait for Redis (`limits.redis.timeout`): no request hangs on it.
const MAX_REDIS_TIMEOUT: (Duration, &str) = (
    Duration::from_secs(10),
    "10s, the longest a request may wait for Redis",
);

fn window(
    problems: &mut Problems,
    path: &str,
    text: Option<String>,
    default: Duration,
) -> Duration {
    // Counters expire after two windows.
    problems.bounded_duration(path, text, default, crate::config::A_YEAR)
}

pub fn resolve(raw: RawLimits, problems: &mut Problems) -> LimitsConfig {
    let RawLimits {
        tokens,
        rate,
        quota,
        redis,
    } = raw;
    let tokens = tokens.map(|t| {
        let status = t.reject_status.unwrap_or(DEFAULT_REJECT_STATUS);
        let reject_status = match http::StatusCode::from_u16(status) {
            Ok(code) if (400..=599).contains(&status) => code,
            _ => {
                problems.push(
                    "limits.tokens.reject_status",
                    format!("{status} is not an HTTP error status (400-599)"),
                );
                http::StatusCode::SERVICE_UNAVAILABLE
            }
        };
        for (path, limit) in [("limits.tokens.high", t.high), ("limits.tokens.low", t.low)] {
            if limit == 0 {
                problems.push(
                    path,
                    "must be greater than 0 (a limit of 0 refuses everything)",
                );
            }
        }
        let reject_message = t
            .reject_message
            .unwrap_or_else(|| DEFAULT_REJECT_MESSAGE.to_owned());
        if reject_message.chars().any(char::is_control) {
            problems.push(
                "limits.tokens.reject_message",
                "contains a control character",
            );
        }
        TokenLimitConfig {
            strategy: match t.strategy.unwrap_or(RawStrategy::TotalTokens) {
                RawStrategy::TotalTokens => Strategy::TotalTokens,
                RawStrategy::PromptTokens => Strategy::PromptTokens,
                RawStrategy::CompletionTokens => Strategy::CompletionTokens,
                RawStrategy::Req => Strategy::Requests,
            },
            window: window(
                problems,
                "limits.tokens.window",
                t.window,
                DEFAULT_TOKEN_WINDOW,
            ),
            high: t.high,
            low: t.low,
            key: match t.key.unwrap_or(RawLimitKey::Route) {
                RawLimitKey::Route => LimitKey::Route,
                RawLimitKey::Consumer => LimitKey::Consumer,
            },
            reject_status,
            reject_message,
        }
    });
    let rate = rate.map(|r| {
        if !(r.per_second.is_finite() && r.per_second > 0.0) {
            problems.push(
                "limits.rate.per_second",
                format!("{} is not a rate above 0", r.per_second),
            );
        } else if r.per_second < 1e-6 || r.per_second > 1e9 {
            problems.push(
                "limits.rate.per_second",
                "must be between 0.000001 and 1000000000",
            );
        }
        RateLimitConfig {
            per_second: r.per_second,
            burst: r.burst.unwrap_or(0),
        }
    });
    let quota = quota.map(|q| {
        if q.requests == Some(0) {
            problems.push(
                "limits.quota.requests",
                "must be greater than 0 (a quota of 0 refuses everything)",
            );
        }
        QuotaConfig {
            window: window(
                problems,
                "limits.quota.window",
                Some(q.window),
                Duration::ZERO,
            ),
            requests: q.requests,
        }
    });
    let redis = redis.map(|r| {
        let url = r.url.expose();
        if let Err(problem) = check_redis_url(url) {
            problems.push("limits.redis.url", problem);
        }
        RedisConfig {
            timeout: problems.bounded_duration(
                "limits.redis.timeout",
                r.timeout,
                DEFAULT_REDIS_TIMEOUT,
                MAX_REDIS_TIMEOUT,
            ),
            on_failure: match r.on_failure.unwrap_or(RawFailure::Open) {
                RawFailure::Open => Failure::Open,
                RawFailure::Closed => Failure::Closed,
            },
            url: r.url,
        }
    });
    if redis.is_some() && tokens.is_none() && rate.is_none() && quota.is_none() {
        problems.push(
            "limits.redis",
            "is set, but no limit is: enable limits.tokens, limits.rate or limits.quota",
        );
    }
    LimitsConfig {
        tokens,
        rate,
        quota,
        redis,
    }
}

/// Whether a Redis URL can be used, without quoting it (it may hold a password).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("redis" | "rediss") => {}
        Some(other) if other.len() <= 16 && other.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return Err(format!("scheme `{other}` is not redis or rediss"));
        }
        _ => return Err("is not a redis:// or rediss:// URL".into()),
    }
    match redis::parse_redis_url(url) {
        Some(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err("is not a valid redis:// or rediss:// URL with a host".into()),
    }
}
