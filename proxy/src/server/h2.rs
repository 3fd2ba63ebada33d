//! h2c clients (HTTP/2 with prior knowledge) on the API listener: [`super::h1`] recognises the
//! connection preface and hands the connection here, with the bytes it already read, to hyper's
//! HTTP/2 server. Each stream goes through the same pipeline as an HTTP/1.1 request; the
//! connection closes after `keepalive_timeout` without a request under way, and a request body
//! may not fall silent for longer than `client_timeout`, as on HTTP/1.1.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Buf, Bytes};
use http::Request;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::DrainWatch;
use super::h1::{Timer, body_fell_silent};
use crate::ctx::ClientHead;
use crate::error::{BoxError, ResponseBody};
use crate::gateway::Gateway;
use crate::socket::Socket;

/// hyper's HTTP/2 server for h2c clients (prior knowledge), fed the bytes already read. The
/// connection closes (GOAWAY) once it has had no request under way for `keepalive_timeout`, as
/// an HTTP/1.1 connection does.
pub async fn serve(
    pre: Bytes,
    stream: Socket,
    keepalive: Duration,
    client: SocketAddr,
    current: Arc<ArcSwap<Gateway>>,
    mut drain: DrainWatch,
) {
    let streams = Arc::new(H2Streams::new());
    let service = {
        let streams = streams.clone();
        service_fn(move |request: Request<Incoming>| {
            let gateway = current.load_full();
            let open = H2Stream::open(&streams);
            async move {
                let (parts, body) = request.into_parts();
                let head = ClientHead::from_parts(&parts);
                let limit = gateway.config.server.client_timeout;
                let body = H2Body {
                    limit,
                    inner: body,
                    timer: Timer::default(),
                };
                let answer = crate::pipeline::handle(gateway, head, body, client).await;
                let response = answer.into_response();
                Ok::<_, Infallible>(response.map(|body| open.until_sent(body, limit)))
            }
        })
    };
    let io = TokioIo::new(Prefixed { pre, stream });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = drain.begun_wait() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
        _ = streams.idle_for(keepalive) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// The requests of one HTTP/2 connection that are under way (from the request until its answer
/// has been sent or dropped), and when the last one ended.
struct H2Streams {
    open: AtomicUsize,
    /// [`crate::clock::now_ms`] when the connection opened or a request last ended.
    last_ms: AtomicU64,
}

impl H2Streams {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            last_ms: AtomicU64::new(crate::clock::now_ms()),
        }
    }

    /// Resolves once no request has been under way for `limit` (checked at least every
    /// `limit`; a request that starts and ends in between moves the start of the idle time).
    async fn idle_for(&self, limit: Duration) {
        loop {
            let wait = if self.open.load(Ordering::SeqCst) == 0 {
                let idle =
                    crate::clock::now_ms().saturating_sub(self.last_ms.load(Ordering::SeqCst));
                match limit.checked_sub(Duration::from_millis(idle)) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            } else {
                limit
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request of an HTTP/2 connection, counted in its [`H2Streams`] until dropped.
struct H2Stream(Arc<H2Streams>);

impl H2Stream {
    fn open(streams: &Arc<H2Streams>) -> Self {
        streams.open.fetch_add(1, Ordering::SeqCst);
        Self(streams.clone())
    }

    /// The answer's body, which keeps the request counted until it is sent or dropped, and is
    /// let go (its backend stream with it) once the client has taken none of it for `limit`.
    fn until_sent(self, body: ResponseBody, limit: Duration) -> ResponseBody {
        let shared = Arc::new(Unread {
            body: std::sync::Mutex::new(Some(body)),
            ready_ms: AtomicU64::new(crate::clock::now_ms()),
            waiting: AtomicBool::new(false),
            sent: AtomicBool::new(false),
        });
        let watch = tokio::spawn(shared.clone().watch(limit)).abort_handle();
        Counted {
            shared,
            watch,
            _open: self,
        }
        .boxed_unsync()
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.0
            .last_ms
            .store(crate::clock::now_ms(), Ordering::SeqCst);
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body as the HTTP/2 connection sends it. hyper polls a stream's body only while
/// the client's flow-control window has room, so a client that stops reading stops the polls,
/// and nothing on the stream would ever end it: [`Unread::watch`] does, like `client_timeout`
/// for an HTTP/1.1 answer nobody reads.
struct Unread {
    /// `None` once sent whole, or let go.
    body: std::sync::Mutex<Option<ResponseBody>>,
    /// [`crate::clock::now_ms`] when the body last gave a frame (or was created).
    ready_ms: AtomicU64,
    /// The body's last poll was `Pending`: it waits for its backend, not for the client.
    waiting: AtomicBool,
    /// Sent whole (not let go).
    sent: AtomicBool,
}

impl Unread {
    /// Lets the body go once the client has not asked for its next frame for `limit` since the
    /// last one came (a backend slow to send is not the client's fault: its own read timeout
    /// covers it).
    async fn watch(self: Arc<Self>, limit: Duration) {
        loop {
            tokio::time::sleep(limit).await;
            let mut body = self.body.lock().unwrap_or_else(|e| e.into_inner());
            if body.is_none() {
                return;
            }
            let idle = crate::clock::now_ms().saturating_sub(self.ready_ms.load(Ordering::Relaxed));
            if !self.waiting.load(Ordering::Relaxed) && idle >= limit.as_millis() as u64 {
                tracing::debug!("h2 client took none of its answer within client_timeout");
                body.take();
                return;
            }
        }
    }
}

/// A response body that keeps its request counted as under way.
struct Counted {
    shared: Arc<Unread>,
    /// Its watch, stopped with it.
    watch: tokio::task::AbortHandle,
    _open: H2Stream,
}

impl Drop for Counted {
    /// The connection is done with the answer (sent, or its stream reset): the body goes now,
    /// not when the watch next looks.
    fn drop(&mut self) {
        self.watch.abort();
        self.shared
            .body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let shared = &self.shared;
        let mut guard = shared.body.lock().unwrap_or_else(|e| e.into_inner());
        let Some(body) = guard.as_mut() else {
            return Poll::Ready(Some(Err(
                "the client did not read its answer within server.client_timeout".into(),
            )));
        };
        let polled = Pin::new(body).poll_frame(cx);
        shared.waiting.store(polled.is_pending(), Ordering::Relaxed);
        match &polled {
            Poll::Ready(None) => {
                shared.sent.store(true, Ordering::Relaxed);
                *guard = None;
            }
            Poll::Ready(Some(_)) => shared
                .ready_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let guard = self.shared.body.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(body) => body.is_end_stream(),
            None => self.shared.sent.load(Ordering::Relaxed),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let guard = self.shared.body.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .map_or_else(http_body::SizeHint::default, Body::size_hint)
    }
}

/// An HTTP/2 request body, read as the pipeline polls it: like an HTTP/1.1 one
/// (`h1::RequestBody`), it may not fall silent for longer than `server.client_timeout` (408), so a
/// client that opens a stream and stops sending cannot hold a request open for ever.
struct H2Body {
    inner: Incoming,
    timer: Timer,
    limit: Duration,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(polled) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer.disarm();
            return Poll::Ready(polled.map(|result| result.map_err(BoxError::from)));
        }
        ready!(this.timer.poll_expired(this.limit, cx));
        Poll::Ready(Some(Err(Box::new(body_fell_silent()))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose first bytes were already read: they are replayed before the socket.
struct Prefixed {
    pre: Bytes,
    stream: Socket,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
