//! The request stages, in order, in one place. Read top to bottom, this is what the gateway does
//! with a request; each stage lives in its own module.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;

use crate::answer::{Answer, AnswerHead};
use crate::config::HashOn;
use crate::error::{BoxError, GatewayError};
use crate::failover::{AttemptRequest, Winner, WinnerBody, attempt};
use crate::gateway::Gateway;
use crate::http1::{Joined, RawFields};
use crate::metrics::RequestLabels;
use crate::relay::{Accounting, Relay, Whole};
use crate::request_body::RequestBody;
use crate::routes::{self, Operation};
use crate::scan::Scan;

/// Consumer label of requests without a known key (one shared allocation).
static ANONYMOUS: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("anonymous"));
/// The empty label value (no backend, no model).
static EMPTY_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
/// Distinct `model` label values per worker; see [`model_label`].
const MODEL_LABELS: usize = 64;
/// The `model` label of models beyond the first [`MODEL_LABELS`].
static OTHER_MODEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("other"));

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
}

/// Handles one client request end to end.
///
/// One async function on purpose: every nested future is built and then moved into its parent,
/// so each level of nesting copies the whole state below it once per request. The awaited stages
/// (body, attempts) are the only nested futures; the attempt phase is boxed, as it is large.
pub async fn handle<B>(gw: Arc<Gateway>, request: ClientHead, body: B, client: SocketAddr) -> Answer
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let started = Instant::now();
    // 1. Request id first, so every answer (even a 401) can be correlated.
    let request_id = request_id(&request.fields);
    let mut known = Known::default();
    let served: Result<Answer, GatewayError> = 'stages: {
        // 2. Client auth before anything costly: unknown callers learn nothing about routes.
        match gw.auth.authenticate(&request.fields) {
            Ok(consumer) => known.consumer = consumer.map(|c| c.name),
            Err(error) => break 'stages Err(error),
        }
        // 3. Route: only Azure OpenAI paths are served.
        let Some(route) = routes::classify(request.uri.path(), gw.config.server.test_mode) else {
            break 'stages Err(GatewayError::NotFound);
        };
        known.route = (route.family.label(), route.operation.label());
        // 4. Buffer the body (bounded) so any backend can be retried with it.
        let body = match read_body(body, &request.fields, gw.config.server.max_body_bytes).await {
            Ok(body) => RequestBody::new(body, route.operation, gw.config.upstream.stream_usage),
            Err(error) => break 'stages Err(error),
        };
        known.model = Some(model_label(body.model.as_deref(), route.deployment));
        known.stream = body.stream;
        // 5. Backend selection inputs: Responses affinity and the consistent-hash key.
        let pinned = affinity(&gw, route.response_id, body.previous_response_id.as_deref());
        let hash_key = hash_key(&gw, &request.fields, known.consumer.as_deref(), client);
        // 6. Attempts with failover until an answer can be committed.
        let wanted = AttemptRequest {
            route: &route,
            query: request.uri.query(),
            method: &request.method,
            headers: &request.fields,
            body: &body,
            request_id: &request_id,
            hash_key: hash_key.as_deref(),
            pinned,
            started,
        };
        let winner = match Box::pin(attempt(&gw, &wanted)).await {
            Ok(winner) => winner,
            Err(error) => break 'stages Err(error),
        };
        // 7. Response: the backend's fields passed on, body relayed, accounting when it ends.
        let accounting = Accounting {
            gateway: gw.clone(),
            labels: known.labels(
                gw.backends[winner.backend].config.name.clone(),
                winner.head.status.as_u16(),
            ),
            request_id: request_id.clone(),
            started,
            ttfb: Some(winner.ttfb),
            attempts: winner.attempts,
            usage: None,
            completed: false,
            request_line: gw
                .config
                .log
                .access
                .then(|| (request.method.clone(), request.uri.clone())),
            client,
            _in_flight: None,
        };
        let mut answer = respond(&gw, &route, &body, winner, accounting);
        if route.test_prefixed {
            test_header_shim(&request.fields, &mut answer.head);
        }
        Ok(answer)
    };
    let mut answer = served.unwrap_or_else(|error| {
        let labels = known.labels(EMPTY_LABEL.clone(), error.status().as_u16());
        if gw.config.log.access {
            tracing::info!(
                target: "access",
                request_id = request_id.to_str().unwrap_or_default(),
                consumer = %labels.consumer,
                client_ip = %client.ip(),
                method = %request.method,
                path = request.uri.path(),
                route = labels.route,
                operation = labels.operation,
                status = labels.status,
                error = error.code(),
                "request"
            );
        }
        gw.metrics.request(&labels, None);
        Answer::from_response(error.into_response())
    });
    answer.head.request_id = Some(request_id);
    answer
}

