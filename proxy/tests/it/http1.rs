//! The API listener's HTTP/1.1 at the wire level (`server/h1.rs`), with a raw TCP client:
//! pipelining, `expect: 100-continue`, chunked request bodies, framing that could smuggle a
//! request, HTTP/1.0, malformed requests, idle connections closing on drain, and the client
//! timeouts (idle keep-alive, a stalled head or body, an answer nobody reads).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mock::MockOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::oracle::*;

const KEY: &str = "client-key-1";

fn clients() -> String {
    format!("clients:\n  require_auth: true\n  consumers:\n    - {{ name: team, key: {KEY} }}\n")
}

/// Whether the gateway closed the connection (EOF with nothing more to read).
async fn closed(conn: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("connection still open after 10 s")
        .is_ok()
        && rest.is_empty()
}

fn chat_request(addr: SocketAddr, id: &str, extra: &str) -> String {
    format!(
        "POST {CHAT} HTTP/1.1\r\nhost: {addr}\r\napi-key: {KEY}\r\nx-request-id: {id}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{CHAT_BODY}",
        CHAT_BODY.len()
    )
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let both = chat_request(gw.addr, "first", "") + &chat_request(gw.addr, "second", "");
    conn.write_all(both.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    let first = read_response(&mut conn, &mut buf).await;
    let second = read_response(&mut conn, &mut buf).await;
    assert_eq!((first.status, second.status), (200, 200));
    assert!(first.head.contains("x-request-id: first"), "{}", first.head);
    assert!(
        second.head.contains("x-request-id: second"),
        "{}",
        second.head
    );
    let json: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(json["object"], "chat.completion");
    // Still open for a third.
    conn.write_all(chat_request(gw.addr, "third", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut conn, &mut buf).await.status, 200);
}

#[tokio::test]
async fn expect_continue_is_answered_only_for_requests_that_will_be_read() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    let head = chat_request(gw.addr, "exp", "expect: 100-continue\r\n");
    let (head, body) = head.split_at(head.len() - CHAT_BODY.len());

    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    while !buf.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n") {
        assert!(read_more(&mut conn, &mut buf).await);
    }
    let _ = buf.split_to(25);
    conn.write_all(body.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut conn, &mut buf).await.status, 200);

    // A wrong key is refused from the head alone: no 100, a 401, and the unread body is never
    // taken for the next request (the connection closes).
    let refused = head.replace(KEY, "wrong-key");
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(refused.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    let reply = read_response(&mut conn, &mut buf).await;
    assert_eq!(reply.status, 401);
    assert!(reply.head.contains("connection: close"), "{}", reply.head);
    assert!(closed(&mut conn).await);
    assert_eq!(backend.stats().requests_log().len(), 1);

    // A client that sends its body without waiting gets no interim answer, only the real one.
    let eager = chat_request(gw.addr, "eager", "expect: 100-continue\r\n");
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(eager.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut conn, &mut BytesMut::new()).await.status,
        200
    );
}

#[tokio::test]
async fn chunked_request_bodies_reach_the_backend_whole() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    let (one, two) = CHAT_BODY.split_at(10);
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{one}\r\n{:x}\r\n{two}\r\n0\r\n\r\n",
        one.len(),
        two.len()
    );
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let reply = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(backend.stats().requests_log()[0].body, CHAT_BODY.as_bytes());
}

#[tokio::test]
async fn a_request_framed_two_ways_is_read_as_chunked_then_its_connection_closed() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    // Transfer-encoding wins over content-length (RFC 9112 §6.3), but a front end that went by
    // the length would take the rest for a second request: nothing after it on this connection
    // is served (§6.1), so the two cannot disagree about where requests begin.
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{CHAT_BODY}\r\n0\r\n\r\n",
        CHAT_BODY.len()
    ) + &chat_request(gw.addr, "second", "");
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let reply = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.head.contains("connection: close"), "{}", reply.head);
    assert!(closed(&mut conn).await);
    let log = backend.stats().requests_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].body, CHAT_BODY.as_bytes());
}

#[tokio::test]
async fn an_http10_request_with_transfer_encoding_is_answered_then_its_connection_closed() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    // RFC 9112 §6.1: HTTP/1.0 has no transfer codings, so such framing is faulty even when it
    // parses; the answer goes out, and nothing after it on this connection is read.
    let request = format!(
        "POST {CHAT} HTTP/1.0\r\nhost: x\r\napi-key: {KEY}\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{CHAT_BODY}\r\n0\r\n\r\n",
        CHAT_BODY.len()
    );
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let reply = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(reply.status, 200);
    assert!(closed(&mut conn).await);
}

