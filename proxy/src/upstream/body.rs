//! A backend response body, read from the connection by whoever polls it (the request's task):
//! `content-length`, chunked, or until close. Data comes out as slices of the read buffer; the
//! chunks of one read come out as one frame. At the end of a reusable response the connection goes
//! back to its pool; dropped earlier, it is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::client::{Pool, READ_CHUNK};
use super::stream::Stream;
use crate::http1::{Framing, invalid};

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
        loop {
            let decoded = this.framing.decode(&mut this.buf);
            if this.framing == Framing::Done && this.stream.is_some() {
                this.finish();
            }
            match decoded {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) if this.framing == Framing::Done => return Poll::Ready(None),
                Ok(None) => {}
                Err(error) => {
                    this.stream = None;
                    this.framing = Framing::Done;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            let Some(stream) = this.stream.as_mut() else {
                this.framing = Framing::Done;
                return Poll::Ready(Some(Err(invalid("connection gone"))));
            };
            if this.buf.capacity() - this.buf.len() < 1024 {
                this.buf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut this.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    this.stream = None;
                    if this.framing == Framing::UntilClose {
                        this.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    this.framing = Framing::Done;
                    let error = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "backend closed the connection before the body was complete",
                    );
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => {
                    this.stream = None;
                    this.framing = Framing::Done;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        self.framing
            .remaining()
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
