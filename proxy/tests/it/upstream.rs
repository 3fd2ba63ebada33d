//! The gateway's own HTTP/1.1 client (`proxy::upstream::Pool`) against scripted backends that
//! write exact bytes: framing, connection reuse, the keep-alive race, malformed answers, and TLS
//! against the mock Key Vault (a real rustls server with a throwaway CA).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::uri::{Authority, Scheme};
use http_body_util::BodyExt;
use proxy::upstream::{Pool, SendError, default_tls, tls_with_roots};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted backend does on each request of a connection.
#[derive(Clone)]
enum Step {
    /// Write these pieces, flushing and pausing between them.
    Answer(Vec<&'static [u8]>),
    /// Read the request, then close without answering (the keep-alive race).
    Close,
}

/// A backend that plays `script[connection][request]`; counts connections.
async fn scripted(script: Vec<Vec<Step>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        for steps in script {
            let (mut socket, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                for step in steps {
                    read_request(&mut socket).await;
                    match step {
                        Step::Close => return,
                        Step::Answer(pieces) => {
                            for piece in pieces {
                                socket.write_all(piece).await.unwrap();
                                socket.flush().await.unwrap();
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                }
                // Keep the connection open until the client is done with it.
                let mut rest = Vec::new();
                let _ = socket.read_to_end(&mut rest).await;
            });
        }
    });
    (addr, accepted)
}

/// Reads one request head plus its `content-length` body.
async fn read_request(socket: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap() == 0 {
            return buf;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await.unwrap();
    buf.extend_from_slice(&body);
    buf
}

fn pool(addr: &str) -> Arc<Pool> {
    Arc::new(Pool::new(
        &Scheme::HTTP,
        &Authority::try_from(addr).unwrap(),
        Duration::from_secs(2),
        default_tls(),
    ))
}

async fn get(pool: &Arc<Pool>) -> Result<(u16, Bytes), SendError> {
    let head = pool.request(&Method::POST, "/openai/v1/chat/completions");
    let (parts, body) = pool.send(head, Bytes::from_static(b"{}")).await?;
    let bytes = body.collect().await.unwrap().to_bytes();
    Ok((parts.status.as_u16(), bytes))
}

#[tokio::test]
async fn chunked_bodies_split_across_reads_are_reassembled_and_the_connection_reused() {
    let chunked: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n",
        b"5\r\nhel",
        b"lo\r\n6;ext=1\r\n world\r\n",
        b"0\r\ntrailer: x\r\n\r\n",
    ];
    let sized: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\nab",
        b"cd",
    ];
    let (addr, accepted) = scripted(vec![vec![Step::Answer(chunked), Step::Answer(sized)]]).await;
    let pool = pool(&addr);
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("hello world")));
    assert_eq!(
        pool.idle_connections(),
        1,
        "a complete body returns its connection"
    );
    assert_eq!(get(&pool).await.unwrap(), (201, Bytes::from("abcd")));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "both requests used one connection"
    );
}

#[tokio::test]
async fn the_connection_returned_last_is_reused_first() {
    // A stack, as nginx's keep-alive cache: a connection in steady use keeps its congestion
    // window and buffers warm, and the spare ones a burst left go unused and age out.
    let answer = |body: &'static [u8]| -> Step { Step::Answer(vec![body]) };
    let (addr, accepted) = scripted(vec![
        vec![
            answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"),
            answer(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nfirst!"),
        ],
        vec![
            answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"),
            answer(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond"),
        ],
    ])
    .await;
    let pool = pool(&addr);
    // Two requests in flight: two connections. A connection returns when its body is read.
    let (_, first) = pool
        .send(pool.request(&Method::POST, "/x"), Bytes::new())
        .await
        .unwrap();
    let (_, second) = pool
        .send(pool.request(&Method::POST, "/x"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(second.collect().await.unwrap().to_bytes(), "b");
    assert_eq!(first.collect().await.unwrap().to_bytes(), "a");
    assert_eq!(pool.idle_connections(), 2);
    // The first connection came back last: it serves the next request.
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("first!")));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_released_error_answer_keeps_its_connection_when_its_body_is_buffered() {
    let throttled: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after-ms: 10\r\ncontent-length: 2\r\n\r\n{}",
    ];
    let ok: Vec<&'static [u8]> = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"];
    let (addr, accepted) = scripted(vec![vec![Step::Answer(throttled), Step::Answer(ok)]]).await;
    let pool = pool(&addr);
    let head = pool.request(&Method::POST, "/x");
    let (parts, body) = pool.send(head, Bytes::new()).await.unwrap();
    assert_eq!(parts.status, 429);
    body.release();
    assert_eq!(pool.idle_connections(), 1);
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("ok")));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn interim_responses_are_skipped_and_no_content_has_no_body() {
    let answer: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-MS-Region: East US \r\n\r\n",
    ];
    let (addr, _) = scripted(vec![vec![Step::Answer(answer)]]).await;
    let pool = pool(&addr);
    let head = pool.request(&Method::DELETE, "/openai/v1/responses/resp_1");
    let (parts, body) = pool.send(head, Bytes::new()).await.unwrap();
    assert_eq!(parts.status, 204);
    // Fields pass through as they came; lookups ignore the name's case.
    assert_eq!(parts.fields.get("x-ms-region"), Some(&b"East US"[..]));
    assert!(body.collect().await.unwrap().to_bytes().is_empty());
}

