//! Rendering: the fixture matrix of `spec/hydrenv.md` as reviewed snapshots, escaping, and the
//! rendered gateway config being what the proxy itself accepts.

use hydrenv::env::Env;

use crate::support::*;

fn weighted() -> Env {
    env(&[
        ("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com"),
        ("AZURE_OPENAI_KEY_0", "sk-eus"),
        ("AZURE_OPENAI_NAME_0", "eus"),
        ("AZURE_OPENAI_WEIGHT_0", "2"),
        (
            "AZURE_OPENAI_ENDPOINT_2",
            "https://wus.openai.azure.com/some/path",
        ),
        ("AZURE_OPENAI_KEY_2", "sk-wus"),
        ("AZURE_OPENAI_NAME_2", "wus"),
        (
            "AZURE_OPENAI_DEPLOYMENTS_2",
            "gpt-4o=gpt-4o-wus, mini=gpt-4o-mini",
        ),
        ("AZURE_OPENAI_API_VERSION_2", "2024-10-21"),
        ("AZURE_OPENAI_ENDPOINT_7", "https://swc.openai.azure.com"),
        ("AZURE_OPENAI_KEY_7", "sk-swc"),
        ("GATEWAY_CLIENT_NAME_0", "team-a"),
        ("GATEWAY_CLIENT_KEY_0", "ck-a"),
        ("GATEWAY_CLIENT_NAME_1", "batch"),
        ("GATEWAY_CLIENT_KEY_1", "ck-b"),
        ("GATEWAY_CLIENT_PRIORITY_1", "low"),
        ("GATEWAY_REQUIRE_AUTH", "yes"),
    ])
}

#[test]
fn minimal_single_backend() {
    insta::assert_snapshot!(dry_run(&minimal(&[])).unwrap());
}

#[test]
fn weighted_multi_backend_with_clients() {
    insta::assert_snapshot!(dry_run(&weighted()).unwrap());
}

