//! Attempts with failover: walk the candidate backends (affinity first, then tiers from the highest
//! priority, balancer order inside a tier), try each at most once, and return the first answer
//! that can be committed to the client. Nothing reaches the client before that, so every failure
//! here can still move to the next backend.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::backend::{Failure as HealthFailure, Quota, Unavailable, millis};
use crate::clock::now_ms;
use crate::config::BackendConfig;
use crate::ctx::RequestCtx;
use crate::error::{AttemptRecord, GatewayError, Outcome};
use crate::gateway::Gateway;
use crate::http1::{Joined, poll_once};
use crate::sse::{self, Framer, Opening};
use crate::stages::body::RequestBody;
use crate::stages::route::{Operation, Route, write_upstream_path_and_query};
use crate::upstream::{
    BackendHead, REMAINING_REQUESTS, REMAINING_TOKENS, SendError, UpstreamBody,
    forward_request_headers, header_i64, retry_hint,
};

const API_KEY: http::HeaderName = http::HeaderName::from_static("api-key");
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

thread_local! {
    /// Scratch space for the backend path of the attempt being built (no allocation per attempt).
    static UPSTREAM_PATH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Largest response body the gateway buffers for a JSON operation.
const MAX_BUFFERED_RESPONSE: usize = 64 * 1024 * 1024;

/// What the attempt phase reads of a request: its context, and the route and body the stages
/// before it found (the phase runs only once both are known).
struct Wanted<'a> {
    ctx: &'a RequestCtx,
    route: &'a Route,
    body: &'a RequestBody,
}

impl Wanted<'_> {
    /// The deployment this request uses on `backend`, whose quota it spends: the legacy path's
    /// deployment, else the body's `model` (v1, Responses), each after the backend's alias;
    /// `""` when the request names none (e.g. `/openai/v1/models`).
    fn deployment_on<'b>(&'b self, backend: &'b BackendConfig) -> &'b str {
        let named = self
            .route
            .deployment(self.ctx.head.uri.path())
            .or(self.body.model.as_deref());
        match named {
            Some(name) => backend.deployment(name),
            None => "",
        }
    }
}

/// The body of the response the gateway committed to.
pub enum WinnerBody {
    /// Fully read (JSON operations and error passthrough).
    Buffered(Bytes),
    /// An event stream: events already read while checking its opening, then the rest.
    Sse {
        prefetched: Vec<Bytes>,
        framer: Framer,
        upstream: UpstreamBody,
    },
    /// Anything else, relayed as it comes.
    Raw(UpstreamBody),
}

/// The answer chosen for the client.
pub struct Winner {
    pub backend: usize,
    pub attempts: u32,
    /// The committed attempt's outcome is counted when its stream ends.
    pub attempt_open: bool,
    pub head: BackendHead,
    pub body: WinnerBody,
    pub ttfb: Duration,
}

enum Failure {
    Status {
        outcome: Outcome,
        status: u16,
        throttled: bool,
        detail: Option<String>,
    },
    Transport {
        outcome: Outcome,
        detail: &'static str,
    },
    Stream {
        code: String,
        throttled: bool,
    },
}

