//! A thread's own connection to Redis, for the calls on a request's path (the admission).
//!
//! redis-rs's multiplexed connection sends each call through a channel to a driver task that
//! writes it, reads the answer with a `combine` parser and sends it back through a oneshot:
//! ~3-4 µs a call at c=1 on the benchmark machine; with the timer per call (below), this
//! module took 7-9 µs off the 53 that Redis limits added there (docs/benchmarks.md,
//! "Guardrails", third round). Here the request's own task writes its
//! command and reads the answers: RESP2, pipelined (answers come in the order the commands
//! went), one connection per thread (in a thread-local: only its thread uses it), plain TCP or TLS,
//! `AUTH` and `SELECT` from the store's URL. Everything else (the store's own connection,
//! reconnects, script loading on NOSCRIPT) stays with redis-rs in `redis.rs`.
//!
//! Several requests of one thread may wait at once: whichever is polled reads for all, hands
//! each answer to its call and wakes it. Readiness keeps only the last waker it was given, so
//! a call that ends (answered, timed out, or dropped: the client gone) while others still wait
//! wakes the first of them, which then reads for the rest.
//!
//! Each call has a deadline, watched by one timer per connection instead of one per call: a
//! timer earlier than any the thread had makes tokio write to the thread's eventfd (one more
//! system call and wake-up per admission, ~1-2 µs at c=1). The connection's timer is set to
//! the earliest deadline waiting and left to run out when its call is answered; since every
//! later call's deadline is later, it is moved only when it fires (by then no earlier timer
//! remains) or when none runs: about once per timeout, not once per call.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Why a call got no answer, or what Redis answered instead.
#[derive(Debug)]
pub enum Error {
    /// The connection broke or closed (or was already broken): it is of no further use.
    Broken,
    /// The bytes from Redis are not RESP2: the connection is out of step and of no further use.
    Protocol,
    /// Redis answered an error (`-NOSCRIPT ...`, `-READONLY ...`): the whole line.
    Reply(String),
    /// No answer by the call's deadline (it may still come, and is then thrown away).
    Timeout,
}

impl Error {
    /// Whether the connection cannot serve further calls.
    pub fn is_broken(&self) -> bool {
        match self {
            Self::Broken | Self::Protocol => true,
            Self::Timeout => false,
            Self::Reply(_) => matches!(self.code(), Some("READONLY" | "MASTERDOWN" | "LOADING")),
        }
    }

    /// What it was, for a log line: the error reply's code, never its text.
    pub fn label(&self) -> &str {
        match self {
            Self::Broken => "broken",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::Reply(_) => self.code().unwrap_or("error"),
        }
    }

    /// The error reply's code (its first word).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Reply(line) => line.split(' ').next(),
            _ => None,
        }
    }
}

/// An answer, as much of RESP2 as Redis sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Int(i64),
    Simple(String),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// As redis-rs's value, for its `FromRedisValue` conversions.
    pub fn into_value(self) -> redis::Value {
        match self {
            Self::Int(n) => redis::Value::Int(n),
            Self::Simple(text) if text == "OK" => redis::Value::Okay,
            Self::Simple(text) => redis::Value::SimpleString(text),
            Self::Bulk(Some(bytes)) => redis::Value::BulkString(bytes),
            Self::Array(Some(items)) => {
                redis::Value::Array(items.into_iter().map(Self::into_value).collect())
            }
            Self::Bulk(None) | Self::Array(None) => redis::Value::Nil,
        }
    }
}

/// An answer read whole (an error reply as `Err(Error::Reply)`), and the bytes it took.
pub type Parsed = (Result<Reply, Error>, usize);

/// Parses one whole answer from the front of `input`: `Ok(None)` while it is incomplete;
/// `Err` when the bytes are not RESP2.
pub fn parse(input: &[u8]) -> Result<Option<Parsed>, Error> {
    let mut at = 0;
    match parse_at(input, &mut at, 0)? {
        Some(reply) => Ok(Some((reply, at))),
        None => Ok(None),
    }
}

