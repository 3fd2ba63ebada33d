//! The gateway's own answers: one mapping from error to status, Azure-shaped JSON body,
//! `x-gateway-error` header and metric label.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;

/// Boxed error used in response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the proxy sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body from bytes.
pub fn full_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How one attempt (or skip) of one backend ended; also the `outcome` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Http429,
    Http5xx,
    Http4xx,
    ConnectError,
    Timeout,
    StreamError,
    SkippedCooldown,
    SkippedUnhealthy,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::Http429,
        Outcome::Http5xx,
        Outcome::Http4xx,
        Outcome::ConnectError,
        Outcome::Timeout,
        Outcome::StreamError,
        Outcome::SkippedCooldown,
        Outcome::SkippedUnhealthy,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Http429 => "http_429",
            Outcome::Http5xx => "http_5xx",
            Outcome::Http4xx => "http_4xx",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::StreamError => "stream_error",
            Outcome::SkippedCooldown => "skipped_cooldown",
            Outcome::SkippedUnhealthy => "skipped_unhealthy",
        }
    }
}

/// One entry of `error.details`: what happened at one backend.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub backend: Arc<str>,
    pub outcome: Outcome,
    pub status: Option<u16>,
    /// Short, secret-free description (error kind or backend error code).
    pub detail: Option<String>,
    /// The backend said "too busy" (429, cooldown, in-stream throttling error).
    pub throttled: bool,
}

/// Everything the gateway answers itself.
#[derive(Debug)]
pub enum GatewayError {
    NotFound,
    Unauthorized {
        missing: bool,
    },
    PayloadTooLarge {
        limit: u64,
    },
    BadRequest(String),
    /// A valid request using what the gateway does not implement (a transfer coding).
    NotImplemented(&'static str),
    /// The client was too slow sending its request (`server.client_timeout`).
    RequestTimeout,
    /// The request head is larger than the gateway reads (64 KiB).
    HeadTooLarge,
    /// A process-wide limit is reached (`limit`: its metric label); try again shortly.
    Overloaded {
        limit: &'static str,
    },
    /// The route does not serve this method; `allow` lists those it does.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// Every backend was throttled or cooling down.
    AllThrottled {
        retry_after: Duration,
        attempts: Vec<AttemptRecord>,
    },
    /// Every backend failed (or none was usable); `timeout` when the failures were timeouts.
    Exhausted {
        timeout: bool,
        attempts: Vec<AttemptRecord>,
    },
    /// The request deadline passed before any backend answered.
    DeadlineExceeded {
        attempts: Vec<AttemptRecord>,
    },
    ShuttingDown,
    /// A limit of the gateway's own refused the request (not a backend's capacity).
    Limited {
        limit: Limit,
        status: StatusCode,
        /// The configured message (token limit), else the limit's own.
        message: Option<Box<str>>,
        retry_after_us: u64,
    },
}

/// Which of the gateway's limits refused a request: its `x-gateway-error` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    RequestRate,
    RequestQuota,
    Tokens,
    TokenQuota,
    /// The shared counters (Redis) could not be asked and `limits.redis.on_failure` is closed.
    Unavailable,
}

impl Limit {
    pub fn code(self) -> &'static str {
        match self {
            Limit::RequestRate => "request_rate_limited",
            Limit::RequestQuota => "request_quota_exceeded",
            Limit::Tokens => "token_rate_limited",
            Limit::TokenQuota => "token_quota_exceeded",
            Limit::Unavailable => "limits_unavailable",
        }
    }
}

impl GatewayError {
    /// Requests sent to backends before the gateway gave up (backends skipped for a cooldown
    /// or their health are not attempts).
    pub fn attempts_sent(&self) -> u32 {
        let sent = self.attempts().iter().filter(|r| {
            !matches!(
                r.outcome,
                Outcome::SkippedCooldown | Outcome::SkippedUnhealthy
            )
        });
        sent.count() as u32
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::AllThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Exhausted { timeout: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Exhausted { timeout: false, .. } => StatusCode::BAD_GATEWAY,
            GatewayError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Limited { status, .. } => *status,
        }
    }

