//! `backends`: the Azure OpenAI deployments behind the gateway, in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use http::Uri;
use http::uri::{Authority, Scheme};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Problems;
use crate::secret::Secret;

pub const DEFAULT_PRIORITY: i64 = 5;
pub const DEFAULT_WEIGHT: u32 = 1;

/// One entry of `backends`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// Unique id used in metrics, logs and `x-gateway-backend` (visible ASCII, no spaces).
    pub name: String,
    /// Base URL, e.g. `https://eus.openai.azure.com` (any path is ignored; no user info, query
    /// or fragment).
    pub endpoint: String,
    /// Priority tier; higher is tried first. Default 5.
    pub priority: Option<i64>,
    /// Weight inside the tier; 0 = only by affinity. Default 1.
    pub weight: Option<u32>,
    /// How the gateway authenticates to this backend.
    pub auth: RawBackendAuth,
    /// Deployment aliases: `alias: real-deployment`. Rewrites the legacy deployment segment and the v1 `model`.
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
    /// Forces this `api-version` on legacy paths sent to this backend.
    pub api_version: Option<String>,
}

/// `backends[].auth`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackendAuth {
    pub mode: RawAuthMode,
    /// The backend's api-key (secret).
    pub api_key: Option<String>,
}

/// How the gateway authenticates to a backend.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawAuthMode {
    /// `api-key: <key>` (the only mode in this build).
    ApiKey,
    /// A managed-identity token (not built yet: refused).
    Entra,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    pub priority: i64,
    pub weight: u32,
    pub api_key: Secret,
    /// alias -> real deployment name on this backend.
    pub deployments: HashMap<String, String>,
    pub api_version: Option<String>,
}

impl BackendConfig {
    /// The deployment `name` is on this backend: its alias target, else `name` itself. Most
    /// backends have no aliases: then nothing is hashed.
    pub fn deployment<'a>(&'a self, name: &'a str) -> &'a str {
        if self.deployments.is_empty() {
            return name;
        }
        self.deployments.get(name).map_or(name, String::as_str)
    }

    /// The alias target of `name`, if this backend has one.
    pub fn alias(&self, name: &str) -> Option<&str> {
        if self.deployments.is_empty() {
            return None;
        }
        self.deployments.get(name).map(String::as_str)
    }
}

pub(super) fn resolve(raw: Vec<RawBackend>, problems: &mut Problems) -> Vec<BackendConfig> {
    if raw.is_empty() {
        problems.push("backends", "at least one backend is required");
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, backend) in raw.into_iter().enumerate() {
        let RawBackend {
            name,
            endpoint,
            priority,
            weight,
            auth,
            deployments,
            api_version,
        } = backend;
        let path = format!("backends[{i}]");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            problems.push(
                format!("{path}.name"),
                "must be non-empty visible ASCII without spaces (it is sent as x-gateway-backend)",
            );
        } else if !names.insert(name.clone()) {
            problems.push(
                format!("{path}.name"),
                format!("`{name}` is used by another backend"),
            );
        }
        let (scheme, authority) = endpoint_parts(&endpoint, &format!("{path}.endpoint"), problems);
        let RawBackendAuth { mode, api_key } = auth;
        let api_key = match (mode, api_key) {
            (RawAuthMode::ApiKey, Some(key)) if !key.is_empty() => {
                if let Some(problem) = unsendable(&key) {
                    problems.push(format!("{path}.auth.api_key"), problem);
                }
                Secret::new(key)
            }
            (RawAuthMode::ApiKey, _) => {
                problems.push(
                    format!("{path}.auth.api_key"),
                    "required when auth.mode is api-key",
                );
                Secret::new("")
            }
            (RawAuthMode::Entra, _) => {
                problems.push(
                    format!("{path}.auth.mode"),
                    "`entra` is not supported by this build yet; use api-key",
                );
                Secret::new("")
            }
        };
        for (alias, target) in &deployments {
            if alias.is_empty() || target.is_empty() || target.contains(['/', '?', '#']) {
                problems.push(
                    format!("{path}.deployments.{alias}"),
                    "alias and deployment must be non-empty names without `/`, `?` or `#`",
                );
            }
        }
        if let Some(version) = &api_version
            && (version.is_empty()
                || !version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            problems.push(
                format!("{path}.api_version"),
                format!("`{version}` is not an api-version"),
            );
        }
        out.push(BackendConfig {
            name: Arc::from(name),
            scheme,
            authority,
            priority: priority.unwrap_or(DEFAULT_PRIORITY),
            weight: weight.unwrap_or(DEFAULT_WEIGHT),
            api_key,
            deployments: deployments.into_iter().collect::<HashMap<_, _>>(),
            api_version,
        });
    }
    if !out.is_empty() && out.iter().all(|b| b.weight == 0) {
        problems.push(
            "backends",
            "every backend has weight 0: none could ever be picked",
        );
    }
    out
}

/// Scheme and authority of an endpoint: `http` or `https`, a host, no user info (it would go
/// into the `Host` header and into every message that names the endpoint), no query or fragment
/// (the path is ignored). An endpoint that is not one is reported without its text when it
/// carries user info.
fn endpoint_parts(endpoint: &str, path: &str, problems: &mut Problems) -> (Scheme, Authority) {
    let invalid = (Scheme::HTTP, Authority::from_static("invalid"));
    let Ok(uri) = endpoint.parse::<Uri>() else {
        let shown = if endpoint.contains('@') {
            "the endpoint"
        } else {
            endpoint
        };
        problems.push(path, format!("`{shown}` is not a URL"));
        return invalid;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        problems.push(
            path,
            format!("`{endpoint}` is a relative URL: give scheme and host, e.g. https://eus.openai.azure.com"),
        );
        return invalid;
    };
    if authority.as_str().contains('@') {
        problems.push(
            path,
            "must not carry user info (`user:password@`): backends authenticate with auth.api_key",
        );
        return invalid;
    }
    if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
        problems.push(path, format!("scheme `{scheme}` is not http or https"));
        return invalid;
    }
    if authority.host().is_empty() {
        problems.push(path, format!("`{endpoint}` has no host"));
        return invalid;
    }
    if uri.query().is_some() {
        problems.push(
            path,
            format!("`{endpoint}` has a query; give the base URL only"),
        );
        return invalid;
    }
    (scheme.clone(), authority.clone())
}

/// Why a secret cannot be sent as a header value as it is, if it cannot: a control character
/// (usually the trailing newline of `echo key > file`) or surrounding whitespace, which the
/// receiving side strips. The message never contains the value.
pub fn unsendable(value: &str) -> Option<&'static str> {
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Some(
            "contains a control character (a trailing newline, often from `echo` into a secret file?): it cannot be sent in a header",
        );
    }
    if value.trim() != value {
        return Some("starts or ends with whitespace, which a receiver strips");
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Some("cannot be sent in a header");
    }
    None
}
