//! Which variables produced each field of the rendered gateway config. hydrenv validates what
//! it renders with the proxy's own parser, whose problems name config paths
//! (`backends[2].endpoint: ...`); an operator changes variables, so each problem is reported by
//! the variable behind it: `AZURE_OPENAI_ENDPOINT_5: ... (gateway.yaml: backends[2].endpoint)`.
//! A test renders every field of the template and fails for one without an origin here.

use crate::settings::Settings;

/// Where a rendered field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// These variables.
    Variables(Vec<String>),
    /// A constant the template writes.
    Template,
}

/// Fields and sections outside the groups: the longest entry containing a path names it.
const FIELDS: &[(&str, &str)] = &[
    ("server.listen", "GATEWAY_LISTEN"),
    ("server.admin_listen", "GATEWAY_ADMIN_LISTEN"),
    ("server.max_body_bytes", "GATEWAY_MAX_BODY_BYTES"),
    ("server.max_connections", "GATEWAY_MAX_CONNECTIONS"),
    (
        "server.max_buffered_body_bytes",
        "GATEWAY_MAX_BUFFERED_BODY_BYTES",
    ),
    ("server.keepalive_timeout", "GATEWAY_KEEPALIVE_TIMEOUT"),
    ("server.client_timeout", "GATEWAY_SLOW_CLIENT_TIMEOUT"),
    ("server.test_mode", "GATEWAY_E2E_TEST_MODE"),
    ("upstream.connect_timeout", "AI_PROXY_CONNECT_TIMEOUT"),
    ("upstream.send_timeout", "AI_PROXY_SEND_TIMEOUT"),
    ("upstream.read_timeout", "AI_PROXY_READ_TIMEOUT"),
    ("upstream.request_deadline", "AI_PROXY_REQUEST_DEADLINE"),
    ("upstream.max_attempts", "AI_PROXY_MAX_ATTEMPTS"),
    ("upstream.failover_on", "AI_PROXY_FALLBACK_STRATEGY"),
    (
        "upstream.passive_health.failures",
        "AI_PROXY_PASSIVE_HEALTH_FAILURES",
    ),
    (
        "upstream.passive_health.unhealthy_for",
        "AI_PROXY_UNHEALTHY_SECONDS",
    ),
    ("upstream.active_health", "APISIX_ACTIVE_HEALTH_CHECKS"),
    (
        "upstream.active_health.scheme",
        "APISIX_ACTIVE_HEALTH_CHECK_SCHEME",
    ),
    (
        "upstream.active_health.path",
        "APISIX_ACTIVE_HEALTH_CHECK_PATH",
    ),
    (
        "upstream.active_health.timeout",
        "APISIX_ACTIVE_HEALTH_CHECK_TIMEOUT",
    ),
    (
        "upstream.active_health.healthy_interval",
        "APISIX_ACTIVE_HEALTH_CHECK_HEALTHY_INTERVAL",
    ),
    (
        "upstream.active_health.unhealthy_interval",
        "APISIX_ACTIVE_HEALTH_CHECK_UNHEALTHY_INTERVAL",
    ),
    ("balancer.algorithm", "LB_ALG"),
    ("balancer.hash_on", "LB_HASH_ON"),
    ("balancer.hash_key", "LB_HASH_KEY"),
    ("clients.require_auth", "GATEWAY_REQUIRE_AUTH"),
    ("limits.tokens", "ENABLE_AI_RATE_LIMIT"),
    ("limits.tokens.strategy", "AI_RATE_LIMIT_STRATEGY"),
    ("limits.tokens.window", "AI_RATE_LIMIT_WINDOW_SECONDS"),
    ("limits.tokens.high", "AI_RATE_LIMIT_HIGH_LIMIT"),
    ("limits.tokens.low", "AI_RATE_LIMIT_LOW_LIMIT"),
    ("limits.tokens.key", "AI_RATE_LIMIT_KEY"),
    ("limits.tokens.reject_status", "AI_RATE_LIMIT_REJECT_CODE"),
    (
        "limits.tokens.reject_message",
        "AI_RATE_LIMIT_REJECT_MESSAGE",
    ),
    ("limits.rate", "ENABLE_RATE_LIMIT"),
    ("limits.rate.per_second", "RATE_LIMIT_RATE"),
    ("limits.rate.burst", "RATE_LIMIT_BURST"),
    ("limits.quota", "ENABLE_QUOTA"),
    ("limits.quota.window", "QUOTA_TIME_WINDOW"),
    ("limits.quota.requests", "QUOTA_COUNT"),
    ("limits.redis", "RATE_LIMIT_REDIS_URL"),
    ("limits.redis.timeout", "RATE_LIMIT_REDIS_TIMEOUT_MS"),
    ("limits.redis.on_failure", "RATE_LIMIT_REDIS_FAILURE"),
    ("cache", "ENABLE_CACHE"),
    ("cache.ttl", "CACHE_TTL"),
    ("cache.max_bytes", "CACHE_MAX_BYTES"),
    ("responses.affinity_ttl", "RESPONSES_AFFINITY_TTL_SECONDS"),
    ("log.access", "GATEWAY_LOG_MODE"),
];

