//! The client-facing HTTP/1.1 edge against RFC 9112/9110, as strictly as hyper: one table of
//! requests written on raw sockets, each with the status it must get, read back with an
//! independent parser ([`crate::oracle`]). A refused request never reaches a backend (so never
//! carries its key); accepted ones reach it without what the client may not forward.

use bytes::BytesMut;
use mock::MockOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;
use crate::oracle::*;

const KEY: &str = "client-key-1";
const MAX_BODY: usize = 4096;

fn config(backend: String) -> String {
    config_yaml(
        &[b("a", backend)],
        &format!(
            "clients:\n  require_auth: true\n  consumers:\n    - {{ name: team, key: {KEY} }}\n"
        ),
    )
    .replace(
        "server:\n",
        &format!("server:\n  max_body_bytes: {MAX_BODY}\n"),
    )
}

fn post(fields: &str, body: &str) -> String {
    format!("POST {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n{fields}\r\n{body}")
}

fn sized(fields: &str) -> String {
    post(
        &format!("content-length: {}\r\n{fields}", CHAT_BODY.len()),
        CHAT_BODY,
    )
}

fn chunked(extra: &str, chunks: &str) -> String {
    post(&format!("transfer-encoding: chunked\r\n{extra}"), chunks)
}

/// `CHAT_BODY` as one chunk, with `size_line` as the size line's end (e.g. `;a=b\r\n`).
fn one_chunk(size_line: &str, after_data: &str) -> String {
    format!(
        "{:x}{size_line}{CHAT_BODY}{after_data}0\r\n\r\n",
        CHAT_BODY.len()
    )
}