    /// The `error.code` and `x-gateway-error` value; also a low-cardinality metric label.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NotFound => "not_found",
            GatewayError::Unauthorized { .. } => "unauthorized",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NotImplemented(_) => "not_implemented",
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::HeadTooLarge => "request_head_too_large",
            GatewayError::Overloaded { .. } => "overloaded",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::AllThrottled { .. } => "all_backends_throttled",
            GatewayError::Exhausted { timeout: true, .. } => "all_backends_timed_out",
            GatewayError::Exhausted { timeout: false, .. } => "all_backends_failed",
            GatewayError::DeadlineExceeded { .. } => "deadline_exceeded",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::Limited { limit, .. } => limit.code(),
        }
    }

    fn message(&self) -> String {
        match self {
            GatewayError::NotFound => {
                "Resource not found: this path is not an Azure OpenAI route.".into()
            }
            GatewayError::Unauthorized { missing: true } => {
                "Access denied: no API key. Send `api-key: <key>` or `Authorization: Bearer <key>`."
                    .into()
            }
            GatewayError::Unauthorized { missing: false } => {
                "Access denied due to invalid API key.".into()
            }
            GatewayError::PayloadTooLarge { limit } => {
                format!("Request body is larger than the gateway limit of {limit} bytes.")
            }
            GatewayError::BadRequest(m) => m.clone(),
            GatewayError::NotImplemented(m) => (*m).into(),
            GatewayError::RequestTimeout => {
                "The client did not send the request in time (server.client_timeout).".into()
            }
            GatewayError::HeadTooLarge => {
                "The request line and header fields are larger than 64 KiB.".into()
            }
            GatewayError::Overloaded { limit: "connections" } => {
                "The gateway serves as many connections as it may (server.max_connections). Please retry shortly.".into()
            }
            GatewayError::Overloaded { .. } => {
                "The gateway holds as many request bodies as it may (server.max_buffered_body_bytes). Please retry shortly.".into()
            }
            GatewayError::MethodNotAllowed { allow } => {
                format!("This route does not serve this method; it serves {allow}.")
            }
            GatewayError::AllThrottled { retry_after, .. } => format!(
                "Every backend is throttled. Please retry after {} seconds.",
                retry_after.as_millis().div_ceil(1000)
            ),
            GatewayError::Exhausted { timeout: true, .. } => "Every backend timed out.".into(),
            GatewayError::Exhausted { timeout: false, .. } => {
                "No backend could serve the request.".into()
            }
            GatewayError::DeadlineExceeded { .. } => {
                "The request deadline passed before a backend answered.".into()
            }
            GatewayError::ShuttingDown => "The gateway is shutting down.".into(),
            GatewayError::Limited {
                message: Some(message),
                ..
            } => message.to_string(),
            GatewayError::Limited {
                limit,
                retry_after_us,
                ..
            } => {
                let seconds = retry_after_seconds(*retry_after_us);
                match limit {
                    Limit::RequestRate => format!("Too many requests from this client address. Please retry after {seconds} seconds."),
                    Limit::RequestQuota => format!("The request quota of this consumer is used up. Please retry after {seconds} seconds."),
                    Limit::Tokens => format!("The token limit is reached. Please retry after {seconds} seconds."),
                    Limit::TokenQuota => format!("The token quota of this consumer is used up. Please retry after {seconds} seconds."),
                    Limit::Unavailable => "The gateway cannot check its limits right now. Please retry shortly.".into(),
                }
            }
        }
    }

    fn attempts(&self) -> &[AttemptRecord] {
        match self {
            GatewayError::AllThrottled { attempts, .. }
            | GatewayError::Exhausted { attempts, .. }
            | GatewayError::DeadlineExceeded { attempts } => attempts,
            _ => &[],
        }
    }

    /// The HTTP response (without `x-request-id`, which every answer gets when it is attached to
    /// its request).
    pub fn into_response(self) -> Response<ResponseBody> {
        let (status, headers, body) = self.into_parts();
        let mut response = Response::new(full_body(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// Status, fields and body of the answer in the error shape.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        let details: Vec<serde_json::Value> = self
            .attempts()
            .iter()
            .map(|a| {
                let mut entry =
                    serde_json::json!({ "backend": &*a.backend, "outcome": a.outcome.label() });
                if let Some(status) = a.status {
                    entry["status"] = status.into();
                }
                if let Some(detail) = &a.detail {
                    entry["detail"] = detail.as_str().into();
                }
                entry
            })
            .collect();
        let body = serde_json::json!({
            "error": {
                "code": self.code(),
                "message": self.message(),
                "type": "gateway_error",
                "details": details,
            }
        });
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-gateway-error", HeaderValue::from_static(self.code()));
        if let GatewayError::AllThrottled { retry_after, .. } = &self {
            let ms = retry_after.as_millis().max(1);
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(ms.div_ceil(1000) as u64),
            );
            headers.insert("retry-after-ms", HeaderValue::from(ms as u64));
        }
        if let GatewayError::Limited { retry_after_us, .. } = &self {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(*retry_after_us)),
            );
            headers.insert(
                "retry-after-ms",
                HeaderValue::from(retry_after_us.div_ceil(1000).max(1)),
            );
        }
        if let GatewayError::Overloaded { .. } = &self {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let GatewayError::MethodNotAllowed { allow } = &self {
            headers.insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        (self.status(), headers, Bytes::from(body.to_string()))
    }
}

/// Whole seconds to wait (rounded up, at least 1: `Retry-After: 0` invites a retry storm).
fn retry_after_seconds(us: u64) -> u64 {
    us.div_ceil(1_000_000).max(1)
}