/// Runs attempts until one answer can be committed, or every candidate is used up.
pub async fn attempt(gw: &Gateway, ctx: &RequestCtx) -> Result<Winner, GatewayError> {
    let (Some(route), Some(body)) = (ctx.route.as_ref(), ctx.body.as_ref()) else {
        return Err(GatewayError::NotFound);
    };
    let req = &Wanted { ctx, route, body };
    let upstream = &gw.config.upstream;
    let deadline = ctx.started + upstream.request_deadline;
    let mut considered = Considered::new(gw.backends.len());
    let mut records: Vec<AttemptRecord> = Vec::new();
    let mut attempts = 0u32;
    let mut earliest_reopen: Option<u64> = None;
    let mut previous_failure: Option<(usize, Outcome)> = None;
    let mut deadline_hit = false;
    // Affinity pins the first candidate; other backends are only tried if it says its state
    // cannot be verified there (`invalid_encrypted_content`).
    let mut pinned = ctx.pinned;
    let mut tier = 0;
    // Backends skipped as unhealthy, in the order met. Once every other candidate is used up
    // they are tried after all (last resort): the mark is a guess from recent failures (an
    // overload's connect errors set it as well as a dead region), and with nothing else left a
    // try costs one attempt where skipping it is a certain error for the client.
    let mut last_resort: Vec<usize> = Vec::new();
    // Backends that answered this request with a 5xx. Held against them (passive health) only
    // if another backend then answers without one: a request that every backend answers with a
    // 5xx is more likely a request nobody can serve than backends that are all down, and must
    // not take every backend out of rotation.
    let mut answered_5xx: Vec<usize> = Vec::new();

    loop {
        let candidate = match pinned {
            Some(i) if !considered.contains(i) => Some(i),
            Some(_) => None,
            None => next_in_tiers(gw, req, &considered, &mut tier),
        };
        let (index, forced) = match candidate {
            Some(index) => {
                considered.insert(index);
                (index, false)
            }
            None if !last_resort.is_empty() => (last_resort.remove(0), true),
            None => break,
        };
        let backend = &gw.backends[index];
        let metrics = &gw.backend_metrics[index];
        if attempts as usize >= upstream.max_attempts {
            if forced {
                last_resort.insert(0, index); // Not tried: reported as skipped below.
            }
            break;
        }
        // The deployment's quota slot, looked up once per attempt (before the request goes out:
        // afterwards the request's bytes are cold). None: never answered for on this backend.
        let quota = backend
            .state
            .quotas
            .find(req.deployment_on(&backend.config));
        match backend.state.availability(quota, &upstream.passive_health) {
            Ok(()) => {}
            Err(Unavailable::CoolingDown { until_ms }) => {
                earliest_reopen = Some(earliest_reopen.map_or(until_ms, |e| e.min(until_ms)));
                metrics.attempt(Outcome::SkippedCooldown);
                records.push(record(
                    backend.config.name.clone(),
                    Outcome::SkippedCooldown,
                    None,
                    None,
                    true,
                ));
                continue;
            }
            Err(Unavailable::Unhealthy) if !forced => {
                // Counted when the request ends, unless tried after all (then as an attempt).
                last_resort.push(index);
                continue;
            }
            Err(Unavailable::Unhealthy) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            if forced {
                last_resort.insert(0, index); // Not tried: reported as skipped below.
            }
            deadline_hit = true;
            break;
        }
        if let Some((from, reason)) = previous_failure.take() {
            gw.metrics
                .failover(&gw.backends[from].config.name, &backend.config.name, reason);
        }
        attempts += 1;
        let budget = deadline - now;
        let _in_flight = backend.state.track();
        let result = try_backend(gw, index, req, quota, (now, budget)).await;
        let failure = match result {
            Ok((head, body, ttfb)) => {
                // A streamed answer's attempt is counted when the stream ends (`ok`, or
                // `stream_error` if it broke): committing is not succeeding.
                let streamed = !matches!(body, WinnerBody::Buffered(_));
                if head.status.is_server_error() {
                    // Passed on because 5xx failover is off: a failure all the same, which must
                    // not lift an unhealthy mark (and, no other backend having answered, is not
                    // held against this one either: see `answered_5xx`).
                    metrics.attempt(Outcome::Http5xx);
                } else if head.status == http::StatusCode::TOO_MANY_REQUESTS {
                    // Passed on because 429 failover is off: throttled, not a success (the
                    // deployment cools down all the same).
                    metrics.attempt(Outcome::Http429);
                } else {
                    backend.state.record_success(backend.name());
                    if !streamed {
                        metrics.attempt(Outcome::Ok);
                    }
                    // Another backend answered this request: the 5xx of the ones before were
                    // theirs, not the request's.
                    for &earlier in &answered_5xx {
                        let earlier = &gw.backends[earlier];
                        earlier.state.record_failure(
                            &upstream.passive_health,
                            HealthFailure::ServerError,
                            earlier.name(),
                        );
                    }
                }
                skipped_unhealthy(gw, &last_resort, None);
                return Ok(Winner {
                    backend: index,
                    attempts,
                    attempt_open: streamed
                        && !head.status.is_server_error()
                        && head.status != http::StatusCode::TOO_MANY_REQUESTS,
                    head,
                    body,
                    ttfb,
                });
            }
            Err(failure) => failure,
        };
        let (outcome, status, throttled, detail) = match failure {
            Failure::Status {
                outcome,
                status,
                throttled,
                detail,
            } => (outcome, Some(status), throttled, detail),
            Failure::Transport { outcome, detail } => {
                (outcome, None, false, Some(detail.to_owned()))
            }
            Failure::Stream { code, throttled } => {
                (Outcome::StreamError, Some(200), throttled, Some(code))
            }
        };
        metrics.attempt(outcome);
        if outcome == Outcome::Http5xx {
            answered_5xx.push(index);
        }
        if throttled {
            // A first answer for the deployment may just have given it its slot.
            let quotas = &backend.state.quotas;
            let slot = quota.or_else(|| quotas.find(req.deployment_on(&backend.config)));
            let remaining = slot.map(|slot| quotas.at(slot).cooldown_remaining());
            let until = now_ms().saturating_add(millis(remaining.unwrap_or_default()));
            earliest_reopen = Some(earliest_reopen.map_or(until, |e| e.min(until)));
        }
        tracing::debug!(backend = %backend.name(), outcome = outcome.label(), "attempt failed");
        records.push(record(
            backend.config.name.clone(),
            outcome,
            status,
            detail.clone(),
            throttled,
        ));
        if pinned.is_some() {
            if detail.as_deref() == Some("invalid_encrypted_content") {
                pinned = None; // The state is not there: any backend may now serve it.
            } else {
                break;
            }
        }
        let triggers = upstream.failover;
        let may_fail_over = match outcome {
            Outcome::Timeout => triggers.timeout,
            Outcome::ConnectError => triggers.connect_error,
            _ => true, // 429/5xx with their trigger off never reach here: they are passed through.
        };
        if !may_fail_over {
            break;
        }
        previous_failure = Some((index, outcome));
    }
    skipped_unhealthy(gw, &last_resort, Some(&mut records));
    Err(exhausted(records, earliest_reopen, deadline_hit))
}

