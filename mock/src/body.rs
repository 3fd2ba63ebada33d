//! Response bodies: a whole buffer, or an SSE stream produced event by event.
//!
//! [`SseBody`] is a small state machine over a [`StreamScript`]: head events, `chunk_count` deltas
//! (paced by `chunk_interval`, optionally cut by `disconnect_after_chunks`), tail events. Each event
//! is its own frame, so hyper flushes it as soon as the body waits. Its `Drop` tells
//! [`MockStats`] when a stream was abandoned before it finished.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::stats::MockStats;
use crate::style::Restyle;

/// The events of one stream kind (chat, completions, responses ...).
pub(crate) trait StreamScript: Send + 'static {
    /// Events sent before the first delta.
    fn head(&mut self) -> Vec<Bytes>;
    /// The delta event number `index`.
    fn delta(&mut self, index: usize) -> Bytes;
    /// Events sent after the last delta.
    fn tail(&mut self) -> Vec<Bytes>;
}

/// A script that sends prepared head events and nothing else.
pub(crate) struct FixedEvents(pub(crate) Vec<Bytes>);

impl StreamScript for FixedEvents {
    fn head(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.0)
    }
    fn delta(&mut self, _index: usize) -> Bytes {
        Bytes::new()
    }
    fn tail(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
}

/// How many deltas a stream has and how they are paced.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pacing {
    pub(crate) chunk_count: usize,
    pub(crate) chunk_interval: Duration,
    pub(crate) disconnect_after: Option<usize>,
}

enum Phase {
    Head,
    Deltas {
        next: usize,
    },
    /// `disconnect_after_chunks` reached: the next poll fails the body.
    Cut,
    Tail,
    Finished,
}

/// An SSE body driven by a [`StreamScript`].
pub(crate) struct SseBody {
    script: Box<dyn StreamScript>,
    pacing: Pacing,
    queue: VecDeque<Bytes>,
    phase: Phase,
    /// Pacing timer between deltas, reused for the whole stream.
    timer: Option<Pin<Box<Sleep>>>,
    stats: MockStats,
    /// The layout each event's JSON is rewritten into, if not the mock's own.
    restyle: Option<Restyle>,
}

impl SseBody {
    /// Counts the stream as started.
    pub(crate) fn new(mut script: Box<dyn StreamScript>, pacing: Pacing, stats: MockStats) -> Self {
        stats.stream_started();
        let queue = script.head().into();
        Self {
            script,
            pacing,
            queue,
            phase: Phase::Head,
            timer: None,
            stats,
            restyle: None,
        }
    }

    /// Writes every event's JSON in `restyle`'s layout.
    pub(crate) fn restyle(&mut self, restyle: Restyle) {
        self.restyle = Some(restyle);
    }

    /// Waits for the pacing deadline before delta `next`; ready at once for the first delta.
    fn poll_pace(&mut self, next: usize, cx: &mut Context<'_>) -> Poll<()> {
        let interval = self.pacing.chunk_interval;
        if next == 0 || interval.is_zero() {
            return Poll::Ready(());
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
        ready!(timer.as_mut().poll(cx));
        // Pace from this deadline, not from now, so timer lateness does not add up over a stream.
        let deadline = timer.deadline() + interval;
        timer.as_mut().reset(deadline.max(Instant::now()));
        Poll::Ready(())
    }

    fn next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let event = ready!(self.next_event(cx));
        Poll::Ready(match (event, &self.restyle) {
            (Some(Ok(event)), Some(restyle)) => Some(Ok(restyle.event(&event))),
            (event, _) => event,
        })
    }

    fn next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.phase {
                Phase::Head => match self.queue.pop_front() {
                    Some(event) => return Poll::Ready(Some(Ok(event))),
                    None => self.phase = Phase::Deltas { next: 0 },
                },
                Phase::Deltas { next } => {
                    if self
                        .pacing
                        .disconnect_after
                        .is_some_and(|limit| next >= limit)
                    {
                        // Yield once first: hyper flushes what is buffered while the body
                        // waits, but drops it when the body fails.
                        self.phase = Phase::Cut;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if next >= self.pacing.chunk_count {
                        self.queue.extend(self.script.tail());
                        self.phase = Phase::Tail;
                        continue;
                    }
                    ready!(self.poll_pace(next, cx));
                    self.phase = Phase::Deltas { next: next + 1 };
                    return Poll::Ready(Some(Ok(self.script.delta(next))));
                }
                Phase::Tail => match self.queue.pop_front() {
                    Some(event) => return Poll::Ready(Some(Ok(event))),
                    None => {
                        self.phase = Phase::Finished;
                        self.stats.stream_completed();
                        return Poll::Ready(None);
                    }
                },
                Phase::Cut => {
                    self.phase = Phase::Finished;
                    self.stats.stream_disconnected();
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock: disconnect_after_chunks",
                    ))));
                }
                Phase::Finished => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if !matches!(self.phase, Phase::Finished) {
            self.stats.stream_aborted();
        }
    }
}

/// Every response body the mock sends.
pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Sse(SseBody),
}

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Self::Sse(stream) => stream
                .next_frame(cx)
                .map(|event| event.map(|event| event.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Sse(stream) => matches!(stream.phase, Phase::Finished),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Sse(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct Numbered;

    impl StreamScript for Numbered {
        fn head(&mut self) -> Vec<Bytes> {
            vec![Bytes::from_static(b"head;")]
        }
        fn delta(&mut self, index: usize) -> Bytes {
            Bytes::from(format!("d{index};"))
        }
        fn tail(&mut self) -> Vec<Bytes> {
            vec![Bytes::from_static(b"tail;")]
        }
    }

    fn body(disconnect_after: Option<usize>, stats: &MockStats) -> MockBody {
        let pacing = Pacing {
            chunk_count: 3,
            chunk_interval: Duration::ZERO,
            disconnect_after,
        };
        MockBody::Sse(SseBody::new(Box::new(Numbered), pacing, stats.clone()))
    }

    #[tokio::test]
    async fn stream_runs_head_deltas_tail_and_counts_completion() {
        let stats = MockStats::default();
        let bytes = body(None, &stats).collect().await.expect("body").to_bytes();
        assert_eq!(bytes, "head;d0;d1;d2;tail;");
        assert_eq!(stats.streams_started(), 1);
        assert_eq!(stats.streams_completed(), 1);
        assert_eq!(stats.streams_aborted(), 0);
    }

    #[tokio::test]
    async fn disconnect_is_an_error_not_an_abort() {
        let stats = MockStats::default();
        let mut body = body(Some(1), &stats);
        let mut seen = Vec::new();
        let error = loop {
            match body.frame().await {
                Some(Ok(frame)) => seen.extend(frame.into_data().expect("data")),
                Some(Err(error)) => break error,
                None => panic!("stream ended without the injected error"),
            }
        };
        drop(body);
        assert_eq!(seen, b"head;d0;");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(stats.streams_disconnected(), 1);
        assert_eq!(stats.streams_aborted(), 0);
    }

    #[tokio::test]
    async fn dropping_mid_stream_counts_an_abort() {
        let stats = MockStats::default();
        let pacing = Pacing {
            chunk_count: 3,
            chunk_interval: Duration::from_secs(1),
            disconnect_after: None,
        };
        let mut body = MockBody::Sse(SseBody::new(Box::new(Numbered), pacing, stats.clone()));
        body.frame().await.expect("head").expect("frame");
        drop(body);
        assert_eq!(stats.streams_aborted(), 1);
        assert_eq!(stats.streams_completed(), 0);
    }
}
