//! Bad guardrail values: numbers that are not numbers, limits of 0 or below, unknown choices, a
//! required value missing, a Redis URL that is not one (never shown); each names its variable.

use super::{rejects, with_release};
use crate::support::*;

#[test]
fn guardrail_numbers_are_strict_and_limits_positive() {
    rejects(
        &[
            ("ENABLE_AI_RATE_LIMIT", Some("true")),
            ("AI_RATE_LIMIT_WINDOW_SECONDS", Some("1m")),
            ("AI_RATE_LIMIT_HIGH_LIMIT", Some("-200")),
            ("AI_RATE_LIMIT_LOW_LIMIT", Some("0")),
            ("AI_RATE_LIMIT_REJECT_CODE", Some("200")),
            ("ENABLE_RATE_LIMIT", Some("true")),
            ("RATE_LIMIT_RATE", Some("-1")),
            ("RATE_LIMIT_BURST", Some("1.5")),
            ("ENABLE_QUOTA", Some("true")),
            ("QUOTA_COUNT", Some("0")),
            ("QUOTA_TIME_WINDOW", Some("0")),
            ("ENABLE_CACHE", Some("true")),
            ("CACHE_TTL", Some("0")),
            ("CACHE_MAX_BYTES", Some("64MB")),
        ],
        64,
        &[
            "AI_RATE_LIMIT_WINDOW_SECONDS: `1m` is not a whole number",
            "AI_RATE_LIMIT_HIGH_LIMIT: `-200` is not a whole number",
            "AI_RATE_LIMIT_LOW_LIMIT: must be greater than 0",
            "AI_RATE_LIMIT_REJECT_CODE: `200` is not an HTTP error status (400-599)",
            "RATE_LIMIT_RATE: `-1` is negative",
            "RATE_LIMIT_BURST: `1.5` is not a whole number",
            "QUOTA_COUNT: must be greater than 0 with ENABLE_QUOTA=true",
            "QUOTA_TIME_WINDOW: must be greater than 0: it is the window of ENABLE_QUOTA=true",
            "CACHE_TTL: must be greater than 0",
            "CACHE_MAX_BYTES: `64MB` is not a whole number",
        ],
    );
    rejects(
        &[
            ("ENABLE_AI_RATE_LIMIT", Some("true")),
            ("AI_RATE_LIMIT_WINDOW_SECONDS", Some("0")),
            ("AI_RATE_LIMIT_HIGH_LIMIT", Some("0")),
            ("AI_RATE_LIMIT_REJECT_CODE", Some("600")),
            ("ENABLE_RATE_LIMIT", Some("true")),
            ("RATE_LIMIT_RATE", Some("0")),
            ("RATE_LIMIT_BURST", Some("-3")),
            ("GATEWAY_CLIENT_NAME_0", Some("a")),
            ("GATEWAY_CLIENT_KEY_0", Some("ck-a")),
            ("GATEWAY_CLIENT_TOKEN_QUOTA_0", Some("0")),
            ("GATEWAY_CLIENT_NAME_1", Some("b")),
            ("GATEWAY_CLIENT_KEY_1", Some("ck-b")),
            ("GATEWAY_CLIENT_TOKEN_QUOTA_1", Some("lots")),
        ],
        64,
        &[
            "AI_RATE_LIMIT_WINDOW_SECONDS: must be greater than 0",
            "AI_RATE_LIMIT_HIGH_LIMIT: must be greater than 0",
            "AI_RATE_LIMIT_REJECT_CODE: `600` is not an HTTP error status (400-599)",
            "RATE_LIMIT_RATE: must be greater than 0 with ENABLE_RATE_LIMIT=true",
            "RATE_LIMIT_BURST: `-3` is not a whole number",
            "GATEWAY_CLIENT_TOKEN_QUOTA_0: must be greater than 0",
            "GATEWAY_CLIENT_TOKEN_QUOTA_1: `lots` is not a whole number",
        ],
    );
}