/// Counts the backends passed over as unhealthy and never tried, and lists them in the error
/// details when the request failed.
fn skipped_unhealthy(gw: &Gateway, untried: &[usize], records: Option<&mut Vec<AttemptRecord>>) {
    for &index in untried {
        gw.backend_metrics[index].attempt(Outcome::SkippedUnhealthy);
    }
    if let Some(records) = records {
        records.extend(untried.iter().map(|&index| {
            record(
                gw.backends[index].config.name.clone(),
                Outcome::SkippedUnhealthy,
                None,
                None,
                false,
            )
        }));
    }
}

fn record(
    backend: std::sync::Arc<str>,
    outcome: Outcome,
    status: Option<u16>,
    detail: Option<String>,
    throttled: bool,
) -> AttemptRecord {
    AttemptRecord {
        backend,
        outcome,
        status,
        detail,
        throttled,
    }
}

/// The next backend of the current tier (then lower tiers) not considered yet.
fn next_in_tiers(
    gw: &Gateway,
    req: &Wanted<'_>,
    considered: &Considered,
    tier: &mut usize,
) -> Option<usize> {
    while let Some(t) = gw.balancer.tiers.get(*tier) {
        if let Some(i) = gw
            .balancer
            .pick(t, &gw.backends, req.ctx.hash_key.as_deref(), |i| {
                considered.contains(i)
            })
        {
            return Some(i);
        }
        *tier += 1;
    }
    None
}

