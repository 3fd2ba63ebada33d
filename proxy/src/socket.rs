//! A TCP connection whose writes skip libc.
//!
//! Why: `tokio::net::TcpStream` writes through libc's `send`, a thread-cancellation point. In a
//! process with more than one thread (workers, the config watcher) glibc brackets every such call
//! with two atomic updates of the thread's cancellation state, which cost the gateway more per
//! request than the rest of the call's user-side work (`docs/benchmarks.md`); nginx's
//! single-threaded workers never pay it. The gateway never cancels threads, so writes go to the
//! kernel directly through `rustix` (a raw `sendto`, still non-blocking and readiness-driven by
//! tokio's reactor), plain and vectored alike (rustls writes TLS records vectored). Reads stay
//! tokio's: they fill uninitialised buffer space, which needs `unsafe` code this project does
//! not write; only [`Socket::read_arrived`], which copies from a stack buffer, reads directly.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::{RecvFlags, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A connected TCP socket registered with the current runtime's reactor.
#[derive(Debug)]
pub struct Socket(TcpStream);

impl Socket {
    pub fn new(stream: TcpStream) -> Self {
        Self(stream)
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.0.set_nodelay(nodelay)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }

    /// The tokio stream, for socket options.
    pub fn tokio(&self) -> &TcpStream {
        &self.0
    }

    /// Reads what has already arrived, without waiting for the reactor to report it: a new
    /// connection's request is usually there by the time it is accepted, and waiting costs a
    /// turn of the event loop (behind every other ready task) before the first byte is read.
    /// At most `limit` bytes; nothing on `EAGAIN` or error (the usual read path reports those).
    pub fn read_arrived(&self, buf: &mut bytes::BytesMut, limit: usize) {
        let mut scratch = [0u8; 4096];
        let scratch = &mut scratch[..limit.min(4096)];
        if let Ok((read, _)) = rustix::net::recv(&self.0, &mut *scratch, RecvFlags::DONTWAIT) {
            buf.extend_from_slice(&scratch[..read]);
        }
    }

    /// `Ready(true)` once the peer has closed (or reset) the connection, `Ready(false)` once it
    /// sent more bytes (they stay unread: a pipelined request); otherwise this task is woken
    /// when either happens. Reads nothing, so it can watch a connection whose next bytes belong
    /// to someone else.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            if ready!(self.0.poll_read_ready(cx)).is_err() {
                return Poll::Ready(true);
            }
            let mut probe = [0u8; 1];
            let peeked = self.0.try_io(Interest::READABLE, || {
                rustix::net::recv(&self.0, &mut probe, RecvFlags::PEEK | RecvFlags::DONTWAIT)
                    .map(|(read, _)| read)
                    .map_err(io::Error::from)
            });
            match peeked {
                Ok(0) => return Poll::Ready(true),
                Ok(_) => return Poll::Ready(false),
                // Spurious readiness: `try_io` cleared it; wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Poll::Ready(true),
            }
        }
    }

    /// Whether an idle connection is still usable: nothing to read and no end of stream (a
    /// peer that closed it, or sent anything unasked, makes it unusable).
    pub fn is_idle_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.0.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl Socket {
    /// One write straight to the kernel once the socket is writable (`try_io` clears the write
    /// readiness when the kernel says it would block, and the loop waits again).
    fn poll_raw_write(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let stream = &self.0;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_io(Interest::WRITABLE, || {
                write(stream).map_err(io::Error::from)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// Reads through a shared reference (the socket's readiness and `try_read_buf` take `&self`),
/// so a request body can read the connection while the connection watches it for a close.
impl AsyncRead for &Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Writes through a shared reference, as [`Socket`]'s own writes do.
impl AsyncWrite for &Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_raw_write(cx, |stream| {
            rustix::net::send(stream, data, SendFlags::NOSIGNAL)
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = rustix::net::shutdown(&self.0, rustix::net::Shutdown::Write);
        Poll::Ready(shut.map_err(io::Error::from))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_raw_write(cx, |stream| {
            rustix::net::send(stream, data, SendFlags::NOSIGNAL)
        })
    }

    /// Vectored writes: rustls's TLS records to `https` backends, hyper's HTTP/2 frames.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_raw_write(cx, |stream| rustix::io::writev(stream, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Bytes already in the socket are read at once, and none are waited for.
    #[tokio::test]
    async fn read_arrived_takes_what_is_there_and_never_waits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let socket = Socket::new(accepted);
        let mut buf = bytes::BytesMut::new();
        socket.read_arrived(&mut buf, 4096);
        assert!(buf.is_empty(), "nothing was sent yet");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // Loopback delivery may trail the write briefly; give up (and fail) after a while.
        for _ in 0..2000 {
            if !buf.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            socket.read_arrived(&mut buf, 4096);
        }
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
    }

    /// Writes larger than the socket buffers complete (the would-block path waits for the
    /// reactor) and arrive whole and in order, plain or vectored; shutdown ends the peer's reads.
    #[tokio::test]
    async fn large_writes_arrive_whole_and_shutdown_ends_the_stream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut socket = Socket::new(TcpStream::connect(addr).await.unwrap());
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        // The first half through plain writes, the second through vectored ones (two slices
        // per call, as rustls and hyper's HTTP/2 send them), both through the would-block path.
        let (plain, vectored) = data.split_at(data.len() / 2);
        socket.write_all(plain).await.unwrap();
        let (mut left, mut right) = vectored.split_at(vectored.len() / 3);
        assert!(socket.is_write_vectored());
        while !left.is_empty() || !right.is_empty() {
            let slices = [io::IoSlice::new(left), io::IoSlice::new(right)];
            let written = socket.write_vectored(&slices).await.unwrap();
            assert!(written > 0);
            let from_left = written.min(left.len());
            left = &left[from_left..];
            right = &right[written - from_left..];
        }
        socket.shutdown().await.unwrap();
        assert!(reader.await.unwrap() == data);
    }
}