#[test]
fn ptu_and_payg_priority_tiers_with_health_checks_and_chash() {
    let e = env(&[
        (
            "AZURE_OPENAI_ENDPOINT_0",
            "https://eus-ptu.openai.azure.com",
        ),
        ("AZURE_OPENAI_KEY_0", "sk-ptu"),
        ("AZURE_OPENAI_NAME_0", "eus-ptu"),
        ("AZURE_OPENAI_PRIORITY_0", "10"),
        (
            "AZURE_OPENAI_ENDPOINT_1",
            "https://eus-payg.openai.azure.com",
        ),
        ("AZURE_OPENAI_KEY_1", "sk-payg"),
        ("AZURE_OPENAI_NAME_1", "eus-payg"),
        ("AZURE_OPENAI_PRIORITY_1", "1"),
        ("AI_PROXY_FALLBACK_STRATEGY", r#"["http_429","http_5xx"]"#),
        ("AI_PROXY_CONNECT_TIMEOUT", "5"),
        ("AI_PROXY_READ_TIMEOUT", "120"),
        ("AI_PROXY_MAX_ATTEMPTS", "2"),
        ("AI_PROXY_PASSIVE_HEALTH_FAILURES", "5"),
        ("AI_PROXY_UNHEALTHY_SECONDS", "10"),
        ("GATEWAY_KEEPALIVE_TIMEOUT", "5"),
        ("GATEWAY_SLOW_CLIENT_TIMEOUT", "2.5"),
        ("LB_ALG", "chash"),
        ("LB_HASH_ON", "header"),
        ("LB_HASH_KEY", "x-session-id"),
        ("APISIX_ACTIVE_HEALTH_CHECKS", "on"),
        ("APISIX_ACTIVE_HEALTH_CHECK_SCHEME", "https"),
        ("RESPONSES_AFFINITY_TTL_SECONDS", "3600"),
    ]);
    insta::assert_snapshot!(dry_run(&e).unwrap());
}

#[test]
fn entra_backends_are_refused_until_built() {
    let e = env(&[
        ("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com"),
        ("AZURE_OPENAI_AUTH_MODE_0", "managed-identity"),
        (
            "AZURE_OPENAI_MSI_CLIENT_ID_0",
            "00000000-0000-0000-0000-000000000001",
        ),
        (
            "AZURE_OPENAI_TOKEN_RESOURCE",
            "https://cognitiveservices.azure.com/",
        ),
    ]);
    insta::assert_snapshot!(dry_run(&e).unwrap_err());
}

/// Every guardrail this build has, each away from its defaults, counters in process.
fn every_guardrail() -> Env {
    let mut e = weighted();
    e.extend(env(&[
        ("ENABLE_AI_RATE_LIMIT", "true"),
        ("AI_RATE_LIMIT_STRATEGY", "prompt_tokens"),
        ("AI_RATE_LIMIT_WINDOW_SECONDS", "120"),
        ("AI_RATE_LIMIT_HIGH_LIMIT", "50000"),
        ("AI_RATE_LIMIT_LOW_LIMIT", "5000"),
        ("AI_RATE_LIMIT_KEY", "consumer"),
        ("AI_RATE_LIMIT_REJECT_CODE", "429"),
        (
            "AI_RATE_LIMIT_REJECT_MESSAGE",
            "Token budget spent: \"retry\" later # see docs",
        ),
        ("ENABLE_RATE_LIMIT", "true"),
        ("RATE_LIMIT_RATE", "2.5"),
        ("RATE_LIMIT_BURST", "10"),
        ("ENABLE_QUOTA", "true"),
        ("QUOTA_COUNT", "1000"),
        ("QUOTA_TIME_WINDOW", "3600"),
        ("GATEWAY_CLIENT_TOKEN_QUOTA_1", "250000"),
        ("ENABLE_CACHE", "true"),
        ("CACHE_TTL", "600"),
        ("CACHE_MAX_BYTES", "1048576"),
    ]));
    e
}

#[test]
fn every_guardrail_on() {
    insta::assert_snapshot!(dry_run(&every_guardrail()).unwrap());
}

/// What the proxy reads from the rendered guardrails: each variable reached its field.
#[test]
fn rendered_guardrails_are_what_the_proxy_reads() {
    use proxy::config::{LimitKey, Strategy};
    use std::time::Duration;
    let config = gateway_config(&every_guardrail());
    let tokens = config.limits.tokens.unwrap();
    assert_eq!(tokens.strategy, Strategy::PromptTokens);
    assert_eq!(tokens.window, Duration::from_secs(120));
    assert_eq!((tokens.high, tokens.low), (50_000, 5_000));
    assert_eq!(tokens.key, LimitKey::Consumer);
    assert_eq!(tokens.reject_status.as_u16(), 429);
    assert_eq!(
        tokens.reject_message,
        "Token budget spent: \"retry\" later # see docs"
    );
    let rate = config.limits.rate.unwrap();
    assert_eq!((rate.per_second, rate.burst), (2.5, 10));
    let quota = config.limits.quota.unwrap();
    assert_eq!(quota.window, Duration::from_secs(3600));
    assert_eq!(quota.requests, Some(1000));
    assert!(config.limits.redis.is_none(), "counters in process");
    let quotas: Vec<_> = config
        .clients
        .consumers
        .iter()
        .map(|c| c.token_quota)
        .collect();
    assert_eq!(quotas, [None, Some(250_000)]);
    let cache = config.cache.unwrap();
    assert_eq!(cache.ttl, Duration::from_secs(600));
    assert_eq!(cache.max_bytes, 1_048_576);
}

/// Shared counters: the request rate and the consumers' token quotas in Redis; the token
/// quotas need the quota's window but count no requests without ENABLE_QUOTA.
fn limits_with_redis_env() -> Env {
    let mut e = weighted();
    e.extend(env(&[
        ("ENABLE_RATE_LIMIT", "true"),
        ("RATE_LIMIT_RATE", "0.5"),
        ("GATEWAY_CLIENT_TOKEN_QUOTA_0", "1000000"),
        ("QUOTA_TIME_WINDOW", "86400"),
        (
            "RATE_LIMIT_REDIS_URL",
            "rediss://default:Redis-Pw-5e1f@aigw.swedencentral.redis.azure.net:10000/0",
        ),
        ("RATE_LIMIT_REDIS_TIMEOUT_MS", "20"),
        ("RATE_LIMIT_REDIS_FAILURE", "closed"),
    ]));
    e
}

#[test]
fn limits_with_redis() {
    let text = dry_run(&limits_with_redis_env()).unwrap();
    insta::assert_snapshot!(text);
    let config = gateway_config(&limits_with_redis_env());
    let redis = config.limits.redis.unwrap();
    assert_eq!(
        redis.url.expose(),
        "rediss://default:Redis-Pw-5e1f@aigw.swedencentral.redis.azure.net:10000/0",
        "the release holds the real URL"
    );
    assert_eq!(redis.timeout, std::time::Duration::from_millis(20));
    assert_eq!(redis.on_failure, proxy::config::Failure::Closed);
    let quota = config.limits.quota.unwrap();
    assert_eq!(
        quota.requests, None,
        "no request quota without ENABLE_QUOTA"
    );
    assert_eq!(config.clients.consumers[0].token_quota, Some(1_000_000));
}

/// The dry run, `explain` and `check` show the Redis URL as its placeholder: not its password,
/// not its host, not its user (a managed Redis host names the deployment, and the whole URL is
/// the secret).
#[test]
fn the_redis_url_is_redacted_wherever_it_is_shown() {
    let root = tempfile::tempdir().unwrap();
    let mut vars = limits_with_redis_env();
    vars.insert("SHARED_ROOT".into(), root.path().display().to_string());
    for args in [
        &["render", "--dry-run"][..],
        &["explain"],
        &["check"],
        &["render"],
    ] {
        let out = hydrenv(args, &vars);
        let text = stdout(&out) + &stderr(&out);
        assert!(out.status.success(), "{args:?}: {text}");
        for part in ["Redis-Pw-5e1f", "aigw.swedencentral", "default:"] {
            assert!(!text.contains(part), "{args:?} shows `{part}`: {text}");
        }
        if args != ["render"] && args != ["check"] {
            assert!(
                text.contains("<redacted:RATE_LIMIT_REDIS_URL>"),
                "{args:?}: {text}"
            );
        }
    }
    let redacted = std::fs::read_to_string(root.path().join("current/rendered.redacted")).unwrap();
    assert!(redacted.contains("url: \"<redacted:RATE_LIMIT_REDIS_URL>\""));
    assert!(!redacted.contains("Redis-Pw-5e1f"));
    let released = std::fs::read_to_string(root.path().join("current/gateway.yaml")).unwrap();
    assert!(released.contains("Redis-Pw-5e1f"), "the release holds it");
}

/// A guardrail whose flag is off renders nothing, its settings kept for when it is turned on
/// (as the health-check variables are with checks off); they are still parsed.
#[test]
fn a_guardrail_that_is_off_renders_nothing_and_its_values_are_still_checked() {
    let off = minimal(&[
        ("ENABLE_AI_RATE_LIMIT", "false"),
        ("AI_RATE_LIMIT_HIGH_LIMIT", "500"),
        ("AI_RATE_LIMIT_STRATEGY", "req"),
        ("ENABLE_RATE_LIMIT", "no"),
        // The upstream accelerator's "off" values.
        ("RATE_LIMIT_RATE", "0"),
        ("RATE_LIMIT_BURST", "0"),
        ("ENABLE_QUOTA", "off"),
        ("QUOTA_COUNT", "0"),
        ("QUOTA_TIME_WINDOW", "0"),
        ("ENABLE_CACHE", "0"),
        ("CACHE_TTL", "60"),
    ]);
    assert_eq!(dry_run(&off).unwrap(), dry_run(&minimal(&[])).unwrap());
    let mut typo = off.clone();
    typo.insert("AI_RATE_LIMIT_HIGH_LIMIT".into(), "5OO".into());
    typo.insert("AI_RATE_LIMIT_STRATEGY".into(), "tokens".into());
    let errors = dry_run(&typo).unwrap_err();
    assert!(
        errors.contains("AI_RATE_LIMIT_HIGH_LIMIT: `5OO` is not a whole number")
            && errors.contains("AI_RATE_LIMIT_STRATEGY: `tokens` is not one of"),
        "{errors}"
    );
}

#[test]
fn guardrails_not_built_yet_are_refused_naming_each_variable() {
    let e = minimal(&[
        ("ENABLE_AI_RATE_LIMIT", "true"),
        ("PRIORITY_SHED_BELOW_TOKENS", "1000"),
        ("ENABLE_IP_RESTRICTION", "true"),
        ("IP_WHITELIST", "10.0.0.0/8"),
        ("TRUSTED_PROXIES", "100.64.0.0/10"),
        ("ENABLE_CORS", "true"),
        ("ENABLE_RESPONSE_REWRITE", "true"),
        ("ENABLE_OIDC", "true"),
        ("RESPONSES_AFFINITY_REDIS_HOST", "redis.internal"),
    ]);
    insta::assert_snapshot!(dry_run(&e).unwrap_err());
    // Off means off, and is accepted.
    assert!(
        dry_run(&minimal(&[
            ("ENABLE_CORS", "no"),
            ("ENABLE_OIDC", "off"),
            ("ENABLE_IP_RESTRICTION", "false")
        ]))
        .is_ok()
    );
}

#[test]
fn test_mode() {
    insta::assert_snapshot!(
        dry_run(&minimal(&[
            ("GATEWAY_E2E_TEST_MODE", "true"),
            ("GATEWAY_LOG_MODE", "test")
        ]))
        .unwrap()
    );
}

#[test]
fn otel_with_app_insights_and_monitor_workspace() {
    insta::assert_snapshot!(
        dry_run(&minimal(&[
            ("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x"),
            ("AZURE_MONITOR_WORKSPACE_ENDPOINT", "https://amw.eastus-1.metrics.ingest.monitor.azure.com/dataCollectionRules/dcr-1/streams/Microsoft-PrometheusMetrics/api/v1/write?api-version=2023-04-24"),
            ("ACA_MANAGED_IDENTITY_CLIENT_ID", "11111111-1111-1111-1111-111111111111"),
            ("ENVIRONMENT", "prod"),
            ("SERVICE_VERSION", "1.2.3"),
            ("CLUSTER_NAME", "aca-eus"),
        ]))
        .unwrap()
    );
}

#[test]
fn debug_exporter_only() {
    insta::assert_snapshot!(
        dry_run(&minimal(&[
            ("ENVIRONMENT", "staging"),
            ("ENABLE_DEBUG_EXPORTER", "true"),
            ("OTEL_BATCH_SIZE", "256")
        ]))
        .unwrap()
    );
}

#[test]
fn secrets_never_appear_in_the_dry_run() {
    let text = dry_run(&weighted()).unwrap();
    for secret in ["sk-eus", "sk-wus", "sk-swc", "ck-a", "ck-b"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    assert!(
        text.contains("<redacted:AZURE_OPENAI_KEY_0>")
            && text.contains("<redacted:GATEWAY_CLIENT_KEY_1>")
    );
}

#[test]
fn hostile_values_cannot_break_or_inject_yaml() {
    // Everything a client could present that YAML treats specially (a key cannot hold
    // whitespace or control characters: see bad_input), so the newline injection is tried
    // through the name.
    let hostile = "k\"ey:{require_auth:false}#'y'[&*!|>%@`,]\\";
    let e = minimal(&[
        (
            "GATEWAY_CLIENT_NAME_0",
            "evil: name\nlane: low\n  require_auth: false",
        ),
        ("GATEWAY_CLIENT_KEY_0", hostile),
        ("GATEWAY_REQUIRE_AUTH", "true"),
    ]);
    let files = hydrenv::app::render(
        &e,
        &Default::default(),
        &hydrenv::render::Templates::embedded().unwrap(),
    )
    .unwrap()
    .files;
    let gateway = files.iter().find(|f| f.name == "gateway.yaml").unwrap();
    let config = proxy::GatewayConfig::parse("gateway.yaml", &gateway.contents).unwrap();
    assert!(config.clients.require_auth);
    assert_eq!(config.clients.consumers.len(), 1);
    assert_eq!(config.clients.consumers[0].key.expose(), hostile);
    assert_eq!(
        &*config.clients.consumers[0].name,
        "evil: name\nlane: low\n  require_auth: false"
    );
    assert_eq!(config.clients.consumers[0].lane, proxy::config::Lane::High);
}

#[test]
fn rendered_configs_are_what_the_proxy_accepts() {
    let files = hydrenv::app::render(
        &weighted(),
        &Default::default(),
        &hydrenv::render::Templates::embedded().unwrap(),
    )
    .unwrap()
    .files;
    let gateway = files.iter().find(|f| f.name == "gateway.yaml").unwrap();
    let config = proxy::GatewayConfig::parse("gateway.yaml", &gateway.contents).unwrap();
    let names: Vec<&str> = config.backends.iter().map(|b| &*b.name).collect();
    assert_eq!(names, ["eus", "wus", "backend-7"]);
    assert_eq!(config.backends[0].weight, 2);
    assert_eq!(
        config.backends[1].authority.as_str(),
        "wus.openai.azure.com"
    );
    assert_eq!(config.backends[1].deployments["mini"], "gpt-4o-mini");
    assert_eq!(config.backends[2].api_key.expose(), "sk-swc");
    assert!(gateway.secret, "holds keys: written 0600");
    let collector = files
        .iter()
        .find(|f| f.name == "otel-collector.yaml")
        .unwrap();
    assert!(!collector.secret);
}

#[test]
fn passive_health_reaches_the_proxy_and_zero_failures_turns_it_off() {
    let gateway = |extra: &[(&str, &str)]| gateway_config(&minimal(extra));
    let defaults = gateway(&[]).upstream.passive_health;
    assert_eq!(defaults.failures, 3);
    assert_eq!(defaults.unhealthy_for, std::time::Duration::from_secs(30));
    let set = gateway(&[
        ("AI_PROXY_PASSIVE_HEALTH_FAILURES", " 5 "),
        ("AI_PROXY_UNHEALTHY_SECONDS", "2.5"),
    ])
    .upstream
    .passive_health;
    assert_eq!(set.failures, 5);
    assert_eq!(set.unhealthy_for, std::time::Duration::from_millis(2500));
    let off = gateway(&[("AI_PROXY_PASSIVE_HEALTH_FAILURES", "0")]);
    assert_eq!(off.upstream.passive_health.failures, 0);
}
