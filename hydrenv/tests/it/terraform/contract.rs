//! The split of the variable table between the workload stage's two maps: the lists in
//! `terraform/30-workload/env_contract.tf` are exactly `vars.rs`, and the validations of
//! `app_settings` and `secrets` accept every variable in its map and refuse it in the other.

use std::collections::BTreeSet;

use hydrenv::vars::{self, VARS};

use super::stage::{Stage, object};
use super::{WORKLOAD, concrete, one, platform_injected, workload_inputs};

fn set(items: Vec<String>) -> BTreeSet<String> {
    items.into_iter().collect()
}

/// `expected` and `actual` as two sets, with what each lacks.
fn assert_same(what: &str, expected: BTreeSet<String>, actual: BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing (in vars.rs, not in terraform/30-workload/env_contract.tf): {missing:?}; \
         extra (not in vars.rs): {extra:?}"
    );
}

#[test]
fn the_workload_env_lists_are_the_variable_table() {
    let stage = Stage::load(WORKLOAD);
    let eval = stage.evaluate(&workload_inputs("dev"));
    let platform = platform_injected();
    assert!(
        !platform.is_empty(),
        "vars.rs lists the Container Apps identity variables"
    );
    let pick = |secret: bool, group: bool| -> BTreeSet<String> {
        VARS.iter()
            .filter(|v| v.secret == secret && v.name.ends_with("_N") == group)
            .filter(|v| !platform.contains(v.name))
            .map(|v| v.name.strip_suffix("_N").unwrap_or(v.name).to_owned())
            .collect()
    };
    assert_same(
        "plain_env_names",
        pick(false, false),
        set(eval.strings("plain_env_names")),
    );
    assert_same(
        "plain_env_groups",
        pick(false, true),
        set(eval.strings("plain_env_groups")),
    );
    assert_same(
        "secret_env_names",
        pick(true, false),
        set(eval.strings("secret_env_names")),
    );
    assert_same(
        "secret_env_groups",
        pick(true, true),
        set(eval.strings("secret_env_groups")),
    );
    assert_same(
        "platform_env_names",
        platform.iter().map(|s| (*s).to_owned()).collect(),
        set(eval.strings("platform_env_names")),
    );
    // The defaults the stage builds ports and the mount path from are the table's.
    for (local, var) in [
        ("default_listen", "GATEWAY_LISTEN"),
        ("default_admin_listen", "GATEWAY_ADMIN_LISTEN"),
        ("default_shared_root", "SHARED_ROOT"),
    ] {
        assert_eq!(
            eval.local(local).as_str(),
            Some(vars::find(var).unwrap().default),
            "local.{local} must be the default of {var}"
        );
    }
    assert_eq!(eval.local("listen_port").as_u64(), Some(8080));
    assert_eq!(eval.local("admin_port").as_u64(), Some(9091));
}

#[test]
fn every_variable_goes_through_exactly_one_map() {
    let stage = Stage::load(WORKLOAD);
    let eval = stage.evaluate(&workload_inputs("dev"));
    let platform = platform_injected();
    let mut problems = Vec::new();
    for var in VARS {
        for name in concrete(var.name) {
            let as_setting = eval.refusals(&stage, "app_settings", one(&name));
            let as_secret = eval.refusals(&stage, "secrets", one(&name));
            let (setting_ok, secret_ok) = if platform.contains(var.name) {
                (false, false)
            } else {
                (!var.secret, var.secret)
            };
            if as_setting.is_empty() != setting_ok {
                problems.push(format!("{name} in app_settings: expected accepted={setting_ok}, refusals {as_setting:?}"));
            }
            if as_secret.is_empty() != secret_ok {
                problems.push(format!(
                    "{name} in secrets: expected accepted={secret_ok}, refusals {as_secret:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn names_hydrenv_does_not_know_are_refused_in_both_maps() {
    let stage = Stage::load(WORKLOAD);
    let eval = stage.evaluate(&workload_inputs("dev"));
    for typo in [
        "AZURE_OPENAI_ENDPONT_0",
        "AZURE_OPENAI_ENDPOINT_N",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_KEY",
        "AZURE_OPENAI_KEY_x",
        "GATEWAY_CLIENT_KEY_",
        "LB_ALGO",
        "lb_alg",
        "SECRET",
    ] {
        for map in ["app_settings", "secrets"] {
            assert!(
                !eval.refusals(&stage, map, one(typo)).is_empty(),
                "{typo} must be refused in {map}"
            );
        }
    }
    // A secret variable may stand in app_settings as a Key Vault reference, never with a value.
    for reference in [
        "kv://gateway-client-key-3",
        " kv://gateway-client-key-3/0123abcd",
        "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/gateway-client-key-3)",
        "@microsoft.keyvault(VaultName=kv;SecretName=gateway-client-key-3)",
    ] {
        let setting = object([("GATEWAY_CLIENT_KEY_3", reference)]);
        assert!(
            eval.refusals(&stage, "app_settings", setting).is_empty(),
            "{reference}"
        );
    }
    for value in [
        "sk-plain",
        "https://kv.vault.azure.net/secrets/x",
        "KV://x",
        "x kv://y",
    ] {
        let setting = object([("OIDC_CLIENT_SECRET", value)]);
        assert!(
            !eval.refusals(&stage, "app_settings", setting).is_empty(),
            "{value}"
        );
    }
    // A secret's message sends it to `secrets`, not to the typo list.
    let refused = eval.refusals(&stage, "app_settings", one("GATEWAY_CLIENT_KEY_3"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("put it in secrets"), "{refused:?}");
    // Empty secret values are refused (leave the variable out instead).
    assert!(
        !eval
            .refusals(&stage, "secrets", object([("GATEWAY_CLIENT_KEY_0", "")]))
            .is_empty()
    );
    // The 20-openai maps are held to the same split.
    assert!(
        eval.refusals(
            &stage,
            "openai_app_settings",
            one("AZURE_OPENAI_ENDPOINT_3")
        )
        .is_empty()
    );
    assert!(
        !eval
            .refusals(&stage, "openai_app_settings", one("AZURE_OPENAI_KEY_3"))
            .is_empty()
    );
    assert!(
        eval.refusals(&stage, "openai_secrets", one("AZURE_OPENAI_KEY_3"))
            .is_empty()
    );
    assert!(
        !eval
            .refusals(&stage, "openai_secrets", one("AZURE_OPENAI_NAME_3"))
            .is_empty()
    );
}