/// Backends already considered for this request: a bit set, on the stack up to 128 backends.
enum Considered {
    Small(u128),
    Large(Vec<bool>),
}

impl Considered {
    fn new(backends: usize) -> Self {
        if backends <= 128 {
            Self::Small(0)
        } else {
            Self::Large(vec![false; backends])
        }
    }

    fn contains(&self, index: usize) -> bool {
        match self {
            Self::Small(bits) => bits & (1u128 << index) != 0,
            Self::Large(flags) => flags[index],
        }
    }

    fn insert(&mut self, index: usize) {
        match self {
            Self::Small(bits) => *bits |= 1u128 << index,
            Self::Large(flags) => flags[index] = true,
        }
    }
}

/// The error when nobody could answer: 429 with the earliest reopening if everyone was
/// throttled, else 504 for timeouts / deadline, else 502.
fn exhausted(
    records: Vec<AttemptRecord>,
    earliest_reopen: Option<u64>,
    deadline_hit: bool,
) -> GatewayError {
    if !records.is_empty() && records.iter().all(|r| r.throttled) {
        let retry_after = earliest_reopen
            .map(crate::clock::until)
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        return GatewayError::AllThrottled {
            retry_after,
            attempts: records,
        };
    }
    if deadline_hit {
        return GatewayError::DeadlineExceeded { attempts: records };
    }
    let tried: Vec<&AttemptRecord> = records
        .iter()
        .filter(|r| {
            !matches!(
                r.outcome,
                Outcome::SkippedCooldown | Outcome::SkippedUnhealthy
            )
        })
        .collect();
    let timeout = !tried.is_empty() && tried.iter().all(|r| r.outcome == Outcome::Timeout);
    GatewayError::Exhausted {
        timeout,
        attempts: records,
    }
}

