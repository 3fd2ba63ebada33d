//! `AZURE_OPENAI_<KEY>_<N>`: the backends, in index order (gaps allowed).

use serde::Serialize;

use super::{Reader, SecretText};
use super::{checks, groups};
use crate::vars::BACKEND_KEYS;

#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    pub index: u32,
    pub name: String,
    pub endpoint: String,
    pub priority: i64,
    pub weight: u32,
    pub api_key: SecretText,
    pub deployments: Vec<Alias>,
    pub api_version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alias {
    pub alias: String,
    pub deployment: String,
}

const GLOBALS: &[&str] = &["AZURE_OPENAI_TOKEN_RESOURCE", "AZURE_OPENAI_MSI_CLIENT_ID"];
const ENTRA_ALIASES: &[&str] = &["entra", "aad", "entra-id", "entra_id", "managed-identity"];

pub fn read(r: &mut Reader<'_>) -> Vec<Backend> {
    let members = groups::collect(r.env, "AZURE_OPENAI_", BACKEND_KEYS, GLOBALS, &mut r.errors);
    if members.is_empty() {
        r.error("AZURE_OPENAI_ENDPOINT_0", "no backend configured: set AZURE_OPENAI_ENDPOINT_<N> (and AZURE_OPENAI_KEY_<N>) for at least one N");
    }
    let mut names = std::collections::BTreeMap::<String, String>::new();
    let mut backends = Vec::new();
    for (index, vars) in &members {
        let get = |key: &str| vars.get(key).copied();
        let Some((endpoint_var, endpoint)) = get("ENDPOINT") else {
            let (first, _) = vars.values().next().copied().unwrap_or(("", ""));
            r.error(
                &format!("AZURE_OPENAI_ENDPOINT_{index}"),
                format!(
                    "missing: backend {index} is configured ({first} is set) but has no endpoint"
                ),
            );
            continue;
        };
        if let Err(why) = checks::endpoint(endpoint, &r.quote_url(endpoint_var, endpoint)) {
            r.error(endpoint_var, why);
        }
        let name_var = format!("AZURE_OPENAI_NAME_{index}");
        let name =
            get("NAME").map_or_else(|| format!("backend-{index}"), |(_, v)| v.trim().to_owned());
        if let Err(why) = checks::backend_name(&name, &r.quote(&name_var, &name)) {
            r.error(&name_var, why);
        } else if let Some(other) = names.insert(name.clone(), name_var.clone()) {
            let quoted = r.quote(&name_var, &name);
            r.error(
                &name_var,
                format!("backend name `{quoted}` is already used by {other}"),
            );
        }
        let key = get("KEY").map(|(_, v)| v);
        let mode = get("AUTH_MODE").map(|(_, v)| v.trim().to_ascii_lowercase());
        let key_var = format!("AZURE_OPENAI_KEY_{index}");
        let api_key = match (mode.as_deref(), key) {
            (None | Some("api-key"), Some(key)) if !key.is_empty() => {
                if let Err(why) = checks::backend_key(key) {
                    r.error(&key_var, why);
                }
                r.secret(&key_var, key)
            }
            (None, _) => {
                r.error(
                    &format!("AZURE_OPENAI_KEY_{index}"),
                    "missing: set the backend's api-key, or AZURE_OPENAI_AUTH_MODE_N",
                );
                SecretText(String::new())
            }
            (Some("api-key"), _) => {
                r.error(
                    &format!("AZURE_OPENAI_KEY_{index}"),
                    "missing: AZURE_OPENAI_AUTH_MODE is api-key but no key is set",
                );
                SecretText(String::new())
            }
            (Some(m), _) if ENTRA_ALIASES.contains(&m) => {
                r.error(
                    &format!("AZURE_OPENAI_AUTH_MODE_{index}"),
                    "`entra` (managed identity) backend authentication is not built in this version yet; use api-key",
                );
                SecretText(String::new())
            }
            (Some(other), _) => {
                let mode_var = format!("AZURE_OPENAI_AUTH_MODE_{index}");
                let quoted = r.quote(&mode_var, other);
                r.error(&mode_var, format!("`{quoted}` is not api-key or entra"));
                SecretText(String::new())
            }
        };
        for entra_only in ["TOKEN_RESOURCE", "MSI_CLIENT_ID"] {
            if let Some((var, _)) = get(entra_only) {
                r.error(
                    var,
                    super::not_built("Entra ID (managed identity) backend authentication"),
                );
            }
        }
        let priority = get("PRIORITY").map_or(5, |(n, v)| r.int(n, v).unwrap_or(5));
        let weight = get("WEIGHT").map_or(1, |(n, v)| r.u32(n, v).unwrap_or(1));
        let deployments = get("DEPLOYMENTS").map_or_else(Vec::new, |(n, v)| aliases(r, n, v));
        let api_version = get("API_VERSION").map(|(n, v)| r.shown(n, v));
        backends.push(Backend {
            index: *index,
            name: r.shown(&name_var, &name),
            endpoint: r.shown(endpoint_var, endpoint),
            priority,
            weight,
            api_key,
            deployments,
            api_version,
        });
    }
    backends
}

/// `alias=deployment,alias2=deployment2`; one placeholder pair when the list is hidden.
fn aliases(r: &mut Reader<'_>, name: &str, value: &str) -> Vec<Alias> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=').map(|(a, d)| (a.trim(), d.trim())) {
            Some((alias, deployment))
                if checks::deployment_name(alias) && checks::deployment_name(deployment) =>
            {
                out.push(Alias {
                    alias: alias.to_owned(),
                    deployment: deployment.to_owned(),
                })
            }
            Some((alias, deployment)) if !alias.is_empty() && !deployment.is_empty() => {
                let quoted = r.quote(name, pair);
                r.error(
                    name,
                    format!(
                        "`{quoted}`: an alias and a deployment are names without spaces, `/`, `?` or `#` (they go into the request path)"
                    ),
                );
            }
            _ => {
                let quoted = r.quote(name, pair);
                r.error(name, format!("`{quoted}` is not alias=deployment"));
            }
        }
    }
    if r.hides(name) {
        let shown = r.shown(name, value);
        return vec![Alias {
            alias: shown.clone(),
            deployment: shown,
        }];
    }
    out
}