/// Every case of the edge, with the status it must get (200: accepted, and answered by the
/// backend).
fn table() -> Vec<(&'static str, String, u16)> {
    let crlf = "\r\n";
    vec![
        // Framing (RFC 9112 §6, §7).
        (
            "chunked, well formed",
            chunked("", &one_chunk(crlf, crlf)),
            200,
        ),
        (
            "chunked, extensions and blanks",
            chunked("", &one_chunk(" \t;a=\"b c\";d\r\n", crlf)),
            200,
        ),
        (
            "chunk size line ended by a bare LF",
            chunked("", &one_chunk("\n", crlf)),
            400,
        ),
        (
            "chunk data ended by a bare LF",
            chunked("", &one_chunk(crlf, "\n")),
            400,
        ),
        (
            "last chunk ended by a bare LF",
            chunked(
                "",
                &format!("{:x}\r\n{CHAT_BODY}\r\n0\n\r\n", CHAT_BODY.len()),
            ),
            400,
        ),
        (
            "CR inside a chunk extension",
            chunked("", &one_chunk(";a\rb\r\n", crlf)),
            400,
        ),
        (
            "LF inside a chunk extension",
            chunked("", &one_chunk(";a\nb\r\n", crlf)),
            400,
        ),
        (
            "blank before a chunk size",
            chunked("", &format!(" {}", one_chunk(crlf, crlf))),
            400,
        ),
        (
            "chunk extensions past 16 KiB over the body",
            chunked("", &{
                let ext = format!(";{}", "e".repeat(2000));
                let mut chunks = String::new();
                for c in CHAT_BODY.chars() {
                    chunks.push_str(&format!("1{ext}\r\n{c}\r\n"));
                }
                chunks + "0\r\n\r\n"
            }),
            400,
        ),
        (
            "trailers past 16 KiB",
            chunked(
                "",
                &format!(
                    "{:x}\r\n{CHAT_BODY}\r\n0\r\n{}\r\n",
                    CHAT_BODY.len(),
                    format!("t: {}\r\n", "v".repeat(2000)).repeat(10)
                ),
            ),
            400,
        ),
        (
            "transfer-encoding: chunked twice in one field",
            post(
                "transfer-encoding: chunked, chunked\r\n",
                &one_chunk(crlf, crlf),
            ),
            400,
        ),
        (
            "transfer-encoding: chunked in two fields",
            post(
                "transfer-encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &one_chunk(crlf, crlf),
            ),
            400,
        ),
        (
            "content-length with a no-break space",
            post(
                &format!("content-length: {}\u{a0}\r\n", CHAT_BODY.len()),
                CHAT_BODY,
            ),
            400,
        ),
        (
            "content-length with an em space",
            post(
                &format!("content-length: {}\u{2003}\r\n", CHAT_BODY.len()),
                CHAT_BODY,
            ),
            400,
        ),
        (
            "content-length with a sign",
            post(
                &format!("content-length: +{}\r\n", CHAT_BODY.len()),
                CHAT_BODY,
            ),
            400,
        ),
        (
            "content-length as a list",
            post(
                &format!("content-length: {0}, {0}\r\n", CHAT_BODY.len()),
                CHAT_BODY,
            ),
            400,
        ),
        (
            "two different content-lengths",
            post(
                &format!(
                    "content-length: {}\r\ncontent-length: 1\r\n",
                    CHAT_BODY.len()
                ),
                CHAT_BODY,
            ),
            400,
        ),
        (
            "content-length above max_body_bytes",
            post(&format!("content-length: {}\r\n", MAX_BODY + 1), ""),
            413,
        ),
        // Only the size line of a chunk too large is sent: refused at it, not after its bytes.
        (
            "a chunk above max_body_bytes",
            chunked("", &format!("{:x}\r\n", MAX_BODY + 1)),
            413,
        ),
        (
            "a transfer coding not implemented",
            post(
                "transfer-encoding: gzip, chunked\r\n",
                &one_chunk(crlf, crlf),
            ),
            501,
        ),
        (
            "a transfer coding that does not end in chunked",
            post("transfer-encoding: chunked, gzip\r\n", ""),
            400,
        ),
        // Head (RFC 9112 §2–§5, RFC 9110 §7.2).
        (
            "no host",
            format!(
                "POST {CHAT} HTTP/1.1\r\napi-key: {KEY}\r\ncontent-length: {}\r\n\r\n{CHAT_BODY}",
                CHAT_BODY.len()
            ),
            400,
        ),
        ("two hosts", sized("host: y\r\n"), 400),
        (
            "HTTP/1.0 without host",
            format!(
                "POST {CHAT} HTTP/1.0\r\napi-key: {KEY}\r\ncontent-length: {}\r\n\r\n{CHAT_BODY}",
                CHAT_BODY.len()
            ),
            200,
        ),
        (
            "a head over 64 KiB in one write",
            sized(&format!("x-big: {}\r\n", "b".repeat(80 * 1024))),
            431,
        ),
        ("space before a field's colon", sized("x-a : 1\r\n"), 400),
        (
            "a field folded onto the next line",
            sized("x-a: 1\r\n  folded\r\n"),
            400,
        ),
        // RFC 9112 §2.2 lets a recipient take a bare LF for a line end in the head; hyper
        // (httparse) does, and so does the gateway: the head is parsed once, into fields, and
        // never forwarded as bytes, so no backend can read it differently.
        (
            "a bare LF ending the request line",
            format!(
                "POST {CHAT} HTTP/1.1\nhost: x\r\napi-key: {KEY}\r\ncontent-length: {}\r\n\r\n{CHAT_BODY}",
                CHAT_BODY.len()
            ),
            200,
        ),
        (
            "an unknown HTTP version",
            format!("POST {CHAT} HTTP/1.2\r\nhost: x\r\n\r\n"),
            400,
        ),
        // Methods: only those a route serves reach a backend.
        (
            "TRACE",
            format!("TRACE {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n\r\n"),
            405,
        ),
        (
            "PROPFIND",
            format!("PROPFIND {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n\r\n"),
            405,
        ),
        (
            "lowercase post",
            format!(
                "post {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: {}\r\n\r\n{CHAT_BODY}",
                CHAT_BODY.len()
            ),
            405,
        ),
        (
            "GET on chat completions",
            format!("GET {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n\r\n"),
            405,
        ),
        (
            "PUT on chat completions",
            format!(
                "PUT {CHAT} HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-length: 0\r\n\r\n"
            ),
            405,
        ),
        (
            "DELETE on models",
            format!("DELETE /openai/v1/models HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n\r\n"),
            405,
        ),
        (
            "CONNECT",
            format!(
                "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\napi-key: {KEY}\r\n\r\n"
            ),
            404,
        ),
        (
            "GET models",
            format!("GET /openai/v1/models HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n\r\n"),
            200,
        ),
    ]
}

