//! One client connection of the API listener, served in its own task without a general-purpose
//! HTTP server in between: read a request head (`httparse`), hand the request to the pipeline
//! with a body that reads from the connection when the pipeline asks for it, write the response
//! (head and small bodies in one write; streamed bodies chunked, each upstream read written at
//! once), repeat while keep-alive holds. Connections that open with the HTTP/2 preface (h2c with
//! prior knowledge) are handed to hyper's HTTP/2 server.
//!
//! Why: hyper's HTTP/1 server costs more CPU per request than all of nginx's user-space work;
//! this loop does only what a proxy needs (see `docs/benchmarks.md`).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::answer::Answer;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::http1::{
    Framing, FramingFields, MAX_HEADERS, RawFields, invalid, poll_body, poll_once, put_field,
};
use crate::pipeline::ClientHead;
use crate::socket::Socket;

/// Largest request head accepted (request line and header fields).
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer size.
const READ_CHUNK: usize = 8 * 1024;
/// Response bytes gathered before a write even when more body is ready at once.
const WRITE_BATCH: usize = 64 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// How long, and how many bytes, a closing connection keeps reading what the client still sends.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Serves one accepted connection until the client closes it, an error, or a drain.
pub async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    current: Arc<ArcSwap<Gateway>>,
    mut drain: watch::Receiver<bool>,
) {
    let stream = Socket::new(stream);
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::new(),
    };
    conn.stream.read_arrived(&mut conn.buf, READ_CHUNK);
    let mut first = true;
    loop {
        let head = match conn.read_head(&mut drain, first).await {
            Ok(Next::Request(head)) => head,
            Ok(Next::Closed) => return,
            Ok(Next::H2) => return serve_h2(conn, client, current, drain).await,
            Err(bad) => {
                let error = match bad {
                    Bad::Malformed(message) => GatewayError::BadRequest(message.into()),
                    Bad::Unsupported(message) => GatewayError::NotImplemented(message),
                };
                let response = error.into_response();
                if conn
                    .write_response(Answer::from_response(response), false, false, false)
                    .await
                    .is_ok()
                {
                    conn.linger().await;
                }
                return;
            }
        };
        first = false;
        let Head {
            request,
            http10,
            mut framing,
            keep_alive,
            expect_continue,
        } = head;
        let head_only = request.method == Method::HEAD;
        let body = RequestBody {
            stream: &mut conn.stream,
            buf: &mut conn.buf,
            framing: &mut framing,
            continue_sent: if expect_continue { Some(0) } else { None },
        };
        let gateway = current.load_full();
        let answer = crate::pipeline::handle(gateway, request, body, client).await;
        // A body the pipeline did not read (413, 401) cannot be skipped safely: close after.
        let keep_alive = keep_alive && framing.is_done() && !*drain.borrow();
        let written = conn
            .write_response(answer, head_only, http10, keep_alive)
            .await;
        if written.is_err() {
            return;
        }
        if !keep_alive {
            conn.linger().await;
            return;
        }
    }
}