/// Counts a request the connection refused before it reached the stages (malformed, too slow,
/// an unsupported transfer coding): nothing is known of it but its answer's status.
pub fn count_refused(gw: &Gateway, status: http::StatusCode) {
    let labels = Known::default().labels(EMPTY_LABEL.clone(), status.as_u16());
    gw.metrics.request(&labels, None);
}

/// What the stages have learned of a request so far. An answer the gateway makes itself (401,
/// 404, 413, every backend throttled or failed) is counted under the route, consumer and model
/// known when it was made, so a consumer's 429s and 502s show up as theirs.
struct Known {
    route: (&'static str, &'static str),
    consumer: Option<Arc<str>>,
    model: Option<Arc<str>>,
    stream: bool,
}

impl Default for Known {
    fn default() -> Self {
        Self {
            route: ("none", "none"),
            consumer: None,
            model: None,
            stream: false,
        }
    }
}

impl Known {
    /// The request's metric labels; what is known is moved out, not copied.
    fn labels(&mut self, backend: Arc<str>, status: u16) -> RequestLabels {
        RequestLabels {
            route: self.route.0,
            operation: self.route.1,
            consumer: self.consumer.take().unwrap_or_else(|| ANONYMOUS.clone()),
            model: self.model.take().unwrap_or_else(|| EMPTY_LABEL.clone()),
            backend,
            status,
            stream: self.stream,
        }
    }
}