#[tokio::test]
async fn every_case_of_the_edge_gets_its_status() {
    let backend = mock_with(MockOptions {
        record_requests: true,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config(backend.url())).await;
    let mut failures = Vec::new();
    for (case, request, status) in table() {
        let before = backend.stats().requests();
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let answer = read_response(&mut conn, &mut BytesMut::new()).await;
        let reached = backend.stats().requests() - before;
        if answer.status != status {
            failures.push(format!("{case}: {} instead of {status}", answer.status));
            continue;
        }
        if status == 200 {
            if reached != 1 {
                failures.push(format!("{case}: reached the backend {reached} times"));
            }
            continue;
        }
        if reached != 0 {
            failures.push(format!("{case}: refused, yet reached the backend"));
        }
        // The error shape, from the gateway itself, dated.
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let code = json["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if code.is_empty() || answer.one("x-gateway-error") != Some(code.as_str()) {
            failures.push(format!("{case}: not in the error shape: {}", answer.head));
        }
        if answer
            .one("date")
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .is_none()
        {
            failures.push(format!("{case}: no valid date: {}", answer.head));
        }
        if status == 405 && answer.one("allow").is_none_or(str::is_empty) {
            failures.push(format!("{case}: 405 without allow"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The 64 KiB head limit holds however the head arrives: the same 80 KB head sent in 4 KB writes
/// is refused like the one sent in one write (the table's case).
#[tokio::test]
async fn the_head_limit_holds_across_writes() {
    let backend = mock("a").await;
    let gw = gateway(&config(backend.url())).await;
    let request = sized(&format!("x-big: {}\r\n", "b".repeat(80 * 1024)));
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    for piece in request.as_bytes().chunks(4096) {
        // The refusal may come before the last piece: the gateway then reads and drops the
        // rest for a while (a staged close), so the writes still succeed.
        if conn.write_all(piece).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let answer = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(answer.status, 431);
    assert_eq!(backend.stats().requests(), 0);
}

/// What a client may not forward never reaches the backend: fields its `connection` nominates
/// (RFC 9110 §7.6.1) and underscore spellings of framing and credential fields, which a server
/// that folds `_` into `-` would read as the real ones.
#[tokio::test]
async fn hop_by_hop_and_underscore_fields_stay_at_the_edge() {
    let backend = mock_with(MockOptions {
        record_requests: true,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config(backend.url())).await;
    let request = sized(
        "connection: keep-alive, X-Custom\r\nx-custom: secret-hop\r\nx-kept: 1\r\n\
         Transfer_Encoding: chunked\r\nContent_Length: 5\r\napi_key: sk-other\r\n\
         Ocp_Apim_Subscription_Key: sk-apim\r\nx_request_id: spoofed\r\n",
    );
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let answer = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    let seen = &backend.stats().requests_log()[0];
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"x-kept"), "{names:?}");
    for dropped in [
        "x-custom",
        "connection",
        "transfer_encoding",
        "content_length",
        "api_key",
        "ocp_apim_subscription_key",
        "x_request_id",
    ] {
        assert!(
            !names.contains(&dropped),
            "{dropped} reached the backend: {names:?}"
        );
    }
}

/// The other direction: fields a backend's `connection` nominates, and underscore spellings of
/// framing fields, never reach the client.
#[tokio::test]
async fn a_backends_hop_by_hop_fields_stay_at_the_edge() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = [0u8; 8192];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
                    match conn.read(&mut chunk).await {
                        Ok(n @ 1..) => got.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let body = br#"{"id":"x","object":"chat.completion","choices":[]}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: x-backend-hop\r\n\
                     x-backend-hop: internal\r\nx-kept: 1\r\nTransfer_Encoding: chunked\r\n\
                     content-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body).await;
            });
        }
    });
    let gw = gateway(&config(url)).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(sized("").as_bytes()).await.unwrap();
    let answer = read_response(&mut conn, &mut BytesMut::new()).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.one("x-kept"), Some("1"));
    assert!(answer.one("x-backend-hop").is_none(), "{}", answer.head);
    assert!(answer.one("transfer_encoding").is_none(), "{}", answer.head);
}

/// HEAD is GET without a body: served where GET is, with the length the GET's body would have
/// (the backend's `content-length`), and nothing after the head.
#[tokio::test]
async fn head_is_get_without_a_body() {
    let backend = mock("a").await;
    let gw = gateway(&config(backend.url())).await;
    let get = format!("GET /openai/v1/models HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n\r\n");
    let head = get.replacen("GET", "HEAD", 1);
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = BytesMut::new();
    conn.write_all(get.as_bytes()).await.unwrap();
    let full = read_response(&mut conn, &mut buf).await;
    assert_eq!(full.status, 200);
    // On the same connection: a body after the HEAD's head would be read as the next answer.
    conn.write_all(head.as_bytes()).await.unwrap();
    let headed = read_answer(&mut conn, &mut buf, true).await;
    assert_eq!(headed.status, 200);
    assert_eq!(
        headed.one("content-length"),
        Some(full.body.len().to_string().as_str()),
        "{}",
        headed.head
    );
    conn.write_all(get.as_bytes()).await.unwrap();
    let again = read_response(&mut conn, &mut buf).await;
    assert_eq!((again.status, again.body.len()), (200, full.body.len()));
}

