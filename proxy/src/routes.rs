//! Which Azure OpenAI route a request path is, and how its path is rewritten for a backend.
//!
//! Classification happens once per request on the borrowed path; the rewritten upstream
//! path and query are built per attempt because deployment aliases differ between backends.

use std::fmt::Write as _;

use crate::config::BackendConfig;

/// Path prefixes of the test-mode aliases (`GATEWAY_E2E_TEST_MODE`), removed before forwarding.
pub const TEST_PREFIXES: &[&str] = &[
    "/round-robin-simple-v2",
    "/round-robin-weighted-v2",
    "/round-robin-simple",
    "/round-robin-weighted",
    "/usage-tracking",
    "/retry-with-payg-v2",
    "/retry-with-payg",
    "/latency-routing",
    "/prioritization-simple",
];

/// The API family of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/openai/deployments/{deployment}/...`
    Legacy,
    /// `/openai/responses...` (legacy api-version style, no deployment)
    LegacyResponses,
    /// `/openai/v1/...`
    V1,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::Legacy => "legacy",
            Family::LegacyResponses => "legacy_responses",
            Family::V1 => "v1",
        }
    }
}

/// What the request does; a low-cardinality label and the key to body handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Embeddings,
    ResponsesCreate,
    ResponsesItem,
    ResponsesCancel,
    ResponsesInputItems,
    Models,
    Other,
}

impl Operation {
    pub fn label(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat_completions",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
            Operation::ResponsesCreate => "responses",
            Operation::ResponsesItem => "responses_item",
            Operation::ResponsesCancel => "responses_cancel",
            Operation::ResponsesInputItems => "responses_input_items",
            Operation::Models => "models",
            Operation::Other => "other",
        }
    }

    /// Operations whose bodies are JSON the gateway may read (stream flag, model, usage).
    pub fn has_json_body(self) -> bool {
        matches!(
            self,
            Operation::ChatCompletions
                | Operation::Completions
                | Operation::Embeddings
                | Operation::ResponsesCreate
        )
    }

    /// Operations whose responses are JSON small enough to buffer (and so to fail over on a
    /// broken body). Anything else (audio, files, images) is streamed through untouched.
    pub fn buffers_response(self) -> bool {
        !matches!(self, Operation::Other)
    }
}

/// A classified request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub family: Family,
    pub operation: Operation,
    /// Path as sent upstream before per-backend rewriting (test prefix removed).
    pub path: &'a str,
    /// Deployment segment for legacy routes.
    pub deployment: Option<&'a str>,
    /// Response id named in the path (`responses/{id}...`).
    pub response_id: Option<&'a str>,
    /// Reached through a test-mode prefix: responses get the test header shim.
    pub test_prefixed: bool,
}

/// Classifies a path; `None` means "not an AI route" (404).
pub fn classify(path: &str, test_mode: bool) -> Option<Route<'_>> {
    let stripped = if test_mode {
        strip_test_prefix(path)
    } else {
        path
    };
    let test_prefixed = stripped.len() != path.len();
    let path = stripped;
    let rest = path.strip_prefix("/openai/")?;
    if let Some(after) = rest.strip_prefix("deployments/") {
        let (deployment, operation) = after.split_once('/')?;
        if deployment.is_empty() || operation.is_empty() {
            return None;
        }
        let (operation, response_id) = operation_of(operation, false);
        return Some(Route {
            family: Family::Legacy,
            operation,
            path,
            deployment: Some(deployment),
            response_id,
            test_prefixed,
        });
    }
    if let Some(op) = rest.strip_prefix("v1/") {
        if op.is_empty() {
            return None;
        }
        let (operation, response_id) = operation_of(op, true);
        return Some(Route {
            family: Family::V1,
            operation,
            path,
            deployment: None,
            response_id,
            test_prefixed,
        });
    }
    if rest == "responses" || rest.starts_with("responses/") {
        let (operation, response_id) = operation_of(rest, false);
        return Some(Route {
            family: Family::LegacyResponses,
            operation,
            path,
            deployment: None,
            response_id,
            test_prefixed,
        });
    }
    None
}

fn strip_test_prefix(path: &str) -> &str {
    for prefix in TEST_PREFIXES {
        if let Some(rest) = path.strip_prefix(prefix)
            && rest.starts_with("/openai/")
        {
            return rest;
        }
    }
    path
}

fn operation_of(op: &str, v1: bool) -> (Operation, Option<&str>) {
    let op = op.trim_end_matches('/');
    match op {
        "chat/completions" => return (Operation::ChatCompletions, None),
        "completions" => return (Operation::Completions, None),
        "embeddings" => return (Operation::Embeddings, None),
        "responses" => return (Operation::ResponsesCreate, None),
        "models" if v1 => return (Operation::Models, None),
        _ => {}
    }
    if let Some(rest) = op.strip_prefix("responses/") {
        return match rest.split_once('/') {
            None if !rest.is_empty() => (Operation::ResponsesItem, Some(rest)),
            Some((id, "cancel")) if !id.is_empty() => (Operation::ResponsesCancel, Some(id)),
            Some((id, "input_items")) if !id.is_empty() => {
                (Operation::ResponsesInputItems, Some(id))
            }
            _ => (Operation::Other, None),
        };
    }
    (Operation::Other, None)
}

