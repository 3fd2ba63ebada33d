//! The API listener when the process runs out of file descriptors. A test binary of its own:
//! it lowers the process's descriptor limit, which would break any test running beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // The shared helpers; this test uses a few.
#[path = "it/harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The descriptor number the next open would get (the lowest free one).
fn next_descriptor() -> u64 {
    use std::os::fd::AsRawFd;
    std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64
}

#[tokio::test]
async fn out_of_descriptors_the_listener_pauses_instead_of_spinning_then_recovers() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let client = tokio::net::TcpSocket::new_v4().unwrap();
    let before = getrlimit(Resource::Nofile);
    // No new descriptor from here on: the connection is queued by the kernel, but the gateway
    // cannot accept it.
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(next_descriptor()),
            maximum: before.maximum,
        },
    )
    .unwrap();
    let conn = client.connect(gw.addr).await.unwrap();
    // Every accept fails at once meanwhile; a listener that retried at once would count
    // thousands of failures here, one that pauses after each counts a handful.
    tokio::time::sleep(Duration::from_millis(500)).await;
    setrlimit(Resource::Nofile, before).unwrap();

    // The queued connection is served once descriptors are back.
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(conn))
            .await
            .unwrap();
    tokio::spawn(connection);
    let answer = sender
        .send_request(request(
            http::Method::POST,
            gw.addr,
            CHAT,
            // hyper's connection-level client sends no `host` of its own; HTTP/1.1 needs one.
            &[("host", "x")],
            bytes::Bytes::from_static(CHAT_BODY.as_bytes()),
        ))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let failures = metric_sum(&metrics(&gw).await, "gateway_accept_errors_total", &[]);
    assert!(
        (1.0..=20.0).contains(&failures),
        "accept failures counted while out of descriptors: {failures}"
    );
}
