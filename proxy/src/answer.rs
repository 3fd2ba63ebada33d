//! What the gateway answers a request with: the status, the backend's header fields passed on as
//! they came, the gateway's own fields, and the body. The HTTP/1.1 connection writes it directly
//! (no header map is built for a backend's answer); HTTP/2 gets an [`http::Response`].

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::error::ResponseBody;
use crate::http1::RawFields;
use crate::upstream::passes_to_client;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_GATEWAY_BACKEND: HeaderName = HeaderName::from_static("x-gateway-backend");
const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");

/// One answer to one request.
pub struct Answer {
    pub head: AnswerHead,
    pub body: ResponseBody,
}

/// Everything of an answer but its body.
pub struct AnswerHead {
    pub status: StatusCode,
    /// The backend's fields; those [`passes_to_client`] accepts go out, in their order.
    pub passed: RawFields,
    /// Fields of the gateway's own (an error's, test mode's), written after the passed ones.
    pub headers: HeaderMap,
    /// The backend that answered (`x-gateway-backend`) and the attempts made
    /// (`x-gateway-attempts`).
    pub served_by: Option<(HeaderValue, u32)>,
    /// `x-request-id`, on every answer.
    pub request_id: Option<HeaderValue>,
}

impl Answer {
    /// An answer the gateway makes itself (errors, its own endpoints).
    pub fn from_response(response: Response<ResponseBody>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            head: AnswerHead {
                status: parts.status,
                passed: RawFields::default(),
                headers: parts.headers,
                served_by: None,
                request_id: None,
            },
            body,
        }
    }

    /// As an `http` response (HTTP/2, which needs a header map).
    pub fn into_response(self) -> Response<ResponseBody> {
        let mut head = self.head;
        let mut headers = head.passed.to_header_map(passes_to_client);
        // The gateway's own fields replace the backend's of the same name.
        headers.extend(head.headers);
        if let Some((backend, attempts)) = head.served_by.take() {
            headers.insert(X_GATEWAY_BACKEND, backend);
            headers.insert(X_GATEWAY_ATTEMPTS, attempts_value(attempts));
        }
        if let Some(id) = head.request_id.take() {
            headers.insert(X_REQUEST_ID, id);
        }
        let mut response = Response::new(self.body);
        *response.status_mut() = head.status;
        *response.headers_mut() = headers;
        response
    }
}

impl AnswerHead {
    /// Every field in the order written: the backend's, the gateway's, then the marks.
    pub fn for_each_field(&self, mut field: impl FnMut(&[u8], &[u8])) {
        for (name, value) in self.passed.iter() {
            if passes_to_client(name) {
                field(name, value);
            }
        }
        for (name, value) in &self.headers {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some((backend, attempts)) = &self.served_by {
            field(X_GATEWAY_BACKEND.as_str().as_bytes(), backend.as_bytes());
            field(
                X_GATEWAY_ATTEMPTS.as_str().as_bytes(),
                attempts_value(*attempts).as_bytes(),
            );
        }
        if let Some(id) = &self.request_id {
            field(X_REQUEST_ID.as_str().as_bytes(), id.as_bytes());
        }
    }
}

/// `x-gateway-attempts`: a constant for the usual counts, no allocation.
fn attempts_value(attempts: u32) -> HeaderValue {
    const SMALL: [&str; 9] = ["0", "1", "2", "3", "4", "5", "6", "7", "8"];
    match SMALL.get(attempts as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(attempts),
    }
}
