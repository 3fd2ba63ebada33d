//! Hot reload: a `current` release swap (as hydrenv does it) or SIGHUP swaps the config with no
//! failed request; a bad new config is rejected and the old one keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use mock::MockOptions;
use proxy::reload::{Trigger, watch};
use proxy::{GatewayConfig, RunningGateway};

use crate::harness::*;

fn release(root: &Path, name: &str, yaml: &str) {
    let dir = root.join("releases").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gateway.yaml"), yaml).unwrap();
}

/// Points `current` at a release with one rename, like hydrenv.
fn swap_current(root: &Path, name: &str) {
    let temp = root.join(".current.tmp");
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(Path::new("releases").join(name), &temp).unwrap();
    std::fs::rename(&temp, root.join("current")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_swap_reloads_without_failing_a_request() {
    let old_backend = mock_with(MockOptions {
        chunk_interval: Duration::from_millis(100),
        chunk_count: 8,
        ..opts("old")
    })
    .await;
    let new_backend = mock("new").await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    release(root, "r1", &config_yaml(&[b("old", old_backend.url())], ""));
    release(root, "r2", &config_yaml(&[b("new", new_backend.url())], ""));
    release(root, "r3", "version: 1\nbackends: []\n");
    swap_current(root, "r1");
    let path = root.join("current").join("gateway.yaml");
    let gw = Arc::new(
        RunningGateway::start(GatewayConfig::load(&path).unwrap())
            .await
            .unwrap(),
    );
    let (_triggers, rx) = tokio::sync::mpsc::channel::<Trigger>(4);
    tokio::spawn(watch(path.clone(), gw.clone(), rx));

    // Load on the gateway during the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (addr, stop, ok, failed) = (gw.addr, stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = post(addr, CHAT, CHAT_BODY).await;
                if reply.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
            }
        }));
    }
    // A stream that starts on the old config...
    let stream = open(request(Method::POST, gw.addr, CHAT, &[], STREAM_BODY)).await;
    assert_eq!(stream.headers()["x-gateway-backend"], "old");
    let mut body = stream.into_body();
    next_chunk(&mut body).await.unwrap();

    swap_current(root, "r2");
    wait_until(async || {
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend")
            == "new"
    })
    .await;
    // ...finishes on it.
    let mut text = String::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // A bad release is rejected; the running config keeps serving.
    swap_current(root, "r3");
    wait_until(async || {
        metric_sum(
            &metrics(&gw).await,
            "gateway_config_reloads_total",
            &["result=\"error\""],
        ) == 1.0
    })
    .await;
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend"),
        "new"
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    let m = metrics(&gw).await;
    assert_eq!(
        metric_sum(&m, "gateway_config_reloads_total", &["result=\"ok\""]),
        1.0
    );
}

#[tokio::test]
async fn sighup_reloads_a_file_edited_in_place_and_keeps_backend_state() {
    let a = mock_with(MockOptions {
        status_override: Some(429),
        retry_after_ms: 60_000,
        ..opts("a")
    })
    .await;
    let c = mock("c").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        config_yaml(
            &[
                B {
                    priority: 10,
                    ..b("a", a.url())
                },
                b("c", c.url()),
            ],
            "",
        ),
    )
    .unwrap();
    let gw = Arc::new(
        RunningGateway::start(GatewayConfig::load(&path).unwrap())
            .await
            .unwrap(),
    );
    let (triggers, rx) = tokio::sync::mpsc::channel::<Trigger>(4);
    tokio::spawn(watch(path.clone(), gw.clone(), rx));
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-attempts"),
        "2"
    );
    // Same backends, new weights: the cooldown of `a` survives the reload.
    std::fs::write(
        &path,
        config_yaml(
            &[
                B {
                    priority: 10,
                    weight: 3,
                    ..b("a", a.url())
                },
                b("c", c.url()),
            ],
            "",
        ),
    )
    .unwrap();
    triggers.send(Trigger::Signal).await.unwrap();
    wait_until(async || {
        metric_sum(
            &metrics(&gw).await,
            "gateway_config_reloads_total",
            &["result=\"ok\""],
        ) >= 1.0
    })
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.header("x-gateway-backend"), "c");
    assert_eq!(
        reply.header("x-gateway-attempts"),
        "1",
        "a's cooldown was forgotten"
    );
    assert_eq!(a.stats().requests(), 1);
}
