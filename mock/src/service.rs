//! The request path of a mock backend: the stages every request goes through, in order, the
//! layout its JSON is written in, and the headers every response carries.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::BodyExt;
use http_body_util::Collected;
use hyper::body::Incoming;

use crate::api::responses::ResponseStore;
use crate::api::{self, Call, Quota};
use crate::body::MockBody;
use crate::options::{MockOptions, Profile};
use crate::reply::{self, MockResponse};
use crate::route;
use crate::stats::MockStats;
use crate::throttle::TokenWindows;

/// API version named in throttling messages when the request has none (v1 paths).
const DEFAULT_API_VERSION: &str = "2024-10-21";

const MOCK_BACKEND: HeaderName = HeaderName::from_static("x-mock-backend");
const MS_REGION: HeaderName = HeaderName::from_static("x-ms-region");
const APIM_REQUEST_ID: HeaderName = HeaderName::from_static("apim-request-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const API_KEY: HeaderName = HeaderName::from_static("api-key");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
/// Remaining quota reported when no `tpm_limit` is set.
const UNLIMITED_TOKENS: HeaderValue = HeaderValue::from_static("1000000");
const UNLIMITED_REQUESTS: HeaderValue = HeaderValue::from_static("1000");

/// State of one mock backend, shared by its connections.
pub(crate) struct Shared {
    profile: Mutex<Arc<Profile>>,
    pub(crate) stats: MockStats,
    pub(crate) responses: ResponseStore,
    pub(crate) tokens: TokenWindows,
}

impl Shared {
    pub(crate) fn new(options: MockOptions) -> Self {
        Self {
            profile: Mutex::new(Arc::new(Profile::new(options))),
            stats: MockStats::default(),
            responses: ResponseStore::default(),
            tokens: TokenWindows::default(),
        }
    }

    /// The options in force for the next request.
    pub(crate) fn profile(&self) -> Arc<Profile> {
        Arc::clone(&self.profile.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn set_options(&self, options: MockOptions) {
        let profile = Arc::new(Profile::new(options));
        *self.profile.lock().unwrap_or_else(PoisonError::into_inner) = profile;
    }
}

/// Answers one request. Never fails: every problem is an HTTP answer.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<MockResponse, Infallible> {
    let profile = shared.profile();
    let (parts, body) = request.into_parts();
    // A client that goes away mid-body never reads the answer; an empty body will do for it.
    let body = body
        .collect()
        .await
        .map(Collected::to_bytes)
        .unwrap_or_default();
    shared
        .stats
        .record(&parts, &body, profile.options.record_requests);
    if !profile.options.latency.is_zero() {
        tokio::time::sleep(profile.options.latency).await;
    }
    let mut quota = None;
    let mut response = respond(&shared, &profile, &parts, body, &mut quota);
    restyle(&mut response, &profile);
    decorate(&mut response, &profile, &parts.headers, quota);
    shared.stats.count_status(response.status().as_u16());
    Ok(response)
}

/// The stages of a request, in the order Azure applies them.
fn respond(
    shared: &Shared,
    profile: &Profile,
    parts: &Parts,
    body: Bytes,
    quota: &mut Option<Quota>,
) -> MockResponse {
    let options = &profile.options;
    let route = route::route(&parts.method, parts.uri.path());
    let api_version = route::api_version(parts.uri.query());
    let operation_name = route.map_or("ChatCompletions_Create", |r| r.operation.azure_name());
    let version_label = api_version.unwrap_or(DEFAULT_API_VERSION);

    // Authentication first: a wrong key is rejected before anything else is looked at.
    if let Some(key) = &options.api_key
        && !authorized(&parts.headers, key)
        && !options
            .secondary_api_key
            .as_deref()
            .is_some_and(|second| authorized(&parts.headers, second))
    {
        return reply::unauthorized();
    }
    // An override answers every request, whatever its path.
    if let Some(status) = options.status_override {
        return reply::for_status(status, &profile.retry_after, operation_name, version_label);
    }
    let Some(route) = route else {
        return reply::not_found();
    };
    if route.legacy && api_version.is_none() {
        return reply::missing_api_version();
    }
    // A deployment out of quota refuses everything under it (by the body's `model` too, once
    // the operation has read it).
    if route
        .deployment
        .is_some_and(|deployment| profile.throttles(deployment))
    {
        return reply::throttled(&profile.retry_after, operation_name, version_label);
    }
    // Random faults hit valid requests only, as overload does.
    if options.rate_429 > 0.0 || options.rate_5xx > 0.0 {
        let draw = fastrand::f64();
        if draw < options.rate_429 {
            return reply::throttled(&profile.retry_after, operation_name, version_label);
        }
        if draw < options.rate_429 + options.rate_5xx {
            return reply::server_error();
        }
    }
    let mut call = Call {
        shared,
        profile,
        route,
        parts,
        body,
        version_label,
        quota: None,
    };
    let response = api::dispatch(&mut call);
    *quota = call.quota;
    response
}

/// Rewrites a JSON body, or sets an SSE body to rewrite each event, in the configured layout.
fn restyle(response: &mut MockResponse, profile: &Profile) {
    let Some(restyle) = profile.restyle else {
        return;
    };
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    match response.body_mut() {
        MockBody::Full(Some(bytes)) if is_json => {
            if let Some(styled) = restyle.json(bytes) {
                *bytes = Bytes::from(styled);
            }
        }
        MockBody::Sse(body) => body.restyle(restyle),
        MockBody::Full(_) => {}
    }
}

/// `api-key: <key>` or `Authorization: Bearer <key>`.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    if headers
        .get(API_KEY)
        .is_some_and(|value| value.as_bytes() == key.as_bytes())
    {
        return true;
    }
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token == key)
}

/// Headers every answer carries, plus the remaining quota on successes.
fn decorate(
    response: &mut MockResponse,
    profile: &Profile,
    request_headers: &HeaderMap,
    quota: Option<Quota>,
) {
    let success = response.status().is_success();
    let headers = response.headers_mut();
    headers.insert(MOCK_BACKEND, profile.name_header.clone());
    headers.insert(MS_REGION, profile.name_header.clone());
    headers.insert(APIM_REQUEST_ID, random_uuid());
    let request_id = request_headers
        .get(REQUEST_ID)
        .cloned()
        .unwrap_or_else(random_uuid);
    headers.insert(REQUEST_ID, request_id);
    if success && profile.options.ratelimit_headers {
        let (tokens, requests) = match quota {
            Some(quota) => (quota.tokens.into(), quota.requests.into()),
            None => (UNLIMITED_TOKENS, UNLIMITED_REQUESTS),
        };
        headers.insert(REMAINING_TOKENS, tokens);
        headers.insert(REMAINING_REQUESTS, requests);
    }
}

/// A random version-4-shaped UUID, as Azure's request ids are.
fn random_uuid() -> HeaderValue {
    let bits = fastrand::u128(..);
    let text = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xffff,
        (bits >> 68) & 0xfff,
        ((bits >> 52) & 0x3fff) | 0x8000,
        bits & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(
        "00000000-0000-4000-8000-000000000000",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_or_bearer_authorizes() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "k"));
        headers.insert(API_KEY, HeaderValue::from_static("k"));
        assert!(authorized(&headers, "k"));
        assert!(!authorized(&headers, "other"));
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert!(authorized(&headers, "k"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic k"));
        assert!(!authorized(&headers, "k"));
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let uuid = random_uuid();
        let text = uuid.to_str().expect("ascii");
        let groups: Vec<usize> = text.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&text[14..15], "4");
    }
}
