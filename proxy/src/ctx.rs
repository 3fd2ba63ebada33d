//! `RequestCtx`: the one per-request context. Created when a request starts, read and written by
//! every stage, carried by the answer's body until the request is over, and dropped exactly once:
//! its drop is the one end of every request (see [`crate::end`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};

use crate::answer::Reply;
use crate::config::Lane;
use crate::error::GatewayError;
use crate::gateway::{BodyBudget, Gateway};
use crate::http1::RawFields;
use crate::stages::auth::Consumer;
use crate::stages::body::RequestBody;
use crate::stages::limits::Reserved;
use crate::stages::route::Route;
use crate::usage::{Estimate, Usage};

/// A client's request head: what the stages read of a request besides its body. The fields stay
/// in the bytes they arrived in (HTTP/1.1); an HTTP/2 request's map is laid out the same way.
#[derive(Debug)]
pub struct ClientHead {
    pub method: Method,
    pub uri: Uri,
    pub fields: RawFields,
}

impl ClientHead {
    /// The head of a request from hyper (HTTP/2).
    pub fn from_parts(parts: &http::request::Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            fields: RawFields::from_map(&parts.headers),
        }
    }

    /// The head of a request the connection refused before it could be read.
    pub fn unread() -> Self {
        Self {
            method: Method::GET,
            uri: Uri::from_static("/"),
            fields: RawFields::default(),
        }
    }
}

/// Why the stages stopped before the attempts: the gateway answers the request itself.
#[derive(Debug)]
pub enum Stop {
    /// A refusal in the error shape (401, 404, 413, a limit...).
    Refuse(GatewayError),
    /// An answer made by a stage (a preflight, a cache hit).
    Answer(Box<Reply>),
}

impl From<GatewayError> for Stop {
    fn from(error: GatewayError) -> Self {
        Stop::Refuse(error)
    }
}

/// What a stage's check decides: `Ok(())` goes on to the next stage.
pub type Flow = Result<(), Stop>;

/// Who an OIDC token says the caller is (claims that go upstream as `X-Principal-Id`, ...).
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub id: Option<Box<str>>,
    pub tenant: Option<Box<str>>,
    pub email: Option<Box<str>>,
    pub name: Option<Box<str>>,
}

/// A limit's state as its answer fields show it (`X-AI-RateLimit-*`, `X-RateLimit-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window ends (or the rate bucket is empty again).
    pub reset_s: u64,
}

impl Shown {
    /// The one of two that leaves the client less room.
    pub fn tighter(self, other: Option<Shown>) -> Shown {
        match other {
            Some(other) if other.remaining < self.remaining => other,
            _ => self,
        }
    }
}

/// What the limits showed for one request: tokens (`X-AI-RateLimit-*`: the token limit or the
/// consumer's token quota, the tighter) and requests (`X-RateLimit-*`: the request quota or
/// the request rate, the tighter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitView {
    pub tokens: Option<Shown>,
    pub requests: Option<Shown>,
}

/// How the request went, filled in as it goes; the end of the request records it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Status of the answer the client got; 0 while there is none.
    pub status: u16,
    /// The gateway's error code when it answered itself (`x-gateway-error`).
    pub error: Option<&'static str>,
    /// The backend whose answer was committed (index into the gateway's backends).
    pub backend: Option<usize>,
    /// Backend attempts made.
    pub attempts: u32,
    /// The committed attempt is a stream whose outcome is counted when it ends.
    pub attempt_open: bool,
    /// Time to the committed attempt's response head, from its start.
    pub ttfb: Option<Duration>,
    /// `x-ms-region` of the committed answer.
    pub region: Option<HeaderValue>,
    pub usage: Option<Usage>,
    /// `usage` is the gateway's estimate: the backend reported none.
    pub usage_estimated: bool,
    /// The answer's body reached its end (false: the client went away, the stream broke).
    pub completed: bool,
    /// Why a body already under way did not complete (`stream_error`, `timeout`, `shutdown`).
    pub broken: Option<&'static str>,
}