/// One attempt at one backend, up to the point where the answer can be committed.
async fn try_backend(
    gw: &Gateway,
    index: usize,
    req: &Wanted<'_>,
    quota: Option<usize>,
    (now, budget): (Instant, Duration),
) -> Result<(BackendHead, WinnerBody, Duration), Failure> {
    let backend = &gw.backends[index];
    let upstream = &gw.config.upstream;
    let triggers = upstream.failover;
    let idle = upstream.read_timeout.min(budget);
    let client = &req.ctx.head;
    let mut head = UPSTREAM_PATH.with_borrow_mut(|path| {
        path.clear();
        write_upstream_path_and_query(
            path,
            req.route,
            client.uri.path(),
            client.uri.query(),
            &backend.config,
        );
        backend.pool.request(&client.method, path)
    });
    forward_request_headers(&client.fields, &mut head);
    for (name, value) in &req.ctx.upstream_headers {
        head.header(name, value);
    }
    head.header(&API_KEY, &backend.api_key_header);
    head.header(&X_REQUEST_ID, &req.ctx.id);
    head.started_at(now);

    // Sending the request and getting the response headers: bounded by the send timeout and by
    // the read timeout (silence), whichever is shorter, and by the request deadline.
    let headers_timeout = upstream.send_timeout.min(idle);
    let headers_by = tokio::time::Instant::from_std(now + headers_timeout);
    // Built in place inside the timeout (a future bound to a local first is copied once more).
    let sent = tokio::time::timeout_at(
        headers_by,
        backend
            .pool
            .send(head, req.body.for_backend(&backend.config)),
    );
    let health = &upstream.passive_health;
    let response = match sent.await {
        Err(_) => {
            backend
                .state
                .record_failure(health, HealthFailure::Timeout, backend.name());
            return Err(Failure::Transport {
                outcome: Outcome::Timeout,
                detail: "timeout waiting for response headers",
            });
        }
        Ok(Err(error)) => {
            let (outcome, detail, failure) = classify_send_error(&error);
            backend
                .state
                .record_failure(health, failure, backend.name());
            return Err(Failure::Transport { outcome, detail });
        }
        Ok(Ok(response)) => response,
    };
    let (head, body) = response;
    // Time to the response head (the access record's `ttfb`), whatever is read after it.
    let ttfb = now.elapsed();
    let status = head.status.as_u16();
    // A deployment gets its quota slot once its backend answered for it (a success or a 429:
    // a name the backend does not know never takes one).
    let quotas = &backend.state.quotas;
    let slot = match quota {
        None if head.status.is_success() || status == 429 => {
            Some(quotas.slot(req.deployment_on(&backend.config)))
        }
        slot => slot,
    };
    let quota = slot.map(|slot| quotas.at(slot));
    if let Some(quota) = quota {
        quota.set_remaining(
            header_i64(&head.fields, REMAINING_TOKENS),
            header_i64(&head.fields, REMAINING_REQUESTS),
        );
        // A 429 cools the deployment down whether or not it fails over (data-plane spec: a
        // backend cooling down after a 429 is skipped); passed on, it is still its answer.
        if status == 429 {
            quota.cool_down(retry_hint(&head.fields).unwrap_or(upstream.default_cooldown));
        }
    }
    if status == 429 && triggers.http_429 {
        body.release();
        return Err(Failure::Status {
            outcome: Outcome::Http429,
            status,
            throttled: true,
            detail: None,
        });
    }
    // A 5xx is held against the backend by the attempt loop, once another backend answered.
    if status >= 500 && triggers.http_5xx {
        body.release();
        return Err(Failure::Status {
            outcome: Outcome::Http5xx,
            status,
            throttled: false,
            detail: None,
        });
    }
    let is_sse = head
        .fields
        .get("content-type")
        .map(is_event_stream)
        .unwrap_or(req.body.stream);
    if head.status.is_success() && is_sse {
        return open_stream(body, (idle, now + budget), upstream.default_cooldown, quota)
            .await
            .map(|body| (head, body, ttfb));
    }
    if !req.route.operation.buffers_response() && head.status.is_success() {
        return Ok((head, WinnerBody::Raw(body), ttfb));
    }
    let bytes = read_all(body, idle)
        .await
        .map_err(|outcome| Failure::Transport {
            outcome,
            detail: "response body broke before it was complete",
        })?;
    // A created response must be read (for affinity): one that cannot be (not a Responses
    // object, or nested past the scanner's depth) is this attempt's failure, not the client's.
    if req.route.operation == Operation::ResponsesCreate
        && head.status.is_success()
        && crate::scan::created_response_id(&bytes).is_none()
    {
        return Err(Failure::Transport {
            outcome: Outcome::StreamError,
            detail: "unreadable answer: not a Responses object",
        });
    }
    if req.ctx.pinned == Some(index)
        && status == 400
        && crate::scan::error_code(&bytes).as_deref() == Some("invalid_encrypted_content")
    {
        return Err(Failure::Status {
            outcome: Outcome::Http4xx,
            status,
            throttled: false,
            detail: Some("invalid_encrypted_content".into()),
        });
    }
    Ok((head, WinnerBody::Buffered(bytes), ttfb))
}

/// The attempt's outcome, its detail, and what it says of the backend's health: no connection
/// at all (it may be down) or a connection that failed to answer (it is there, but failing).
fn classify_send_error(error: &SendError) -> (Outcome, &'static str, HealthFailure) {
    use HealthFailure::{Timeout, Unreachable};
    match error {
        SendError::ConnectTimeout => (Outcome::Timeout, "connect timeout", Unreachable),
        SendError::Connect(_) => (Outcome::ConnectError, "connect error", Unreachable),
        SendError::Tls(_) => (Outcome::ConnectError, "TLS error", Unreachable),
        SendError::Broken(_) => (
            Outcome::ConnectError,
            "connection failed before a response",
            Timeout,
        ),
        SendError::Malformed(_) => (
            Outcome::ConnectError,
            "malformed response from the backend",
            Timeout,
        ),
    }
}