/// The `model` label: the body's model, else the deployment in the path. Both come from
/// clients, and every distinct value becomes time series kept for the life of the process, so
/// a worker gives its first [`MODEL_LABELS`] models a label each (kept, so the usual few cost no
/// allocation per request) and counts any further one as `other`.
fn model_label(model: Option<&str>, deployment: Option<&str>) -> Arc<str> {
    thread_local! {
        static MODELS: std::cell::RefCell<Vec<Arc<str>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Some(model) = model.or(deployment) else {
        return EMPTY_LABEL.clone();
    };
    MODELS.with_borrow_mut(|kept| {
        if let Some(known) = kept.iter().find(|known| ***known == *model) {
            return known.clone();
        }
        if kept.len() == MODEL_LABELS {
            return OTHER_MODEL.clone();
        }
        let label: Arc<str> = Arc::from(model);
        kept.push(label.clone());
        label
    })
}

/// The answer from the winning backend: its fields and status as they came, marked with who
/// answered, and the body relayed (accounted when it ends).
fn respond(
    gw: &Arc<Gateway>,
    route: &routes::Route<'_>,
    request: &RequestBody,
    winner: Winner,
    mut accounting: Accounting,
) -> Answer {
    let backend = &gw.backends[winner.backend];
    let head = winner.head;
    let idle = gw.config.upstream.read_timeout;
    let body = match winner.body {
        WinnerBody::Buffered(bytes) => {
            // Before the answer leaves: a client may send its follow-up as soon as it has it.
            remember_response(gw, route.operation, head.status, &bytes, winner.backend);
            accounting.completed = true;
            // `content-length` is written from the body's exact size by the connection.
            Whole::new(bytes, accounting).boxed_unsync()
        }
        WinnerBody::Sse {
            prefetched,
            framer,
            upstream,
        } => {
            if route.operation == Operation::ResponsesCreate {
                for event in &prefetched {
                    remember_response(gw, route.operation, head.status, event, winner.backend);
                }
            }
            accounting._in_flight = Some(backend.state.track());
            let gauge = gw.backend_metrics[winner.backend].active_streams.clone();
            Relay::sse(
                prefetched,
                framer,
                upstream,
                request.injected_usage,
                idle,
                accounting,
                gauge,
            )
            .boxed_unsync()
        }
        WinnerBody::Raw(upstream) => Relay::raw(upstream, idle, accounting).boxed_unsync(),
    };
    Answer {
        head: AnswerHead {
            status: head.status,
            passed: head.fields,
            headers: HeaderMap::new(),
            served_by: Some((backend.name_header.clone(), winner.attempts)),
            request_id: None,
        },
        body,
    }
}

/// Reads the request body up to `limit` bytes; 413 above it (checked on `content-length` first).
async fn read_body<B>(body: B, fields: &RawFields, limit: u64) -> Result<Bytes, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let declared = fields
        .get("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut gathered = Joined::default();
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|error| {
            let timed_out = error
                .into()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
            if timed_out {
                GatewayError::RequestTimeout
            } else {
                GatewayError::BadRequest("The request body could not be read.".into())
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if (gathered.len() + data.len()) as u64 > limit {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
            gathered.push(data);
        }
    }
    Ok(gathered.take().unwrap_or_default())
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
    // An owned, shared buffer: the id is cloned for the accounting and the response, and a
    // plain `from_bytes` copy would allocate again on the first clone.
    HeaderValue::from_maybe_shared(Bytes::from_owner(text))
        .unwrap_or(HeaderValue::from_static("invalid"))
}

/// The backend holding the Responses state this request refers to, if known.
fn affinity(gw: &Gateway, path_id: Option<&str>, previous: Option<&str>) -> Option<usize> {
    let id = path_id.or(previous)?;
    let name = gw.affinity.lookup(id)?;
    gw.backend_index(&name)
}

/// After a created response, remember which backend holds it.
fn remember_response(
    gw: &Gateway,
    operation: Operation,
    status: StatusCode,
    body: &[u8],
    backend: usize,
) {
    if operation != Operation::ResponsesCreate || !status.is_success() {
        return;
    }
    let data = match crate::sse::parts(body) {
        (_, Some(data)) if body.starts_with(b"event:") || body.starts_with(b"data:") => data,
        _ => body,
    };
    if let Some(id) = created_response_id(data).filter(|id| id.starts_with("resp")) {
        gw.affinity.remember(id, &gw.backends[backend].config.name);
    }
}

/// The id of a created response: `response.id` of a streamed event about one
/// (`response.created`), else the `id` of a Responses object. Walked with the scanner, not
/// parsed into values: an agent's answer runs to megabytes of output. `None` for anything but a
/// whole JSON object, or an id with escapes (response ids have none).
fn created_response_id(json: &[u8]) -> Option<&str> {
    type Ids<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    fn ids<'a>(scan: &mut Scan<'a>) -> Option<Ids<'a>> {
        let (mut id, mut nested) = (None, None);
        scan.members(|scan, key| {
            match (key, scan.peek()?) {
                (b"id", b'"') => id = Some(scan.string()?),
                (b"response", b'{') => nested = ids(scan)?.0,
                _ => scan.skip_value()?,
            }
            Some(())
        })?;
        Some((id, nested))
    }
    let mut scan = Scan::new(json);
    let (id, nested) = ids(&mut scan)?;
    let raw = nested.or(id).filter(|raw| !raw.contains(&b'\\'))?;
    scan.at_end()
        .then(|| std::str::from_utf8(raw).ok())
        .flatten()
}