/// Deepest nesting of arrays read (Redis's scripts answer flat arrays).
const MAX_DEPTH: usize = 8;
/// Largest element count or bulk length believed (a wrong length would make a huge buffer).
const MAX_LENGTH: i64 = 64 * 1024 * 1024;

fn parse_at(
    input: &[u8],
    at: &mut usize,
    depth: usize,
) -> Result<Option<Result<Reply, Error>>, Error> {
    let Some(line) = line_at(input, *at)? else {
        return Ok(None);
    };
    let (kind, rest) = (line[0], &line[1..]);
    let after = *at + line.len() + 2;
    let text = || std::str::from_utf8(rest).map_err(|_| Error::Protocol);
    let number = || -> Result<i64, Error> { text()?.parse().map_err(|_| Error::Protocol) };
    let reply = match kind {
        b'+' => Ok(Reply::Simple(text()?.to_owned())),
        b'-' => Err(Error::Reply(text()?.to_owned())),
        b':' => Ok(Reply::Int(number()?)),
        b'$' => {
            let length = number()?;
            if length < 0 {
                Ok(Reply::Bulk(None))
            } else {
                if length > MAX_LENGTH {
                    return Err(Error::Protocol);
                }
                let length = usize::try_from(length).map_err(|_| Error::Protocol)?;
                let end = after + length;
                if input.len() < end + 2 {
                    return Ok(None);
                }
                if &input[end..end + 2] != b"\r\n" {
                    return Err(Error::Protocol);
                }
                *at = end + 2;
                return Ok(Some(Ok(Reply::Bulk(Some(input[after..end].to_vec())))));
            }
        }
        b'*' => {
            let count = number()?;
            if count < 0 {
                Ok(Reply::Array(None))
            } else {
                if count > MAX_LENGTH || depth >= MAX_DEPTH {
                    return Err(Error::Protocol);
                }
                *at = after;
                let mut items = Vec::with_capacity(usize::try_from(count.min(64)).unwrap_or(0));
                let mut failed = None;
                for _ in 0..count {
                    match parse_at(input, at, depth + 1)? {
                        None => return Ok(None),
                        Some(Ok(item)) => items.push(item),
                        // An error inside an array (a transaction's answer): the first one.
                        Some(Err(error)) => failed = failed.or(Some(error)),
                    }
                }
                return Ok(Some(match failed {
                    Some(error) => Err(error),
                    None => Ok(Reply::Array(Some(items))),
                }));
            }
        }
        _ => return Err(Error::Protocol),
    };
    *at = after;
    Ok(Some(reply))
}

/// The line starting at `at`, without its CRLF; `None` while it has not all come.
fn line_at(input: &[u8], at: usize) -> Result<Option<&[u8]>, Error> {
    let rest = input.get(at..).unwrap_or_default();
    match memchr::memchr(b'\n', rest) {
        None if rest.len() > 64 * 1024 => Err(Error::Protocol),
        None => Ok(None),
        Some(end) if end >= 2 && rest[end - 1] == b'\r' => Ok(Some(&rest[..end - 1])),
        Some(_) => Err(Error::Protocol),
    }
}

/// The byte stream: plain TCP or TLS over it.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
}

/// A call waiting for its answer, in the order the commands went.
struct Slot {
    id: u64,
    answer: Option<Result<Reply, Error>>,
    waker: Option<Waker>,
    deadline: Instant,
    /// Its deadline passed without an answer.
    expired: bool,
    /// Its call ended without the answer (dropped, or timed out): it is read and thrown away.
    abandoned: bool,
}

impl Slot {
    fn waiting(&self) -> bool {
        self.answer.is_none() && !self.abandoned && !self.expired
    }
}

struct Inner {
    stream: Stream,
    /// Commands not written yet.
    out: Vec<u8>,
    /// Bytes read, not parsed yet.
    input: BytesMut,
    calls: VecDeque<Slot>,
    /// Runs out at or before the earliest deadline of a call waiting (see the module's doc).
    timer: Pin<Box<Sleep>>,
    next_id: u64,
    broken: bool,
}

