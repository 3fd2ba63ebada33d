//! A client that hangs up cancels its backend request at once, on HTTP/1.1 and h2, whether the
//! request is waiting for the backend's answer or its stream is waiting for the next token; the
//! tokens of an answer nobody reads are not spent.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use mock::MockOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::harness::*;

/// A backend that reads a request and never answers; it reports when the request arrived and
/// when the gateway closed the connection.
async fn silent_backend() -> (String, oneshot::Receiver<()>, oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrived, arrival) = oneshot::channel();
    let (closed, closing) = oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the gateway closed before sending a request");
            got.extend_from_slice(&chunk[..n]);
        }
        let _ = arrived.send(());
        // Read until the gateway lets the connection go.
        while conn.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
        let _ = closed.send(());
    });
    (url, arrival, closing)
}

async fn within_10s<T>(what: &str, wait: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("{what} within 10 s"))
}

async fn counted_as_client_closed(gw: &proxy::RunningGateway) {
    wait_until(async || {
        metric_sum(
            &metrics(gw).await,
            "gateway_requests_total",
            &["status=\"499\""],
        ) == 1.0
    })
    .await;
}

#[tokio::test]
async fn an_http1_client_that_hangs_up_before_the_answer_cancels_the_backend_request() {
    let (url, arrival, closing) = silent_backend().await;
    let gw = gateway(&config_yaml(&[b("a", url)], "")).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CHAT_BODY}",
        CHAT_BODY.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    within_10s("the request reached the backend", arrival)
        .await
        .unwrap();
    drop(client);
    // Without this, the gateway would wait for the backend's head for send_timeout (300 s).
    within_10s("the backend request was cancelled", closing)
        .await
        .unwrap();
    counted_as_client_closed(&gw).await;
}

#[tokio::test]
async fn an_h2_client_that_hangs_up_before_the_answer_cancels_the_backend_request() {
    let (url, arrival, closing) = silent_backend().await;
    let gw = gateway(&config_yaml(&[b("a", url)], "")).await;
    let (mut sender, connection) = h2c_connect::<Full<Bytes>>(gw.addr).await;
    let pending =
        tokio::spawn(sender.send_request(request(Method::POST, gw.addr, CHAT, &[], CHAT_BODY)));
    within_10s("the request reached the backend", arrival)
        .await
        .unwrap();
    pending.abort();
    connection.abort();
    within_10s("the backend request was cancelled", closing)
        .await
        .unwrap();
    counted_as_client_closed(&gw).await;
}

/// A stream waiting for its next token (30 s away) when the client hangs up.
async fn slow_stream() -> mock::MockServer {
    mock_with(MockOptions {
        chunk_interval: Duration::from_secs(30),
        chunk_count: 4,
        ..opts("a")
    })
    .await
}

#[tokio::test]
async fn an_http1_client_that_hangs_up_between_tokens_cancels_the_backend_stream() {
    let backend = slow_stream().await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let response = open(request(Method::POST, gw.addr, CHAT, &[], STREAM_BODY)).await;
    let mut body = response.into_body();
    assert!(next_chunk(&mut body).await.is_some());
    drop(body);
    within_10s(
        "the backend stream was dropped",
        backend.stats().wait_for_streams_aborted(1),
    )
    .await;
    assert_eq!(backend.stats().streams_completed(), 0);
}

#[tokio::test]
async fn an_h2_client_that_hangs_up_between_tokens_cancels_the_backend_stream() {
    let backend = slow_stream().await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let (mut sender, connection) = h2c_connect::<Full<Bytes>>(gw.addr).await;
    let response = sender
        .send_request(request(Method::POST, gw.addr, CHAT, &[], STREAM_BODY))
        .await
        .unwrap();
    let mut body = response.into_body();
    assert!(next_chunk(&mut body).await.is_some());
    drop(body);
    connection.abort();
    within_10s(
        "the backend stream was dropped",
        backend.stats().wait_for_streams_aborted(1),
    )
    .await;
    assert_eq!(backend.stats().streams_completed(), 0);
}