/// hyper's HTTP/2 server for h2c clients (prior knowledge), fed the bytes already read.
async fn serve_h2(
    conn: Conn,
    client: SocketAddr,
    current: Arc<ArcSwap<Gateway>>,
    mut drain: watch::Receiver<bool>,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let gateway = current.load_full();
        async move {
            let (parts, body) = request.into_parts();
            let head = ClientHead::from_parts(&parts);
            let answer = crate::pipeline::handle(gateway, head, body, client).await;
            Ok::<_, Infallible>(answer.into_response())
        }
    });
    let io = TokioIo::new(Prefixed {
        pre: conn.buf.freeze(),
        stream: conn.stream,
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = draining(&mut drain) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once a drain has begun.
async fn draining(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|draining| *draining).await;
}

struct Conn {
    stream: Socket,
    buf: BytesMut,
    /// Response bytes being gathered; kept from one response to the next.
    out: Vec<u8>,
}

#[allow(clippy::large_enum_variant)] // One per request, moved once: a box would cost an allocation.
enum Next {
    Request(Head),
    /// The client closed the connection, or a drain began, between requests.
    Closed,
    /// The HTTP/2 connection preface.
    H2,
}

/// A request that cannot be served; the message says what is wrong.
enum Bad {
    /// Not valid HTTP/1.1 (400).
    Malformed(&'static str),
    /// Valid, but uses what the gateway does not implement (501).
    Unsupported(&'static str),
}

struct Head {
    request: ClientHead,
    http10: bool,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

impl Conn {
    /// Closes after an answer when the client may still be sending (a body that was not read,
    /// a bad request): end our side, then read and drop what comes for a short while, so the
    /// close does not turn into a reset that could destroy the answer before the client reads it
    /// (RFC 9112 §9.6, staged close; nginx's `lingering_close`).
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let mut sink = [0u8; 8192];
        let mut budget = LINGER_BYTES;
        let drain = async {
            while let Ok(read @ 1..) =
                tokio::io::AsyncReadExt::read(&mut self.stream, &mut sink).await
            {
                budget = budget.saturating_sub(read);
                if budget == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }

    /// Reads until a whole request head is buffered. Between requests (nothing buffered), a
    /// drain ends the connection.
    async fn read_head(
        &mut self,
        drain: &mut watch::Receiver<bool>,
        first: bool,
    ) -> Result<Next, Bad> {
        loop {
            if first && self.buf.len() >= 3 && self.buf.starts_with(&H2_PREFACE[..3]) {
                if self.buf.len() < H2_PREFACE.len()
                    && H2_PREFACE.starts_with(&self.buf)
                    && self.read(drain).await?
                {
                    continue;
                }
                if self.buf.starts_with(H2_PREFACE) {
                    return Ok(Next::H2);
                }
            }
            if !self.buf.is_empty() {
                if let Some(head) = parse_request(&mut self.buf)? {
                    return Ok(Next::Request(head));
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(Bad::Malformed("The request head is too large."));
                }
            } else if *drain.borrow() {
                return Ok(Next::Closed);
            }
            if !self.read(drain).await? {
                return Ok(Next::Closed);
            }
        }
    }

    /// Reads more bytes; false when the client closed, or a drain began while nothing of a
    /// request had arrived.
    async fn read(&mut self, drain: &mut watch::Receiver<bool>) -> Result<bool, Bad> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        let idle = self.buf.is_empty();
        let read = tokio::select! {
            read = tokio::io::AsyncReadExt::read_buf(&mut self.stream, &mut self.buf) => read,
            _ = draining(drain), if idle => return Ok(false),
        };
        match read {
            Ok(0) | Err(_) => Ok(false),
            Ok(_) => Ok(true),
        }
    }

    /// Writes a response: head, then the body (`content-length` when its size is known, else
    /// chunked; HTTP/1.0 clients get it delimited by close). Written in one go when the body is
    /// ready; a streamed body is flushed whenever the next piece is not there yet.
    async fn write_response(
        &mut self,
        answer: Answer,
        head_only: bool,
        http10: bool,
        keep_alive: bool,
    ) -> io::Result<()> {
        let Answer { head, mut body } = answer;
        let status = head.status;
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let exact = body.size_hint().exact();
        let chunked = !bodiless && exact.is_none() && !http10;
        let keep_alive = keep_alive && (bodiless || exact.is_some() || chunked);
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.reserve(512 + exact.unwrap_or(0).min(WRITE_BATCH as u64) as usize);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        // The gateway's own fields may not frame the body either: the connection does.
        head.for_each_field(|name, value| {
            if !framing_field(name) {
                put_field(&mut out, name, value);
            }
        });
        if !bodiless {
            match exact {
                Some(length) => {
                    let _ = std::io::Write::write_fmt(
                        &mut out,
                        format_args!("content-length: {length}\r\n"),
                    );
                }
                None if chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
                None => {}
            }
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if head_only || bodiless {
            return self.stream.write_all(&out).await;
        }
        loop {
            // Poll once: if the next piece is not ready, send what is gathered before waiting.
            let next = match poll_once(&mut body).await {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    if !out.is_empty() {
                        self.stream.write_all(&out).await?;
                        out.clear();
                    }
                    body.frame().await
                }
            };
            match next {
                None => break,
                Some(Err(_)) => {
                    // The body broke: the client must not take a cut-off body for a whole one.
                    let _ = self.stream.write_all(&out).await;
                    return Err(invalid("response body broke"));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers are not sent
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if chunked {
                        let _ = std::io::Write::write_fmt(
                            &mut out,
                            format_args!("{:x}\r\n", data.len()),
                        );
                    }
                    if data.len() >= WRITE_BATCH {
                        // Large pieces go out as they are rather than through a copy.
                        self.stream.write_all(&out).await?;
                        out.clear();
                        self.stream.write_all(&data).await?;
                    } else {
                        out.extend_from_slice(&data);
                    }
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    if out.len() >= WRITE_BATCH {
                        self.stream.write_all(&out).await?;
                        out.clear();
                    }
                }
            }
        }
        if chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        self.stream.write_all(&out).await?;
        if out.capacity() <= 2 * WRITE_BATCH {
            self.out = out;
        }
        Ok(())
    }
}

/// Response fields the connection writes itself.
fn framing_field(name: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding", b"connection"]
        .iter()
        .any(|known| known.len() == name.len() && known.eq_ignore_ascii_case(name))
}

/// Parses a complete request head off the front of `buf`, if there is one.
fn parse_request(buf: &mut BytesMut) -> Result<Option<Head>, Bad> {
    // Uninitialised slots: the parser writes the ones it fills, nothing is zeroed per request.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Bad::Malformed("Too many header fields."));
        }
        Err(_) => return Err(Bad::Malformed("The request is not valid HTTP/1.1.")),
    };
    let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
        .map_err(|_| Bad::Malformed("Invalid request method."))?;
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let target = request.path.unwrap_or("/").as_bytes();
    let origin = buf.as_ptr() as usize;
    let target = (target.as_ptr() as usize - origin, target.len());
    let spans = RawFields::locate(buf, request.headers).map_err(Bad::Malformed)?;
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
        .map_err(|_| Bad::Malformed("Invalid request target."))?;
    let mut framing_fields = FramingFields::default();
    let fields = RawFields::new(head, spans, &mut framing_fields).map_err(Bad::Malformed)?;
    // RFC 9112 §6.3: chunked must be the last transfer coding of a request; it wins over
    // content-length; no framing means no body.
    let framing = if framing_fields.coded {
        if !framing_fields.chunked {
            return Err(Bad::Malformed(
                "The request's transfer-encoding does not end in chunked.",
            ));
        }
        if !framing_fields.only_chunked() {
            return Err(Bad::Unsupported(
                "Only the chunked transfer-encoding is supported.",
            ));
        }
        Framing::chunked()
    } else {
        framing_fields
            .length
            .map_or(Framing::Empty, Framing::Length)
    };
    let keep_alive = !framing_fields.ambiguous()
        && framing_fields
            .close
            .map_or(version == Version::HTTP_11, |close| !close);
    Ok(Some(Head {
        request: ClientHead {
            method,
            uri,
            fields,
        },
        http10: version == Version::HTTP_10,
        framing,
        keep_alive,
        // RFC 9110 §10.1.1: no 100 when some of the content is here already (the client did not
        // wait for it), or there is none.
        expect_continue: framing_fields.expect_continue && !framing.is_done() && buf.is_empty(),
    }))
}

/// A request body read from the connection as the pipeline polls it. With `expect:
/// 100-continue` (and none of the content received yet), the interim answer goes out on the first
/// poll, so a request refused before its body is read (401, 413) never makes the client send it.
struct RequestBody<'a> {
    stream: &'a mut Socket,
    buf: &'a mut BytesMut,
    framing: &'a mut Framing,
    /// Bytes of `100 Continue` written so far, when one is owed.
    continue_sent: Option<usize>,
}

impl Body for RequestBody<'_> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        // The interim answer goes out on the first poll: the pipeline polls the body only once
        // it has decided to read it.
        while let Some(sent) = this.continue_sent.filter(|&s| s < CONTINUE.len()) {
            let written =
                std::task::ready!(Pin::new(&mut *this.stream).poll_write(cx, &CONTINUE[sent..]))?;
            this.continue_sent = Some(sent + written);
        }
        let reserve = READ_CHUNK.max(this.framing.remaining().unwrap_or(0).min(1 << 20) as usize);
        let polled = std::task::ready!(poll_body(this.framing, this.buf, this.stream, cx, reserve));
        Poll::Ready(polled.map(|result| result.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_done()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.framing.size_hint()
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