/// The consistent-hash key of a request, when hashing is configured.
fn hash_key(
    gw: &Gateway,
    fields: &RawFields,
    consumer: Option<&str>,
    client: SocketAddr,
) -> Option<Vec<u8>> {
    match gw.balancer.hash_on()? {
        HashOn::Consumer => consumer.map(|name| name.as_bytes().to_vec()),
        HashOn::Header(name) => fields.get(name.as_str()).map(<[u8]>::to_vec),
        HashOn::Cookie(name) => fields
            .get_all("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes().to_vec()),
        HashOn::RemoteAddr => Some(client.ip().to_string().into_bytes()),
    }
}

/// Test mode only: the headers the upstream accelerator's end-to-end tests read.
fn test_header_shim(request: &RawFields, answer: &mut AnswerHead) {
    let low = request
        .get("x-priority")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"low"));
    let priority = if low { "low" } else { "high" };
    // Gateway limit headers first (`X-AI-RateLimit-Remaining[-<backend>]`, then a request quota's
    // `X-RateLimit-Remaining`), then what Azure said.
    let passed = &answer.passed;
    const PREFIX: &[u8] = b"x-ai-ratelimit-remaining";
    let remaining = passed
        .iter()
        .find(|(name, _)| {
            name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        })
        .map(|(_, value)| value)
        .or_else(|| passed.get("x-ratelimit-remaining"))
        .or_else(|| passed.get("x-ratelimit-remaining-tokens"))
        .and_then(|value| HeaderValue::from_bytes(value).ok())
        .unwrap_or(HeaderValue::from_static("0"));
    let headers = &mut answer.headers;
    headers.insert("x-gw-priority", HeaderValue::from_static(priority));
    headers.insert("x-gw-remaining-tokens", remaining);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn the_created_response_id_is_read_from_objects_and_events() {
        let cases: [(&[u8], Option<&str>); 10] = [
            (br#"{"id":"resp_1","object":"response","output":[{"id":"msg_1","content":[{"text":"a \"}\" b"}]}]}"#, Some("resp_1")),
            (br#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_2","status":"in_progress"}}"#, Some("resp_2")),
            (br#"{"id":"evt_1","response":{"id":"resp_3"}}"#, Some("resp_3")),
            (br#"{"response":{"status":"x"},"id":"resp_4"}"#, Some("resp_4")),
            (br#" { "id" : "resp_5" } "#, Some("resp_5")),
            (br#"{"id":5}"#, None),
            (br#"{"id":"resp_\u0036"}"#, None),
            (br#"{"id":"resp_7""#, None),
            (br#"{"id":"resp_8"} trailing"#, None),
            (br#"["resp_9"]"#, None),
        ];
        for (json, id) in cases {
            assert_eq!(
                super::created_response_id(json),
                id,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }

    fn size_of<F: std::future::Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A request's future is built and moved at every stage (each level of nesting copies the
    /// state below it); rare or large parts (connecting, TLS, the attempt phase) are boxed so
    /// the copies stay small. Sizes, not timings: deterministic. Was 2 848 bytes before the
    /// stages were flattened into `handle`.
    #[test]
    fn request_futures_stay_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let yaml = "version: 1\nbackends:\n  - { name: a, endpoint: 'http://127.0.0.1:9', auth: { mode: api-key, api_key: k } }\n";
            let config = crate::GatewayConfig::parse("t.yaml", yaml).unwrap();
            let gw = crate::gateway::Gateway::new(config, Arc::new(crate::metrics::Metrics::new()), None);
            let head = super::ClientHead {
                method: http::Method::POST,
                uri: http::Uri::from_static("/"),
                fields: Default::default(),
            };
            let body = http_body_util::Full::new(bytes::Bytes::new());
            let handle = super::handle(gw.clone(), head, body, "127.0.0.1:1".parse().unwrap());
            assert!(size_of(&handle) <= 1280, "handle: {} bytes", size_of(&handle));
            let pool = gw.backends[0].pool.clone();
            let send = pool.send(pool.request(&http::Method::GET, "/"), bytes::Bytes::new());
            assert!(size_of(&send) <= 640, "send: {} bytes", size_of(&send));
        });
    }
}
