//! What the gateway answers a request with: the status, the backend's header fields passed on as
//! they came, the gateway's own fields, and the body. The HTTP/1.1 connection writes it directly
//! (no header map is built for a backend's answer); HTTP/2 gets an [`http::Response`]. Both are
//! written from [`AnswerHead::for_each_field`], the one place that decides which fields an answer
//! carries: a stage adds or rewrites a field by putting it in `headers`, and drops one of the
//! backend's by naming it in `hidden`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::ctx::{LimitView, RequestCtx};
use crate::error::{GatewayError, ResponseBody};
use crate::http1::RawFields;
use crate::relay::Pending;
use crate::upstream::{Nominated, passes_to_client};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_GATEWAY_BACKEND: HeaderName = HeaderName::from_static("x-gateway-backend");
const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");

/// The limit fields (see [`AnswerHead::limits`]): a prefix, then what each says.
const TOKEN_PREFIX: &[u8] = b"x-ai-ratelimit-";
const REQUEST_PREFIX: &[u8] = b"x-ratelimit-";
const LIMIT_FIELDS: [&[u8]; 3] = [b"limit", b"remaining", b"reset"];

/// Where an answer's fields go ([`AnswerHead::for_each_field`]): a closure taking each name and
/// value, or a writer that puts the limits' numbers straight into its buffer.
pub trait FieldSink {
    fn field(&mut self, name: &[u8], value: &[u8]);

    /// Room for `bytes` more of fields, asked before the limit fields (a writer into a buffer
    /// grows it once for all of them).
    fn reserve(&mut self, _bytes: usize) {}

    /// A limit field: `name`, then `-<backend>` when given, and its number's `digits`. By
    /// default written through [`Self::field`].
    fn number(&mut self, name: &[u8], backend: Option<&[u8]>, digits: &[u8]) {
        match backend {
            None => self.field(name, digits),
            Some(backend) => joined(&[name, b"-", backend], |name| self.field(name, digits)),
        }
    }
}

impl<F: FnMut(&[u8], &[u8])> FieldSink for F {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self(name, value);
    }
}

/// `parts` one after the other, on the stack unless they are long.
fn joined(parts: &[&[u8]], with: impl FnOnce(&[u8])) {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut stack = [0u8; 96];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    with(buf);
}

/// A byte a field name may hold (RFC 9110 §5.6.2 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One answer to one request, ready to be written.
pub struct Answer {
    pub head: AnswerHead,
    pub body: ResponseBody,
}

/// An answer whose body does not carry the request's context yet: what the stages and the
/// attempts produce. [`Reply::attach`] hands the context over.
#[derive(Debug)]
pub struct Reply {
    pub head: AnswerHead,
    pub body: Pending,
}

/// Everything of an answer but its body.
#[derive(Debug)]
pub struct AnswerHead {
    pub status: StatusCode,
    /// The backend's fields; those [`passes_to_client`] accepts go out, in their order, unless
    /// `hidden` names them or `headers` has a field of the same name.
    pub passed: RawFields,
    /// Fields of the gateway's own (an error's, a stage's), written after the passed ones; each
    /// replaces a backend field of its name.
    pub headers: HeaderMap,
    /// Backend fields this answer holds back on top of what no answer passes (e.g. `server`).
    pub hidden: Vec<HeaderName>,
    /// The backend that answered (`x-gateway-backend`) and the attempts made
    /// (`x-gateway-attempts`).
    pub served_by: Option<(HeaderValue, u32)>,
    /// `x-request-id`, on every answer.
    pub request_id: Option<HeaderValue>,
    /// The answer to a HEAD: the `content-length` the backend gave (what a GET would carry),
    /// written in place of the empty body's.
    pub head_length: Option<u64>,
    /// The limits' fields (`X-AI-RateLimit-*`, with the `-<backend>` copies on a backend's
    /// answer, and `X-RateLimit-*`), kept as numbers and written by the writers after the
    /// gateway's own: through `headers` they were most of what in-process limits cost (nine
    /// names hashed and inserted, values shared and dropped, each backend field compared with
    /// every own one; docs/benchmarks.md, "Guardrails"). Each replaces a backend field of its
    /// name.
    pub limits: LimitView,
}

