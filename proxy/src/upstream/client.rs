//! The gateway's own HTTP/1.1 client to one backend: a per-worker pool of idle keep-alive
//! connections, the request written in one write (head and bodies up to 64 KiB), the response
//! head parsed with `httparse`, and the body read by [`UpstreamBody`] inside the request's own
//! task.
//!
//! Why not a general-purpose client: hyper's pooled client runs every connection as a separate
//! task and hands requests, responses and body chunks across channels, which costs more CPU per
//! request than the whole of nginx's proxying (see `docs/benchmarks.md`). Here the request's task
//! does the I/O itself; nothing is shared between requests but the idle queue.
//!
//! TLS (rustls, ALPN `http/1.1`) is spoken for `https` backends; plain TCP otherwise. Both get
//! `TCP_NODELAY` and TCP keep-alive probes.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Method, StatusCode, Version};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::body::UpstreamBody;
use super::stream::Stream;
use crate::clock::now_ms;
use crate::http1::{Framing, FramingFields, MAX_HEADERS, RawFields, put_content_length, put_field};
use crate::socket::Socket;

/// Idle connections kept per backend and worker; beyond it the oldest is closed when one comes
/// back.
const MAX_IDLE: usize = 1024;
/// A connection idle longer than this is closed rather than reused (Azure's front ends close
/// idle connections after a few minutes; reusing one that is about to close costs a retry).
const IDLE_TIMEOUT_MS: u64 = 90_000;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer size for one response.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// Request bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 64 * 1024;

/// rustls settings for backends: the web PKI roots, ALPN `http/1.1`.
pub fn default_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        tls_with_roots(roots)
    });
    CONFIG.clone()
}

