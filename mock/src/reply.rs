//! Building responses: JSON and SSE bodies, and every Azure-shaped error the mock sends
//! (`{"error":{"code","message"}}`), with the headers that go with them (`retry-after` ...).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::{MockBody, SseBody};
use crate::options::RetryAfter;

pub(crate) type MockResponse = Response<MockBody>;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// Azure's 404 for a path it does not serve.
const NOT_FOUND_BODY: &[u8] = br#"{"error":{"code":"404","message":"Resource not found"}}"#;

const UNAUTHORIZED_MESSAGE: &str = "Access denied due to invalid subscription key or wrong API \
    endpoint. Make sure to provide a valid key for an active subscription and use a correct \
    regional API endpoint for your resource.";

const SERVER_ERROR_MESSAGE: &str = "The server had an error processing your request. Sorry about \
    that! You can retry your request, or contact us through an Azure support request if you \
    keep seeing this error.";

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> MockResponse {
    let mut response = Response::new(MockBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// A JSON value as a response.
pub(crate) fn json_value(status: StatusCode, value: &serde_json::Value) -> MockResponse {
    json(status, value.to_string())
}

/// A 200 `text/event-stream` response.
pub(crate) fn sse(body: SseBody) -> MockResponse {
    let mut response = Response::new(MockBody::Sse(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `{"error":{"code","message"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> MockResponse {
    json_value(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// An OpenAI-style request error: `{"error":{"code","message","type":"invalid_request_error","param"}}`.
pub(crate) fn invalid_request(code: &str, message: &str, param: Option<&str>) -> MockResponse {
    let body = json!({"error": {
        "code": code,
        "message": message,
        "type": "invalid_request_error",
        "param": param,
    }});
    json_value(StatusCode::BAD_REQUEST, &body)
}

pub(crate) fn not_found() -> MockResponse {
    json(StatusCode::NOT_FOUND, Bytes::from_static(NOT_FOUND_BODY))
}

pub(crate) fn unauthorized() -> MockResponse {
    error(StatusCode::UNAUTHORIZED, "401", UNAUTHORIZED_MESSAGE)
}

pub(crate) fn server_error() -> MockResponse {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        SERVER_ERROR_MESSAGE,
    )
}

pub(crate) fn missing_api_version() -> MockResponse {
    error(
        StatusCode::BAD_REQUEST,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )
}

pub(crate) fn invalid_json() -> MockResponse {
    invalid_request(
        "invalid_json",
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't \
         using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        None,
    )
}

pub(crate) fn missing_model() -> MockResponse {
    invalid_request(
        "missing_required_parameter",
        "Missing required parameter: 'model'.",
        Some("model"),
    )
}

/// Azure's token-rate 429, with every retry header Azure sends.
pub(crate) fn throttled(retry: &RetryAfter, operation: &str, api_version: &str) -> MockResponse {
    let message = format!(
        "Requests to the {operation} Operation under Azure OpenAI API version {api_version} have \
         exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after {} \
         seconds.",
        retry.seconds
    );
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, "429", &message);
    let headers = response.headers_mut();
    let seconds = HeaderValue::from(retry.seconds);
    headers.insert(http::header::RETRY_AFTER, seconds.clone());
    headers.insert(RETRY_AFTER_MS, HeaderValue::from(retry.millis));
    headers.insert(RESET_REQUESTS, seconds.clone());
    headers.insert(RESET_TOKENS, seconds);
    response
}

/// The answer to every request when `status_override` is set.
pub(crate) fn for_status(
    status: u16,
    retry: &RetryAfter,
    operation: &str,
    api_version: &str,
) -> MockResponse {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|status| !status.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        StatusCode::TOO_MANY_REQUESTS => throttled(retry, operation, api_version),
        StatusCode::INTERNAL_SERVER_ERROR => server_error(),
        StatusCode::UNAUTHORIZED => unauthorized(),
        StatusCode::NOT_FOUND => not_found(),
        StatusCode::SERVICE_UNAVAILABLE => error(
            status,
            "ServiceUnavailable",
            "The service is temporarily unable to process your request. Please try again later.",
        ),
        StatusCode::REQUEST_TIMEOUT => error(status, "Timeout", "The operation was timeout."),
        _ => error(
            status,
            status.as_str(),
            status.canonical_reason().unwrap_or("Mock status override"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_carries_retry_headers_in_both_units() {
        let response = throttled(&RetryAfter::from_millis(2500), "Embeddings_Create", "v1");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers["retry-after"], "3");
        assert_eq!(headers["retry-after-ms"], "2500");
        assert_eq!(headers["x-ratelimit-reset-tokens"], "3");
        assert_eq!(headers["x-ratelimit-reset-requests"], "3");
    }

    #[test]
    fn override_maps_unusable_statuses_to_500() {
        let retry = RetryAfter::from_millis(0);
        assert_eq!(for_status(42, &retry, "x", "v1").status(), 500);
        assert_eq!(for_status(101, &retry, "x", "v1").status(), 500);
        assert_eq!(for_status(418, &retry, "x", "v1").status(), 418);
    }
}