/// Reads a whole body with an idle timeout between frames. A body that arrives as one frame
/// (the usual JSON answer) is kept as it is, without a copy.
async fn read_all(mut body: UpstreamBody, idle: Duration) -> Result<Bytes, Outcome> {
    let mut gathered = Joined::default();
    loop {
        // The usual answer is already buffered with its head: no timer for that.
        let ready = poll_once(&mut body).await;
        let next = match ready {
            std::task::Poll::Ready(next) => Ok(next),
            std::task::Poll::Pending => tokio::time::timeout(idle, body.frame()).await,
        };
        match next {
            Err(_) => return Err(Outcome::Timeout),
            Ok(None) => return Ok(gathered.take().unwrap_or_default()),
            Ok(Some(Err(_))) => return Err(Outcome::ConnectError),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if gathered.len() + data.len() > MAX_BUFFERED_RESPONSE {
                    return Err(Outcome::StreamError);
                }
                gathered.push(data);
            }
        }
    }
}

/// Reads the opening events of a 200 stream: a throttling or server error there (before any output)
/// fails over; the first real event commits.
async fn open_stream(
    mut body: UpstreamBody,
    (idle, deadline): (Duration, Instant),
    default_cooldown: Duration,
    quota: Option<&Quota>,
) -> Result<WinnerBody, Failure> {
    let mut framer = Framer::default();
    let mut prefetched: Vec<Bytes> = Vec::new();
    let mut held = 0;
    let mut events = Vec::new();
    loop {
        // Each read within the idle timeout, and the whole opening within the request's
        // deadline: comments or preamble events every few seconds must not hold it for ever.
        let until = (Instant::now() + idle).min(deadline);
        let frame = match tokio::time::timeout_at(until.into(), body.frame()).await {
            Err(_) => {
                return Err(Failure::Transport {
                    outcome: Outcome::Timeout,
                    detail: if Instant::now() >= deadline {
                        "no first event before the request deadline"
                    } else {
                        "no first event before the read timeout"
                    },
                });
            }
            Ok(Some(Err(_))) => {
                return Err(Failure::Transport {
                    outcome: Outcome::StreamError,
                    detail: "stream broke before the first event",
                });
            }
            Ok(None) => {
                prefetched.extend(framer.take_rest());
                return Ok(WinnerBody::Sse {
                    prefetched,
                    framer,
                    upstream: body,
                });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let too_large = || Failure::Transport {
            outcome: Outcome::StreamError,
            detail: "the opening events are larger than the gateway holds",
        };
        framer.push(data, &mut events).map_err(|_| too_large())?;
        let mut drained = events.drain(..);
        while let Some(event) = drained.next() {
            match sse::opening(&event) {
                Opening::Preamble => {
                    held += event.len();
                    if held > sse::MAX_EVENT_BYTES {
                        return Err(too_large());
                    }
                    prefetched.push(event);
                }
                Opening::RetryableError { code } => {
                    let throttled = matches!(
                        code.as_str(),
                        "too_many_requests" | "rate_limit_exceeded" | "429"
                    );
                    if let Some(quota) = quota.filter(|_| throttled) {
                        quota.cool_down(default_cooldown);
                    }
                    return Err(Failure::Stream { code, throttled });
                }
                Opening::Commit => {
                    prefetched.push(event);
                    prefetched.extend(drained);
                    return Ok(WinnerBody::Sse {
                        prefetched,
                        framer,
                        upstream: body,
                    });
                }
            }
        }
    }
}

/// Whether a `content-type` value names an event stream: media types are case-insensitive and
/// may carry parameters and whitespace (RFC 9110 §8.3.1).
fn is_event_stream(value: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"text/event-stream")
}