#[tokio::test]
async fn a_relayed_answer_keeps_the_backends_length() {
    // An operation the gateway relays as it comes (neither JSON it reads nor SSE): a backend
    // that answers any request with five sized bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            socket.read_buf(&mut seen).await.unwrap();
        }
        socket
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\ncontent-length: 5\r\n\r\nhello",
            )
            .await
            .unwrap();
        let _ = socket.read_to_end(&mut seen).await;
    });
    let gw = gateway(&config_yaml(&[b("a", url)], &clients())).await;
    let request = format!(
        "POST /openai/deployments/tts/audio/speech?api-version=2024-10-21 HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let reply = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!((reply.status, &reply.body[..]), (200, &b"hello"[..]));
    // Its length reaches the client (a download shows its progress), not chunks.
    assert!(reply.head.contains("content-length: 5"), "{}", reply.head);
    assert!(!reply.head.contains("transfer-encoding"), "{}", reply.head);
}

#[tokio::test]
async fn http10_clients_get_their_answer_then_a_close() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    let request = chat_request(gw.addr, "old", "").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let reply = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.head.contains("transfer-encoding"), "{}", reply.head);
    assert!(closed(&mut conn).await);
}

#[tokio::test]
async fn malformed_requests_get_400_in_the_error_shape_and_a_close() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    let chunked_body = format!("{:x}\r\n{CHAT_BODY}\r\n0\r\n\r\n", CHAT_BODY.len());
    for (garbage, status, code) in [
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400, "bad_request"),
        (
            format!(
                "POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"
            ),
            400,
            "bad_request",
        ),
        // The body's length cannot be known unless chunked is the last coding.
        (
            format!("POST {CHAT} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n"),
            400,
            "bad_request",
        ),
        (
            format!(
                "POST {CHAT} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n{chunked_body}"
            ),
            400,
            "bad_request",
        ),
        // Codings under the chunks are not decoded, and must not reach a backend unnamed.
        (
            format!(
                "POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ntransfer-encoding: gzip, chunked\r\n\r\n{chunked_body}"
            ),
            501,
            "not_implemented",
        ),
        (
            format!(
                "POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n{chunked_body}"
            ),
            501,
            "not_implemented",
        ),
    ] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(garbage.as_bytes()).await.unwrap();
        let reply = read_response(&mut conn, &mut BytesMut::new()).await;
        assert_eq!(reply.status, status, "{garbage}");
        assert!(
            reply.head.contains(&format!("x-gateway-error: {code}")),
            "{}",
            reply.head
        );
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(json["error"]["code"], code);
        assert!(closed(&mut conn).await);
    }
    assert!(backend.stats().requests_log().is_empty());
    // Refused by the connection, yet counted: a flood of bad requests shows on the dashboard.
    let text = metrics(&gw).await;
    for (status, count) in [("400", 4.0), ("501", 2.0)] {
        let needle = format!("status=\"{status}\"");
        assert_eq!(
            metric_sum(&text, "gateway_requests_total", &[&needle]),
            count,
            "{text}"
        );
    }
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_and_finishes() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], &clients())).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(chat_request(gw.addr, "one", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut conn, &mut BytesMut::new()).await.status,
        200
    );
    // The connection is idle in keep-alive; a drain must not wait for it.
    let shutdown = tokio::spawn(gw.shutdown());
    assert!(closed(&mut conn).await);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown waited on an idle connection")
        .unwrap();
}

#[tokio::test]
async fn a_refused_body_is_drained_for_a_while_instead_of_reset() {
    let backend = mock("a").await;
    let gw = gateway(
        &config_yaml(&[b("a", backend.url())], &clients())
            .replace("server:\n", "server:\n  max_body_bytes: 1000\n"),
    )
    .await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    // A declared body over the limit: the gateway answers 413 without reading it.
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: 4000000\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let reply = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(reply.status, 413);
    assert!(reply.head.contains("connection: close"), "{}", reply.head);
    // A client that keeps sending its body meanwhile is not reset: the gateway half-closed and
    // reads what still comes (RFC 9112 9.6). A plain close would answer these writes with a
    // reset, which on a real network can destroy the answer before the client reads it.
    for _ in 0..8 {
        conn.write_all(&[b' '; 16 * 1024])
            .await
            .expect("the gateway reset the connection instead of draining it");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed(&mut conn).await);
    assert_eq!(backend.stats().requests(), 0);
}

/// A gateway with short client timeouts, so the tests wait for them instead of the defaults.
async fn impatient(backend: &mock::MockServer) -> proxy::RunningGateway {
    let yaml = config_yaml(&[b("a", backend.url())], &clients()).replace(
        "server:\n",
        "server:\n  keepalive_timeout: 200ms\n  client_timeout: 200ms\n",
    );
    gateway(&yaml).await
}

