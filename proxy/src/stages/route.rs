//! Routing: which Azure OpenAI route a request path is (anything else is 404), and how its path
//! is rewritten for a backend.
//!
//! Classification happens once per request; the rewritten upstream path and query are built per
//! attempt because deployment aliases differ between backends. Routing comes before client auth
//! so that a stage between them (CORS) can answer preflights on AI routes only.

use std::fmt::Write as _;

use crate::config::{BackendConfig, GatewayConfig};
use crate::ctx::{Flow, RequestCtx};
use crate::error::GatewayError;
use crate::stages::Stage;

/// The routing stage.
#[derive(Debug)]
pub struct Routing {
    /// `server.test_mode`: the test-prefixed aliases are routes too.
    test_mode: bool,
}

impl Stage for Routing {
    fn new(config: &GatewayConfig, _previous: Option<&Self>) -> Self {
        Self {
            test_mode: config.server.test_mode,
        }
    }

    async fn check(&self, ctx: &mut RequestCtx) -> Flow {
        let path = ctx.path();
        if let Some(problem) = ambiguity(path, self.test_mode) {
            return Err(GatewayError::BadRequest(format!(
                "Ambiguous request path: {problem}. Send the path without them."
            ))
            .into());
        }
        let Some(route) = classify(path, self.test_mode) else {
            return Err(GatewayError::NotFound.into());
        };
        // Only the methods the operation serves reach a backend (with its key); `post` is not
        // `POST` (methods are case-sensitive), TRACE or CONNECT serve nothing here.
        if !route.operation.serves(&ctx.head.method) {
            let allow = route.operation.allow();
            return Err(GatewayError::MethodNotAllowed { allow }.into());
        }
        ctx.route = Some(route);
        Ok(())
    }
}

/// Why an AI route's path is ambiguous, if it is: a backend (or a front end before it) that
/// normalises dot-segments, empty segments, encoded `/` or `.`, or backslashes would serve
/// another path than the one the gateway classified and counted (`/openai/v1/../../admin` would
/// reach the backend with its key; `/openai/v1/x/../chat/completions` would escape usage
/// accounting and limits). Other paths are not served at all (404). One trailing `/` is fine.
pub fn ambiguity(path: &str, test_mode: bool) -> Option<&'static str> {
    let path = if test_mode {
        strip_test_prefix(path)
    } else {
        path
    };
    let rest = path.strip_prefix("/openai/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    // The usual path has none of the bytes an ambiguity needs (`.` `%` `\\`, or two `/` in a
    // row): one pass over it decides.
    let mut previous = b'/';
    let plain = rest.bytes().all(|b| {
        let fine = !(matches!(b, b'.' | b'%' | b'\\') || (b == b'/' && previous == b'/'));
        previous = b;
        fine
    });
    if plain {
        return None;
    }
    if rest.contains('\\') {
        return Some("it contains a backslash");
    }
    for segment in rest.split('/') {
        match segment {
            "" => return Some("it has an empty segment (`//`)"),
            "." | ".." => return Some("it has a `.` or `..` segment"),
            _ => {}
        }
    }
    let encoded = rest.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_uppercase()),
                (b'2', b'F' | b'E') | (b'5', b'C')
            )
    });
    encoded.then_some("it has an encoded `/`, `.` or `\\` (`%2F`, `%2E`, `%5C`)")
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Every operation, in their declared order (for the tests that go through all of them).
    #[cfg(test)]
    pub const ALL: [Operation; 9] = [
        Operation::ChatCompletions,
        Operation::Completions,
        Operation::Embeddings,
        Operation::ResponsesCreate,
        Operation::ResponsesItem,
        Operation::ResponsesCancel,
        Operation::ResponsesInputItems,
        Operation::Models,
        Operation::Other,
    ];

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

    /// The methods the operation serves, as an `allow` field lists them. HEAD is served where
    /// GET is (RFC 9110 §9.3.2); OPTIONS will be, for CORS preflights, by the stage that answers
    /// them.
    pub fn allow(self) -> &'static str {
        match self {
            Operation::ChatCompletions
            | Operation::Completions
            | Operation::Embeddings
            | Operation::ResponsesCreate
            | Operation::ResponsesCancel => "POST",
            Operation::ResponsesItem => "GET, HEAD, DELETE",
            Operation::ResponsesInputItems | Operation::Models => "GET, HEAD",
            // Files, batches, fine-tuning, images, audio: what Azure serves under a deployment
            // or `/openai/v1/` (no PUT or PATCH there).
            Operation::Other => "GET, HEAD, POST, DELETE",
        }
    }

    /// Whether the operation serves `method` (the methods [`Operation::allow`] lists; a match,
    /// not a parse of that list: this runs on every request).
    pub fn serves(self, method: &http::Method) -> bool {
        use http::Method;
        let (get, post, delete) = (
            *method == Method::GET || *method == Method::HEAD,
            *method == Method::POST,
            *method == Method::DELETE,
        );
        match self {
            Operation::ChatCompletions
            | Operation::Completions
            | Operation::Embeddings
            | Operation::ResponsesCreate
            | Operation::ResponsesCancel => post,
            Operation::ResponsesItem => get || delete,
            Operation::ResponsesInputItems | Operation::Models => get,
            Operation::Other => get || post || delete,
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

    /// Operations that spend tokens, whose usage is counted (retrieving or cancelling a
    /// response repeats the usage counted when it was created).
    pub fn spends_tokens(self) -> bool {
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

/// A classified request path. Positions, not borrowed slices, so that it lives in the request's
/// context next to the head it points into: read its parts with the request path
/// ([`RequestCtx::path`](crate::ctx::RequestCtx::path)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub family: Family,
    pub operation: Operation,
    /// Where the path sent upstream starts in the request path (after a test prefix).
    start: u32,
    /// Deployment segment of legacy routes.
    deployment: Option<Span>,
    /// Response id named in the path (`responses/{id}...`).
    response_id: Option<Span>,
    /// Reached through a test-mode prefix: responses get the test header shim.
    pub test_prefixed: bool,
}

/// A byte range of the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The range `part` occupies in `whole` (`part` is a slice of it).
    fn of(whole: &str, part: &str) -> Self {
        let start = part.as_ptr() as usize - whole.as_ptr() as usize;
        Self {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    fn read(self, whole: &str) -> &str {
        whole
            .get(self.start as usize..self.end as usize)
            .unwrap_or("")
    }
}

impl Route {
    /// The path as sent upstream before per-backend rewriting (test prefix removed).
    pub fn path<'a>(&self, request_path: &'a str) -> &'a str {
        request_path.get(self.start as usize..).unwrap_or("")
    }

    /// The deployment segment of a legacy route.
    pub fn deployment<'a>(&self, request_path: &'a str) -> Option<&'a str> {
        Some(self.deployment?.read(request_path))
    }

    /// The response id named in the path.
    pub fn response_id<'a>(&self, request_path: &'a str) -> Option<&'a str> {
        Some(self.response_id?.read(request_path))
    }
}