/// The admin listener bounds its clients like the API listener: a head that never completes is
/// dropped after `client_timeout`, an idle connection after `keepalive_timeout` (before, slow
/// connections stayed open there as long as their clients liked).
#[tokio::test]
async fn the_admin_listener_bounds_slow_and_idle_clients() {
    let backend = mock("a").await;
    let yaml = config(backend.url()).replace(
        "server:\n",
        "server:\n  client_timeout: 300ms\n  keepalive_timeout: 500ms\n",
    );
    let gw = gateway(&yaml).await;
    let mut slow = TcpStream::connect(gw.admin_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(gw.admin_addr).await.unwrap();
    for conn in [&mut slow, &mut idle] {
        let mut rest = Vec::new();
        // The guard only keeps a missing limit from hanging the test.
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            conn.read_to_end(&mut rest),
        )
        .await;
        assert!(ended.is_ok(), "an admin connection stayed open");
    }
    // The listener still serves.
    let mut conn = TcpStream::connect(gw.admin_addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut conn, &mut BytesMut::new()).await.status,
        200
    );
}

fn limited(backend: String, limits: &str) -> String {
    config(backend).replace("server:\n", &format!("server:\n{limits}"))
}

/// Past `server.max_connections` (over every worker) a connection's first request gets 503 with
/// `Retry-After` in the error shape, counted; once a connection closes, new ones are served.
#[tokio::test]
async fn connections_past_the_limit_get_503() {
    let backend = mock("a").await;
    let gw = gateway(&limited(backend.url(), "  max_connections: 2\n")).await;
    let request = sized("");
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(
            read_response(&mut conn, &mut BytesMut::new()).await.status,
            200
        );
        open.push(conn);
    }
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    let refused = read_response(&mut third, &mut BytesMut::new()).await;
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert_eq!(refused.one("x-gateway-error"), Some("overloaded"));
    assert_eq!(refused.one("retry-after"), Some("1"));
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_overload_refusals_total",
            &["limit=\"connections\""]
        ),
        1.0
    );
    drop(open.pop());
    wait_until(async || {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        read_response(&mut conn, &mut BytesMut::new()).await.status == 200
    })
    .await;
}

/// Request bodies buffered at once are bounded over every request in flight
/// (`server.max_buffered_body_bytes`): a body that would take the total past it gets 503 while
/// another request holds its share, and is served once that request ended.
#[tokio::test]
async fn buffered_bodies_are_bounded_over_all_requests() {
    let backend = mock_with(MockOptions {
        latency: std::time::Duration::from_millis(300),
        ..opts("a")
    })
    .await;
    let gw = gateway(&limited(backend.url(), "  max_buffered_body_bytes: 1000\n")).await;
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(600)
    );
    let request = post(&format!("content-length: {}\r\n", body.len()), &body);
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first.write_all(request.as_bytes()).await.unwrap();
    // Once the first request is with the backend, its body is held.
    wait_until(async || backend.stats().requests() == 1).await;
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second.write_all(request.as_bytes()).await.unwrap();
    let refused = read_response(&mut second, &mut BytesMut::new()).await;
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert_eq!(refused.one("x-gateway-error"), Some("overloaded"));
    assert_eq!(
        read_response(&mut first, &mut BytesMut::new()).await.status,
        200
    );
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut third, &mut BytesMut::new()).await.status,
        200
    );
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_overload_refusals_total",
            &["limit=\"body_memory\""]
        ),
        1.0
    );
}

/// An h2c client that stops reading its answer no longer pins its backend stream: once it has
/// taken none of the answer for `client_timeout`, the gateway lets the stream go (before, the
/// flow-control window held it, and its backend connection, for as long as the client liked).
#[tokio::test]
async fn an_h2c_client_that_stops_reading_lets_its_stream_go() {
    let backend = mock_with(MockOptions {
        chunk_interval: std::time::Duration::from_millis(5),
        chunk_count: 100_000,
        ..opts("a")
    })
    .await;
    let yaml = limited(backend.url(), "  client_timeout: 300ms\n");
    let gw = gateway(&yaml).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(1024)
            .initial_connection_window_size(1024)
            .handshake::<_, http_body_util::Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}{CHAT}", gw.addr))
        .header("api-key", KEY)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(STREAM_BODY)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let streams = async || metric_sum(&metrics(&gw).await, "gateway_active_streams", &[]);
    assert_eq!(streams().await, 1.0);
    // The body is never read: the window fills, and the stream must be let go.
    wait_until(async || streams().await == 0.0).await;
    drop(response);
}
