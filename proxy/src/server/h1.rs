//! One client connection of the API listener, served in its own task without a general-purpose
//! HTTP server in between: read a request head (`httparse`), hand the request to the pipeline
//! with a body that reads from the connection when the pipeline asks for it, write the response
//! (head and small bodies in one write; streamed bodies chunked, each upstream read written at
//! once), repeat while keep-alive holds. Connections that open with the HTTP/2 preface (h2c with
//! prior knowledge) are handed to [`super::h2`].
//!
//! Why: hyper's HTTP/1 server costs more CPU per request than all of nginx's user-space work;
//! this loop does only what a proxy needs (see `docs/benchmarks.md`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::answer::{Answer, FieldSink, Reply};
use crate::ctx::ClientHead;
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::gateway::{ConnectionSlot, Gateway};
use crate::http1::{
    Framing, FramingFields, MAX_HEADERS, RawFields, invalid, poll_body, poll_once,
    put_content_length, put_field, put_hex, put_number_field,
};
use crate::socket::Socket;

use super::DrainWatch;

/// Largest request head accepted (request line and header fields).
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer size.
const READ_CHUNK: usize = 8 * 1024;
/// Response bytes gathered before a write even when more body is ready at once.
const WRITE_BATCH: usize = 64 * 1024;
/// Largest buffer a connection keeps while it waits for its next request. A big request body
/// (an agent's prompt runs to hundreds of KiB) or answer grows the buffers; kept, they would
/// make every idle keep-alive connection that large.
const IDLE_BUFFER: usize = 32 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// How long, and how many bytes, a closing connection keeps reading what the client still sends.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Serves one accepted connection until the client closes it, an error, or a drain. A
/// connection past `server.max_connections` (`slot` not admitted) gets 503 for its first request,
/// then a close; `slot` counts it while it is open.
pub async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    current: Arc<ArcSwap<Gateway>>,
    mut drain: DrainWatch,
    slot: ConnectionSlot,
) {
    let stream = Socket::new(stream);
    let limits = Limits::of(&current.load());
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::new(),
        timer: Timer::default(),
        limits,
    };
    conn.stream.read_arrived(&mut conn.buf, READ_CHUNK);
    let mut first = true;
    loop {
        let head = match conn.read_head(&mut drain, first).await {
            Ok(Next::Request(_)) if !slot.admitted => {
                let gateway = current.load_full();
                gateway.metrics.overloaded("connections");
                let error = GatewayError::Overloaded {
                    limit: "connections",
                };
                let mut ctx = RequestCtx::unread(gateway, client);
                ctx.refused(&error);
                let answer = Reply::error(error).attach(ctx);
                if conn
                    .write_response(answer, false, false, false)
                    .await
                    .is_ok()
                {
                    conn.linger().await;
                }
                return;
            }
            Ok(Next::Request(head)) => head,
            Ok(Next::Closed) => return,
            // Past the limit, an h2c connection is closed before its preface is answered (its
            // client sees a connection error and retries, as it would on a GOAWAY).
            Ok(Next::H2) if !slot.admitted => {
                current.load().metrics.overloaded("connections");
                return;
            }
            Ok(Next::H2) => {
                return super::h2::serve(
                    conn.buf.freeze(),
                    conn.stream,
                    conn.limits.keepalive,
                    client,
                    current,
                    drain,
                )
                .await;
            }
            Err(bad) => {
                let error = match bad {
                    Bad::Malformed(message) => GatewayError::BadRequest(message.into()),
                    Bad::Unsupported(message) => GatewayError::NotImplemented(message),
                    Bad::TimedOut => GatewayError::RequestTimeout,
                    Bad::HeadTooLarge => GatewayError::HeadTooLarge,
                };
                // A request all the same: it ends (counted, logged) once its refusal is written.
                let mut ctx = RequestCtx::unread(current.load_full(), client);
                ctx.refused(&error);
                let answer = Reply::error(error).attach(ctx);
                if conn
                    .write_response(answer, false, false, false)
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
        let large_body = match framing {
            Framing::Empty | Framing::Done => false,
            Framing::Length(length) => length > IDLE_BUFFER as u64,
            Framing::Chunked(..) | Framing::UntilClose => true,
        };
        let gateway = current.load_full();
        conn.limits = Limits::of(&gateway);
        conn.timer.disarm();
        let body_read = AtomicBool::new(framing.is_done());
        let body = RequestBody {
            stream: &conn.stream,
            buf: &mut conn.buf,
            framing: &mut framing,
            continue_sent: if expect_continue { Some(0) } else { None },
            timer: &mut conn.timer,
            limit: conn.limits.client,
            read: &body_read,
            left: conn.limits.max_body,
        };
        let handled = crate::pipeline::handle(gateway, request, body, client);
        // A client that hangs up while the request waits (for a backend's answer) cancels it:
        // dropping the request's future drops its backend request at once, and the request
        // ends as `client_closed`.
        let Some(answer) = unless_closed(handled, &conn.stream, &body_read).await else {
            return;
        };
        // A body the pipeline did not read (413, 401) cannot be skipped safely: close after.
        let keep_alive = keep_alive && framing.is_done() && !drain.begun();
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
        // The body's pieces were split off the read buffer, which still shares (and keeps) the
        // allocation it grew for them: start afresh unless a pipelined request is in it.
        if large_body && conn.buf.is_empty() {
            conn.buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

struct Conn {
    stream: Socket,
    buf: BytesMut,
    /// Response bytes being gathered; kept from one response to the next.
    out: Vec<u8>,
    timer: Timer,
    limits: Limits,
}

/// The client timeouts, from the config of the connection's latest request.
#[derive(Clone, Copy)]
struct Limits {
    /// `server.keepalive_timeout`: waiting for the next request.
    keepalive: Duration,
    /// `server.client_timeout`: a head under way, a silent body, an unread answer.
    client: Duration,
    /// `server.max_body_bytes`: a body announcing more is refused before it is read.
    max_body: u64,
}

impl Limits {
    fn of(gateway: &Gateway) -> Self {
        let server = &gateway.config.server;
        Self {
            keepalive: server.keepalive_timeout,
            client: server.client_timeout,
            max_body: server.max_body_bytes,
        }
    }
}

/// The connection's one timer, for whichever wait has a limit now: the next request, a head
/// under way, a silent body, an answer the client does not read. A wait arms it only once it has
/// to wait, so bytes that are already there never touch it (not even the clock); it is
/// registered with the runtime once and then moved to each new deadline (to a later one with a
/// compare-and-swap). Deadlines come from the coarse clock ([`crate::clock::coarse`]): they are
/// seconds away, a few milliseconds either way do not matter.
#[derive(Default)]
pub(super) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    /// The current wait has its deadline.
    armed: bool,
}

impl Timer {
    /// The next wait gets a deadline of its own (the current one made progress or ended).
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }

    /// `Ready` once `limit` has passed since this wait was first polled here.
    pub(super) fn poll_expired(&mut self, limit: Duration, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            self.armed = true;
            let deadline = tokio::time::Instant::from_std(crate::clock::coarse() + limit);
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.sleep
            .as_mut()
            .map_or(Poll::Pending, |sleep| sleep.as_mut().poll(cx))
    }
}

/// What ended a wait for request bytes.
enum Waited {
    Read(io::Result<usize>),
    Drain,
    Expired,
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
pub enum Bad {
    /// Not valid HTTP/1.1 (400).
    Malformed(&'static str),
    /// Valid, but uses what the gateway does not implement (501).
    Unsupported(&'static str),
    /// The head did not arrive whole within `server.client_timeout` of its start (408).
    TimedOut,
    /// The head is larger than [`MAX_HEAD`] (431), however it arrived.
    HeadTooLarge,
}

pub struct Head {
    pub request: ClientHead,
    pub http10: bool,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
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
    /// drain or `keepalive_timeout` ends the connection; a head must be whole within
    /// `client_timeout` of its first bytes.
    async fn read_head(&mut self, drain: &mut DrainWatch, first: bool) -> Result<Next, Bad> {
        self.timer.disarm();
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
                    return Err(Bad::HeadTooLarge);
                }
            } else if drain.begun() {
                return Ok(Next::Closed);
            }
            if !self.read(drain).await? {
                return Ok(Next::Closed);
            }
        }
    }

    /// Reads more bytes; false when the client closed, or, while nothing of a request had
    /// arrived, a drain began or the connection was idle for `keepalive_timeout`.
    async fn read(&mut self, drain: &mut DrainWatch) -> Result<bool, Bad> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        let idle = self.buf.is_empty();
        let limit = if idle {
            self.limits.keepalive
        } else {
            self.limits.client
        };
        // The read first: bytes already there need neither the drain signal nor the timer.
        let waited = std::future::poll_fn(|cx| {
            if let Poll::Ready(read) =
                tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
            {
                return Poll::Ready(Waited::Read(read));
            }
            if idle && drain.poll(cx).is_ready() {
                return Poll::Ready(Waited::Drain);
            }
            ready!(self.timer.poll_expired(limit, cx));
            Poll::Ready(Waited::Expired)
        })
        .await;
        match waited {
            Waited::Read(Ok(0) | Err(_)) | Waited::Drain => Ok(false),
            Waited::Read(Ok(_)) => {
                if idle {
                    self.timer.disarm(); // A head began: its own deadline from here.
                }
                Ok(true)
            }
            Waited::Expired if idle => Ok(false),
            Waited::Expired => Err(Bad::TimedOut),
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
        head.for_each_field(&mut HeadFields(&mut out));
        // An origin's answer has a `date` (RFC 9110 §6.6.1): a backend's carries its own, the
        // gateway's own answers (refusals, errors) get one here.
        if head.served_by.is_none() {
            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
            put_field(&mut out, b"date", date.as_bytes());
        }
        if !bodiless {
            // A HEAD's answer says how long the GET's body would be (the backend's figure).
            let exact = head.head_length.filter(|_| head_only).or(exact);
            match exact {
                Some(length) => put_content_length(&mut out, length),
                None if chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
                None => {}
            }
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if head_only || bodiless {
            // Nothing of the body is sent (its request counts as complete: `Reply::attach`).
            return self.send(&out).await;
        }
        loop {
            // Poll once: if the next piece is not ready, send what is gathered before waiting.
            let next = match poll_once(&mut body).await {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    if !out.is_empty() {
                        self.send(&out).await?;
                        out.clear();
                    }
                    // Waiting for the next piece (a stream between two tokens): a client that
                    // hangs up meanwhile lets the backend stream go at once.
                    match unless_closed(body.frame(), &self.stream, &AtomicBool::new(true)).await {
                        Some(next) => next,
                        None => return Err(io::ErrorKind::ConnectionAborted.into()),
                    }
                }
            };
            match next {
                None => break,
                Some(Err(_)) => {
                    // The body broke: the client must not take a cut-off body for a whole one.
                    let _ = self.send(&out).await;
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
                        put_hex(&mut out, data.len() as u64);
                        out.extend_from_slice(b"\r\n");
                    }
                    if data.len() >= WRITE_BATCH {
                        // Large pieces go out as they are rather than through a copy.
                        self.send(&out).await?;
                        out.clear();
                        self.send(&data).await?;
                    } else {
                        out.extend_from_slice(&data);
                    }
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    if out.len() >= WRITE_BATCH {
                        self.send(&out).await?;
                        out.clear();
                    }
                }
            }
        }
        if chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        self.send(&out).await?;
        if out.capacity() <= IDLE_BUFFER {
            self.out = out;
        }
        Ok(())
    }

    /// Writes all of `data`; the client must take some of it every `client_timeout`, else the
    /// connection is given up (the answer's backend connection with it).
    async fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        let limit = self.limits.client;
        while !data.is_empty() {
            self.timer.disarm();
            let written = std::future::poll_fn(|cx| {
                if let Poll::Ready(written) = Pin::new(&mut self.stream).poll_write(cx, data) {
                    return Poll::Ready(written);
                }
                ready!(self.timer.poll_expired(limit, cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read its answer within server.client_timeout",
                )))
            })
            .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[written..];
        }
        Ok(())
    }
}