/// Classifies a path; `None` means "not an AI route" (404).
pub fn classify(full: &str, test_mode: bool) -> Option<Route> {
    let stripped = if test_mode {
        strip_test_prefix(full)
    } else {
        full
    };
    let test_prefixed = stripped.len() != full.len();
    let path = stripped;
    let span = |part: &str| Some(Span::of(full, part));
    let route = |family, (operation, response_id): (Operation, Option<&str>), deployment| Route {
        family,
        operation,
        start: (full.len() - path.len()) as u32,
        deployment,
        response_id: response_id.and_then(span),
        test_prefixed,
    };
    let rest = path.strip_prefix("/openai/")?;
    if let Some(after) = rest.strip_prefix("deployments/") {
        let (deployment, operation) = after.split_once('/')?;
        if deployment.is_empty() || operation.is_empty() {
            return None;
        }
        return Some(route(
            Family::Legacy,
            operation_of(operation, false),
            span(deployment),
        ));
    }
    if let Some(op) = rest.strip_prefix("v1/") {
        if op.is_empty() {
            return None;
        }
        return Some(route(Family::V1, operation_of(op, true), None));
    }
    if rest == "responses" || rest.starts_with("responses/") {
        return Some(route(
            Family::LegacyResponses,
            operation_of(rest, false),
            None,
        ));
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
    route: &Route,
    request_path: &str,
    query: Option<&str>,
    backend: &BackendConfig,
) -> String {
    let mut out = String::with_capacity(request_path.len() + query.map_or(0, str::len) + 32);
    write_upstream_path_and_query(&mut out, route, request_path, query, backend);
    out
}

/// [`upstream_path_and_query`] appended to `out` (the hot path reuses one buffer).
pub fn write_upstream_path_and_query(
    out: &mut String,
    route: &Route,
    request_path: &str,
    query: Option<&str>,
    backend: &BackendConfig,
) {
    let path = route.path(request_path);
    match (route.deployment(request_path), route.family) {
        (Some(deployment), Family::Legacy) => match backend.alias(deployment) {
            Some(real) => {
                out.push_str("/openai/deployments/");
                out.push_str(real);
                out.push_str(&path["/openai/deployments/".len() + deployment.len()..]);
            }
            None => out.push_str(path),
        },
        _ => out.push_str(path),
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

    /// `serves` and the `allow` field it is refused with say the same.
    #[test]
    fn serves_is_what_allow_lists() {
        use http::Method;
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::DELETE,
            Method::PUT,
            Method::PATCH,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
            Method::from_bytes(b"post").unwrap(),
        ];
        for operation in Operation::ALL {
            for method in &methods {
                let listed = operation.allow().split(", ").any(|m| m == method.as_str());
                assert_eq!(operation.serves(method), listed, "{operation:?} {method}");
            }
        }
    }
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
        let path = "/openai/deployments/gpt-4o/chat/completions";
        let r = classify(path, false).unwrap();
        assert_eq!(
            (r.family, r.operation, r.deployment(path)),
            (Family::Legacy, Operation::ChatCompletions, Some("gpt-4o"))
        );
        let path = "/openai/deployments/d/responses/resp_1/cancel";
        let r = classify(path, false).unwrap();
        assert_eq!(
            (r.operation, r.response_id(path)),
            (Operation::ResponsesCancel, Some("resp_1"))
        );
        let path = "/openai/responses/resp_9";
        let r = classify(path, false).unwrap();
        assert_eq!(
            (r.family, r.operation, r.response_id(path)),
            (
                Family::LegacyResponses,
                Operation::ResponsesItem,
                Some("resp_9")
            )
        );
        let path = "/round-robin-simple/openai/v1/responses/resp_2/input_items";
        let r = classify(path, true).unwrap();
        assert_eq!(
            (r.family, r.operation, r.response_id(path), r.path(path)),
            (
                Family::V1,
                Operation::ResponsesInputItems,
                Some("resp_2"),
                "/openai/v1/responses/resp_2/input_items"
            )
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
    fn ambiguous_ai_paths_are_named() {
        for path in [
            "/openai/v1/../../admin/secret",
            "/openai/v1/x/../chat/completions",
            "/openai/v1/./chat/completions",
            "/openai/v1//chat/completions",
            "/openai//v1/chat/completions",
            "/openai/v1/chat%2Fcompletions",
            "/openai/v1/chat%2fcompletions",
            "/openai/v1/%2E%2E/models",
            "/openai/v1/%2e/models",
            "/openai/deployments/gpt%5Cx/chat/completions",
            "/openai/deployments/gpt\\x/chat/completions",
            "/openai/deployments/../chat/completions",
        ] {
            assert!(ambiguity(path, false).is_some(), "{path}");
        }
        assert!(ambiguity("/round-robin-simple/openai/v1/../x", true).is_some());
        for fine in [
            "/openai/v1/chat/completions",
            "/openai/v1/chat/completions/",
            "/openai/deployments/gpt-4o.mini/chat/completions",
            "/openai/v1/files/file-abc%20x",
            "/openai/v1/responses/resp_1..2",
            "/v1/../x",
            "/",
        ] {
            assert_eq!(ambiguity(fine, false), None, "{fine}");
        }
    }

    #[test]
    fn test_prefixes_only_in_test_mode() {
        assert!(classify("/round-robin-simple/openai/v1/models", false).is_none());
        let path = "/round-robin-simple/openai/v1/models";
        assert_eq!(
            classify(path, true).unwrap().path(path),
            "/openai/v1/models"
        );
        let path = "/round-robin-simple-v2/openai/v1/models";
        let r = classify(path, true).unwrap();
        assert_eq!(r.path(path), "/openai/v1/models");
        assert!(r.test_prefixed);
        assert!(!classify("/openai/v1/models", true).unwrap().test_prefixed);
    }

    #[test]
    fn rewrites_alias_and_forces_api_version_once() {
        let path = "/openai/deployments/chat/chat/completions";
        let route = classify(path, false).unwrap();
        let b = backend(&[("chat", "gpt-4o-eus")], Some("2025-01-01"));
        assert_eq!(
            upstream_path_and_query(&route, path, Some("api-version=2024-10-21&x=1"), &b),
            "/openai/deployments/gpt-4o-eus/chat/completions?x=1&api-version=2025-01-01"
        );
        let plain = backend(&[], None);
        assert_eq!(
            upstream_path_and_query(&route, path, Some("api-version=2024-10-21"), &plain),
            "/openai/deployments/chat/chat/completions?api-version=2024-10-21"
        );
        let v1_path = "/openai/v1/chat/completions";
        let v1 = classify(v1_path, false).unwrap();
        assert_eq!(
            upstream_path_and_query(&v1, v1_path, None, &b),
            "/openai/v1/chat/completions"
        );
    }
}
