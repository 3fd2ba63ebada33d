//! `relay`: the leanest HTTP relay we can write, for measuring what one Redis round trip adds
//! to a request served on a given core (the `limits` case, bench/guardrails.py).
//!
//! One blocking thread per client connection, each with its own keep-alive connection to the
//! backend and, with `--redis`, to Redis. Per request: read it (Content-Length framing only),
//! with `--redis` send one command and read its whole reply, send the request to the backend
//! unchanged, and write the backend's answer back. No runtime, no parsing beyond framing: the
//! relay with `--redis` minus the relay without it, paired at c=1, is what that round trip
//! costs in place (caches, context switches and all), and no client could pay less.
//!
//! Loopback only; a benchmark tool, not a server: anything unexpected ends the connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

/// How long a read from the backend or Redis may wait.
const STALLED: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Args)]
pub struct RelayArgs {
    /// Address to listen on (127.0.0.1; port 0 picks a free one, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The backend every request goes to (host:port).
    #[arg(long)]
    backend: SocketAddr,
    /// Redis (host:port): one `--call` round trip before each request is relayed.
    #[arg(long, requires = "call")]
    redis: Option<SocketAddr>,
    /// The Redis command, its words separated by spaces (e.g. `EVALSHA <sha> 1 key arg`).
    #[arg(long, requires = "redis")]
    call: Option<String>,
}

pub fn run(args: RelayArgs) -> Result<()> {
    let loopback = [Some(args.listen), Some(args.backend), args.redis];
    ensure!(
        loopback.iter().flatten().all(|a| a.ip().is_loopback()),
        "relay listens on and talks to loopback addresses only"
    );
    let listener = TcpListener::bind(args.listen).context("binding the relay")?;
    let call = args.call.as_deref().map(resp_command);
    eprintln!("relay listening on http://{}", listener.local_addr()?);
    for client in listener.incoming() {
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                eprintln!("relay: accept failed: {error}");
                continue;
            }
        };
        let (backend, redis, call) = (args.backend, args.redis, call.clone());
        std::thread::spawn(move || {
            if let Err(error) = serve(client, backend, redis.zip(call)) {
                eprintln!("relay: connection ended: {error:#}");
            }
        });
    }
    Ok(())
}

fn serve(
    client: TcpStream,
    backend: SocketAddr,
    redis: Option<(SocketAddr, Vec<u8>)>,
) -> Result<()> {
    let connect = |to: SocketAddr| -> Result<(BufReader<TcpStream>, TcpStream)> {
        let stream = TcpStream::connect(to).with_context(|| format!("connecting to {to}"))?;
        stream.set_nodelay(true)?;
        // A backend or Redis that stops answering ends the connection, not the benchmark.
        stream.set_read_timeout(Some(STALLED))?;
        Ok((BufReader::new(stream.try_clone()?), stream))
    };
    client.set_nodelay(true)?;
    let (mut from_client, mut to_client) = (BufReader::new(client.try_clone()?), client);
    let (mut from_backend, mut to_backend) = connect(backend)?;
    let mut redis = match redis {
        Some((to, call)) => Some((connect(to)?, call)),
        None => None,
    };
    let (mut request, mut answer, mut line) = (Vec::new(), Vec::new(), Vec::new());
    while read_message(&mut from_client, &mut request)? {
        if let Some(((from_redis, to_redis), call)) = redis.as_mut() {
            to_redis.write_all(call)?;
            read_reply(from_redis, &mut line)?;
        }
        to_backend.write_all(&request)?;
        ensure!(
            read_message(&mut from_backend, &mut answer)?,
            "the backend closed"
        );
        to_client.write_all(&answer)?;
    }
    Ok(())
}

/// One HTTP/1.1 message with a Content-Length body (or none) into `out`; false at a clean end
/// of the stream before it.
fn read_message(from: &mut impl BufRead, out: &mut Vec<u8>) -> Result<bool> {
    out.clear();
    let mut length = 0;
    loop {
        let start = out.len();
        if from.read_until(b'\n', out)? == 0 {
            ensure!(start == 0, "the stream ended inside a message head");
            return Ok(false);
        }
        let line = &out[start..];
        if line == b"\r\n" {
            break;
        }
        let line = String::from_utf8_lossy(line).to_ascii_lowercase();
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().context("Content-Length")?;
        } else if line.starts_with("transfer-encoding:") {
            bail!("only Content-Length framing is relayed");
        }
    }
    let start = out.len();
    out.resize(start + length, 0);
    from.read_exact(&mut out[start..])?;
    Ok(true)
}

/// The command as a RESP array of bulk strings.
fn resp_command(words: &str) -> Vec<u8> {
    let words: Vec<&str> = words.split_whitespace().collect();
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend_from_slice(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
    }
    out
}

/// Reads one whole RESP2 reply; an error reply ends the connection (the harness loads the
/// script first, so NOSCRIPT means a broken run).
fn read_reply(from: &mut impl BufRead, line: &mut Vec<u8>) -> Result<()> {
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        line.clear();
        from.read_until(b'\n', line)?;
        let text = std::str::from_utf8(line)?.trim_end();
        let (kind, rest) = text.split_at_checked(1).context("an empty reply line")?;
        match kind {
            "+" | ":" => {}
            "-" => bail!("Redis answered an error: {text}"),
            "$" => {
                let length: i64 = rest.parse()?;
                if length >= 0 {
                    let mut body = vec![0; usize::try_from(length)? + 2];
                    from.read_exact(&mut body)?;
                }
            }
            "*" => {
                let count: i64 = rest.parse()?;
                pending += usize::try_from(count.max(0))?;
            }
            _ => bail!("not a RESP2 reply: {text}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{read_message, read_reply, resp_command};

    #[test]
    fn a_command_is_written_as_an_array_of_bulk_strings() {
        assert_eq!(
            resp_command("EVALSHA abc 1  k"),
            b"*4\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$1\r\nk\r\n"
        );
    }

    #[test]
    fn a_reply_is_read_whole_and_no_further() {
        let mut line = Vec::new();
        // Nested arrays, a bulk string holding CRLF, a null bulk string; then the next reply.
        let mut from: &[u8] = b"*3\r\n:1\r\n*2\r\n$4\r\na\r\nb\r\n$-1\r\n+OK\r\n:7\r\n";
        read_reply(&mut from, &mut line).unwrap();
        assert_eq!(from, b":7\r\n");
        let mut error: &[u8] = b"-NOSCRIPT No matching script\r\n";
        assert!(read_reply(&mut error, &mut line).is_err());
    }

    #[test]
    fn a_message_is_read_by_its_content_length() {
        let mut out = Vec::new();
        let mut from: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET";
        assert!(read_message(&mut from, &mut out).unwrap());
        assert_eq!(out, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(from, b"GET");
        let mut chunked: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(read_message(&mut chunked, &mut out).is_err());
        let mut empty: &[u8] = b"";
        assert!(!read_message(&mut empty, &mut out).unwrap());
    }
}
