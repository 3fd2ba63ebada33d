//! What the containers get: the env of the gateway and of the init container is built from the
//! two maps only (plain values and Key Vault secret references through the gateway identity),
//! with what the stage adds itself underneath.

use std::collections::BTreeSet;

use hcl::{Map, Value};
use hydrenv::vars::{self, VARS};

use super::stage::{self, Stage, attr, blocks, label, src};
use super::{WORKLOAD, concrete, platform_injected, upstream_outputs, workload_inputs};

/// The `dynamic "env"` blocks of a container: (for_each, name, value, secret_name).
fn dynamic_envs(container: &hcl::Block) -> Vec<[String; 4]> {
    blocks(container.body(), "dynamic")
        .filter(|d| label(d, 0) == "env")
        .map(|d| {
            let content = blocks(d.body(), "content").next().unwrap().body();
            [
                src(attr(d.body(), "for_each")),
                src(attr(content, "name")),
                src(attr(content, "value")),
                src(attr(content, "secret_name")),
            ]
        })
        .collect()
}

#[test]
fn the_containers_get_app_settings_as_values_and_secrets_as_references() {
    let stage = Stage::load(WORKLOAD);
    let app = stage.resource("azurerm_container_app", "gateway");
    let template = blocks(app.body(), "template").next().unwrap();
    let named = |kind: &str, name: &str| {
        blocks(template.body(), kind)
            .find(|c| stage::text(c.body(), "name").as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    };
    let plain = ["local.plain_env", "env.key", "env.value", ""].map(String::from);
    let secret = ["local.secret_env", "env.key", "", "env.value"].map(String::from);
    // The gateway and the init container that renders first see the same environment, built
    // only from the two maps: plain values, and secret references.
    for container in [
        named("container", "gateway"),
        named("init_container", "render-config"),
    ] {
        assert_eq!(dynamic_envs(container), vec![plain.clone(), secret.clone()]);
        assert_eq!(
            blocks(container.body(), "env").count(),
            0,
            "no env outside the two maps"
        );
        let mount = blocks(container.body(), "volume_mounts").next().unwrap();
        assert_eq!(src(attr(mount.body(), "path")), "local.shared_root");
    }
    // The sidecar gets no plain value that is a secret.
    for env in blocks(named("container", "otel-collector").body(), "env") {
        let name = stage::text(env.body(), "name").unwrap();
        assert!(
            !vars::is_secret(&name) && attr(env.body(), "value").is_some(),
            "{name}"
        );
    }
    for [_, _, value, secret_name] in dynamic_envs(named("container", "otel-collector")) {
        assert!(
            value.is_empty() && !secret_name.is_empty(),
            "the sidecar's secrets are references"
        );
    }
    // Each secret reference is a Key Vault secret read with the gateway identity.
    let references: Vec<_> = blocks(app.body(), "dynamic")
        .filter(|d| label(d, 0) == "secret")
        .collect();
    assert_eq!(references.len(), 1);
    let content = blocks(references[0].body(), "content")
        .next()
        .unwrap()
        .body();
    assert_eq!(
        src(attr(references[0].body(), "for_each")),
        "local.secret_env"
    );
    assert_eq!(src(attr(content, "name")), "secret.value");
    assert_eq!(
        src(attr(content, "key_vault_secret_id")),
        "azurerm_key_vault_secret.env[secret.key].versionless_id"
    );
    assert_eq!(src(attr(content, "identity")), "var.gateway_identity_id");
    assert!(
        attr(content, "value").is_none(),
        "no secret value in the app"
    );
    let kv = stage.resource("azurerm_key_vault_secret", "env");
    assert_eq!(src(attr(kv.body(), "for_each")), "local.secret_env");
    assert_eq!(src(attr(kv.body(), "name")), "each.value");
    assert_eq!(
        src(attr(kv.body(), "value")),
        "local.secret_values[each.key]"
    );

    // And what the maps turn into: every variable of the table at once.
    let mut inputs = workload_inputs("dev");
    let mut settings = Map::new();
    let mut secrets = Map::new();
    for var in VARS
        .iter()
        .filter(|v| !platform_injected().contains(v.name))
    {
        for name in concrete(var.name) {
            let value = match name.as_str() {
                "GATEWAY_LISTEN" => "0.0.0.0:8000".to_owned(),
                "GATEWAY_ADMIN_LISTEN" => "0.0.0.0:9000".to_owned(),
                "SHARED_ROOT" => "/mnt/releases".to_owned(),
                _ => format!("value of {name}"),
            };
            let map = if var.secret {
                &mut secrets
            } else {
                &mut settings
            };
            map.insert(name, Value::from(value));
        }
    }
    inputs.insert("app_settings".into(), Value::Object(settings.clone()));
    inputs.insert("secrets".into(), Value::Object(secrets.clone()));
    let eval = stage.evaluate(&inputs);
    for (map, value) in [("app_settings", &settings), ("secrets", &secrets)] {
        let refused = eval.refusals(&stage, map, Value::Object(value.clone()));
        assert!(refused.is_empty(), "{map}: {refused:?}");
    }
    assert_eq!(eval.local("listen_port").as_u64(), Some(8000));
    assert_eq!(eval.local("admin_port").as_u64(), Some(9000));
    assert_eq!(eval.local("shared_root").as_str(), Some("/mnt/releases"));
    let plain_env = eval.local("plain_env").as_object().unwrap().clone();
    for (name, value) in &settings {
        assert_eq!(
            plain_env.get(name),
            Some(value),
            "app_settings wins: {name}"
        );
    }
    let secret_env = eval.local("secret_env").as_object().unwrap().clone();
    let secret_values = eval.local("secret_values").as_object().unwrap().clone();
    for (name, value) in &secrets {
        let kebab = name.to_lowercase().replace('_', "-");
        assert_eq!(
            secret_env.get(name).and_then(Value::as_str),
            Some(kebab.as_str())
        );
        assert_eq!(secret_values.get(name), Some(value), "secrets win: {name}");
        assert!(
            !plain_env.contains_key(name),
            "{name} is never a plain value"
        );
    }
    for (name, value) in &plain_env {
        let reference = value.as_str().is_some_and(|v| v.starts_with("kv://"));
        assert!(
            !vars::is_secret(name) || reference,
            "{name} is secret but plain"
        );
    }
}

#[test]
fn the_stage_adds_identity_vault_and_telemetry_settings_under_the_maps() {
    let stage = Stage::load(WORKLOAD);
    let upstream = upstream_outputs();
    let eval = stage.evaluate(&workload_inputs("dev"));
    let plain_env = eval.local("plain_env").as_object().unwrap();
    let up = |name: &str| upstream[name].as_str().unwrap().to_owned();
    for (name, expected) in [
        ("KEY_VAULT_URI", up("key_vault_uri")),
        ("AZURE_CLIENT_ID", up("gateway_identity_client_id")),
        (
            "ACA_MANAGED_IDENTITY_CLIENT_ID",
            up("gateway_identity_client_id"),
        ),
        (
            "AZURE_MONITOR_WORKSPACE_ENDPOINT",
            up("azure_monitor_workspace_endpoint"),
        ),
        (
            "SHARED_ROOT",
            vars::find("SHARED_ROOT").unwrap().default.to_owned(),
        ),
        ("ENVIRONMENT", "dev".to_owned()),
    ] {
        assert_eq!(
            plain_env.get(name).and_then(Value::as_str),
            Some(expected.as_str()),
            "{name}"
        );
    }
    // 20-openai's backends arrive as plain settings and its keys as secrets.
    for (name, value) in upstream["openai_app_settings"].as_object().unwrap() {
        assert_eq!(plain_env.get(name), Some(value), "{name}");
    }
    let names: BTreeSet<String> = eval.strings("secret_names").into_iter().collect();
    let expected: BTreeSet<String> = [
        "AZURE_OPENAI_KEY_0",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected, "the dev example sets no secret itself");
    let values = eval.local("secret_values").as_object().unwrap();
    assert_eq!(
        values["APPLICATIONINSIGHTS_CONNECTION_STRING"],
        upstream["app_insights_connection_string"]
    );
}
