//! Nothing a backend sends can crash the gateway or panic a request: a scripted backend answers
//! with deep nesting, huge retry hints, broken framing and garbage of every kind, and every
//! request still gets a well-formed answer from the gateway.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::*;

/// A backend that answers each request (one per connection) with the next scripted bytes.
struct Scripted {
    url: String,
    next: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let next: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
        let script = next.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let script = script.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 16 * 1024];
                    // The request: head, then its content-length.
                    loop {
                        let Ok(n @ 1..) = conn.read(&mut chunk).await else {
                            return;
                        };
                        got.extend_from_slice(&chunk[..n]);
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                            let length: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap_or(0));
                            if got.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let answer = script.lock().unwrap().pop_front().unwrap_or_default();
                    let _ = conn.write_all(&answer).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { url, next }
    }

    fn answer(&self, bytes: Vec<u8>) {
        self.next.lock().unwrap().push_back(bytes);
    }
}

/// `{"id":"resp_deep","output":[[[...]]]}` nested `depth` levels (about 12 bytes a level).
fn deep_responses_object(depth: usize) -> Vec<u8> {
    let mut body = br#"{"id":"resp_deep","object":"response","output":"#.to_vec();
    for _ in 0..depth {
        body.extend_from_slice(br#"[{"content":"#);
    }
    body.extend_from_slice(b"1");
    for _ in 0..depth {
        body.extend_from_slice(b"}]");
    }
    body.push(b'}');
    body
}

/// Writes an answer: status, extra fields, body.
type Framing = fn(&str, &str, &[u8]) -> Vec<u8>;

fn whole(status: &str, fields: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{fields}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

const RESPONSES: &str = "/openai/v1/responses";
const RESPONSES_BODY: &str = r#"{"model":"gpt-4o","input":"hi"}"#;

async fn gateway_for(backends: &[B<'_>]) -> proxy::RunningGateway {
    gateway(&config_yaml(
        backends,
        "upstream:\n  read_timeout: 2s\n  request_deadline: 10s\n  passive_health: { failures: 0 }\n",
    ))
    .await
}

/// A Responses create answered 200 with 50 000 levels of nesting (about 600 KB) overflowed the
/// stack of the id reader and aborted the whole process. Now the answer is that attempt's
/// failure: the next backend serves the request.
#[tokio::test]
async fn a_deeply_nested_answer_is_an_attempts_failure_not_a_crash() {
    let deep = Scripted::start().await;
    let normal = mock("b").await;
    let gw = gateway_for(&[
        B {
            priority: 10,
            ..b("deep", deep.url.clone())
        },
        b("b", normal.url()),
    ])
    .await;
    deep.answer(whole(
        "200 OK",
        "content-type: application/json\r\n",
        &deep_responses_object(50_000),
    ));
    let r = post(gw.addr, RESPONSES, RESPONSES_BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-gateway-backend")),
        (200, "b"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-gateway-attempts"), "2");
    // Alone, it is a 502 naming what happened.
    let gw = gateway_for(&[b("deep", deep.url.clone())]).await;
    deep.answer(whole(
        "200 OK",
        "content-type: application/json\r\n",
        &deep_responses_object(50_000),
    ));
    let r = post(gw.addr, RESPONSES, RESPONSES_BODY).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("unreadable answer"), "{}", r.text());
}

/// Every answer the backend gives below gets the client a well-formed answer (a panicking
/// request task would close the client's connection without one), and the gateway serves a
/// normal request afterwards.
#[tokio::test]
async fn no_answer_from_a_backend_can_panic_a_request() {
    let backend = Scripted::start().await;
    let gw = gateway_for(&[b("x", backend.url.clone())]).await;
    let statuses = [
        "200 OK",
        "429 Too Many Requests",
        "500 Internal Server Error",
        "503 Busy",
        "400 Bad",
        "404 Nope",
        "999 Strange",
        "200",
    ];
    let fields = [
        "",
        "content-type: application/json\r\n",
        "content-type: text/event-stream\r\n",
        "retry-after: 1e20\r\n",
        "retry-after: 18446744073709551616\r\n",
        "retry-after: -1\r\n",
        "retry-after: Fri, 31 Dec 9999 23:59:59 GMT\r\n",
        "retry-after-ms: 1e300\r\n",
        "retry-after-ms: NaN\r\n",
        "x-ratelimit-reset-tokens: 1e400\r\n",
        "x-ratelimit-remaining-tokens: -5\r\nx-ratelimit-remaining-requests: 1e99\r\n",
        "x-ratelimit-remaining-tokens: 99999999999999999999999\r\n",
        "x-ms-region: \u{7f}\r\n",
        "content-encoding: gzip\r\n",
    ];
    let deep_usage = {
        let mut body = br#"{"choices":[],"usage":{"prompt_tokens":1,"x":"#.to_vec();
        body.extend(std::iter::repeat_n(b'[', 60_000));
        body.extend(std::iter::repeat_n(b']', 60_000));
        body.extend_from_slice(b"}}");
        body
    };
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        b"not json at all".to_vec(),
        br#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615,"total_tokens":1e999}}"#.to_vec(),
        br#"{"error":{"code":["nested"],"message":{"deep":true}}}"#.to_vec(),
        br#"{"id":"resp_\ud800","object":"response"}"#.to_vec(),
        deep_usage,
        deep_responses_object(50_000),
        b"data: {\"error\":{\"code\":\"too_many_requests\"}}\n\n".to_vec(),
        b"data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 1}}\n\ndata: [DONE]\n\n".to_vec(),
        b"event: error\ndata: {\"error\":\ndata: {\n\n".to_vec(),
        [b"data: ".as_slice(), &vec![b'x'; 200_000]].concat(),
        vec![0xff; 1000],
    ];
    let framings: [Framing; 5] = [
        whole,
        // Chunked, one chunk, terminated.
        |s, f, b| {
            let mut out = format!(
                "HTTP/1.1 {s}\r\n{f}transfer-encoding: chunked\r\n\r\n{:x}\r\n",
                b.len()
            )
            .into_bytes();
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
            out
        },
        // A content-length promising more than comes, then a close.
        |s, f, b| {
            let mut out = format!(
                "HTTP/1.1 {s}\r\n{f}content-length: {}\r\n\r\n",
                b.len() + 100
            )
            .into_bytes();
            out.extend_from_slice(b);
            out
        },
        // Broken chunk framing.
        |s, f, b| {
            let mut out =
                format!("HTTP/1.1 {s}\r\n{f}transfer-encoding: chunked\r\n\r\nzz\r\n").into_bytes();
            out.extend_from_slice(b);
            out
        },
        // Two different lengths.
        |s, f, b| {
            let mut out =
                format!("HTTP/1.1 {s}\r\n{f}content-length: 1\r\ncontent-length: 2\r\n\r\n")
                    .into_bytes();
            out.extend_from_slice(b);
            out
        },
    ];
    let routes = [
        (CHAT, CHAT_BODY),
        (CHAT, STREAM_BODY),
        (RESPONSES, RESPONSES_BODY),
        ("/openai/v1/responses/resp_1", ""),
        ("/openai/v1/embeddings", r#"{"model":"e","input":"x"}"#),
    ];
    let mut rng = fastrand::Rng::with_seed(13);
    for case in 0..300 {
        let status = statuses[rng.usize(..statuses.len())];
        let field = [
            fields[rng.usize(..fields.len())],
            fields[rng.usize(..fields.len())],
        ]
        .concat();
        let body = &bodies[rng.usize(..bodies.len())];
        let framing = framings[rng.usize(..framings.len())];
        let (path, request_body) = routes[rng.usize(..routes.len())];
        let answer = framing(status, &field, body);
        backend.answer(answer.clone());
        let method = if request_body.is_empty() {
            Method::GET
        } else {
            Method::POST
        };
        let sent = send_within(request(
            method,
            gw.addr,
            path,
            &[("content-type", "application/json")],
            request_body.to_owned(),
        ))
        .await;
        if sent.is_none() {
            panic!(
                "case {case}: no answer from the gateway for backend answer {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            );
        }
    }
    let normal = mock("n").await;
    let gw = gateway_for(&[b("n", normal.url())]).await;
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
}

/// The gateway's answer, or `None` when the connection ended without one (or nothing came in
/// 30 s). A body cut after its head still counts as an answer: the gateway may have committed.
async fn send_within(req: http::Request<http_body_util::Full<bytes::Bytes>>) -> Option<u16> {
    use http_body_util::BodyExt;
    let response = tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let _ = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect()).await;
    Some(status)
}

/// A backend may frame its events any valid way: here an `id:` line and a comment come before
/// `event:`, and the media type is written in mixed case with a parameter. The stream is still
/// relayed as a stream, and the response it creates pins the follow-ups to that backend
/// (before, the affinity read such an event as JSON and never learned the id, and a
/// `Text/Event-Stream` answer was buffered whole).
#[tokio::test]
async fn any_valid_sse_framing_is_a_stream_and_pins_its_response() {
    let scripted = Scripted::start().await;
    let other = mock("other").await;
    let gw = gateway_for(&[b("s", scripted.url.clone()), b("other", other.url())]).await;
    let events = concat!(
        ": warming up\n",
        "id: 1\nevent: response.created\n",
        r#"data: {"type":"response.created","response":{"id":"resp_framed","object":"response","status":"in_progress"}}"#,
        "\n\n",
        "id: 2\nretry: 1000\nevent: response.completed\n",
        r#"data: {"type":"response.completed","response":{"id":"resp_framed","object":"response","status":"completed","usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}}"#,
        "\n\n",
    );
    let stream = whole(
        "200 OK",
        "Content-Type: Text/Event-Stream; charset=utf-8\r\n",
        events.as_bytes(),
    );
    // Round robin sends the first creates to either backend: until one lands on `s`.
    let mut landed = false;
    for _ in 0..4 {
        scripted.answer(stream.clone());
        let first = post(
            gw.addr,
            RESPONSES,
            r#"{"model":"gpt-4o","input":"hi","stream":true}"#,
        )
        .await;
        assert_eq!(first.status, 200, "{}", first.text());
        if first.header("x-gateway-backend") == "s" {
            assert!(first.text().contains("resp_framed"));
            landed = true;
            break;
        }
    }
    assert!(landed, "no create reached the scripted backend");
    for _ in 0..4 {
        scripted.answer(whole(
            "200 OK",
            "content-type: application/json\r\n",
            br#"{"id":"resp_next","object":"response","status":"completed","output":[]}"#,
        ));
        let next = post(
            gw.addr,
            RESPONSES,
            r#"{"model":"gpt-4o","input":"more","previous_response_id":"resp_framed"}"#,
        )
        .await;
        assert_eq!(next.status, 200, "{}", next.text());
        assert_eq!(next.header("x-gateway-backend"), "s");
    }
}

/// A backend that opens a 200 stream and then sends only comments, one every 50 ms: each read
/// comes well within the idle timeout, so before, the request waited for a first event for ever
/// (past its deadline), holding everything it read. Now the opening is bounded by the request's
/// deadline: the client gets a 504 in the error shape.
#[tokio::test]
async fn a_stream_that_never_starts_ends_at_the_request_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut chunk = [0u8; 16 * 1024];
                let _ = conn.read(&mut chunk).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if conn.write_all(b"b\r\n: waiting\n\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let gw = gateway(&config_yaml(
        &[b("slow", url)],
        "upstream:\n  read_timeout: 5s\n  request_deadline: 1s\n",
    ))
    .await;
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        post(
            gw.addr,
            CHAT,
            r#"{"model":"gpt-4o","messages":[],"stream":true}"#,
        ),
    )
    .await
    .expect("the request never ended");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "all_backends_timed_out");
}
