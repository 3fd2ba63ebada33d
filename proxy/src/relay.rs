//! The body of every answer: a whole one, or a backend's response relayed frame by frame as it
//! arrives. Each carries the request's context and drops it when the connection is done with
//! the body, which ends the request ([`crate::end`]). SSE events are framed so the gateway can
//! read usage and hide the usage chunk it asked for; nothing else is parsed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Sleep;

use crate::backend::InFlight;
use crate::ctx::RequestCtx;
use crate::error::{BoxError, ResponseBody};
use crate::server::drain::DrainWatch;
use crate::sse::{self, Framer};
use crate::upstream::UpstreamBody;
use crate::usage::{find_usage, mentions_usage_object, text_bytes};

/// A committed answer's body before it takes the request's context.
pub enum Pending {
    /// A whole body: a backend's buffered answer (`usage`: read the tokens it spent once it
    /// has been written), or one the gateway made.
    Whole { data: Bytes, usage: bool },
    /// A backend's event stream: events already read while checking its opening, then the rest.
    Sse {
        prefetched: Vec<Bytes>,
        framer: Framer,
        upstream: UpstreamBody,
        /// The gateway asked for the usage chunk; the client did not.
        hide_usage_chunk: bool,
        /// The operation spends tokens (a retrieved response's stream repeats usage already
        /// counted when it was created).
        count_usage: bool,
        /// `gateway_active_streams{backend}`.
        gauge: Gauge,
        /// Counts the stream in its backend's in-flight load until it ends.
        in_flight: InFlight,
    },
    /// Anything else from a backend, relayed as it comes.
    Raw(UpstreamBody),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pending::Whole { .. } => "Whole",
            Pending::Sse { .. } => "Sse",
            Pending::Raw(_) => "Raw",
        })
    }
}

impl Pending {
    /// The body, carrying the request's context: the request ends when the connection is done
    /// with it (written, or dropped because the client went away).
    pub fn attach(self, ctx: Box<RequestCtx>) -> ResponseBody {
        let idle = ctx.gateway.config.upstream.read_timeout;
        match self {
            Pending::Whole { data, usage } => Whole {
                data,
                sent: false,
                usage,
                ctx: Some(ctx),
            }
            .boxed_unsync(),
            Pending::Sse {
                prefetched,
                framer,
                upstream,
                hide_usage_chunk,
                count_usage,
                gauge,
                in_flight,
            } => Relay::sse(
                prefetched,
                framer,
                upstream,
                (hide_usage_chunk, count_usage),
                idle,
                ctx,
                (gauge, in_flight),
            )
            .boxed_unsync(),
            Pending::Raw(upstream) => Relay::raw(upstream, idle, ctx).boxed_unsync(),
        }
    }
}

/// A whole answer. Its usage is read when the connection is done with it, that is after it was
/// written, off the latency path; then the request ends.
pub struct Whole {
    data: Bytes,
    sent: bool,
    usage: bool,
    ctx: Option<Box<RequestCtx>>,
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
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.outcome.completed = true;
        }
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
        if let Some(ctx) = self.ctx.as_mut()
            && self.usage
        {
            ctx.outcome.usage = find_usage(&self.data);
            if ctx.outcome.usage.is_none()
                && let Some(estimate) = ctx.estimate.as_mut()
            {
                estimate.text_bytes = text_bytes(&self.data);
            }
        }
    }
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
    ctx: Box<RequestCtx>,
    /// The cut at the drain deadline: a stream still running then ends with an error event.
    cut: DrainWatch,
    _stream: Option<(StreamGauge, InFlight)>,
    /// Last field: dropped after the context (the end of the request) and the in-flight count, so both are done before the
    /// backend sees the connection close.
    upstream: Option<UpstreamBody>,
}

struct SseFilter {
    framer: Framer,
    hide_usage_chunk: bool,
    count_usage: bool,
    events: Vec<Bytes>,
}

/// Keeps `gateway_active_streams{backend}` right even when the client goes away.
struct StreamGauge(Gauge);

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
        (hide_usage_chunk, count_usage): (bool, bool),
        idle: Duration,
        ctx: Box<RequestCtx>,
        (gauge, in_flight): (Gauge, InFlight),
    ) -> Self {
        gauge.inc();
        let mut relay = Self {
            pending: VecDeque::new(),
            upstream: Some(upstream),
            sse: Some(SseFilter {
                framer,
                hide_usage_chunk,
                count_usage,
                events: Vec::new(),
            }),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            last_frame: coarse_now(),
            cut: ctx.gateway.run.watch_cut(),
            ctx,
            _stream: Some((StreamGauge(gauge), in_flight)),
        };
        let mut opening = prefetched;
        relay.filter(&mut opening);
        relay
    }

    /// A raw relay (bodies the gateway does not look into).
    pub fn raw(upstream: UpstreamBody, idle: Duration, ctx: Box<RequestCtx>) -> Self {
        Self {
            pending: VecDeque::new(),
            upstream: Some(upstream),
            sse: None,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            last_frame: coarse_now(),
            cut: ctx.gateway.run.watch_cut(),
            ctx,
            _stream: None,
        }
    }

    /// Reads usage and hides what the client did not ask for; queues the rest in `pending`,
    /// each event as it is (slices of what was read, no copy). The connection writes every frame
    /// that is ready in one go, so events of one read still leave in one write.
    fn filter(&mut self, events: &mut Vec<Bytes>) {
        let hide = self.sse.as_ref().is_some_and(|s| s.hide_usage_chunk);
        let count = self.sse.as_ref().is_some_and(|s| s.count_usage);
        for event in events.drain(..) {
            // Something counts this request's tokens: the text it relays, for when the
            // backend reports no usage.
            if let Some(estimate) = self.ctx.estimate.as_mut()
                && let (_, Some(data)) = sse::parts(&event)
            {
                estimate.text_bytes += text_bytes(data);
            }
            if mentions_usage_object(&event) {
                if count && let Some(usage) = find_usage(&event) {
                    self.ctx.outcome.usage = Some(usage);
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
        code: &'static str,
        message: &str,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finish();
        self.ctx.outcome.broken = Some(code);
        if self.sse.is_some() {
            tracing::warn!(
                request_id = self.ctx.id.to_str().unwrap_or_default(),
                backend = crate::end::backend_name(&self.ctx),
                code,
                "stream broke mid-way"
            );
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
                    let pushed = sse.framer.push(data, &mut events);
                    this.filter(&mut events);
                    if let Some(sse) = this.sse.as_mut() {
                        sse.events = events;
                    }
                    if pushed.is_err() {
                        // The events complete before it go out first, then the error event.
                        let error = this.broken(
                            "stream_error",
                            "The backend sent an event larger than the gateway relays.",
                        );
                        if let Poll::Ready(Some(Ok(frame))) = error
                            && let Ok(event) = frame.into_data()
                        {
                            this.pending.push_back(event);
                        }
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
                    this.ctx.outcome.completed = true;
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
                    if this.cut.poll(cx).is_ready() {
                        return this.broken(
                            "shutdown",
                            "The gateway is shutting down: the stream was cut at its drain deadline.",
                        );
                    }
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