#[tokio::test]
async fn an_idle_keep_alive_connection_closes_after_keepalive_timeout() {
    let backend = mock("a").await;
    let gw = impatient(&backend).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(chat_request(gw.addr, "one", "").as_bytes())
        .await
        .unwrap();
    let reply = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.head.contains("connection: close"), "{}", reply.head);
    // Kept alive, then closed once idle (without the timeout it would stay open for good).
    assert!(closed(&mut conn).await);
    // A connection that never sends anything is idle from the start.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed(&mut silent).await);
}

#[tokio::test]
async fn a_request_that_stalls_mid_head_or_mid_body_gets_408_and_a_close() {
    let backend = mock("a").await;
    let gw = impatient(&backend).await;
    let whole = chat_request(gw.addr, "slow", "");
    let body_at = whole.len() - CHAT_BODY.len();
    for (what, sent) in [
        ("head", &whole[..body_at / 2]),
        ("body", &whole[..body_at + CHAT_BODY.len() / 2]),
    ] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(sent.as_bytes()).await.unwrap();
        let reply = read_response(&mut conn, &mut BytesMut::new()).await;
        assert_eq!(reply.status, 408, "{what}");
        assert!(
            reply.head.contains("x-gateway-error: request_timeout"),
            "{what}: {}",
            reply.head
        );
        assert!(reply.head.contains("connection: close"), "{}", reply.head);
        assert!(closed(&mut conn).await, "{what}");
    }
    assert_eq!(backend.stats().requests(), 0);
    // Both counted: the slow head by the connection, the slow body by the request's stages.
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_requests_total", &["status=\"408\""]),
        2.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_its_stream_is_let_go_and_the_backend_stream_with_it() {
    // Far more than every socket buffer between the mock and the client can hold.
    let backend = mock_with(MockOptions {
        chunk_count: 300_000,
        ..opts("a")
    })
    .await;
    let gw = impatient(&backend).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(gw.addr).await.unwrap();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: {}\r\n\r\n{STREAM_BODY}",
        STREAM_BODY.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    // The client reads nothing. The gateway's writes stall, it gives up after client_timeout and
    // drops the backend stream; without that, everything would wait on everything for good.
    tokio::time::timeout(
        Duration::from_secs(10),
        backend.stats().wait_for_streams_aborted(1),
    )
    .await
    .expect("the backend stream was not dropped within 10 s");
    assert_eq!(backend.stats().streams_completed(), 0);
}

/// Paths a backend or a front end could normalise into another one than the gateway classified
/// are refused with 400 before any backend sees them (one was forwarded with the backend key).
#[tokio::test]
async fn ambiguous_paths_are_refused_before_any_backend_sees_them() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    for path in [
        "/openai/v1/../../admin/secret",
        "/openai/v1/x/../chat/completions",
        "/openai/v1//chat/completions",
        "/openai/v1/chat%2Fcompletions",
        "/openai/v1/%2E%2E/models",
        "/openai/deployments/gpt-4o/..%5Cchat/completions",
    ] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CHAT_BODY}",
            CHAT_BODY.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let wire = read_response(&mut conn, &mut BytesMut::new()).await;
        assert_eq!(wire.status, 400, "{path}");
        assert!(wire.head.contains("x-gateway-error: bad_request"), "{path}");
        assert!(String::from_utf8_lossy(&wire.body).contains("Ambiguous request path"));
    }
    assert_eq!(backend.stats().requests(), 0);
    // The plain form of the same request is served.
    assert_eq!(
        post(
            gw.addr,
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#
        )
        .await
        .status,
        200
    );
}

/// A HEAD request's answer carries no body, yet its request is complete: it counts as answered
/// (its status), not as a client gone mid-answer.
#[tokio::test]
async fn a_head_request_counts_as_answered() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"HEAD /nope HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(read_more(&mut conn, &mut buf).await);
    }
    assert!(buf.starts_with(b"HTTP/1.1 404"));
    // And a backend's answer, buffered or relayed, that the connection does not send.
    for path in ["/openai/v1/models", "/openai/v1/files/file-1/content"] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        let head = format!("HEAD {path} HTTP/1.1\r\nhost: x\r\napi-key: k\r\n\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(read_more(&mut conn, &mut buf).await);
        }
    }
    // Over h2c too, where the server never polls the body of a HEAD answer.
    let (mut sender, _connection) =
        h2c_connect::<http_body_util::Empty<bytes::Bytes>>(gw.addr).await;
    for path in ["/nope", "/openai/v1/models"] {
        let head = http::Request::head(format!("http://{}{path}", gw.addr))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = sender.send_request(head).await.unwrap();
        assert_ne!(response.status(), 499);
    }
    wait_until(async || metric_sum(&metrics(&gw).await, "gateway_requests_total", &[]) == 5.0)
        .await;
    assert_eq!(
        metric_sum(
            &metrics(&gw).await,
            "gateway_requests_total",
            &["status=\"499\""]
        ),
        0.0
    );
}