/// rustls settings for a backend, trusting exactly `roots` (tests use a throwaway CA).
pub fn tls_with_roots(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let mut config = tls_client(roots);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// rustls settings trusting exactly `roots`, with ring and its default protocol versions and
/// no ALPN (a backend's add `http/1.1`; the limits' Redis connection uses these as they are).
pub fn tls_client(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            // The ring provider supports the default versions; this branch is unreachable.
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

/// Why a request got no response head from a backend.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect timeout")]
    ConnectTimeout,
    #[error("connect error: {0}")]
    Connect(io::Error),
    #[error("TLS error: {0}")]
    Tls(io::Error),
    /// The connection failed or closed before a whole response head arrived.
    #[error("connection failed before a response: {0}")]
    Broken(io::Error),
    /// The backend answered something that is not an HTTP/1.x response.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// A backend's response head: the status and the fields as they came (see [`RawFields`]).
#[derive(Debug)]
pub struct BackendHead {
    pub status: StatusCode,
    pub version: Version,
    pub fields: RawFields,
}

/// One worker's idle connections, in the order they came back (the last is taken first). On the
/// request path only that worker takes the lock (a request and its connections stay on their
/// worker; threads that are not workers share the first stack), so it is not contended there;
/// it is a lock because the pool it belongs to is shared by all workers. Padded so that two
/// workers' stacks never share a cache line.
#[derive(Default)]
#[repr(align(128))]
struct IdleStack(Mutex<VecDeque<Idle>>);

impl IdleStack {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // A panic while the stack was held leaves it whole (push and pop do not unwind halfway).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An idle connection.
pub(super) struct Idle {
    stream: Stream,
    /// The connection's read buffer, reused by its next response.
    buf: BytesMut,
    /// When its last request started ([`crate::clock::now_ms`]): idle at least since then.
    since_ms: u64,
}

/// One backend's connections: where to connect and the idle keep-alive connections.
pub struct Pool {
    host: Box<str>,
    port: u16,
    /// `host` header value (the authority as configured).
    host_header: Bytes,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    /// Idle connections, one stack per worker (see [`crate::worker`]).
    idle: Box<[IdleStack]>,
    scheme: Scheme,
    authority: Authority,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("idle", &self.idle_connections())
            .finish()
    }
}

impl Pool {
    /// A pool for `scheme://authority`. `tls` is used for `https` only.
    pub fn new(
        scheme: &Scheme,
        authority: &Authority,
        connect_timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        let https = *scheme == Scheme::HTTPS;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = https.then(|| {
            let name = ServerName::try_from(host.to_owned()).unwrap_or(ServerName::IpAddress(
                std::net::Ipv4Addr::UNSPECIFIED.into(),
            ));
            (TlsConnector::from(tls), name)
        });
        Self {
            host: host.into(),
            port,
            host_header: Bytes::copy_from_slice(authority.as_str().as_bytes()),
            tls,
            connect_timeout,
            idle: (0..crate::worker::count())
                .map(|_| IdleStack::default())
                .collect(),
            scheme: scheme.clone(),
            authority: authority.clone(),
        }
    }

    /// Whether this pool connects where (and how) a backend with these settings would.
    pub fn serves(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        connect_timeout: Duration,
    ) -> bool {
        self.scheme == *scheme
            && self.authority == *authority
            && self.connect_timeout == connect_timeout
    }

    /// Idle connections right now (all workers; a stack in use at this instant counts as empty,
    /// so a report never waits on the request path, nor deadlocks inside it).
    pub fn idle_connections(&self) -> usize {
        self.idle
            .iter()
            .map(|stack| stack.0.try_lock().map_or(0, |idle| idle.len()))
            .sum()
    }

    /// The idle connections of the current thread's worker.
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle[crate::worker::index().min(self.idle.len() - 1)].lock()
    }

    /// Starts a request: the request line and `host`. Add headers, then [`Pool::send`] it.
    pub fn request(&self, method: &Method, path_and_query: &str) -> RequestHead {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(method.as_str().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(path_and_query.as_bytes());
        buf.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        buf.extend_from_slice(&self.host_header);
        buf.extend_from_slice(b"\r\n");
        RequestHead {
            buf,
            head_only: *method == Method::HEAD,
            declares_length: matches!(*method, Method::POST | Method::PUT | Method::PATCH),
            started_ms: None,
        }
    }

    /// Sends a request and reads the response head. A reused connection that turns out to be
    /// closed before any response byte arrives (the keep-alive race) is replaced by a new one
    /// once; every other failure is the caller's to handle (fail over, or answer 502).
    pub async fn send(
        self: &Arc<Self>,
        head: RequestHead,
        body: Bytes,
    ) -> Result<(BackendHead, UpstreamBody), SendError> {
        let head_only = head.head_only;
        let now = head.started_ms.unwrap_or_else(now_ms);
        let mut wire = head.finish(body.len());
        let body = if body.len() <= INLINE_BODY {
            wire.extend_from_slice(&body);
            Bytes::new()
        } else {
            body
        };
        let mut fresh_only = false;
        loop {
            let (mut stream, buf, reused) =
                match (!fresh_only).then(|| self.checkout(now)).flatten() {
                    Some((stream, buf)) => (stream, buf, true),
                    // Boxed: connecting (DNS, TLS handshake) is a large future and is rare; inline,
                    // it would make every request's future that much bigger to build and move.
                    None => (
                        Box::pin(self.connect()).await?,
                        BytesMut::with_capacity(READ_CHUNK),
                        false,
                    ),
                };
            match exchange(&mut stream, buf, &wire, &body).await {
                Ok((head, buf, framing, keep_alive)) => {
                    let framing = if head_only { Framing::Empty } else { framing };
                    let body =
                        UpstreamBody::new(stream, buf, framing, keep_alive, self.clone(), now);
                    return Ok((head, body));
                }
                Err(Failed::Io {
                    error: _,
                    answered: false,
                }) if reused => fresh_only = true,
                Err(Failed::Io { error, .. }) => return Err(SendError::Broken(error)),
                Err(Failed::Malformed(what)) => return Err(SendError::Malformed(what)),
            }
        }
    }

    /// The most recently used idle connection that is still open (as nginx's keep-alive cache
    /// does): a connection in steady use keeps its congestion window (Linux restarts slow start
    /// on a connection idle for longer than its retransmission timeout, which costs a large
    /// prompt round trips to a far region) and its buffers warm, and the ones a burst left over
    /// go unused and age out instead of being kept alive by rotation. The idle time counts from
    /// when the connection's last request started (one clock read per request, not two), so a
    /// connection back from a long stream may be retired early; never late.
    fn checkout(&self, now: u64) -> Option<(Stream, BytesMut)> {
        let mut stack = self.idle();
        while let Some(idle) = stack.pop_back() {
            // Each is checked: the last returned is not always the last started (a long stream).
            if now.saturating_sub(idle.since_ms) < IDLE_TIMEOUT_MS && idle.stream.is_idle_open() {
                return Some((idle.stream, idle.buf));
            }
        }
        None
    }

    /// Returns a connection whose response was read to the end, with its (empty) read buffer.
    /// The connections at the bottom of the stack that have been idle too long are closed now
    /// (measured against this connection's request start, so no clock is read).
    pub(super) fn checkin(&self, stream: Stream, buf: BytesMut, since_ms: u64) {
        let mut stack = self.idle();
        while stack
            .front()
            .is_some_and(|oldest| since_ms.saturating_sub(oldest.since_ms) >= IDLE_TIMEOUT_MS)
            || stack.len() >= MAX_IDLE
        {
            stack.pop_front();
        }
        stack.push_back(Idle {
            stream,
            buf,
            since_ms,
        });
    }

    async fn connect(&self) -> Result<Stream, SendError> {
        let connect = async {
            let addrs = tokio::net::lookup_host((&*self.host, self.port))
                .await
                .map_err(SendError::Connect)?;
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
            let mut tcp = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        tcp = Some(stream);
                        break;
                    }
                    Err(error) => last = error,
                }
            }
            let tcp = Socket::new(tcp.ok_or(SendError::Connect(last))?);
            let _ = tcp.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
            let _ = socket2::SockRef::from(tcp.tokio()).set_tcp_keepalive(&keepalive);
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::Tls(Box::new(tls)))
                    .map_err(SendError::Tls),
            }
        };
        tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| SendError::ConnectTimeout)?
    }
}