#[tokio::test]
async fn a_reused_connection_closed_by_the_backend_is_replaced_once() {
    let ok: Vec<&'static [u8]> = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"];
    let (addr, accepted) = scripted(vec![
        vec![Step::Answer(ok.clone()), Step::Close],
        vec![Step::Answer(ok)],
    ])
    .await;
    let pool = pool(&addr);
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("ok")));
    // The pooled connection reads the next request and closes: the client retries on a new one.
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("ok")));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_fresh_connection_that_breaks_is_an_error_not_a_retry() {
    let (addr, accepted) = scripted(vec![vec![Step::Close], vec![Step::Close]]).await;
    let pool = pool(&addr);
    assert!(matches!(get(&pool).await, Err(SendError::Broken(_))));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodies_without_length_run_until_close_and_are_not_reused() {
    let answer: Vec<&'static [u8]> = vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"close"];
    let (addr, _) = scripted(vec![vec![Step::Answer(answer)]]).await;
    let pool = pool(&addr);
    let head = pool.request(&Method::POST, "/x");
    let (_, body) = pool.send(head, Bytes::new()).await.unwrap();
    // The scripted server only closes after the client does, so read the two pieces and stop.
    let mut body = std::pin::pin!(body);
    let mut got = Vec::new();
    while got.len() < 11 {
        let frame = body.frame().await.unwrap().unwrap();
        got.extend_from_slice(&frame.into_data().unwrap());
    }
    assert_eq!(got, b"until close");
    assert_eq!(pool.idle_connections(), 0);
}

#[tokio::test]
async fn malformed_answers_and_bad_framing_are_errors() {
    let malformed: [&'static [u8]; 5] = [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
        // Header values with control bytes (here DEL) cannot be passed on to a client.
        b"HTTP/1.1 200 OK\r\nx-odd: a\x7fb\r\ncontent-length: 0\r\n\r\n",
        // A coding under the chunks: relaying the decoded chunks would drop its name.
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        // The same list over two fields.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for answer in malformed {
        let (addr, _) = scripted(vec![vec![Step::Answer(vec![answer])]]).await;
        let got = get(&pool(&addr)).await;
        assert!(
            matches!(got, Err(SendError::Malformed(_))),
            "{}: {got:?}",
            String::from_utf8_lossy(answer)
        );
    }

    let bad_chunk: Vec<&'static [u8]> =
        vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"];
    let (addr, _) = scripted(vec![vec![Step::Answer(bad_chunk)]]).await;
    let pool = pool(&addr);
    let head = pool.request(&Method::POST, "/x");
    let (_, body) = pool.send(head, Bytes::new()).await.unwrap();
    assert!(body.collect().await.is_err());
    assert_eq!(pool.idle_connections(), 0);
}

#[tokio::test]
async fn an_answer_framed_two_ways_is_read_as_chunked_and_its_connection_not_reused() {
    // RFC 9112 §6.3: transfer-encoding wins; the content-length (which would cut the body at
    // "he") is a sign the two ends may not agree where the answer ends.
    let both: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    let ok: Vec<&'static [u8]> = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"];
    let (addr, accepted) = scripted(vec![
        vec![Step::Answer(both), Step::Answer(ok.clone())],
        vec![Step::Answer(ok)],
    ])
    .await;
    let pool = pool(&addr);
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("hello")));
    assert_eq!(pool.idle_connections(), 0);
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("ok")));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // HTTP/1.0 has no transfer codings: such framing is faulty even alone (RFC 9112 §6.1).
    let old: Vec<&'static [u8]> = vec![
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ];
    let (addr, _) = scripted(vec![vec![Step::Answer(old)]]).await;
    let pool = self::pool(&addr);
    assert_eq!(get(&pool).await.unwrap(), (200, Bytes::from("ok")));
    assert_eq!(pool.idle_connections(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    assert!(matches!(
        get(&pool(&addr)).await,
        Err(SendError::Connect(_))
    ));
}

#[tokio::test]
async fn https_backends_get_verified_tls() {
    let vault = mock::keyvault::MockKeyVault::start(Default::default())
        .await
        .unwrap();
    let authority = Authority::try_from(format!("localhost:{}", vault.addr().port())).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            vault.ca_der().to_vec(),
        ))
        .unwrap();
    let trusted = Arc::new(Pool::new(
        &Scheme::HTTPS,
        &authority,
        Duration::from_secs(2),
        tls_with_roots(roots),
    ));
    let head = trusted.request(&Method::GET, "/secrets/x?api-version=7.4");
    let (parts, body) = trusted.send(head, Bytes::new()).await.unwrap();
    // No token: the vault's challenge, which proves a full HTTP exchange over verified TLS.
    assert_eq!(parts.status, 401);
    body.collect().await.unwrap();
    assert_eq!(trusted.idle_connections(), 1);

    // The same server is refused when its CA is not trusted (web PKI roots only).
    let untrusted = Arc::new(Pool::new(
        &Scheme::HTTPS,
        &authority,
        Duration::from_secs(2),
        default_tls(),
    ));
    let head = untrusted.request(&Method::GET, "/secrets/x?api-version=7.4");
    assert!(matches!(
        untrusted.send(head, Bytes::new()).await,
        Err(SendError::Tls(_))
    ));
}