/// A thread's connection (see the module's doc). Shared as an `Arc`: the thread-local keeps
/// one, each call holds one while it runs. Only its thread uses it (the futures that do must
/// be `Send` all the same): the lock is never contended.
pub struct Connection {
    inner: Mutex<Inner>,
}

/// What it takes to open a connection: the address and the handshake, from the store's URL.
/// `None` for what only redis-rs does (a Unix socket, TLS with its own parameters or without
/// verification): those stores call through redis-rs only.
#[derive(Clone)]
pub struct Target {
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl Target {
    pub fn of(info: &ConnectionInfo) -> Option<Self> {
        let (host, port, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, None),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            } => (host.clone(), *port, Some(tls_config()?)),
            _ => return None,
        };
        let redis = info.redis_settings();
        Some(Self {
            host,
            port,
            tls,
            username: redis.username().map(str::to_owned),
            password: redis.password().map(str::to_owned),
            db: redis.db(),
        })
    }
}

/// As redis-rs trusts (`rustls-native-certs`: the system's roots, or `SSL_CERT_FILE`), read
/// once per process.
fn tls_config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: std::sync::LazyLock<Option<Arc<rustls::ClientConfig>>> =
        std::sync::LazyLock::new(|| {
            let found = rustls_native_certs::load_native_certs();
            if !found.errors.is_empty() {
                return None;
            }
            let mut roots = rustls::RootCertStore::empty();
            for cert in found.certs {
                roots.add(cert).ok()?;
            }
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        });
    CONFIG.clone()
}

impl Connection {
    /// Connects and shakes hands (`AUTH`, `SELECT`); the caller bounds how long it may take.
    pub async fn open(target: &Target) -> Result<Arc<Self>, Error> {
        let broken = |_: io::Error| Error::Broken;
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(broken)?;
        tcp.set_nodelay(true).map_err(broken)?;
        let stream = match &target.tls {
            None => Stream::Tcp(tcp),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|_| Error::Broken)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(broken)?;
                Stream::Tls(Box::new(tls))
            }
        };
        let connection = Arc::new(Self {
            inner: Mutex::new(Inner {
                stream,
                out: Vec::with_capacity(1024),
                input: BytesMut::with_capacity(4096),
                calls: VecDeque::new(),
                timer: Box::pin(tokio::time::sleep_until(Instant::now())),
                next_id: 0,
                broken: false,
            }),
        });
        // The caller bounds the whole opening: no deadline of its own.
        let never = Instant::now() + std::time::Duration::from_secs(86_400);
        if let Some(password) = &target.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &target.username {
                auth.arg(username);
            }
            auth.arg(password);
            connection.call(&auth, never).await?;
        }
        if target.db != 0 {
            connection
                .call(redis::cmd("SELECT").arg(target.db), never)
                .await?;
        }
        Ok(connection)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it broke (a new one is needed).
    pub fn is_broken(&self) -> bool {
        self.lock().broken
    }

    /// Sends one command and waits for its answer, until `deadline`.
    pub async fn call(
        self: &Arc<Self>,
        cmd: &redis::Cmd,
        deadline: Instant,
    ) -> Result<Reply, Error> {
        let id = {
            let mut inner = self.lock();
            if inner.broken {
                return Err(Error::Broken);
            }
            let id = inner.next_id;
            inner.next_id += 1;
            cmd.write_packed_command(&mut inner.out);
            inner.calls.push_back(Slot {
                id,
                answer: None,
                waker: None,
                deadline,
                expired: false,
                abandoned: false,
            });
            id
        };
        let mut pending = Pending {
            connection: self,
            id,
            done: false,
        };
        poll_fn(|cx| pending.poll(cx)).await
    }
}

/// A call of this connection that has no answer yet.
struct Pending<'a> {
    connection: &'a Arc<Connection>,
    id: u64,
    done: bool,
}

