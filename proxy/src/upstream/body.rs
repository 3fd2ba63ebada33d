//! A backend response body, read from the connection by whoever polls it (the request's task):
//! `content-length`, chunked, or until close. Data comes out as slices of the read buffer; the
//! chunks of one read come out as one frame. At the end of a reusable response the connection goes
//! back to its pool; dropped earlier, it is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::client::{Pool, READ_CHUNK};
use super::stream::Stream;

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// How the body is delimited (RFC 9112 §6.3), and how far reading has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `content-length`: bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the backend closes the connection (never reused).
    UntilClose,
    /// Read to the end.
    Done,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size,
    /// Bytes of chunk data still to come.
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    Trailers,
}

impl Framing {
    pub fn chunked() -> Self {
        Framing::Chunked(Chunk::Size)
    }
}

/// The body of a backend response.
pub struct UpstreamBody {
    stream: Option<Stream>,
    buf: BytesMut,
    framing: Framing,
    keep_alive: bool,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("framing", &self.framing)
            .finish()
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl UpstreamBody {
    pub(super) fn new(
        stream: Stream,
        buf: BytesMut,
        framing: Framing,
        keep_alive: bool,
        pool: Arc<Pool>,
    ) -> Self {
        let mut body = Self {
            stream: Some(stream),
            buf,
            framing,
            keep_alive,
            pool,
        };
        if matches!(body.framing, Framing::Empty | Framing::Length(0)) {
            body.finish();
        }
        body
    }

    /// The body is complete: the connection goes back to the pool if it can be reused.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(stream) = self.stream.take()
            && self.keep_alive
            && self.buf.is_empty()
        {
            self.pool.checkin(stream);
        }
    }

    /// Takes the body data that is complete in the buffer, if any.
    fn decode(&mut self) -> io::Result<Option<Bytes>> {
        match self.framing {
            Framing::Empty | Framing::Done => Ok(None),
            Framing::Length(rest) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = rest.min(self.buf.len() as u64) as usize;
                let data = self.buf.split_to(n).freeze();
                self.framing = Framing::Length(rest - n as u64);
                if rest == n as u64 {
                    self.finish();
                }
                Ok(Some(data))
            }
            Framing::UntilClose => Ok((!self.buf.is_empty()).then(|| self.buf.split().freeze())),
            Framing::Chunked(state) => self.decode_chunks(state),
        }
    }

    /// Decodes every chunk the buffer holds; their data comes out as one piece (a slice when
    /// there is only one).
    fn decode_chunks(&mut self, mut state: Chunk) -> io::Result<Option<Bytes>> {
        let mut out = Joined::default();
        loop {
            match state {
                Chunk::Size => {
                    let Some(end) = memchr::memchr(b'\n', &self.buf) else {
                        if self.buf.len() > MAX_LINE {
                            return Err(invalid("chunk size line too long"));
                        }
                        break;
                    };
                    let size = chunk_size(&self.buf[..end])?;
                    self.buf.advance(end + 1);
                    state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(rest) => {
                    if self.buf.is_empty() {
                        break;
                    }
                    let n = rest.min(self.buf.len() as u64) as usize;
                    out.push(self.buf.split_to(n).freeze());
                    state = if rest == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(rest - n as u64)
                    };
                }
                Chunk::DataEnd => {
                    if self.buf.starts_with(b"\r\n") {
                        self.buf.advance(2);
                    } else if self.buf.starts_with(b"\n") {
                        self.buf.advance(1);
                    } else if self.buf.is_empty() || &self.buf[..] == b"\r" {
                        break;
                    } else {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    state = Chunk::Size;
                }
                Chunk::Trailers => {
                    let Some(end) = memchr::memchr(b'\n', &self.buf) else {
                        if self.buf.len() > MAX_LINE {
                            return Err(invalid("trailer line too long"));
                        }
                        break;
                    };
                    let blank = self.buf[..end].iter().all(|&b| b == b'\r');
                    self.buf.advance(end + 1);
                    if blank {
                        self.finish();
                        return Ok(out.take());
                    }
                }
            }
        }
        self.framing = Framing::Chunked(state);
        Ok(out.take())
    }
}

/// Chunk data gathered from one read: the first piece as it is, more pieces copied together.
#[derive(Default)]
struct Joined {
    first: Option<Bytes>,
    many: Option<BytesMut>,
}

impl Joined {
    fn push(&mut self, data: Bytes) {
        if let Some(many) = &mut self.many {
            many.extend_from_slice(&data);
        } else if let Some(one) = self.first.take() {
            let mut both = BytesMut::with_capacity(one.len() + data.len() * 4);
            both.extend_from_slice(&one);
            both.extend_from_slice(&data);
            self.many = Some(both);
        } else {
            self.first = Some(data);
        }
    }

    fn take(self) -> Option<Bytes> {
        self.first.or(self.many.map(BytesMut::freeze))
    }
}

/// The size on a chunk-size line (hex, extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(invalid("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |size, &b| {
        let digit = (b as char)
            .to_digit(16)
            .ok_or_else(|| invalid("invalid chunk size"))?;
        Ok(size * 16 + u64::from(digit))
    })
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
            match this.decode() {
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
        match self.framing {
            Framing::Length(rest) => SizeHint::with_exact(rest),
            Framing::Done | Framing::Empty => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
