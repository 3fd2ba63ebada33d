//! `hydrenv explain` and `docs/configuration.md`, both generated from `vars::VARS`.

use std::fmt::Write as _;

use crate::env::Env;
use crate::redact;
use crate::settings::Settings;
use crate::vars::{self, Status, VARS};

/// Every variable with its default, current value (secrets redacted) and what it controls,
/// then the effective routing table in words.
pub fn explain(env: &Env, settings: Option<&Settings>) -> String {
    let mut out = String::from("Variables (current value; secrets redacted):\n");
    for var in VARS {
        let current: Vec<String> = if var.name.ends_with("_N") {
            let prefix = &var.name[..var.name.len() - 1];
            env.iter()
                .filter(|(k, _)| {
                    k.strip_prefix(prefix)
                        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                })
                .map(|(k, v)| format!("{k}={}", shown(k, v)))
                .collect()
        } else {
            env.get(var.name)
                .map(|v| vec![shown(var.name, v)])
                .unwrap_or_default()
        };
        let default = if var.default.is_empty() {
            "-"
        } else {
            var.default
        };
        let status = match var.status {
            Status::Built => var.target.label().to_owned(),
            Status::NotBuilt(feature) => format!("not built yet: {feature}"),
        };
        let _ = writeln!(
            out,
            "  {:<48} default {:<12} [{status}] {}",
            var.name, default, var.help
        );
        for value in current {
            let _ = writeln!(out, "      = {value}");
        }
    }
    if let Some(settings) = settings {
        out.push_str("\nRouting:\n");
        out.push_str(&routing(settings));
    }
    out
}

/// A current value as `explain` shows it: a Key Vault reference as itself (it names a secret,
/// it is not one), a secret as its placeholder, anything else with URL userinfo masked.
fn shown(name: &str, value: &str) -> String {
    let trimmed = value.trim_start();
    let is_reference = trimmed
        .get(..20)
        .is_some_and(|p| p.eq_ignore_ascii_case("@Microsoft.KeyVault("))
        || trimmed.starts_with("kv://");
    if is_reference {
        format!("<Key Vault reference {}>", redact::mask_userinfo(value))
    } else if vars::is_secret(name) {
        redact::placeholder(name)
    } else {
        redact::mask_userinfo(value).into_owned()
    }
}

/// The routing table in words: tiers from first to last, weights, auth, balancing.
pub fn routing(settings: &Settings) -> String {
    let mut out = String::new();
    let mut tiers: Vec<i64> = settings.backends.iter().map(|b| b.priority).collect();
    tiers.sort_unstable_by(|a, b| b.cmp(a));
    tiers.dedup();
    let how = match settings.balancer.algorithm.as_str() {
        "chash" => format!(
            "consistent hashing on {}{}",
            settings.balancer.hash_on.as_deref().unwrap_or("consumer"),
            settings
                .balancer
                .hash_key
                .as_deref()
                .map(|k| format!(" `{k}`"))
                .unwrap_or_default()
        ),
        _ => "smooth weighted round-robin".to_owned(),
    };
    for (n, priority) in tiers.iter().enumerate() {
        let members: Vec<String> = settings
            .backends
            .iter()
            .filter(|b| b.priority == *priority)
            .map(|b| format!("{} ({}, weight {}, api-key)", b.name, b.endpoint, b.weight))
            .collect();
        let when = if n == 0 {
            "first".to_owned()
        } else {
            "only when every backend above is throttled, unhealthy or failed".to_owned()
        };
        let _ = writeln!(
            out,
            "  tier {} (priority {priority}), used {when}, {how}: {}",
            n + 1,
            members.join("; ")
        );
    }
    let _ = writeln!(
        out,
        "  failover on: {}; clients: {} ({})",
        settings.upstream.failover_on.join(", "),
        settings.clients.len(),
        if settings.require_auth {
            "a key is required"
        } else {
            "keys optional"
        }
    );
    out
}

/// The configuration guide, `docs/configuration.md` (a test fails when the file is stale).
pub fn configuration_doc() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from `hydrenv/src/vars.rs` (`hydrenv explain` prints the same table with current values).\n\
         Regenerate with `cargo run -p hydrenv -- docs > docs/configuration.md`.\n\n\
         Group variables end in an index `_N`: backends `AZURE_OPENAI_<KEY>_<N>` may have gaps, clients\n\
         `GATEWAY_CLIENT_<KEY>_<N>` are contiguous from 0. Booleans take true/false, 1/0, yes/no, on/off.\n\
         Seconds take a number or a unit (`500ms`, `30s`, `5m`). Any value may be a Key Vault reference\n\
         (`@Microsoft.KeyVault(SecretUri=...)`, `@Microsoft.KeyVault(VaultName=...;SecretName=...)`,\n\
         `kv://name[/version]`). A variable marked *not built yet* is refused when set (an `ENABLE_*` flag\n\
         may be `false`), so no setting is ever silently ignored.\n\n\
         | Variable | Default | Secret | Goes to | Meaning |\n|---|---|---|---|---|\n",
    );
    for var in VARS {
        let target = match var.status {
            Status::Built => var.target.label().to_owned(),
            Status::NotBuilt(feature) => format!("*not built yet* ({feature})"),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            var.name,
            if var.default.is_empty() {
                "".to_owned()
            } else {
                format!("`{}`", var.default)
            },
            if var.secret { "yes" } else { "" },
            target,
            var.help.replace('|', "\\|")
        );
    }
    out
}