/// Fields the template writes as constants.
const TEMPLATE: &[&str] = &["version", "log.level"];

/// Fields of `backends[i]` → `<KEY>` of `AZURE_OPENAI_<KEY>_<N>`, N the i-th present index.
const BACKEND_FIELDS: &[(&str, &str)] = &[
    ("name", "NAME"),
    ("endpoint", "ENDPOINT"),
    ("priority", "PRIORITY"),
    ("weight", "WEIGHT"),
    ("auth", "AUTH_MODE"),
    ("auth.api_key", "KEY"),
    ("deployments", "DEPLOYMENTS"),
    ("api_version", "API_VERSION"),
];

/// Fields of `clients.consumers[i]` → `<KEY>` of `GATEWAY_CLIENT_<KEY>_<i>`.
const CONSUMER_FIELDS: &[(&str, &str)] = &[
    ("name", "NAME"),
    ("key", "KEY"),
    ("lane", "PRIORITY"),
    ("token_quota", "TOKEN_QUOTA"),
];

/// The origin of a field path as the proxy's parser writes it (`backends[2].endpoint`,
/// `upstream.failover_on[1]`, `backends[0].deployments.gpt-4o`); `None` when unknown.
pub fn origin(path: &str, settings: &Settings) -> Option<Origin> {
    if TEMPLATE.iter().any(|field| within(path, field)) {
        return Some(Origin::Template);
    }
    if let Some(rest) = path.strip_prefix("backends") {
        if rest.is_empty() {
            // The list as a whole: hydrenv catches "no backend" itself, so this is the weights.
            let weights = settings.backends.iter();
            let weights = weights.map(|b| format!("AZURE_OPENAI_WEIGHT_{}", b.index));
            return Some(Origin::Variables(weights.collect()));
        }
        let (i, field) = indexed(rest)?;
        let index = settings.backends.get(i)?.index;
        let key = longest(BACKEND_FIELDS, field)?;
        return Some(Origin::Variables(vec![format!(
            "AZURE_OPENAI_{key}_{index}"
        )]));
    }
    if let Some(rest) = path.strip_prefix("clients.consumers") {
        if rest.is_empty() {
            // The list as a whole: its token quotas without a window (hydrenv catches it itself).
            let quotas = settings.clients.iter().enumerate();
            let quotas = quotas.filter(|(_, c)| c.token_quota.is_some());
            let mut names: Vec<String> = quotas
                .map(|(i, _)| format!("GATEWAY_CLIENT_TOKEN_QUOTA_{i}"))
                .collect();
            names.push("QUOTA_TIME_WINDOW".to_owned());
            return Some(Origin::Variables(names));
        }
        let (i, field) = indexed(rest)?;
        settings.clients.get(i)?;
        let key = longest(CONSUMER_FIELDS, field)?;
        return Some(Origin::Variables(vec![format!("GATEWAY_CLIENT_{key}_{i}")]));
    }
    longest(FIELDS, path).map(|name| Origin::Variables(vec![name.to_owned()]))
}

/// One problem of the proxy's parser (`path: message`) as the operator should read it.
pub fn attribute(problem: &str, file: &str, template: &str, settings: &Settings) -> String {
    let (path, message) = problem.split_once(": ").unwrap_or(("", problem));
    match origin(path, settings) {
        Some(Origin::Variables(names)) if !names.is_empty() => {
            format!("{}: {message} ({file}: {path})", names.join(", "))
        }
        Some(Origin::Template) => format!("templates/{template}: {message} ({file}: {path})"),
        _ => format!("{file} (rendered from templates/{template}) would be rejected: {problem}"),
    }
}

/// `path` is `field` or lies under it (`field.x`, `field[0]`).
fn within(path: &str, field: &str) -> bool {
    path.strip_prefix(field)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn longest<'t>(table: &[(&str, &'t str)], path: &str) -> Option<&'t str> {
    table
        .iter()
        .filter(|(field, _)| within(path, field))
        .max_by_key(|(field, _)| field.len())
        .map(|(_, name)| *name)
}

/// `[2].endpoint` → `(2, "endpoint")`.
fn indexed(rest: &str) -> Option<(usize, &str)> {
    let (i, field) = rest.strip_prefix('[')?.split_once(']')?;
    Some((i.parse().ok()?, field.strip_prefix('.').unwrap_or(field)))
}

#[cfg(test)]
mod tests;