/// An answer's fields as they go into the head being written.
struct HeadFields<'a>(&'a mut Vec<u8>);

impl FieldSink for HeadFields<'_> {
    /// The gateway's own fields may not frame the body either: the connection does.
    fn field(&mut self, name: &[u8], value: &[u8]) {
        if !framing_field(name) {
            put_field(self.0, name, value);
        }
    }

    fn reserve(&mut self, bytes: usize) {
        self.0.reserve(bytes);
    }

    /// A limit field (never a framing one), straight into the buffer.
    #[inline(always)]
    fn number(&mut self, name: &[u8], backend: Option<&[u8]>, digits: &[u8]) {
        put_number_field(self.0, name, backend, digits);
    }
}

/// Response fields the connection writes itself.
fn framing_field(name: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding", b"connection"]
        .iter()
        .any(|known| known.len() == name.len() && known.eq_ignore_ascii_case(name))
}

/// Parses a complete request head off the front of `buf`, if there is one.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<Head>, Bad> {
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
    // Whether it came in one read or many.
    if len > MAX_HEAD {
        return Err(Bad::HeadTooLarge);
    }
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
    // RFC 9112 §3.2: exactly one `host` in an HTTP/1.1 request, at most one in HTTP/1.0.
    if framing_fields.hosts > 1 || (version == Version::HTTP_11 && framing_fields.hosts == 0) {
        return Err(Bad::Malformed(
            "An HTTP/1.1 request must have exactly one host field.",
        ));
    }
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
    let keep_alive = !framing_fields.ambiguous(version == Version::HTTP_10)
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