impl Pending<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Reply, Error>> {
        let mut inner = self.connection.lock();
        let inner = &mut *inner;
        // Not woken by its own answer, read now by itself.
        if let Some(slot) = inner.calls.iter_mut().find(|s| s.id == self.id) {
            slot.waker = None;
        }
        if !inner.broken && (inner.flush(cx).is_err() || inner.read(cx).is_err()) {
            inner.break_off();
        }
        inner.watch(cx);
        let Some(at) = inner.calls.iter().position(|s| s.id == self.id) else {
            // Only a broken connection forgets its calls.
            self.done = true;
            return Poll::Ready(Err(Error::Broken));
        };
        // Past its deadline, it ends with the timeout even when the answer has come since
        // (its caller then counts on nothing else, as with a dropped call).
        if inner.calls[at].expired {
            if inner.calls[at].answer.is_some() {
                inner.calls.remove(at);
            } else {
                inner.calls[at].abandoned = true;
            }
            self.done = true;
            inner.wake_a_reader();
            return Poll::Ready(Err(Error::Timeout));
        }
        if inner.calls[at].answer.is_some() {
            let answer = inner.calls.remove(at).and_then(|slot| slot.answer);
            self.done = true;
            inner.wake_a_reader();
            return Poll::Ready(answer.unwrap_or(Err(Error::Protocol)));
        }
        inner.calls[at].waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped before its answer (a timeout, the client gone): the answer is still to
        // come and is thrown away; someone else reads from now on.
        {
            let mut inner = self.connection.lock();
            if let Some(at) = inner.calls.iter().position(|s| s.id == self.id) {
                if inner.calls[at].answer.is_some() {
                    inner.calls.remove(at);
                } else {
                    inner.calls[at].abandoned = true;
                }
            }
            inner.wake_a_reader();
        }
    }
}