/// Everything one request carries through the stages. Boxed once per request: stages borrow it,
/// and the answer's body takes it over, so moving it costs a pointer.
pub struct RequestCtx {
    /// The config generation serving the request (its metrics, access log settings).
    pub gateway: Arc<Gateway>,
    /// `x-request-id`: the client's if sane, else a new one. On every answer and sent upstream.
    pub id: HeaderValue,
    pub client: SocketAddr,
    /// When the request arrived; deadlines and latencies count from here.
    pub started: Instant,
    pub head: ClientHead,
    /// Set by the routing stage.
    pub route: Option<Route>,
    /// Set by client auth when a key matched.
    pub consumer: Option<Consumer>,
    /// Set by OIDC when a token was valid.
    pub principal: Option<Principal>,
    /// The request's lane (the consumer's default, or `x-priority`).
    pub lane: Lane,
    /// The buffered body and what the gateway read from it; dropped once an answer is committed.
    pub body: Option<RequestBody>,
    /// The body's bytes held against `server.max_buffered_body_bytes` until the request ends.
    pub body_budget: BodyBudget,
    /// The `model` metric label (bounded, see [`crate::metrics::model_label`]).
    pub model: Option<Arc<str>>,
    /// The client asked for a stream.
    pub stream: bool,
    /// Backend holding the Responses state this request refers to.
    pub pinned: Option<usize>,
    /// The consistent-hash key, when hashing is configured.
    pub hash_key: Option<Vec<u8>>,
    /// What the limits reserved; settled (charged or refunded) by the limits stage when the
    /// request ends.
    pub reserved: Reserved,
    /// What the limits showed for the request (their answer fields).
    pub limits: LimitView,
    /// Set when something counts this request's tokens (a limit): what it is estimated to
    /// spend, for when its backend reports no usage (the relay adds the text it passes on).
    pub estimate: Option<Estimate>,
    /// Key of the response cache entry this request reads or fills.
    pub cache_key: Option<Bytes>,
    /// The request's trace span (`Span::none()` while traces are not exported).
    pub span: tracing::Span,
    /// Fields a stage adds to every attempt's request upstream.
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
    /// Fields a stage adds to the answer (they replace a backend field of the same name).
    pub response_headers: http::HeaderMap,
    pub outcome: Outcome,
    /// The request never reached the stages (the connection refused its head).
    pub unread: bool,
}

impl std::fmt::Debug for RequestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCtx")
            .field("id", &self.id)
            .field("route", &self.route)
            .field("consumer", &self.consumer)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl RequestCtx {
    /// The context of a request that has just arrived.
    pub fn start(gateway: Arc<Gateway>, head: ClientHead, client: SocketAddr) -> Box<Self> {
        let id = request_id(&head.fields);
        Box::new(Self {
            gateway,
            id,
            client,
            started: Instant::now(),
            head,
            route: None,
            consumer: None,
            principal: None,
            lane: Lane::High,
            body: None,
            body_budget: BodyBudget::default(),
            model: None,
            stream: false,
            pinned: None,
            hash_key: None,
            reserved: Reserved::default(),
            limits: LimitView::default(),
            estimate: None,
            cache_key: None,
            span: tracing::Span::none(),
            upstream_headers: Vec::new(),
            response_headers: http::HeaderMap::new(),
            outcome: Outcome::default(),
            unread: false,
        })
    }

    /// The context of a request the connection refused before the stages (malformed, too
    /// slow, an unsupported coding); it ends when the refusal has been written.
    pub fn unread(gateway: Arc<Gateway>, client: SocketAddr) -> Box<Self> {
        let mut ctx = Self::start(gateway, ClientHead::unread(), client);
        ctx.unread = true;
        ctx
    }

    /// The request path (with any test prefix).
    pub fn path(&self) -> &str {
        self.head.uri.path()
    }

    /// Records that the gateway answers with this error itself.
    pub fn refused(&mut self, error: &GatewayError) {
        self.outcome.status = error.status().as_u16();
        self.outcome.error = Some(error.code());
        self.outcome.attempts = error.attempts_sent();
    }
}

/// The client's `x-request-id` if it is sane, else a new one (32 random hex digits).
fn request_id(fields: &RawFields) -> HeaderValue {
    if let Some(value) = fields.get_value("x-request-id") {
        let bytes = value.as_bytes();
        if !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic) {
            return value;
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut text = [0u8; 32];
    for digit in text.iter_mut().rev() {
        *digit = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    // An owned, shared buffer: the id is cloned for the answer and upstream, and a plain
    // `from_bytes` copy would allocate again on the first clone.
    HeaderValue::from_maybe_shared(Bytes::from_owner(text))
        .unwrap_or(HeaderValue::from_static("invalid"))
}