/// A request being written: request line, `host`, then the caller's headers.
pub struct RequestHead {
    buf: Vec<u8>,
    head_only: bool,
    declares_length: bool,
    /// When the request started, if the caller already read the clock.
    started_ms: Option<u64>,
}

impl RequestHead {
    /// Appends one header field (values are valid by construction: no CR or LF).
    pub fn header(&mut self, name: &HeaderName, value: &HeaderValue) {
        put_field(&mut self.buf, name.as_str().as_bytes(), value.as_bytes());
    }

    /// Appends one field as parsed from a message (a parser checked it: no CR or LF).
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        put_field(&mut self.buf, name, value);
    }

    /// When the request started (the caller's clock reading; else `send` reads the clock).
    pub fn started_at(&mut self, at: std::time::Instant) {
        self.started_ms = Some(crate::clock::ms_at(at));
    }

    /// What has been written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn finish(mut self, body_len: usize) -> Vec<u8> {
        if body_len > 0 || self.declares_length {
            put_content_length(&mut self.buf, body_len as u64);
        }
        self.buf.extend_from_slice(b"\r\n");
        self.buf
    }
}

enum Failed {
    /// `answered`: some response bytes had arrived (the request reached the backend).
    Io {
        error: io::Error,
        answered: bool,
    },
    Malformed(&'static str),
}

fn io_failed(error: io::Error, answered: bool) -> Failed {
    Failed::Io { error, answered }
}

/// Writes the request and reads up to the end of the response head (skipping `1xx` interim
/// responses). Returns the head, the bytes read past it, the body framing and whether the
/// connection may be reused afterwards.
async fn exchange(
    stream: &mut Stream,
    mut buf: BytesMut,
    wire: &[u8],
    body: &[u8],
) -> Result<(BackendHead, BytesMut, Framing, bool), Failed> {
    stream
        .write_all(wire)
        .await
        .map_err(|e| io_failed(e, false))?;
    if !body.is_empty() {
        stream
            .write_all(body)
            .await
            .map_err(|e| io_failed(e, false))?;
    }
    stream.flush().await.map_err(|e| io_failed(e, false))?;
    // Reclaims the buffer's allocation once the previous response's pieces are gone.
    buf.clear();
    buf.reserve(READ_CHUNK);
    let mut answered = false;
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_CHUNK);
        }
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| io_failed(e, answered))?;
        if read == 0 {
            let error = io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a response");
            return Err(io_failed(error, answered));
        }
        answered = true;
        while let Some(head) = parse_head(&mut buf)? {
            if head.0.status.is_informational() {
                continue; // 100 Continue and friends: the real answer follows.
            }
            return Ok((head.0, buf, head.1, head.2));
        }
        if buf.len() > MAX_HEAD {
            return Err(Failed::Malformed("response head too large"));
        }
    }
}

/// Parses a complete response head off the front of `buf`, if there is one.
fn parse_head(buf: &mut BytesMut) -> Result<Option<(BackendHead, Framing, bool)>, Failed> {
    // Uninitialised slots: the parser writes the ones it fills, nothing is zeroed per response.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Failed::Malformed("too many response header fields"));
        }
        Err(_) => return Err(Failed::Malformed("not an HTTP/1.x response")),
    };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| Failed::Malformed("invalid status"))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Offsets of names and values in `buf`, so the values can share the head's bytes.
    let spans = RawFields::locate(buf, response.headers).map_err(Failed::Malformed)?;
    let head = buf.split_to(len).freeze();
    let mut fields = FramingFields::default();
    let raw = RawFields::new(head, spans, &mut fields).map_err(Failed::Malformed)?;
    let close = fields.close.unwrap_or(version == Version::HTTP_10);
    // RFC 9112 §6.3: no body for 1xx/204/304; transfer-encoding wins over content-length (and
    // the connection is not reused after such an answer); a transfer coding other than chunked
    // last, or no framing at all, reads until close.
    let framing = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if fields.coded {
        if fields.only_chunked() {
            Framing::chunked()
        } else if fields.chunked {
            // `gzip, chunked` and the like: decoding the chunks would hand the client a body
            // whose coding nobody names any more.
            return Err(Failed::Malformed("unsupported transfer coding"));
        } else {
            Framing::UntilClose
        }
    } else if let Some(length) = fields.length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    let keep_alive = !close
        && !fields.ambiguous(version == Version::HTTP_10)
        && !matches!(framing, Framing::UntilClose);
    let head = BackendHead {
        status,
        version,
        fields: raw,
    };
    Ok(Some((head, framing, keep_alive)))
}
