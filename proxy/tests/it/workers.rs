//! Several workers (threads with their own runtime) serving one listener: every request and
//! stream works whichever worker accepts it, backend connections are reused per worker, and a
//! drain stops them all.

use std::time::Duration;

use http::Method;
use mock::MockOptions;
use proxy::{GatewayConfig, RunningGateway};

use crate::harness::*;

fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("gateway-worker"))
        .count()
}

#[tokio::test]
async fn requests_and_streams_work_on_every_worker_and_drain_stops_them() {
    let backend = mock_with(MockOptions {
        chunk_count: 4,
        ..opts("a")
    })
    .await;
    let yaml = config_yaml(&[b("a", backend.url())], "");
    let config = GatewayConfig::parse("test.yaml", &yaml).unwrap();
    let gw = RunningGateway::start_with_workers(config, 3).await.unwrap();
    // Two extra threads (each names itself once it runs).
    wait_until(async || worker_threads() == 2).await;

    // Many connections at once: the listener is shared, so they spread over the workers.
    let mut calls = Vec::new();
    for i in 0..60 {
        let addr = gw.addr;
        calls.push(tokio::spawn(async move {
            if i % 3 == 0 {
                let reply = send(request(Method::POST, addr, CHAT, &[], STREAM_BODY)).await;
                (reply.status, reply.text().ends_with("data: [DONE]\n\n"))
            } else {
                let reply = post(addr, CHAT, CHAT_BODY).await;
                (reply.status, reply.json()["object"] == "chat.completion")
            }
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), (http::StatusCode::OK, true));
    }
    // Then one at a time: whichever worker serves them reuses its idle backend connections. A
    // worker the burst happened to miss opens its first one now: at most one new per worker.
    let opened = backend.stats().connections();
    for _ in 0..20 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    }
    assert!(
        backend.stats().connections() <= opened + 3,
        "{} new backend connections for 20 sequential requests",
        backend.stats().connections() - opened
    );

    tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
        .await
        .expect("workers did not drain");
    wait_until(async || worker_threads() == 0).await;
}