impl Inner {
    /// Writes what is waiting to go; `Ok` also when the socket takes no more now (the
    /// caller is then woken when it does).
    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.out.drain(..n);
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(()),
            }
        }
        match self.stream.poll_flush(cx) {
            Poll::Ready(Err(error)) => Err(error),
            _ => Ok(()),
        }
    }

    /// Reads what has come and hands out every whole answer, until the socket has nothing
    /// more now (this caller is then woken when it has).
    fn read(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        loop {
            self.hand_out()?;
            if !self.calls.iter().any(|s| s.answer.is_none()) {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut chunk);
            match self.stream.poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    if buf.filled().is_empty() {
                        return Err(Error::Broken);
                    }
                    self.input.extend_from_slice(buf.filled());
                }
                Poll::Ready(Err(_)) => return Err(Error::Broken),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Ends the calls whose deadline passed, and keeps the timer running for the earliest
    /// one still waiting (this caller is woken when it runs out).
    fn watch(&mut self, cx: &mut Context<'_>) {
        // Calls go in deadline order: the first waiting has the earliest.
        let Some(earliest) = self.calls.iter().find(|s| s.waiting()).map(|s| s.deadline) else {
            return;
        };
        if self.timer.is_elapsed() || self.timer.deadline() > earliest {
            self.timer.as_mut().reset(earliest);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            for slot in self
                .calls
                .iter_mut()
                .filter(|s| s.waiting() && s.deadline <= now)
            {
                slot.expired = true;
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
            match self.calls.iter().find(|s| s.waiting()) {
                Some(next) => self.timer.as_mut().reset(next.deadline),
                None => return,
            }
        }
    }

    /// Gives each whole answer read to the first call without one.
    fn hand_out(&mut self) -> Result<(), Error> {
        while let Some((answer, used)) = parse(&self.input)? {
            self.input.advance(used);
            let Some(at) = self.calls.iter().position(|s| s.answer.is_none()) else {
                // An answer nobody asked for: out of step.
                return Err(Error::Protocol);
            };
            if self.calls[at].abandoned {
                self.calls.remove(at);
                continue;
            }
            let slot = &mut self.calls[at];
            slot.answer = Some(answer);
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
        Ok(())
    }

    /// The connection broke (or is out of step): every waiting call ends with that.
    fn break_off(&mut self) {
        self.broken = true;
        self.out.clear();
        for slot in self.calls.drain(..) {
            if let Some(waker) = slot.waker {
                waker.wake();
            }
        }
    }

    /// Wakes the first call still waiting, so that someone reads for it (readiness wakes only
    /// the last caller that polled, and that one may be gone).
    fn wake_a_reader(&mut self) {
        if let Some(slot) = self.calls.iter_mut().find(|s| s.waiting())
            && let Some(waker) = slot.waker.take()
        {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RESP2 values as Redis writes them.
    fn reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Reply::Int),
            "[a-zA-Z0-9 ]{0,12}".prop_map(Reply::Simple),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(Reply::Bulk),
            Just(Reply::Array(None)),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(|items| Reply::Array(Some(items)))
        })
    }

    fn encode(reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Simple(text) => out.extend_from_slice(format!("+{text}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(bytes)) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    encode(item, out);
                }
            }
        }
    }

    proptest! {
        /// What we read is what redis-rs reads, whole or not at all: every proper prefix is
        /// incomplete, and the bytes after an answer are left for the next one.
        #[test]
        fn answers_read_as_redis_rs_reads_them(reply in reply()) {
            let mut bytes = Vec::new();
            encode(&reply, &mut bytes);
            let (ours, used) = parse(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(ours.unwrap().into_value(), redis::parse_redis_value(&bytes).unwrap());
            for cut in 0..bytes.len() {
                prop_assert!(parse(&bytes[..cut]).unwrap().is_none(), "prefix {cut} read whole");
            }
            bytes.extend_from_slice(b":7\r\n");
            prop_assert_eq!(parse(&bytes).unwrap().unwrap().1, used);
        }
    }

    proptest! {
        /// Whatever comes from the socket, reading it never panics.
        #[test]
        fn any_bytes_are_read_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
            let mut answer = b"*2\r\n".to_vec();
            answer.extend_from_slice(&bytes);
            let _ = parse(&answer);
        }
    }

    #[test]
    fn error_answers_and_broken_bytes_are_told_apart() {
        let (answer, used) = parse(b"-NOSCRIPT No matching script\r\n:1\r\n")
            .unwrap()
            .unwrap();
        let error = answer.unwrap_err();
        assert_eq!(
            (error.code(), error.is_broken(), used),
            (Some("NOSCRIPT"), false, 30)
        );
        let readonly = parse(b"-READONLY You can't write\r\n").unwrap().unwrap().0;
        assert!(readonly.unwrap_err().is_broken(), "a replica: call another");
        for broken in [
            &b"?x\r\n"[..],
            b":1\n",
            b":x\r\n",
            b"$3\r\nabcd\r\n",
            b"*999999999\r\n",
        ] {
            assert!(parse(broken).is_err(), "{broken:?}");
        }
    }

    /// A redis-server of its own on a free port, stopped when dropped.
    struct Server {
        port: u16,
        child: std::process::Child,
    }

    impl Server {
        fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args(["--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (scripts/setup-system.sh installs it)");
            for _ in 0..500 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Self { port, child }
        }

        fn target(&self) -> Target {
            let client = redis::Client::open(format!("redis://127.0.0.1:{}/2", self.port)).unwrap();
            Target::of(client.get_connection_info()).unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(3600)
    }

    fn echo(word: &str) -> redis::Cmd {
        redis::cmd("ECHO").arg(word).clone()
    }

    /// Many calls of one thread in flight on one connection, one of them dropped before its
    /// answer: each gets its own answer, and the one after the dropped one still comes.
    #[tokio::test(flavor = "current_thread")]
    async fn calls_in_flight_together_each_get_their_own_answer() {
        let server = Server::start();
        let connection = Connection::open(&server.target()).await.unwrap();
        let calls = (0..50).map(|i| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let word = format!("w{i}");
                let answer = connection.call(&echo(&word), far()).await.unwrap();
                assert_eq!(answer, Reply::Bulk(Some(word.into_bytes())));
            })
        });
        let calls: Vec<_> = calls.collect();
        // Dropped at once: polled once (its command went), then gone before its answer.
        let word = echo("dropped");
        let mut dropped = Box::pin(connection.call(&word, far()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
        drop(dropped);
        let after = connection.call(&echo("after"), far()).await.unwrap();
        assert_eq!(after, Reply::Bulk(Some(b"after".to_vec())));
        for call in calls {
            call.await.unwrap();
        }
        // SELECT 2 from the URL: the connection counts in database 2.
        let set = redis::cmd("SET").arg("k").arg("v").clone();
        assert_eq!(
            connection.call(&set, far()).await.unwrap(),
            Reply::Simple("OK".into())
        );
        let keys = connection.call(&redis::cmd("DBSIZE"), far()).await.unwrap();
        assert_eq!(keys, Reply::Int(1));
        assert!(!connection.is_broken());
    }

    /// The call that read last for the others is dropped before the answers come: the one
    /// still waiting is woken to read for itself (readiness would wake only the dropped one).
    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_reader_hands_the_reading_over() {
        let server = Server::start();
        let connection = Connection::open(&server.target()).await.unwrap();
        let waiting = tokio::spawn({
            let connection = connection.clone();
            async move {
                let blpop = redis::cmd("BLPOP").arg("handover").arg(0).clone();
                connection.call(&blpop, far()).await
            }
        });
        // It runs: its BLPOP goes, it waits to read.
        tokio::task::yield_now().await;
        // Another call polled after it (its waker now the one readiness keeps), then dropped.
        let word = echo("later");
        let mut later = Box::pin(connection.call(&word, far()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(later.as_mut().poll(&mut cx).is_pending());
        drop(later);
        let pusher = Connection::open(&server.target()).await.unwrap();
        let push = redis::cmd("RPUSH").arg("handover").arg("x").clone();
        assert_eq!(pusher.call(&push, far()).await.unwrap(), Reply::Int(1));
        // A guard against a hang, not a measurement: the answer is already on its way.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await;
        let answer = answer
            .expect("the waiting call was never woken")
            .unwrap()
            .unwrap();
        let expected = [&b"handover"[..], b"x"].map(|b| Reply::Bulk(Some(b.to_vec())));
        assert_eq!(answer, Reply::Array(Some(expected.to_vec())));
    }

    /// A call past its deadline ends with `Timeout`; its answer, when it comes, is thrown away
    /// and the next call still gets its own.
    #[tokio::test(flavor = "current_thread")]
    async fn a_call_past_its_deadline_times_out_and_the_next_gets_its_own_answer() {
        let server = Server::start();
        let connection = Connection::open(&server.target()).await.unwrap();
        // Answered only once something is pushed: after the deadline, whatever the machine.
        let blpop = redis::cmd("BLPOP").arg("later").arg(0).clone();
        let soon = Instant::now() + std::time::Duration::from_millis(50);
        let answer = connection.call(&blpop, soon).await;
        assert!(matches!(answer, Err(Error::Timeout)), "{answer:?}");
        let word = echo("next");
        let mut next = Box::pin(connection.call(&word, far()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            next.as_mut().poll(&mut cx).is_pending(),
            "queued behind the BLPOP"
        );
        let pusher = Connection::open(&server.target()).await.unwrap();
        let push = redis::cmd("RPUSH").arg("later").arg("x").clone();
        assert_eq!(pusher.call(&push, far()).await.unwrap(), Reply::Int(1));
        assert_eq!(next.await.unwrap(), Reply::Bulk(Some(b"next".to_vec())));
        assert!(!connection.is_broken());
    }

    /// The server gone: the call waiting ends at once with `Broken`, and so does every later
    /// one (a new connection is made by the store).
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_that_broke_says_so_to_every_call() {
        let mut server = Server::start();
        let connection = Connection::open(&server.target()).await.unwrap();
        let blpop = redis::cmd("BLPOP").arg("nothing").arg(0).clone();
        let blocked = connection.call(&blpop, far());
        let kill = async {
            tokio::task::yield_now().await;
            let _ = server.child.kill();
            let _ = server.child.wait();
        };
        let (answer, ()) = tokio::join!(blocked, kill);
        assert!(matches!(answer, Err(Error::Broken)), "{answer:?}");
        assert!(connection.is_broken());
        assert!(matches!(
            connection.call(&echo("x"), far()).await,
            Err(Error::Broken)
        ));
    }
}
