//! One source of truth for defaults: every default the variable table states (`vars.rs`, which
//! `explain` and `docs/configuration.md` show) is what hydrenv renders when the variable is
//! unset, and what the proxy assumes when the rendered field is absent. A default that drifts on
//! either side, or a new variable with a default this test does not know, fails here.

use std::time::Duration;

use hydrenv::vars::{self, Status, Target};
use proxy::GatewayConfig;
use proxy::config::{BalancerConfig, HashOn, LimitsConfig};

use crate::support::{gateway_config, minimal};

/// How one variable's default shows in the resolved config.
struct Row {
    var: &'static str,
    /// Variables that make the field appear at all (e.g. the flag of its feature).
    with: &'static [(&'static str, &'static str)],
    /// Config text (after `backends`) with the field's section present but the field absent;
    /// `None` when the proxy requires the field (no default of its own to agree with).
    absent: Option<&'static str>,
    /// The value in the resolved config, as text.
    read: fn(&GatewayConfig) -> String,
    /// The table's default text, as the same text.
    expect: fn(&str) -> String,
}

fn secs(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

fn number(text: &str) -> String {
    text.parse::<f64>().unwrap().to_string()
}

fn same(text: &str) -> String {
    text.to_owned()
}

const AI_LIMIT: &[(&str, &str)] = &[("ENABLE_AI_RATE_LIMIT", "true")];
/// The proxy requires `high` and `low` (hydrenv's defaults are its own).
const AI_LIMIT_ABSENT: &str = "limits: { tokens: { high: 200, low: 20 } }\n";
const RATE_LIMIT: &[(&str, &str)] = &[("ENABLE_RATE_LIMIT", "true"), ("RATE_LIMIT_RATE", "5")];
const RATE_LIMIT_ABSENT: &str = "limits: { rate: { per_second: 5 } }\n";
const REDIS: &[(&str, &str)] = &[
    ("ENABLE_RATE_LIMIT", "true"),
    ("RATE_LIMIT_RATE", "5"),
    ("RATE_LIMIT_REDIS_URL", "redis://localhost"),
];
const REDIS_ABSENT: &str =
    "limits: { rate: { per_second: 5 }, redis: { url: 'redis://localhost' } }\n";

fn tokens(c: &GatewayConfig) -> &proxy::config::TokenLimitConfig {
    c.limits.tokens.as_ref().unwrap()
}

fn redis(limits: &LimitsConfig) -> &proxy::config::RedisConfig {
    limits.redis.as_ref().unwrap()
}

const ROWS: &[Row] = &[
    Row {
        var: "AZURE_OPENAI_NAME_N",
        with: &[],
        absent: Some(""),
        read: |c| c.backends[0].name.to_string(),
        expect: |d| d.replace('N', "0"),
    },
    Row {
        var: "AZURE_OPENAI_PRIORITY_N",
        with: &[],
        absent: Some(""),
        read: |c| c.backends[0].priority.to_string(),
        expect: same,
    },
    Row {
        var: "AZURE_OPENAI_WEIGHT_N",
        with: &[],
        absent: Some(""),
        read: |c| c.backends[0].weight.to_string(),
        expect: same,
    },
    Row {
        var: "AZURE_OPENAI_AUTH_MODE_N",
        with: &[],
        absent: Some(""),
        read: |c| {
            if c.backends[0].api_key.expose().is_empty() {
                "none".into()
            } else {
                "api-key if KEY set".into()
            }
        },
        expect: same,
    },
    Row {
        var: "AI_PROXY_CONNECT_TIMEOUT",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.upstream.connect_timeout),
        expect: number,
    },
    Row {
        var: "AI_PROXY_SEND_TIMEOUT",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.upstream.send_timeout),
        expect: number,
    },
    Row {
        var: "AI_PROXY_READ_TIMEOUT",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.upstream.read_timeout),
        expect: number,
    },
    Row {
        var: "AI_PROXY_REQUEST_DEADLINE",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.upstream.request_deadline),
        expect: number,
    },
    Row {
        var: "AI_PROXY_FALLBACK_STRATEGY",
        with: &[],
        absent: Some(""),
        read: |c| {
            let t = c.upstream.failover;
            [
                (t.http_429, "http_429"),
                (t.http_5xx, "http_5xx"),
                (t.connect_error, "connect_error"),
                (t.timeout, "timeout"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(",")
        },
        expect: same,
    },
    Row {
        var: "AI_PROXY_MAX_ATTEMPTS",
        with: &[],
        absent: Some(""),
        read: |c| {
            if c.upstream.max_attempts == c.backends.len() {
                "number of backends".into()
            } else {
                c.upstream.max_attempts.to_string()
            }
        },
        expect: same,
    },
    Row {
        var: "AI_PROXY_PASSIVE_HEALTH_FAILURES",
        with: &[],
        absent: Some(""),
        read: |c| c.upstream.passive_health.failures.to_string(),
        expect: same,
    },
    Row {
        var: "AI_PROXY_UNHEALTHY_SECONDS",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.upstream.passive_health.unhealthy_for),
        expect: number,
    },
    Row {
        var: "LB_ALG",
        with: &[],
        absent: Some(""),
        read: |c| match c.balancer {
            BalancerConfig::RoundRobin => "roundrobin".into(),
            BalancerConfig::ConsistentHash { .. } => "chash".into(),
        },
        expect: same,
    },
    Row {
        var: "LB_HASH_ON",
        with: &[
            ("LB_ALG", "chash"),
            ("GATEWAY_CLIENT_NAME_0", "a"),
            ("GATEWAY_CLIENT_KEY_0", "ck-a"),
        ],
        absent: Some(
            "balancer: { algorithm: chash }\nclients: { consumers: [{ name: a, key: ck-a }] }\n",
        ),
        read: |c| match &c.balancer {
            BalancerConfig::ConsistentHash {
                on: HashOn::Consumer,
                ..
            } => "consumer".into(),
            other => format!("{other:?}"),
        },
        expect: same,
    },
    Row {
        var: "APISIX_ACTIVE_HEALTH_CHECKS",
        with: &[],
        absent: Some(""),
        read: |c| c.upstream.active_health.is_some().to_string(),
        expect: same,
    },
    Row {
        var: "APISIX_ACTIVE_HEALTH_CHECK_SCHEME",
        with: &[("APISIX_ACTIVE_HEALTH_CHECKS", "true")],
        absent: Some("upstream: { active_health: { enabled: true } }\n"),
        read: |c| match &c.upstream.active_health.as_ref().unwrap().scheme {
            None => "the endpoint's".into(),
            Some(s) => s.to_string(),
        },
        expect: same,
    },
    Row {
        var: "APISIX_ACTIVE_HEALTH_CHECK_TIMEOUT",
        with: &[("APISIX_ACTIVE_HEALTH_CHECKS", "true")],
        absent: Some("upstream: { active_health: { enabled: true } }\n"),
        read: |c| secs(c.upstream.active_health.as_ref().unwrap().timeout),
        expect: number,
    },
    Row {
        var: "APISIX_ACTIVE_HEALTH_CHECK_PATH",
        with: &[("APISIX_ACTIVE_HEALTH_CHECKS", "true")],
        absent: Some("upstream: { active_health: { enabled: true } }\n"),
        read: |c| c.upstream.active_health.as_ref().unwrap().path.to_string(),
        expect: same,
    },
    Row {
        var: "APISIX_ACTIVE_HEALTH_CHECK_HEALTHY_INTERVAL",
        with: &[("APISIX_ACTIVE_HEALTH_CHECKS", "true")],
        absent: Some("upstream: { active_health: { enabled: true } }\n"),
        read: |c| secs(c.upstream.active_health.as_ref().unwrap().healthy_interval),
        expect: number,
    },
    Row {
        var: "APISIX_ACTIVE_HEALTH_CHECK_UNHEALTHY_INTERVAL",
        with: &[("APISIX_ACTIVE_HEALTH_CHECKS", "true")],
        absent: Some("upstream: { active_health: { enabled: true } }\n"),
        read: |c| {
            secs(
                c.upstream
                    .active_health
                    .as_ref()
                    .unwrap()
                    .unhealthy_interval,
            )
        },
        expect: number,
    },
    Row {
        // The proxy always verifies certificates (false is refused); `true` is what it does.
        var: "APISIX_ACTIVE_HEALTH_CHECK_VERIFY_CERT",
        with: &[("APISIX_ACTIVE_HEALTH_CHECKS", "true")],
        absent: Some("upstream: { active_health: { enabled: true } }\n"),
        read: |_| "true".into(),
        expect: same,
    },
    Row {
        var: "GATEWAY_CLIENT_PRIORITY_N",
        with: &[
            ("GATEWAY_CLIENT_NAME_0", "a"),
            ("GATEWAY_CLIENT_KEY_0", "ck-a"),
        ],
        absent: Some("clients: { consumers: [{ name: a, key: ck-a }] }\n"),
        read: |c| format!("{:?}", c.clients.consumers[0].lane).to_lowercase(),
        expect: same,
    },
    Row {
        var: "GATEWAY_REQUIRE_AUTH",
        with: &[],
        absent: Some(""),
        read: |c| c.clients.require_auth.to_string(),
        expect: same,
    },
    Row {
        var: "ENABLE_AI_RATE_LIMIT",
        with: &[],
        absent: Some(""),
        read: |c| c.limits.tokens.is_some().to_string(),
        expect: same,
    },
    Row {
        var: "AI_RATE_LIMIT_STRATEGY",
        with: AI_LIMIT,
        absent: Some(AI_LIMIT_ABSENT),
        read: |c| tokens(c).strategy.label().into(),
        expect: same,
    },
    Row {
        var: "AI_RATE_LIMIT_WINDOW_SECONDS",
        with: AI_LIMIT,
        absent: Some(AI_LIMIT_ABSENT),
        read: |c| secs(tokens(c).window),
        expect: number,
    },
    Row {
        var: "AI_RATE_LIMIT_HIGH_LIMIT",
        with: AI_LIMIT,
        absent: None,
        read: |c| tokens(c).high.to_string(),
        expect: same,
    },
    Row {
        var: "AI_RATE_LIMIT_LOW_LIMIT",
        with: AI_LIMIT,
        absent: None,
        read: |c| tokens(c).low.to_string(),
        expect: same,
    },
    Row {
        var: "AI_RATE_LIMIT_REJECT_CODE",
        with: AI_LIMIT,
        absent: Some(AI_LIMIT_ABSENT),
        read: |c| tokens(c).reject_status.as_u16().to_string(),
        expect: same,
    },
    Row {
        var: "AI_RATE_LIMIT_REJECT_MESSAGE",
        with: AI_LIMIT,
        absent: Some(AI_LIMIT_ABSENT),
        read: |c| tokens(c).reject_message.clone(),
        expect: same,
    },
    Row {
        var: "AI_RATE_LIMIT_KEY",
        with: AI_LIMIT,
        absent: Some(AI_LIMIT_ABSENT),
        read: |c| format!("{:?}", tokens(c).key).to_lowercase(),
        expect: same,
    },
    Row {
        var: "ENABLE_RATE_LIMIT",
        with: &[],
        absent: Some(""),
        read: |c| c.limits.rate.is_some().to_string(),
        expect: same,
    },
    Row {
        var: "RATE_LIMIT_BURST",
        with: RATE_LIMIT,
        absent: Some(RATE_LIMIT_ABSENT),
        read: |c| c.limits.rate.as_ref().unwrap().burst.to_string(),
        expect: same,
    },
    Row {
        var: "ENABLE_QUOTA",
        with: &[],
        absent: Some(""),
        read: |c| c.limits.quota.is_some().to_string(),
        expect: same,
    },
    Row {
        var: "RATE_LIMIT_REDIS_TIMEOUT_MS",
        with: REDIS,
        absent: Some(REDIS_ABSENT),
        read: |c| redis(&c.limits).timeout.as_millis().to_string(),
        expect: same,
    },
    Row {
        var: "RATE_LIMIT_REDIS_FAILURE",
        with: REDIS,
        absent: Some(REDIS_ABSENT),
        read: |c| format!("{:?}", redis(&c.limits).on_failure).to_lowercase(),
        expect: same,
    },
    Row {
        var: "ENABLE_CACHE",
        with: &[],
        absent: Some(""),
        read: |c| c.cache.is_some().to_string(),
        expect: same,
    },
    Row {
        var: "CACHE_TTL",
        with: &[("ENABLE_CACHE", "true")],
        absent: Some("cache: {}\n"),
        read: |c| secs(c.cache.as_ref().unwrap().ttl),
        expect: number,
    },
    Row {
        var: "CACHE_MAX_BYTES",
        with: &[("ENABLE_CACHE", "true")],
        absent: Some("cache: {}\n"),
        read: |c| c.cache.as_ref().unwrap().max_bytes.to_string(),
        expect: same,
    },
    Row {
        var: "RESPONSES_AFFINITY_TTL_SECONDS",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.responses.affinity_ttl),
        expect: number,
    },
    Row {
        var: "GATEWAY_LOG_MODE",
        with: &[],
        absent: Some(""),
        read: |c| {
            if c.log.access {
                "test or dev".into()
            } else {
                "prod".into()
            }
        },
        expect: same,
    },
    Row {
        var: "GATEWAY_LISTEN",
        with: &[],
        absent: Some(""),
        read: |c| c.server.listen.to_string(),
        expect: same,
    },
    Row {
        var: "GATEWAY_ADMIN_LISTEN",
        with: &[],
        absent: Some(""),
        read: |c| c.server.admin_listen.to_string(),
        expect: same,
    },
    Row {
        var: "GATEWAY_MAX_BODY_BYTES",
        with: &[],
        absent: Some(""),
        read: |c| c.server.max_body_bytes.to_string(),
        expect: same,
    },
    Row {
        var: "GATEWAY_MAX_CONNECTIONS",
        with: &[],
        absent: Some(""),
        read: |c| c.server.max_connections.to_string(),
        expect: same,
    },
    Row {
        var: "GATEWAY_MAX_BUFFERED_BODY_BYTES",
        with: &[],
        absent: Some(""),
        read: |c| c.server.max_buffered_body_bytes.to_string(),
        expect: same,
    },
    Row {
        var: "GATEWAY_KEEPALIVE_TIMEOUT",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.server.keepalive_timeout),
        expect: number,
    },
    Row {
        var: "GATEWAY_SLOW_CLIENT_TIMEOUT",
        with: &[],
        absent: Some(""),
        read: |c| secs(c.server.client_timeout),
        expect: number,
    },
    Row {
        var: "GATEWAY_E2E_TEST_MODE",
        with: &[],
        absent: Some(""),
        read: |c| c.server.test_mode.to_string(),
        expect: same,
    },
];