#[test]
fn guardrail_choices_must_be_known() {
    rejects(
        &[
            ("ENABLE_AI_RATE_LIMIT", Some("true")),
            ("AI_RATE_LIMIT_STRATEGY", Some("tokens")),
            ("AI_RATE_LIMIT_KEY", Some("ip")),
            ("ENABLE_RATE_LIMIT", Some("maybe")),
            ("ENABLE_QUOTA", Some("true")),
            ("QUOTA_COUNT", Some("100")),
            ("QUOTA_TIME_WINDOW", Some("60")),
            ("RATE_LIMIT_REDIS_URL", Some("redis://localhost")),
            ("RATE_LIMIT_REDIS_FAILURE", Some("fail-fast")),
            ("RATE_LIMIT_REDIS_TIMEOUT_MS", Some("0")),
        ],
        64,
        &[
            "AI_RATE_LIMIT_STRATEGY: `tokens` is not one of total_tokens, prompt_tokens, completion_tokens, req",
            "AI_RATE_LIMIT_KEY: `ip` is not one of route, consumer",
            "ENABLE_RATE_LIMIT: `maybe` is not a boolean",
            "RATE_LIMIT_REDIS_FAILURE: `fail-fast` is not one of open, closed",
            "RATE_LIMIT_REDIS_TIMEOUT_MS: must be greater than 0",
        ],
    );
}

#[test]
fn a_guardrail_on_without_its_required_values() {
    rejects(
        &[
            ("ENABLE_RATE_LIMIT", Some("true")),
            ("ENABLE_QUOTA", Some("true")),
        ],
        64,
        &[
            "RATE_LIMIT_RATE: required when ENABLE_RATE_LIMIT=true",
            "QUOTA_TIME_WINDOW: required by ENABLE_QUOTA=true: the window in whole seconds",
            "QUOTA_COUNT: required when ENABLE_QUOTA=true",
        ],
    );
}

#[test]
fn a_token_quota_needs_the_quota_window() {
    rejects(
        &[
            ("GATEWAY_CLIENT_NAME_0", Some("a")),
            ("GATEWAY_CLIENT_KEY_0", Some("ck-a")),
            ("GATEWAY_CLIENT_NAME_1", Some("b")),
            ("GATEWAY_CLIENT_KEY_1", Some("ck-b")),
            ("GATEWAY_CLIENT_TOKEN_QUOTA_1", Some("100000")),
        ],
        64,
        &[
            "QUOTA_TIME_WINDOW: required by GATEWAY_CLIENT_TOKEN_QUOTA_1: the window in whole seconds",
        ],
    );
}

#[test]
fn a_reject_message_with_a_line_break_is_refused() {
    rejects(
        &[
            ("ENABLE_AI_RATE_LIMIT", Some("true")),
            ("AI_RATE_LIMIT_REJECT_MESSAGE", Some("slow down\nplease")),
        ],
        64,
        &["AI_RATE_LIMIT_REJECT_MESSAGE: contains a line break or another control character"],
    );
}

