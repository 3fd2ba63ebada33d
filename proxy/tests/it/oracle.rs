//! Reading the gateway's HTTP/1.1 answers off a raw socket with an independent parser: `httparse`
//! for the head and for chunk-size lines, never the gateway's own `Framing`, so a framing bug of
//! the gateway cannot hide itself by being read back with the same code.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One response read off the connection: status, header block (lowercase), fields, body.
pub struct Wire {
    pub status: u16,
    pub head: String,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Wire {
    /// The values of a field (name in lowercase).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} more than once: {}", self.head);
        all.first().copied()
    }
}

/// Reads one response from `conn`, keeping bytes of the next one in `buf`. `head_only` for the
/// answer to a HEAD (no body, whatever its fields say).
pub async fn read_response(conn: &mut TcpStream, buf: &mut BytesMut) -> Wire {
    read_answer(conn, buf, false).await
}

pub async fn read_answer(conn: &mut TcpStream, buf: &mut BytesMut, head_only: bool) -> Wire {
    let (status, head, fields) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        if let httparse::Status::Complete(len) = response.parse(buf).unwrap() {
            let status = response.code.unwrap();
            let fields = response
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8(h.value.to_vec())
                        .expect("a field value that is not UTF-8");
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect::<Vec<_>>();
            let head = String::from_utf8_lossy(&buf[..len]).to_lowercase();
            buf.advance(len);
            break (status, head, fields);
        }
        assert!(
            read_more(conn, buf).await,
            "connection closed before a response"
        );
    };
    let mut wire = Wire {
        status,
        head,
        fields,
        body: Vec::new(),
    };
    let bodiless = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    let chunked = wire.all("transfer-encoding");
    let lengths = wire.all("content-length");
    assert!(
        chunked.is_empty() || lengths.is_empty(),
        "both framings: {}",
        wire.head
    );
    if bodiless {
        return wire;
    }
    if !chunked.is_empty() {
        assert_eq!(chunked, ["chunked"], "{}", wire.head);
        loop {
            let (start, size) = loop {
                match httparse::parse_chunk_size(buf).expect("a bad chunk size line") {
                    httparse::Status::Complete(found) => break found,
                    httparse::Status::Partial => {
                        assert!(read_more(conn, buf).await, "closed inside a chunk size")
                    }
                }
            };
            let size = size as usize;
            while buf.len() < start + size + 2 {
                assert!(read_more(conn, buf).await, "closed inside a chunk");
            }
            assert_eq!(
                &buf[start + size..start + size + 2],
                b"\r\n",
                "chunk not ended by CRLF"
            );
            wire.body.extend_from_slice(&buf[start..start + size]);
            buf.advance(start + size + 2);
            if size == 0 {
                // The gateway sends no trailers: the CRLF above ended the chunked body.
                return wire;
            }
        }
    }
    if let [length] = lengths[..] {
        assert!(length.bytes().all(|b| b.is_ascii_digit()), "{}", wire.head);
        let length: usize = length.parse().unwrap();
        while buf.len() < length {
            assert!(read_more(conn, buf).await, "closed inside the body");
        }
        wire.body = buf.split_to(length).to_vec();
        return wire;
    }
    assert!(
        lengths.is_empty(),
        "content-length more than once: {}",
        wire.head
    );
    // Delimited by close.
    while read_more(conn, buf).await {}
    wire.body = buf.split().to_vec();
    wire
}

pub async fn read_more(conn: &mut TcpStream, buf: &mut BytesMut) -> bool {
    tokio::time::timeout(Duration::from_secs(10), conn.read_buf(buf))
        .await
        .expect("nothing read within 10 s")
        .unwrap()
        > 0
}
