//! A thread's own connection to Redis, for the calls on a request's path (the admission).
//!
//! redis-rs's multiplexed connection sends each call through a channel to a driver task that
//! writes it, reads the answer with a `combine` parser and sends it back through a oneshot:
//! ~3-4 µs a call at c=1 on the benchmark machine; with the timer per call (below), this
//! module took 7-9 µs off the 53 that Redis limits added there (docs/benchmarks.md,
//! "Guardrails", third round). Here the request's own task writes its
//! command and reads the answers: RESP2, pipelined (answers come in the order the commands
//! went), one connection per thread (in a thread-local: only its thread uses it), plain TCP or TLS,
//! `AUTH` and `SELECT` from the store's URL. The store's script calls are written into the
//! connection's buffer as RESP by [`Writer`]; the handshake and `SCRIPT LOAD` from a redis-rs
//! `Cmd`. Everything else (the store's own connection,
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
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::socket::Socket;
use crate::upstream::Stream;

mod reply;
#[cfg(test)]
mod tests;

use reply::parse;
pub use reply::{Error, FromReply, Integers, Reply};

/// Room made in the input buffer before each read.
const READ_CHUNK: usize = 4096;

/// A command, written as RESP into the connection's output buffer.
pub trait Command {
    fn write(&self, out: &mut Vec<u8>);
}

impl Command for redis::Cmd {
    fn write(&self, out: &mut Vec<u8>) {
        self.write_packed_command(out);
    }
}

/// Writes a command's RESP straight into an output buffer (no `redis::Cmd` built and then
/// copied over): the argument count first, then each argument as a bulk string.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A command of `count` arguments (exactly as many must follow).
    pub fn command(out: &'a mut Vec<u8>, count: usize) -> Self {
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
        out.extend_from_slice(b"\r\n");
        Self { out }
    }

    pub fn bytes(&mut self, arg: &[u8]) {
        self.out.push(b'$');
        self.out
            .extend_from_slice(itoa::Buffer::new().format(arg.len()).as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(arg);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn number(&mut self, n: u64) {
        self.bytes(itoa::Buffer::new().format(n).as_bytes());
    }

    /// An argument that `write` appends to the buffer, its length known only once written:
    /// the length's line is then moved in front of it.
    pub fn with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.out.len();
        write(self.out);
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.out.len() - start).as_bytes();
        self.out.push(b'$');
        self.out.extend_from_slice(digits);
        self.out.extend_from_slice(b"\r\n");
        self.out[start..].rotate_right(digits.len() + 3);
        self.out.extend_from_slice(b"\r\n");
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
            Some(Arc::new(crate::upstream::tls_client(roots)))
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
            None => Stream::Plain(Socket::new(tcp)),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|_| Error::Broken)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, Socket::new(tcp))
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
        cmd: &(dyn Command + Sync),
        deadline: Instant,
    ) -> Result<Reply, Error> {
        let id = {
            let mut inner = self.lock();
            if inner.broken {
                return Err(Error::Broken);
            }
            let id = inner.next_id;
            inner.next_id += 1;
            cmd.write(&mut inner.out);
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
            match Pin::new(&mut self.stream).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.out.drain(..n);
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(()),
            }
        }
        match Pin::new(&mut self.stream).poll_flush(cx) {
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
            // Straight into the buffer's spare room (no 4 KiB chunk zeroed on every read and
            // copied over).
            self.input.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.input) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(Error::Broken),
                Poll::Ready(Ok(_)) => {}
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