impl AnswerHead {
    /// A head of the gateway's own, with these fields.
    pub fn own(status: StatusCode, headers: HeaderMap) -> Self {
        Self {
            status,
            passed: RawFields::default(),
            headers,
            hidden: Vec::new(),
            served_by: None,
            request_id: None,
            head_length: None,
            limits: LimitView::default(),
        }
    }

    /// Whether a backend field goes out with this answer.
    fn passes(&self, name: &[u8], nominated: &Nominated<'_>) -> bool {
        let named = |known: &HeaderName| known.as_str().as_bytes().eq_ignore_ascii_case(name);
        passes_to_client(name)
            && !nominated.names(name)
            && !self.hidden.iter().any(named)
            && (self.headers.is_empty() || !self.headers.keys().any(named))
            && !self.is_limit_field(name)
    }

    /// The backend's name when it can end a field name (the `-<backend>` copies of the token
    /// fields are written only then).
    fn backend_suffix(&self) -> Option<&[u8]> {
        let name = self.served_by.as_ref()?.0.as_bytes();
        (!name.is_empty() && name.iter().all(|&b| is_tchar(b))).then_some(name)
    }

    /// Whether `name` is one of the limit fields this answer writes (a backend's field of that
    /// name is held back).
    fn is_limit_field(&self, name: &[u8]) -> bool {
        // Every backend field is asked: most are told apart by their first three bytes.
        let &[first, b'-', third, ..] = name else {
            return false;
        };
        if !first.eq_ignore_ascii_case(&b'x') {
            return false;
        }
        let after = |prefix: &[u8]| {
            (name.len() > prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix))
                .then(|| &name[prefix.len()..])
        };
        let ours = |rest: &[u8]| LIMIT_FIELDS.iter().any(|f| rest.eq_ignore_ascii_case(f));
        match third.to_ascii_lowercase() {
            b'a' if self.limits.tokens.is_some() => {
                let Some(rest) = after(TOKEN_PREFIX) else {
                    return false;
                };
                ours(rest)
                    || self.backend_suffix().is_some_and(|backend| {
                        rest.len()
                            .checked_sub(backend.len() + 1)
                            .is_some_and(|split| {
                                rest[split] == b'-'
                                    && rest[split + 1..].eq_ignore_ascii_case(backend)
                                    && ours(&rest[..split])
                            })
                    })
            }
            b'r' if self.limits.requests.is_some() => after(REQUEST_PREFIX).is_some_and(ours),
            _ => false,
        }
    }

    /// The limit fields, in the order written: the tokens' (`-<backend>` copies first), then
    /// the requests'. Spelled out one by one, so that a writer sees each name's length as a
    /// constant (its copy is then a few moves, not a call); each number formatted once, the
    /// room for all of them asked once.
    #[inline(always)]
    fn for_each_limit_field(&self, sink: &mut impl FieldSink) {
        /// The longest name, `-`, `: `, a `u64`'s digits and the line's end.
        const MOST: usize = 24 + 1 + 2 + 20 + 2;
        let LimitView { tokens, requests } = self.limits;
        if tokens.is_none() && requests.is_none() {
            return;
        }
        let backend = tokens.and_then(|_| self.backend_suffix());
        let lines = 3
            * (usize::from(tokens.is_some())
                + usize::from(backend.is_some())
                + usize::from(requests.is_some()));
        sink.reserve(lines * MOST + 3 * backend.map_or(0, <[u8]>::len));
        let mut digits = [
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        ];
        let [limit, remaining, reset] = &mut digits;
        if let Some(tokens) = tokens {
            let limit = limit.format(tokens.limit).as_bytes();
            let remaining = remaining.format(tokens.remaining).as_bytes();
            let reset = reset.format(tokens.reset_s).as_bytes();
            if let Some(backend) = backend {
                sink.number(b"x-ai-ratelimit-limit", Some(backend), limit);
                sink.number(b"x-ai-ratelimit-remaining", Some(backend), remaining);
                sink.number(b"x-ai-ratelimit-reset", Some(backend), reset);
            }
            sink.number(b"x-ai-ratelimit-limit", None, limit);
            sink.number(b"x-ai-ratelimit-remaining", None, remaining);
            sink.number(b"x-ai-ratelimit-reset", None, reset);
        }
        if let Some(requests) = requests {
            let limit = limit.format(requests.limit).as_bytes();
            let remaining = remaining.format(requests.remaining).as_bytes();
            let reset = reset.format(requests.reset_s).as_bytes();
            sink.number(b"x-ratelimit-limit", None, limit);
            sink.number(b"x-ratelimit-remaining", None, remaining);
            sink.number(b"x-ratelimit-reset", None, reset);
        }
    }

    /// Every field in the order written: the backend's that pass, the gateway's, then the marks.
    pub fn for_each_field(&self, sink: &mut impl FieldSink) {
        // The fields the backend's `connection` nominates are its hop-by-hop ones.
        let nominated = Nominated::of(&self.passed);
        for (name, value) in self.passed.iter() {
            if self.passes(name, &nominated) {
                sink.field(name, value);
            }
        }
        for (name, value) in &self.headers {
            sink.field(name.as_str().as_bytes(), value.as_bytes());
        }
        self.for_each_limit_field(sink);
        if let Some((backend, attempts)) = &self.served_by {
            sink.field(X_GATEWAY_BACKEND.as_str().as_bytes(), backend.as_bytes());
            sink.field(
                X_GATEWAY_ATTEMPTS.as_str().as_bytes(),
                attempts_value(*attempts).as_bytes(),
            );
        }
        if let Some(id) = &self.request_id {
            sink.field(X_REQUEST_ID.as_str().as_bytes(), id.as_bytes());
        }
    }

    /// The fields as a header map (HTTP/2): the same ones, decided by the same rule, that
    /// [`Self::for_each_field`] writes (the backend's values share its head's bytes).
    pub fn to_header_map(&self) -> HeaderMap {
        let nominated = Nominated::of(&self.passed);
        let mut map = self
            .passed
            .to_header_map(|name| self.passes(name, &nominated));
        for (name, value) in &self.headers {
            map.append(name, value.clone());
        }
        self.for_each_limit_field(&mut |name: &[u8], value: &[u8]| {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                map.insert(name, value);
            }
        });
        if let Some((backend, attempts)) = &self.served_by {
            map.insert(X_GATEWAY_BACKEND, backend.clone());
            map.insert(X_GATEWAY_ATTEMPTS, attempts_value(*attempts));
        }
        if let Some(id) = &self.request_id {
            map.insert(X_REQUEST_ID, id.clone());
        }
        if let Some(length) = self.head_length {
            map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        map
    }
}