/// A Redis URL that is not redis:// or rediss:// is refused by name; nothing of it is shown
/// (it may hold a password).
#[test]
fn a_redis_url_that_is_not_redis_is_refused_without_showing_it() {
    let limit = [
        ("ENABLE_RATE_LIMIT", Some("true")),
        ("RATE_LIMIT_RATE", Some("10")),
    ];
    for (url, why) in [
        (
            "https://:Pw-77c2@cache-7d1.example:6380",
            "RATE_LIMIT_REDIS_URL: the scheme must be redis:// or rediss:// (TLS)",
        ),
        (
            "Pw-77c2@cache-7d1.example:6380",
            "RATE_LIMIT_REDIS_URL: is not a URL like rediss://",
        ),
        (
            "redis://:Pw-77c2@",
            "RATE_LIMIT_REDIS_URL: is not a valid redis:// or rediss:// URL with a host",
        ),
        (
            "rediss://:Pw-77c2@cache-7d1.example:6380\n",
            "RATE_LIMIT_REDIS_URL: ends with a line break",
        ),
    ] {
        let (root, mut vars) = with_release();
        vars.extend(
            limit
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.unwrap().to_owned())),
        );
        vars.insert("RATE_LIMIT_REDIS_URL".into(), url.into());
        let before = tree(root.path());
        for args in [
            &["render"][..],
            &["check"],
            &["render", "--dry-run"],
            &["diff"],
        ] {
            let out = hydrenv(args, &vars);
            let text = stdout(&out) + &stderr(&out);
            assert_eq!(out.status.code(), Some(64), "{args:?} {url:?}: {text}");
            assert!(
                text.contains(why),
                "{args:?} {url:?}: expected `{why}` in {text}"
            );
            for part in ["Pw-77c2", "cache-7d1", "https:"] {
                assert!(
                    !text.contains(part),
                    "{args:?} {url:?} shows `{part}`: {text}"
                );
            }
        }
        assert_eq!(tree(root.path()), before);
    }
}

#[test]
fn a_redis_url_without_any_limit_is_refused() {
    rejects(
        &[("RATE_LIMIT_REDIS_URL", Some("redis://:pw@redis.internal"))],
        64,
        &[
            "RATE_LIMIT_REDIS_URL: set, but no limit is on to share through Redis: set ENABLE_AI_RATE_LIMIT, ENABLE_RATE_LIMIT or ENABLE_QUOTA to true",
        ],
    );
}

/// Limits (and store lifetimes) hydrenv passes on and the proxy refuses: reported by the
/// variable.
#[test]
fn guardrail_values_the_proxy_refuses_name_the_variable() {
    rejects(
        &[
            ("ENABLE_AI_RATE_LIMIT", Some("true")),
            ("AI_RATE_LIMIT_WINDOW_SECONDS", Some("40000000")),
            ("ENABLE_QUOTA", Some("true")),
            ("QUOTA_COUNT", Some("10")),
            ("QUOTA_TIME_WINDOW", Some("40000000")),
            // The in-process cache would panic beyond 1000 years; a year is the bound.
            ("ENABLE_CACHE", Some("true")),
            ("CACHE_TTL", Some("40000000000")),
            ("RATE_LIMIT_REDIS_URL", Some("redis://localhost")),
            ("RATE_LIMIT_REDIS_TIMEOUT_MS", Some("11000")),
            ("RESPONSES_AFFINITY_TTL_SECONDS", Some("40000000000")),
        ],
        64,
        &[
            "error: AI_RATE_LIMIT_WINDOW_SECONDS: must be at most 366 days (gateway.yaml: limits.tokens.window)",
            "error: QUOTA_TIME_WINDOW: must be at most 366 days (gateway.yaml: limits.quota.window)",
            "error: CACHE_TTL: must be at most 366 days (gateway.yaml: cache.ttl)",
            "error: RATE_LIMIT_REDIS_TIMEOUT_MS: must be at most 10s, the longest a request may wait for Redis (gateway.yaml: limits.redis.timeout)",
            "error: RESPONSES_AFFINITY_TTL_SECONDS: must be at most 366 days (gateway.yaml: responses.affinity_ttl)",
        ],
    );
}

/// A limit refused for one of its values is still a limit asked for: the Redis URL beside it is
/// not also reported as having no limit to share.
#[test]
fn a_limit_refused_for_its_value_is_the_only_problem_reported() {
    let e = minimal(&[
        ("ENABLE_RATE_LIMIT", "true"),
        ("RATE_LIMIT_REDIS_URL", "redis://localhost"),
    ]);
    assert_eq!(
        dry_run(&e).unwrap_err(),
        "error: RATE_LIMIT_RATE: required when ENABLE_RATE_LIMIT=true: requests per second per client address, e.g. 10 or 0.5\n"
    );
}