/// Builds the path and query sent to `backend`: deployment alias applied on legacy routes, and the
/// api-version forced when the backend says so. The query is otherwise forwarded unchanged, once.
pub fn upstream_path_and_query(
    route: &Route<'_>,
    query: Option<&str>,
    backend: &BackendConfig,
) -> String {
    let mut out = String::with_capacity(route.path.len() + query.map_or(0, str::len) + 32);
    write_upstream_path_and_query(&mut out, route, query, backend);
    out
}

/// [`upstream_path_and_query`] appended to `out` (the hot path reuses one buffer).
pub fn write_upstream_path_and_query(
    out: &mut String,
    route: &Route<'_>,
    query: Option<&str>,
    backend: &BackendConfig,
) {
    match (route.deployment, route.family) {
        (Some(deployment), Family::Legacy) => match backend.deployments.get(deployment) {
            Some(real) => {
                out.push_str("/openai/deployments/");
                out.push_str(real);
                out.push_str(&route.path["/openai/deployments/".len() + deployment.len()..]);
            }
            None => out.push_str(route.path),
        },
        _ => out.push_str(route.path),
    }
    let forced = match route.family {
        Family::Legacy | Family::LegacyResponses => backend.api_version.as_deref(),
        Family::V1 => None,
    };
    match (query, forced) {
        (None, None) => {}
        (Some(q), None) => {
            out.push('?');
            out.push_str(q);
        }
        (query, Some(version)) => {
            out.push('?');
            let mut first = true;
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                if pair.split('=').next() == Some("api-version") {
                    continue;
                }
                if !first {
                    out.push('&');
                }
                out.push_str(pair);
                first = false;
            }
            if !first {
                out.push('&');
            }
            let _ = write!(out, "api-version={version}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::collections::HashMap;

    fn backend(aliases: &[(&str, &str)], api_version: Option<&str>) -> BackendConfig {
        BackendConfig {
            name: "b".into(),
            scheme: http::uri::Scheme::HTTP,
            authority: http::uri::Authority::from_static("127.0.0.1:1"),
            priority: 5,
            weight: 1,
            api_key: Secret::new("k"),
            deployments: aliases
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<HashMap<_, _>>(),
            api_version: api_version.map(str::to_owned),
        }
    }

    #[test]
    fn classifies_every_route_family() {
        let r = classify("/openai/deployments/gpt-4o/chat/completions", false).unwrap();
        assert_eq!(
            (r.family, r.operation, r.deployment),
            (Family::Legacy, Operation::ChatCompletions, Some("gpt-4o"))
        );
        let r = classify("/openai/deployments/d/responses/resp_1/cancel", false).unwrap();
        assert_eq!(
            (r.operation, r.response_id),
            (Operation::ResponsesCancel, Some("resp_1"))
        );
        let r = classify("/openai/responses/resp_9", false).unwrap();
        assert_eq!(
            (r.family, r.operation, r.response_id),
            (
                Family::LegacyResponses,
                Operation::ResponsesItem,
                Some("resp_9")
            )
        );
        let r = classify("/openai/v1/responses/resp_2/input_items", false).unwrap();
        assert_eq!(
            (r.family, r.operation, r.response_id),
            (Family::V1, Operation::ResponsesInputItems, Some("resp_2"))
        );
        assert_eq!(
            classify("/openai/v1/models", false).unwrap().operation,
            Operation::Models
        );
        assert_eq!(
            classify("/openai/v1/audio/transcriptions", false)
                .unwrap()
                .operation,
            Operation::Other
        );
        assert_eq!(
            classify("/openai/v1/embeddings", false).unwrap().operation,
            Operation::Embeddings
        );
        assert!(classify("/openai/deployments/", false).is_none());
        assert!(classify("/v1/chat/completions", false).is_none());
        assert!(classify("/", false).is_none());
    }

    #[test]
    fn test_prefixes_only_in_test_mode() {
        assert!(classify("/round-robin-simple/openai/v1/models", false).is_none());
        let r = classify("/round-robin-simple/openai/v1/models", true).unwrap();
        assert_eq!(r.path, "/openai/v1/models");
        let r = classify("/round-robin-simple-v2/openai/v1/models", true).unwrap();
        assert_eq!(r.path, "/openai/v1/models");
        assert!(r.test_prefixed);
        assert!(!classify("/openai/v1/models", true).unwrap().test_prefixed);
    }

    #[test]
    fn rewrites_alias_and_forces_api_version_once() {
        let route = classify("/openai/deployments/chat/chat/completions", false).unwrap();
        let b = backend(&[("chat", "gpt-4o-eus")], Some("2025-01-01"));
        assert_eq!(
            upstream_path_and_query(&route, Some("api-version=2024-10-21&x=1"), &b),
            "/openai/deployments/gpt-4o-eus/chat/completions?x=1&api-version=2025-01-01"
        );
        let plain = backend(&[], None);
        assert_eq!(
            upstream_path_and_query(&route, Some("api-version=2024-10-21"), &plain),
            "/openai/deployments/chat/chat/completions?api-version=2024-10-21"
        );
        let v1 = classify("/openai/v1/chat/completions", false).unwrap();
        assert_eq!(
            upstream_path_and_query(&v1, None, &b),
            "/openai/v1/chat/completions"
        );
    }
}