/// The error of a request body that sent nothing for `server.client_timeout` (HTTP/1.1 and h2c
/// alike): the pipeline answers it with 408.
pub(super) fn body_fell_silent() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client sent no body bytes within server.client_timeout",
    )
}

/// Runs `work` unless the client closes the connection first (then `None`, and `work` is
/// dropped). The connection is watched only once `body_read` says the request's body has been
/// read (before that, its bytes are the body), and no longer once the client sent more bytes
/// (a pipelined request: it is not gone).
async fn unless_closed<F: Future>(
    work: F,
    stream: &Socket,
    body_read: &AtomicBool,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    let mut watching = true;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if watching && body_read.load(Ordering::Relaxed) {
            match stream.poll_closed(cx) {
                Poll::Ready(true) => return Poll::Ready(None),
                Poll::Ready(false) => watching = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// A request body read from the connection as the pipeline polls it. With `expect:
/// 100-continue` (and none of the content received yet), the interim answer goes out on the first
/// poll, so a request refused before its body is read (401, 413) never makes the client send it.
struct RequestBody<'a> {
    stream: &'a Socket,
    buf: &'a mut BytesMut,
    framing: &'a mut Framing,
    /// Bytes of `100 Continue` written so far, when one is owed.
    continue_sent: Option<usize>,
    timer: &'a mut Timer,
    /// `server.client_timeout`: longest silence while the body is read.
    limit: Duration,
    /// Set once the whole body has been read.
    read: &'a AtomicBool,
    /// Bytes the body may still bring (`server.max_body_bytes` less what was read): a chunk
    /// announcing more is refused at its size line, not after its bytes came.
    left: u64,
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
                std::task::ready!(Pin::new(&mut this.stream).poll_write(cx, &CONTINUE[sent..]))?;
            this.continue_sent = Some(sent + written);
        }
        let reserve = READ_CHUNK.max(this.framing.remaining().unwrap_or(0).min(1 << 20) as usize);
        let mut stream = this.stream;
        let polled = poll_body(this.framing, this.buf, &mut stream, cx, reserve);
        if let Poll::Ready(Some(Ok(data))) = &polled {
            this.left = this.left.saturating_sub(data.len() as u64);
        }
        if this.framing.announced() > this.left {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "the request body is larger than server.max_body_bytes",
            ))));
        }
        if let Poll::Ready(polled) = polled {
            this.timer.disarm();
            if this.framing.is_done() {
                this.read.store(true, Ordering::Relaxed);
            }
            return Poll::Ready(polled.map(|result| result.map(Frame::data)));
        }
        ready!(this.timer.poll_expired(this.limit, cx));
        Poll::Ready(Some(Err(body_fell_silent())))
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_done()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.framing.size_hint()
    }
}
