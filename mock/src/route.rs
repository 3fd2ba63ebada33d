//! Maps method and path to an Azure OpenAI operation, for the legacy surface
//! (`/openai/deployments/{d}/...`, `/openai/responses`, `/openai/models`, all `?api-version=`) and
//! the v1 surface (`/openai/v1/...`). Plain string splitting: no regex on the request path.

use http::Method;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation<'a> {
    ChatCompletions,
    Completions,
    Embeddings,
    ResponsesCreate,
    ResponseGet(&'a str),
    ResponseDelete(&'a str),
    ResponseCancel(&'a str),
    ResponseInputItems(&'a str),
    Models,
    /// Any other request under a deployment or under v1: answered with a description of itself.
    Echo,
}

impl Operation<'_> {
    /// Azure's name of the operation, as it appears in throttling messages.
    pub(crate) fn azure_name(self) -> &'static str {
        match self {
            Self::ChatCompletions | Self::Echo => "ChatCompletions_Create",
            Self::Completions => "Completions_Create",
            Self::Embeddings => "Embeddings_Create",
            Self::ResponsesCreate => "Responses_Create",
            Self::ResponseGet(_) => "Responses_Get",
            Self::ResponseDelete(_) => "Responses_Delete",
            Self::ResponseCancel(_) => "Responses_Cancel",
            Self::ResponseInputItems(_) => "Responses_ListInputItems",
            Self::Models => "Models_List",
        }
    }
}

/// A routed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route<'a> {
    pub(crate) operation: Operation<'a>,
    /// The deployment of a legacy deployment path; it is also the model name.
    pub(crate) deployment: Option<&'a str>,
    /// Legacy paths require `?api-version=`.
    pub(crate) legacy: bool,
}

/// Routes a request; `None` means 404.
pub(crate) fn route<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix("/openai/")?;
    let (tail, deployment, legacy) = if let Some(tail) = rest.strip_prefix("v1/") {
        (tail, None, false)
    } else if let Some(after) = rest.strip_prefix("deployments/") {
        let (deployment, tail) = after.split_once('/')?;
        if deployment.is_empty() {
            return None;
        }
        (tail, Some(deployment), true)
    } else {
        (rest, None, true)
    };
    let known = operation(method, tail, deployment.is_some());
    // Outside a deployment, the legacy surface only has the Responses API and the model list.
    let echo_allowed = !legacy || deployment.is_some();
    let operation = match known {
        Some(operation) => operation,
        None if echo_allowed => Operation::Echo,
        None => return None,
    };
    Some(Route {
        operation,
        deployment,
        legacy,
    })
}

fn operation<'a>(method: &Method, tail: &'a str, in_deployment: bool) -> Option<Operation<'a>> {
    let mut segments = tail.split('/');
    let first = segments.next()?;
    let second = segments.next();
    let third = segments.next();
    if segments.next().is_some() {
        return None;
    }
    let post = method == Method::POST;
    // HEAD is GET without a body (hyper leaves the body out and keeps its length).
    let get = method == Method::GET || method == Method::HEAD;
    let nonempty = |id: Option<&'a str>| id.filter(|id| !id.is_empty());
    match (first, second, third) {
        ("chat", Some("completions"), None) if post => Some(Operation::ChatCompletions),
        ("completions", None, None) if post => Some(Operation::Completions),
        ("embeddings", None, None) if post => Some(Operation::Embeddings),
        ("models", None, None) if get && !in_deployment => Some(Operation::Models),
        ("responses", None, None) if post => Some(Operation::ResponsesCreate),
        ("responses", id, None) if get => nonempty(id).map(Operation::ResponseGet),
        ("responses", id, None) if method == Method::DELETE => {
            nonempty(id).map(Operation::ResponseDelete)
        }
        ("responses", id, Some("cancel")) if post => nonempty(id).map(Operation::ResponseCancel),
        ("responses", id, Some("input_items")) if get => {
            nonempty(id).map(Operation::ResponseInputItems)
        }
        _ => None,
    }
}

/// The value of `api-version` in a query string, if present and not empty.
pub(crate) fn api_version(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("api-version="))
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: Method, path: &str) -> Option<(Operation<'_>, Option<&str>, bool)> {
        route(&method, path).map(|r| (r.operation, r.deployment, r.legacy))
    }

    #[test]
    fn legacy_and_v1_paths_route() {
        use Operation::*;
        let chat = "/openai/deployments/gpt-4o/chat/completions";
        assert_eq!(
            op(Method::POST, chat),
            Some((ChatCompletions, Some("gpt-4o"), true))
        );
        assert_eq!(
            op(Method::POST, "/openai/v1/chat/completions"),
            Some((ChatCompletions, None, false))
        );
        assert_eq!(
            op(Method::GET, "/openai/v1/responses/resp_1/input_items"),
            Some((ResponseInputItems("resp_1"), None, false))
        );
        assert_eq!(
            op(Method::POST, "/openai/responses/resp_1/cancel"),
            Some((ResponseCancel("resp_1"), None, true))
        );
        assert_eq!(
            op(Method::DELETE, "/openai/deployments/d/responses/resp_2"),
            Some((ResponseDelete("resp_2"), Some("d"), true))
        );
        assert_eq!(
            op(Method::GET, "/openai/v1/models"),
            Some((Models, None, false))
        );
    }

    #[test]
    fn other_paths_echo_or_404() {
        assert_eq!(
            op(Method::POST, "/openai/v1/audio/transcriptions").map(|r| r.0),
            Some(Operation::Echo)
        );
        assert_eq!(
            op(Method::POST, "/openai/deployments/d/images/generations").map(|r| r.0),
            Some(Operation::Echo)
        );
        assert_eq!(op(Method::POST, "/openai/files"), None);
        assert_eq!(
            op(Method::POST, "/openai/deployments//chat/completions"),
            None
        );
        assert_eq!(op(Method::GET, "/healthz"), None);
        assert_eq!(op(Method::GET, "/openai/responses/"), None);
    }

    #[test]
    fn api_version_is_read_from_the_query() {
        assert_eq!(
            api_version(Some("a=1&api-version=2024-10-21")),
            Some("2024-10-21")
        );
        assert_eq!(api_version(Some("api-version=")), None);
        assert_eq!(api_version(None), None);
    }
}
