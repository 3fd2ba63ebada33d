//! The mapping covers every field the template renders, and names the right index.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::env::Env;
use crate::render::{MANIFEST, Templates};
use crate::vars;

/// Every optional section of the template on; backends at indexes 0 and 5.
fn everything_on() -> Env {
    [
        ("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com"),
        ("AZURE_OPENAI_KEY_0", "k0"),
        ("AZURE_OPENAI_ENDPOINT_5", "https://wus.openai.azure.com"),
        ("AZURE_OPENAI_KEY_5", "k5"),
        ("AZURE_OPENAI_NAME_5", "wus"),
        ("AZURE_OPENAI_PRIORITY_5", "1"),
        ("AZURE_OPENAI_WEIGHT_5", "2"),
        ("AZURE_OPENAI_DEPLOYMENTS_5", "gpt-4o=gpt-4o-wus"),
        ("AZURE_OPENAI_API_VERSION_5", "2024-10-21"),
        ("AI_PROXY_MAX_ATTEMPTS", "2"),
        ("APISIX_ACTIVE_HEALTH_CHECKS", "true"),
        ("APISIX_ACTIVE_HEALTH_CHECK_SCHEME", "https"),
        ("LB_ALG", "chash"),
        ("LB_HASH_ON", "header"),
        ("LB_HASH_KEY", "x-session-id"),
        ("GATEWAY_CLIENT_NAME_0", "a"),
        ("GATEWAY_CLIENT_KEY_0", "ka"),
        ("GATEWAY_CLIENT_NAME_1", "b"),
        ("GATEWAY_CLIENT_KEY_1", "kb"),
        ("GATEWAY_CLIENT_TOKEN_QUOTA_1", "100000"),
        ("ENABLE_AI_RATE_LIMIT", "true"),
        ("ENABLE_RATE_LIMIT", "true"),
        ("RATE_LIMIT_RATE", "10"),
        ("ENABLE_QUOTA", "true"),
        ("QUOTA_COUNT", "1000"),
        ("QUOTA_TIME_WINDOW", "3600"),
        ("RATE_LIMIT_REDIS_URL", "redis://localhost"),
        ("ENABLE_CACHE", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn settings() -> Settings {
    crate::settings::read(&everything_on(), &Default::default()).unwrap()
}

/// Leaf paths of a YAML document, written as serde_path_to_error writes them.
fn leaves(value: &Value, path: String, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                leaves(value, join(key), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(path),
    }
}

#[test]
fn every_field_the_template_renders_has_an_origin() {
    let settings = settings();
    let files = Templates::embedded().unwrap().render(&settings).unwrap();
    let gateway = files.iter().find(|f| f.name == "gateway.yaml").unwrap();
    let doc: Value = serde_saphyr::from_str(&gateway.contents).unwrap();
    let mut paths = Vec::new();
    leaves(&doc, String::new(), &mut paths);
    let mut problems = Vec::new();
    for path in &paths {
        match origin(path, &settings) {
            None => problems.push(format!("{path}: no origin in fields.rs")),
            Some(Origin::Template) => {}
            Some(Origin::Variables(names)) => {
                for name in names {
                    let known = vars::find(&vars::documented_form(&name));
                    if !known.is_some_and(|v| v.status == vars::Status::Built) {
                        problems.push(format!("{path}: {name} is not a built variable"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The fixture reaches every key the template can write (each `{% if %}` branch), so a new
    // field cannot hide from this test behind a condition.
    let rendered: BTreeSet<&str> = paths.iter().flat_map(|p| p.split(['.', '['])).collect();
    let source = MANIFEST[0].2;
    for line in source.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        let Some((key, _)) = line.split_once(':') else {
            continue;
        };
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            assert!(
                rendered.contains(key),
                "the template writes `{key}`, which the fixture does not render: turn it on in everything_on()"
            );
        }
    }
}

#[test]
fn indexes_become_the_variables_of_that_member() {
    let settings = settings();
    let vars = |path: &str| match origin(path, &settings) {
        Some(Origin::Variables(names)) => names.join(", "),
        other => format!("{other:?}"),
    };
    assert_eq!(vars("backends[1].endpoint"), "AZURE_OPENAI_ENDPOINT_5");
    assert_eq!(vars("backends[0].auth.api_key"), "AZURE_OPENAI_KEY_0");
    assert_eq!(vars("backends[1].auth.mode"), "AZURE_OPENAI_AUTH_MODE_5");
    assert_eq!(
        vars("backends[1].deployments.gpt-4o"),
        "AZURE_OPENAI_DEPLOYMENTS_5"
    );
    assert_eq!(
        vars("backends"),
        "AZURE_OPENAI_WEIGHT_0, AZURE_OPENAI_WEIGHT_5"
    );
    assert_eq!(vars("clients.consumers[1].key"), "GATEWAY_CLIENT_KEY_1");
    assert_eq!(
        vars("clients.consumers[0].lane"),
        "GATEWAY_CLIENT_PRIORITY_0"
    );
    assert_eq!(
        vars("upstream.failover_on[1]"),
        "AI_PROXY_FALLBACK_STRATEGY"
    );
    assert_eq!(
        vars("upstream.active_health.path"),
        "APISIX_ACTIVE_HEALTH_CHECK_PATH"
    );
    assert_eq!(
        vars("upstream.active_health.enabled"),
        "APISIX_ACTIVE_HEALTH_CHECKS"
    );
    assert_eq!(vars("server.listen"), "GATEWAY_LISTEN");
    assert_eq!(
        vars("clients.consumers[1].token_quota"),
        "GATEWAY_CLIENT_TOKEN_QUOTA_1"
    );
    assert_eq!(
        vars("clients.consumers"),
        "GATEWAY_CLIENT_TOKEN_QUOTA_1, QUOTA_TIME_WINDOW"
    );
    assert_eq!(vars("limits.redis.url"), "RATE_LIMIT_REDIS_URL");
    assert_eq!(vars("limits.redis"), "RATE_LIMIT_REDIS_URL");
    assert_eq!(vars("limits.quota.window"), "QUOTA_TIME_WINDOW");
    assert_eq!(vars("limits.tokens.high"), "AI_RATE_LIMIT_HIGH_LIMIT");
    assert_eq!(vars("cache.ttl"), "CACHE_TTL");
    assert_eq!(origin("log.level", &settings), Some(Origin::Template));
    for unknown in [
        "backends[7].name",
        "backends[0]",
        "clients.consumers[2].key",
        "listen",
        "serverx.listen",
    ] {
        assert_eq!(origin(unknown, &settings), None, "{unknown}");
    }
}

#[test]
fn problems_are_reported_by_variable_with_the_path_after() {
    let settings = settings();
    let attribute =
        |problem: &str| attribute(problem, "gateway.yaml", "gateway.yaml.tera", &settings);
    assert_eq!(
        attribute("backends[1].weight: invalid u32 at line 23, column 13"),
        "AZURE_OPENAI_WEIGHT_5: invalid u32 at line 23, column 13 (gateway.yaml: backends[1].weight)"
    );
    assert_eq!(
        attribute("version: unsupported version 2"),
        "templates/gateway.yaml.tera: unsupported version 2 (gateway.yaml: version)"
    );
    assert_eq!(
        attribute("did not find expected key"),
        "gateway.yaml (rendered from templates/gateway.yaml.tera) would be rejected: did not find expected key"
    );
}