/// Gateway variables whose table default is not a value of the config, and why.
const NOT_A_CONFIG_VALUE: &[(&str, &str)] = &[
    ("AZURE_OPENAI_ENDPOINT_N", "required: there is no default"),
    ("GATEWAY_CLIENT_NAME_N", "required: there is no default"),
];

fn rendered(with: &[(&str, &str)]) -> GatewayConfig {
    gateway_config(&minimal(with))
}

fn absent(section: &str) -> GatewayConfig {
    let yaml = format!(
        "version: 1\nbackends:\n  - {{ name: backend-0, endpoint: 'https://eus.openai.azure.com', auth: {{ mode: api-key, api_key: k }} }}\n{section}"
    );
    GatewayConfig::parse("gateway.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[test]
fn every_default_in_the_table_is_what_hydrenv_renders_and_what_the_proxy_assumes() {
    for row in ROWS {
        let var = vars::find(row.var).unwrap_or_else(|| panic!("{} is not in the table", row.var));
        let expected = (row.expect)(var.default);
        assert_eq!(
            (row.read)(&rendered(row.with)),
            expected,
            "{}: what hydrenv renders",
            row.var
        );
        if let Some(section) = row.absent {
            assert_eq!(
                (row.read)(&absent(section)),
                expected,
                "{}: what the proxy assumes",
                row.var
            );
        }
    }
}

#[test]
fn no_gateway_default_escapes_the_check() {
    for var in vars::VARS {
        let gateway = var.target == Target::Gateway && var.status == Status::Built;
        if !gateway || var.default.is_empty() {
            continue;
        }
        let known = ROWS.iter().any(|r| r.var == var.name)
            || NOT_A_CONFIG_VALUE.iter().any(|(name, _)| *name == var.name);
        assert!(
            known,
            "{}: its default `{}` is not tied to the config here",
            var.name, var.default
        );
    }
}
