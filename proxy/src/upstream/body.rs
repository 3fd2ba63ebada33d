//! A backend response body, read from the connection by whoever polls it (the request's task):
//! `content-length`, chunked, or until close. Data comes out as slices of the read buffer; the
//! chunks of one read come out as one frame. At the end of a reusable response the connection goes
//! back to its pool; dropped earlier, it is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::client::{Pool, READ_CHUNK};
use super::stream::Stream;
use crate::http1::{Framing, invalid, poll_body};

/// The body of a backend response.
pub struct UpstreamBody {
    stream: Option<Stream>,
    buf: BytesMut,
    framing: Framing,
    keep_alive: bool,
    pool: Arc<Pool>,
    /// Clock time (ms) the request started; the connection's idle time counts from it.
    started_ms: u64,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("framing", &self.framing)
            .finish()
    }
}

impl UpstreamBody {
    pub(super) fn new(
        stream: Stream,
        buf: BytesMut,
        framing: Framing,
        keep_alive: bool,
        pool: Arc<Pool>,
        started_ms: u64,
    ) -> Self {
        let mut body = Self {
            stream: Some(stream),
            buf,
            framing,
            keep_alive,
            pool,
            started_ms,
        };
        if body.framing.is_done() {
            body.finish();
        }
        body
    }

    /// Done with this response without reading it (a 429 or 5xx the gateway fails over from):
    /// when the rest of the body is already buffered, as small error bodies usually are, the
    /// connection goes back to the pool instead of being closed.
    pub fn release(mut self) {
        while let Ok(Some(_)) = self.framing.decode(&mut self.buf) {}
        if self.framing == Framing::Done {
            self.finish();
        }
    }

    /// The body is complete: the connection goes back to the pool if it can be reused.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(stream) = self.stream.take()
            && self.keep_alive
            && self.buf.is_empty()
        {
            self.pool
                .checkin(stream, std::mem::take(&mut self.buf), self.started_ms);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(
                (this.framing != Framing::Done).then(|| Err(invalid("connection gone"))),
            );
        };
        let polled = ready!(poll_body(
            &mut this.framing,
            &mut this.buf,
            stream,
            cx,
            READ_CHUNK
        ));
        if let Some(Err(_)) = polled {
            this.stream = None;
            this.framing = Framing::Done;
        } else if this.framing == Framing::Done {
            // The end: the connection goes back to the pool before the last data is handed on.
            this.finish();
        }
        Poll::Ready(polled.map(|result| result.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        self.framing.size_hint()
    }
}
