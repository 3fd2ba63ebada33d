//! Relaying the committed backend response to the client, frame by frame as it arrives, and the
//! accounting that runs when it ends (usage → metrics, access log). SSE events are framed so the
//! gateway can read usage and hide the usage chunk it asked for; nothing else is parsed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::backend::InFlight;
use crate::error::BoxError;
use crate::gateway::Gateway;
use crate::metrics::RequestLabels;
use crate::sse::{self, Framer};
use crate::upstream::UpstreamBody;
use crate::usage::{Usage, find_usage, mentions_usage_object};

/// What is recorded once a request is over (when this is dropped).
pub struct Accounting {
    pub gateway: Arc<Gateway>,
    pub labels: RequestLabels,
    pub request_id: http::HeaderValue,
    pub started: Instant,
    pub ttfb: Option<Duration>,
    pub attempts: u32,
    pub usage: Option<Usage>,
    /// Whether the body reached its end (false: client went away or the stream broke).
    pub completed: bool,
    /// Method and target for the access log; only kept when it is written.
    pub request_line: Option<(http::Method, http::Uri)>,
    pub client: std::net::SocketAddr,
    pub _in_flight: Option<InFlight>,
}

impl Drop for Accounting {
    fn drop(&mut self) {
        let gw = &self.gateway;
        gw.metrics.request(&self.labels, self.usage.as_ref());
        if let Some((method, uri)) = &self.request_line {
            let usage = self.usage.unwrap_or_default();
            tracing::info!(
                target: "access",
                request_id = self.request_id.to_str().unwrap_or_default(),
                consumer = %self.labels.consumer,
                client_ip = %self.client.ip(),
                method = %method,
                path = uri.path(),
                route = self.labels.route,
                operation = self.labels.operation,
                status = self.labels.status,
                backend = %self.labels.backend,
                attempts = self.attempts,
                stream = self.labels.stream,
                completed = self.completed,
                latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
                ttfb_ms = self.ttfb.map(|t| t.as_secs_f64() * 1000.0),
                prompt_tokens = usage.prompt,
                completion_tokens = usage.completion,
                model = %self.labels.model,
                "request"
            );
        }
    }
}

/// A whole (buffered) answer. Its accounting (usage scan, metrics, access log) runs when the
/// connection is done with it, that is after it was written, off the latency path.
pub struct Whole {
    data: Bytes,
    sent: bool,
    accounting: Option<Accounting>,
}

impl Whole {
    pub fn new(data: Bytes, accounting: Accounting) -> Self {
        Self {
            data,
            sent: false,
            accounting: Some(accounting),
        }
    }
}

impl Body for Whole {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.sent {
            return Poll::Ready(None);
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(self.data.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.sent { 0 } else { self.data.len() as u64 })
    }
}

impl Drop for Whole {
    fn drop(&mut self) {
        if let Some(mut accounting) = self.accounting.take() {
            accounting.usage = usage_of(&self.data);
        }
    }
}

/// Scans a JSON body for usage (buffered responses). [`find_usage`] locates the object by a
/// byte search itself, so no separate pre-check pass over the body is needed.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    find_usage(body)
}

/// When a frame arrived, to within a few milliseconds (the idle limit is seconds long; a precise
/// clock read per chunk would cost more than the rest of the timekeeping).
fn coarse_now() -> tokio::time::Instant {
    tokio::time::Instant::from_std(crate::clock::coarse())
}

/// The streaming response body.
pub struct Relay {
    pending: VecDeque<Bytes>,
    sse: Option<SseFilter>,
    idle: Duration,
    /// Fires at most once per idle period; re-armed from `last_frame` only when it fires, so a
    /// busy stream never touches the timer wheel per chunk.
    sleep: Pin<Box<Sleep>>,
    last_frame: tokio::time::Instant,
    accounting: Accounting,
    _stream_gauge: Option<StreamGauge>,
    /// Last field: dropped after the accounting, so the in-flight count is down before the
    /// backend sees the connection close.
    upstream: Option<UpstreamBody>,
}

struct SseFilter {
    framer: Framer,
    hide_usage_chunk: bool,
    events: Vec<Bytes>,
}