impl Reply {
    /// The gateway's answer in the error shape.
    pub fn error(error: GatewayError) -> Self {
        let (status, headers, body) = error.into_parts();
        Self {
            head: AnswerHead::own(status, headers),
            body: Pending::Whole {
                data: body,
                usage: false,
            },
        }
    }

    /// A whole answer of the gateway's own.
    pub fn own(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            head: AnswerHead::own(status, headers),
            body: Pending::Whole {
                data: body,
                usage: false,
            },
        }
    }

    /// The answer, its body carrying the request's context (marked with its request id).
    pub fn attach(self, mut ctx: Box<RequestCtx>) -> Answer {
        let mut head = self.head;
        head.request_id = Some(ctx.id.clone());
        // An answer that carries no body (HEAD; 1xx, 204, 304) is complete once its head is
        // out: no connection reads a body it will not send, whether buffered or relayed.
        let status = head.status;
        if ctx.head.method == http::Method::HEAD {
            head.head_length = head
                .passed
                .get("content-length")
                .and_then(crate::http1::content_length);
        }
        if ctx.head.method == http::Method::HEAD
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
        {
            ctx.outcome.completed = true;
        }
        Answer {
            head,
            body: self.body.attach(ctx),
        }
    }
}

impl Answer {
    /// An answer the gateway makes itself outside any request (its admin endpoints).
    pub fn from_response(response: Response<ResponseBody>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            head: AnswerHead::own(parts.status, parts.headers),
            body,
        }
    }

    /// As an `http` response (HTTP/2, which needs a header map).
    pub fn into_response(self) -> Response<ResponseBody> {
        let headers = self.head.to_header_map();
        let mut response = Response::new(self.body);
        *response.status_mut() = self.head.status;
        *response.headers_mut() = headers;
        response
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Shown;

    fn head() -> AnswerHead {
        let mut head = AnswerHead::own(StatusCode::OK, HeaderMap::new());
        head.passed = RawFields::from_pairs(&[
            ("Content-Type", "application/json"),
            ("Server", "backend/1.0"),
            ("X-Powered-By", "x"),
            ("x-ms-region", "East US"),
            ("Transfer-Encoding", "chunked"),
            ("X-Gateway-Backend", "forged"),
        ]);
        head.served_by = Some((HeaderValue::from_static("eus"), 2));
        head.request_id = Some(HeaderValue::from_static("rid"));
        head
    }

    fn written(head: &AnswerHead) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        head.for_each_field(&mut |name: &[u8], value: &[u8]| {
            fields.push((
                String::from_utf8_lossy(name).to_ascii_lowercase(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        });
        fields
    }

    /// The HTTP/1.1 writer writes `expected`, in that order; the h2 header map holds the same.
    fn writes_the_same_both_ways(head: &AnswerHead, expected: &[(&str, &str)]) {
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(written(head), expected);
        let (mut by_map, mut sorted) = (mapped(head), expected);
        by_map.sort();
        sorted.sort();
        assert_eq!(by_map, sorted);
    }

    fn mapped(head: &AnswerHead) -> Vec<(String, String)> {
        head.to_header_map()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn a_stage_adds_rewrites_and_drops_fields_the_same_way_for_both_writers() {
        let mut head = head();
        head.hidden.push(HeaderName::from_static("server"));
        head.hidden.push(HeaderName::from_static("x-powered-by"));
        head.headers
            .insert("x-ms-region", HeaderValue::from_static("rewritten"));
        head.headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        writes_the_same_both_ways(
            &head,
            &[
                ("content-type", "application/json"),
                ("x-ms-region", "rewritten"),
                ("x-content-type-options", "nosniff"),
                ("x-gateway-backend", "eus"),
                ("x-gateway-attempts", "2"),
                ("x-request-id", "rid"),
            ],
        );
    }

    #[test]
    fn without_a_policy_the_backend_fields_pass_minus_framing_and_forgeries() {
        let head = head();
        let names: Vec<String> = written(&head).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "server",
                "x-powered-by",
                "x-ms-region",
                "x-gateway-backend",
                "x-gateway-attempts",
                "x-request-id"
            ]
        );
    }

    #[test]
    fn limit_fields_are_written_with_the_backend_copies_and_replace_the_backends() {
        let mut head = head();
        head.passed = RawFields::from_pairs(&[
            ("X-AI-RateLimit-Remaining", "forged"),
            ("x-ai-ratelimit-reset-EUS", "forged"),
            ("X-RateLimit-Limit", "forged"),
            ("x-ai-ratelimit-remaining-other", "7"),
            ("x-ratelimit-remaining-tokens", "99"),
        ]);
        head.limits = LimitView {
            tokens: Some(Shown {
                limit: 40,
                remaining: 23,
                reset_s: 60,
            }),
            requests: Some(Shown {
                limit: 5,
                remaining: 4,
                reset_s: 1,
            }),
        };
        writes_the_same_both_ways(
            &head,
            &[
                ("x-ai-ratelimit-remaining-other", "7"),
                ("x-ratelimit-remaining-tokens", "99"),
                ("x-ai-ratelimit-limit-eus", "40"),
                ("x-ai-ratelimit-remaining-eus", "23"),
                ("x-ai-ratelimit-reset-eus", "60"),
                ("x-ai-ratelimit-limit", "40"),
                ("x-ai-ratelimit-remaining", "23"),
                ("x-ai-ratelimit-reset", "60"),
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "4"),
                ("x-ratelimit-reset", "1"),
                ("x-gateway-backend", "eus"),
                ("x-gateway-attempts", "2"),
                ("x-request-id", "rid"),
            ],
        );
        // No backend answered (a refusal): no copies; a name that cannot end a field: none.
        head.served_by = None;
        head.passed = RawFields::default();
        assert!(!written(&head).iter().any(|(n, _)| n.ends_with("-eus")));
        head.served_by = Some((HeaderValue::from_static("east us"), 1));
        let names: Vec<String> = written(&head).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.iter().filter(|n| n.starts_with("x-ai-")).count(), 3);
    }
}
