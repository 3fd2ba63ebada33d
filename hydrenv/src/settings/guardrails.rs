//! The guardrails: `ENABLE_AI_RATE_LIMIT` + `AI_RATE_LIMIT_*` (the token-aware limit),
//! `ENABLE_RATE_LIMIT` + `RATE_LIMIT_RATE`/`_BURST` (request rate per client address),
//! `ENABLE_QUOTA` + `QUOTA_*` (request quota, and the window of the consumers' token quotas),
//! `RATE_LIMIT_REDIS_*` (every counter shared through Redis), and `ENABLE_CACHE` + `CACHE_*`
//! (the response cache). They become the `limits` and `cache` sections of the gateway config.
//!
//! A feature whose flag is off renders nothing, and its variables are still parsed, as the
//! health-check variables are with checks off: a malformed value is refused either way, so
//! turning the flag on later never uncovers a typo, and turning it off does not require
//! removing its settings. What only matters once the feature runs (greater than 0, a status in
//! 400-599) is checked when its flag is on: `0` is how the upstream accelerator's defaults of
//! `RATE_LIMIT_RATE` and `QUOTA_*` read when the feature is off.

use serde::Serialize;

use super::{Client, Reader, SecretText, checks};
use crate::env;

/// The `limits` section; `None` in [`super::Settings`] when no limit is on.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub tokens: Option<TokenLimit>,
    pub rate: Option<RateLimit>,
    pub quota: Option<Quota>,
    pub redis: Option<Redis>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenLimit {
    pub strategy: String,
    pub window: String,
    pub high: u64,
    pub low: u64,
    pub key: String,
    pub reject_status: u64,
    pub reject_message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quota {
    pub window: String,
    /// None: only the consumers' token quotas use the window.
    pub requests: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Redis {
    pub url: SecretText,
    pub timeout: String,
    pub on_failure: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cache {
    pub ttl: String,
    pub max_bytes: u64,
}

/// The slowest and fastest request rates the proxy accepts (`limits.rate.per_second`).
const RATE_RANGE: (f64, f64) = (0.000_001, 1_000_000_000.0);

/// `limits`: `None` when no limit is on (Redis alone is refused: it would share nothing).
pub(super) fn limits(r: &mut Reader<'_>, clients: &[Client]) -> Option<Limits> {
    let tokens = token_limit(r);
    let rate = rate_limit(r);
    let quota = quota(r, clients);
    let redis = redis(r, any_limit_asked(r, clients));
    let any = tokens.is_some() || rate.is_some() || quota.is_some();
    any.then_some(Limits {
        tokens,
        rate,
        quota,
        redis,
    })
}

/// Whether a limit is asked for (a flag true, a token quota given), even one refused for a
/// value: the Redis URL beside it is then not reported as having nothing to share.
fn any_limit_asked(r: &Reader<'_>, clients: &[Client]) -> bool {
    let flags = ["ENABLE_AI_RATE_LIMIT", "ENABLE_RATE_LIMIT", "ENABLE_QUOTA"];
    let flag_on = |flag: &&str| {
        r.get(flag)
            .is_some_and(|v| env::parse_bool(flag, v) == Ok(true))
    };
    let token_quota = |i| r.get(&format!("GATEWAY_CLIENT_TOKEN_QUOTA_{i}")).is_some();
    flags.iter().any(flag_on) || (0..clients.len()).any(token_quota)
}

/// `cache`: `None` unless `ENABLE_CACHE` is true.
pub(super) fn cache(r: &mut Reader<'_>) -> Option<Cache> {
    let on = r.bool_or("ENABLE_CACHE", false);
    let ttl = positive_when(r, on, "CACHE_TTL", 300);
    let max_bytes = positive_when(r, on, "CACHE_MAX_BYTES", 64 << 20);
    on.then(|| Cache {
        ttl: format!("{ttl}s"),
        max_bytes,
    })
}

fn token_limit(r: &mut Reader<'_>) -> Option<TokenLimit> {
    let on = r.bool_or("ENABLE_AI_RATE_LIMIT", false);
    let strategy = r.one_of(
        "AI_RATE_LIMIT_STRATEGY",
        "total_tokens",
        &["total_tokens", "prompt_tokens", "completion_tokens", "req"],
    );
    let window = positive_when(r, on, "AI_RATE_LIMIT_WINDOW_SECONDS", 60);
    let high = positive_when(r, on, "AI_RATE_LIMIT_HIGH_LIMIT", 200);
    let low = positive_when(r, on, "AI_RATE_LIMIT_LOW_LIMIT", 20);
    let key = r.one_of("AI_RATE_LIMIT_KEY", "route", &["route", "consumer"]);
    const CODE: &str = "AI_RATE_LIMIT_REJECT_CODE";
    let mut reject_status = r.uint_or(CODE, 503);
    if on && !(400..=599).contains(&reject_status) {
        let quoted = r.quote(CODE, &reject_status.to_string());
        r.error(
            CODE,
            format!("`{quoted}` is not an HTTP error status (400-599)"),
        );
        reject_status = 503;
    }
    const MESSAGE: &str = "AI_RATE_LIMIT_REJECT_MESSAGE";
    if r.value_or(MESSAGE, "").chars().any(char::is_control) {
        r.error(
            MESSAGE,
            "contains a line break or another control character: it is sent as the error message of every rejection",
        );
    }
    let reject_message = r.text_or(MESSAGE, "rate limited");
    on.then(|| TokenLimit {
        strategy,
        window: format!("{window}s"),
        high,
        low,
        key,
        reject_status,
        reject_message,
    })
}

fn rate_limit(r: &mut Reader<'_>) -> Option<RateLimit> {
    const FLAG: &str = "ENABLE_RATE_LIMIT";
    const RATE: &str = "RATE_LIMIT_RATE";
    let on = r.bool_or(FLAG, false);
    let rate = r.get(RATE).map(|value| r.float(RATE, value));
    let burst = r.u32_or("RATE_LIMIT_BURST", 0);
    if !on {
        return None;
    }
    let per_second = match rate {
        None => {
            r.error(
                RATE,
                format!("required when {FLAG}=true: requests per second per client address, e.g. 10 or 0.5"),
            );
            return None;
        }
        Some(None) => return None, // not a number: reported
        Some(Some(rate)) => rate,
    };
    if per_second <= 0.0 {
        r.error(
            RATE,
            format!("must be greater than 0 with {FLAG}=true (a rate of 0 refuses every request)"),
        );
        return None;
    }
    let (slowest, fastest) = RATE_RANGE;
    if !(slowest..=fastest).contains(&per_second) {
        r.error(RATE, "must be between 0.000001 and 1000000000");
        return None;
    }
    Some(RateLimit { per_second, burst })
}

/// `limits.quota`: for `ENABLE_QUOTA`, and for the consumers' token quotas, which are counted
/// per the same window (`requests` only with `ENABLE_QUOTA`).
fn quota(r: &mut Reader<'_>, clients: &[Client]) -> Option<Quota> {
    const FLAG: &str = "ENABLE_QUOTA";
    const COUNT: &str = "QUOTA_COUNT";
    const WINDOW: &str = "QUOTA_TIME_WINDOW";
    let on = r.bool_or(FLAG, false);
    let count = r.get(COUNT).map(|value| r.uint(COUNT, value));
    let window = r.get(WINDOW).map(|value| r.uint(WINDOW, value));
    let mut users: Vec<String> = clients
        .iter()
        .enumerate()
        .filter(|(_, client)| client.token_quota.is_some())
        .map(|(i, _)| format!("GATEWAY_CLIENT_TOKEN_QUOTA_{i}"))
        .collect();
    if on {
        users.insert(0, format!("{FLAG}=true"));
    }
    if users.is_empty() {
        return None;
    }
    let users = users.join(", ");
    let window = match window {
        None => {
            r.error(
                WINDOW,
                format!("required by {users}: the window in whole seconds, e.g. 60"),
            );
            None
        }
        Some(Some(0)) => {
            r.error(
                WINDOW,
                format!("must be greater than 0: it is the window of {users}"),
            );
            None
        }
        Some(window) => window, // None: not a number, reported
    };
    let requests = if on {
        match count {
            None => {
                r.error(
                    COUNT,
                    format!("required when {FLAG}=true: requests per {WINDOW}, e.g. 1000"),
                );
                None
            }
            Some(Some(0)) => {
                r.error(
                    COUNT,
                    format!("must be greater than 0 with {FLAG}=true (a quota of 0 refuses every request)"),
                );
                None
            }
            Some(count) => count,
        }
    } else {
        None
    };
    Some(Quota {
        window: format!("{}s", window?),
        requests,
    })
}

fn redis(r: &mut Reader<'_>, any_limit: bool) -> Option<Redis> {
    const URL: &str = "RATE_LIMIT_REDIS_URL";
    let url = r.get(URL);
    let timeout = positive_when(r, url.is_some(), "RATE_LIMIT_REDIS_TIMEOUT_MS", 50);
    let on_failure = r.one_of("RATE_LIMIT_REDIS_FAILURE", "open", &["open", "closed"]);
    let url = url?;
    // Never quoted, in any form: it may hold a password.
    if let Err(why) = checks::redis_url(url) {
        r.error(URL, why);
    }
    if !any_limit {
        r.error(
            URL,
            "set, but no limit is on to share through Redis: set ENABLE_AI_RATE_LIMIT, \
             ENABLE_RATE_LIMIT or ENABLE_QUOTA to true (or give a GATEWAY_CLIENT_TOKEN_QUOTA_N), \
             or unset this",
        );
        return None;
    }
    Some(Redis {
        url: r.secret(URL, url),
        timeout: format!("{timeout}ms"),
        on_failure,
    })
}

/// A whole number that must be greater than 0 when its feature is on (a limit, window or size
/// of 0 would refuse everything, or keep nothing).
fn positive_when(r: &mut Reader<'_>, on: bool, name: &str, default: u64) -> u64 {
    let value = r.uint_or(name, default);
    if on && value == 0 {
        r.error(name, "must be greater than 0");
        return default;
    }
    value
}