/// Keeps `gateway_active_streams{backend}` right even when the client goes away.
struct StreamGauge(prometheus_client::metrics::gauge::Gauge);

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Relay {
    /// An SSE relay; `prefetched` are the events already read while checking the opening.
    pub fn sse(
        prefetched: Vec<Bytes>,
        framer: Framer,
        upstream: UpstreamBody,
        hide_usage_chunk: bool,
        idle: Duration,
        accounting: Accounting,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        gauge.inc();
        let mut relay = Self {
            pending: VecDeque::new(),
            upstream: Some(upstream),
            sse: Some(SseFilter {
                framer,
                hide_usage_chunk,
                events: Vec::new(),
            }),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            last_frame: coarse_now(),
            accounting,
            _stream_gauge: Some(StreamGauge(gauge)),
        };
        let mut opening = prefetched;
        relay.filter(&mut opening);
        relay
    }

    /// A raw relay (bodies the gateway does not look into).
    pub fn raw(upstream: UpstreamBody, idle: Duration, accounting: Accounting) -> Self {
        Self {
            pending: VecDeque::new(),
            upstream: Some(upstream),
            sse: None,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            last_frame: coarse_now(),
            accounting,
            _stream_gauge: None,
        }
    }

    /// Reads usage and hides what the client did not ask for; queues the rest in `pending`,
    /// each event as it is (slices of what was read, no copy). The connection writes every frame
    /// that is ready in one go, so events of one read still leave in one write.
    fn filter(&mut self, events: &mut Vec<Bytes>) {
        let hide = self.sse.as_ref().is_some_and(|s| s.hide_usage_chunk);
        for event in events.drain(..) {
            if mentions_usage_object(&event) {
                if let Some(usage) = find_usage(&event) {
                    self.accounting.usage = Some(usage);
                }
                if hide
                    && let (_, Some(data)) = sse::parts(&event)
                    && sse::is_usage_only_chunk(data)
                {
                    continue;
                }
            }
            if hide {
                let (head, tail) = sse::strip_null_usage(event);
                self.pending.push_back(head);
                self.pending.extend(tail);
            } else {
                self.pending.push_back(event);
            }
        }
    }

    fn finish(&mut self) {
        self.upstream = None;
    }

    /// The stream broke after bytes reached the client: SSE gets a final error event.
    fn broken(
        &mut self,
        code: &str,
        message: &str,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finish();
        if self.sse.is_some() {
            tracing::warn!(request_id = self.accounting.request_id.to_str().unwrap_or_default(), backend = %self.accounting.labels.backend, code, "stream broke mid-way");
            Poll::Ready(Some(Ok(Frame::data(sse::error_event(code, message)))))
        } else {
            Poll::Ready(Some(Err(message.to_owned().into())))
        }
    }
}

impl Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(bytes) = this.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        loop {
            let Some(upstream) = this.upstream.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.last_frame = coarse_now();
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue, // trailers: not relayed
                    };
                    let Some(sse) = this.sse.as_mut() else {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    };
                    // The event list keeps its allocation from one read to the next.
                    let mut events = std::mem::take(&mut sse.events);
                    sse.framer.push(data, &mut events);
                    this.filter(&mut events);
                    if let Some(sse) = this.sse.as_mut() {
                        sse.events = events;
                    }
                    if let Some(bytes) = this.pending.pop_front() {
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    return this.broken(
                        "stream_error",
                        "The backend stream broke before it was complete.",
                    );
                }
                Poll::Ready(None) => {
                    this.accounting.completed = true;
                    this.finish();
                    if let Some(rest) = this.sse.as_mut().and_then(|s| s.framer.take_rest()) {
                        this.filter(&mut vec![rest]);
                    }
                    return match this.pending.pop_front() {
                        Some(rest) => Poll::Ready(Some(Ok(Frame::data(rest)))),
                        None => Poll::Ready(None),
                    };
                }
                Poll::Pending => loop {
                    ready!(this.sleep.as_mut().poll(cx));
                    let idle_until = this.last_frame + this.idle;
                    if idle_until > tokio::time::Instant::now() {
                        // Data came since the timer was armed: re-arm and keep waiting.
                        this.sleep.as_mut().reset(idle_until);
                        continue;
                    }
                    return this.broken(
                        "timeout",
                        "The backend stopped sending before the stream was complete.",
                    );
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.upstream.is_none() && self.pending.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        // A raw relay passes the backend's bytes unchanged, so its length is the backend's
        // (the client connection then sends it with that `content-length`). SSE is reframed.
        match (&self.sse, &self.upstream) {
            (None, Some(upstream)) if self.pending.is_empty() => upstream.size_hint(),
            (_, None) if self.pending.is_empty() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
