//! Test mode only (`server.test_mode`, `GATEWAY_E2E_TEST_MODE`): on the test-prefixed routes,
//! answers get the headers the upstream accelerator's end-to-end tests read: `x-gw-priority`
//! (`low` when the request had `x-priority: low`, else `high`) and `x-gw-remaining-tokens` (the
//! gateway's limit headers, else what Azure said, else `0`).

use http::HeaderValue;

use crate::answer::AnswerHead;
use crate::config::GatewayConfig;
use crate::ctx::RequestCtx;
use crate::http1::RawFields;
use crate::stages::Stage;

/// The test header shim.
#[derive(Debug)]
pub struct TestShim {
    enabled: bool,
}

impl Stage for TestShim {
    fn new(config: &GatewayConfig, _previous: Option<&Self>) -> Self {
        Self {
            enabled: config.server.test_mode,
        }
    }

    fn respond(&self, ctx: &RequestCtx, head: &mut AnswerHead) {
        if !self.enabled || !ctx.route.is_some_and(|r| r.test_prefixed) {
            return;
        }
        let low = ctx
            .head
            .fields
            .get("x-priority")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"low"));
        let priority = if low { "low" } else { "high" };
        let remaining = remaining(head).unwrap_or(HeaderValue::from_static("0"));
        head.headers
            .insert("x-gw-priority", HeaderValue::from_static(priority));
        head.headers.insert("x-gw-remaining-tokens", remaining);
    }
}

/// Gateway limit fields first (`X-AI-RateLimit-Remaining`, then a request limit's
/// `X-RateLimit-Remaining`), then the backend's (`X-AI-RateLimit-Remaining[-<name>]`, then
/// `X-RateLimit-Remaining`); then what Azure said (`x-ratelimit-remaining-tokens`).
fn remaining(head: &AnswerHead) -> Option<HeaderValue> {
    const PREFIX: &[u8] = b"x-ai-ratelimit-remaining";
    let limit = |name: &[u8]| {
        name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
    };
    let own = head.limits.tokens.or(head.limits.requests);
    own.map(|shown| HeaderValue::from(shown.remaining))
        .or_else(|| passed(&head.passed, limit))
}

fn passed(fields: &RawFields, limit: impl Fn(&[u8]) -> bool) -> Option<HeaderValue> {
    fields
        .iter()
        .find(|(name, _)| limit(name))
        .map(|(_, value)| value)
        .or_else(|| fields.get("x-ratelimit-remaining"))
        .or_else(|| fields.get("x-ratelimit-remaining-tokens"))
        .and_then(|value| HeaderValue::from_bytes(value).ok())
}
