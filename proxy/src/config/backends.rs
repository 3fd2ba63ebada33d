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
// The key is a `Secret` from the moment it is parsed: `Debug` of a raw config shows `<redacted>`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackendAuth {
    pub mode: RawAuthMode,
    /// The backend's api-key (secret).
    #[schemars(with = "Option<String>")]
    pub api_key: Option<Secret>,
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
            (RawAuthMode::ApiKey, Some(key)) if !key.expose().is_empty() => {
                if let Some(problem) = unsendable(key.expose()) {
                    problems.push(format!("{path}.auth.api_key"), problem);
                }
                key
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
/// into the `Host` header), no query or fragment (the path is ignored). Every problem quotes the
/// endpoint as [`shown_endpoint`] writes it, never as given.
fn endpoint_parts(endpoint: &str, path: &str, problems: &mut Problems) -> (Scheme, Authority) {
    let invalid = (Scheme::HTTP, Authority::from_static("invalid"));
    let shown = shown_endpoint(endpoint);
    let Ok(uri) = endpoint.parse::<Uri>() else {
        problems.push(path, format!("`{shown}` is not a URL"));
        return invalid;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        problems.push(
            path,
            format!("`{shown}` is a relative URL: give scheme and host, e.g. https://eus.openai.azure.com"),
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
        problems.push(path, format!("`{shown}` has no host"));
        return invalid;
    }
    if uri.query().is_some() {
        problems.push(
            path,
            format!("`{shown}` has a query; give the base URL only"),
        );
        return invalid;
    }
    (scheme.clone(), authority.clone())
}

/// An endpoint as a message quotes it: `scheme://host[:port]/path`, any user info as `***@`,
/// never the query or fragment (either may hold a key: `?api-key=...`, a SAS token), control
/// characters escaped. Any text is accepted, URL or not (without `://` it is read as starting
/// with the host, so `user:pw@host` is masked too). An `@` after the host cannot be told apart
/// from a password holding `/`, `?` or `#`: then only the scheme is shown (`https://***`).
pub fn shown_endpoint(endpoint: &str) -> String {
    let text = endpoint.trim();
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, text),
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let shown = if tail.contains('@') {
        "***".to_owned()
    } else {
        let path = tail.split(['?', '#']).next().unwrap_or_default();
        match authority.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}{path}"),
            None => format!("{authority}{path}"),
        }
    };
    let shown = match scheme {
        Some(scheme) => format!("{scheme}://{shown}"),
        None => shown,
    };
    shown.escape_debug().to_string()
}

/// A URI scheme (RFC 3986): a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_shown_without_user_info_query_or_fragment() {
        for (endpoint, shown) in [
            ("https://eus.example", "https://eus.example"),
            (
                "https://eus.example:8443/openai/",
                "https://eus.example:8443/openai/",
            ),
            (
                "https://eus.example/?api-key=SECRET",
                "https://eus.example/",
            ),
            ("https://eus.example?sv=1&sig=SECRET", "https://eus.example"),
            ("https://eus.example/p#SECRET", "https://eus.example/p"),
            (
                "http://user:SECRET@eus.example/p?q=SECRET",
                "http://***@eus.example/p",
            ),
            ("user:SECRET@eus.example", "***@eus.example"),
            ("https://u:SE/CRET@eus.example", "https://***"),
            ("https://u:SE?CRET@eus.example", "https://***"),
            ("https://eus.example/?mail=a@SECRET", "https://***"),
            ("eus.openai.azure.com", "eus.openai.azure.com"),
            (" https://eus.example\n", "https://eus.example"),
            ("https://ho\nst/", "https://ho\\nst/"),
        ] {
            assert_eq!(shown_endpoint(endpoint), shown, "{endpoint}");
        }
    }

    #[test]
    fn a_raw_backend_key_never_prints_itself() {
        let auth: RawBackendAuth =
            serde_json::from_str(r#"{ "mode": "api-key", "api_key": "sk-SECRET-3f1a" }"#).unwrap();
        let shown = format!("{auth:?}");
        assert!(!shown.contains("sk-SECRET-3f1a"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(
            auth.api_key.map(|k| k.expose().to_owned()).as_deref(),
            Some("sk-SECRET-3f1a")
        );
    }
}
