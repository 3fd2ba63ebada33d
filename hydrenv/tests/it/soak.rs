//! The product under faults, as it runs in a container: `hydrenv supervise` renders the config
//! and runs the proxy; streaming and non-streaming clients send traffic to three mock backends
//! while one is killed and restarted, one throttles a deployment with `Retry-After`, one answers
//! bursts of 5xx, five hot reloads and a key rotation go through `supervise`, then SIGTERM.
//! Some backend has capacity for every request throughout, so no request may fail; a stream may
//! end with an SSE error event (its backend was killed under it), never silently. The open files,
//! the memory and the backend connections must not grow, and the figures are printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mock::{MockOptions, MockServer};

use crate::supervise::{Collected, children_of};
use crate::support::BIN;

const KEY: &str = "sk-soak-backend";
const OLD_KEY: &str = "sk-soak-wus-key-1";
const NEW_KEY: &str = "sk-soak-wus-key-2";

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn backend_options(name: &str) -> MockOptions {
    MockOptions {
        name: name.into(),
        chunk_count: 12,
        chunk_interval: Duration::from_millis(10),
        api_key: Some(KEY.into()),
        record_requests: false,
        ..MockOptions::default()
    }
}

async fn start_on(addr: SocketAddr, options: MockOptions) -> MockServer {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match MockServer::start_on(addr, options.clone()).await {
            Ok(server) => return server,
            // The killed one's port is released once its accept loop has stopped.
            Err(_) if Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => panic!("cannot restart the backend on {addr}: {error}"),
        }
    }
}

#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    streams_complete: AtomicU64,
    streams_ended_with_error_event: AtomicU64,
    failed: AtomicU64,
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One client request; `Err` says what went wrong from the client's point of view.
async fn one(
    client: &Http,
    addr: SocketAddr,
    stream: bool,
    deployment: &str,
) -> Result<bool, String> {
    let body = if stream {
        r#"{"stream":true,"messages":[{"role":"user","content":"soak"}]}"#
    } else {
        r#"{"messages":[{"role":"user","content":"soak"}]}"#
    };
    let request = http::Request::post(format!(
        "http://{addr}/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21"
    ))
    .header("content-type", "application/json")
    .header("api-key", "ck-soak")
    .body(Full::new(Bytes::from_static(body.as_bytes())))
    .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let text = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
        .await
        .map_err(|_| "body not done within 30 s".to_owned())?
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
    if status != 200 {
        return Err(format!("{status}: {}", text.unwrap_or_default()));
    }
    match (stream, text) {
        (false, Ok(text)) if text.contains("\"chat.completion\"") => Ok(false),
        (true, Ok(text)) if text.ends_with("data: [DONE]\n\n") => Ok(false),
        (true, Ok(text)) if text.contains("event: error") => Ok(true),
        (_, Ok(text)) => Err(format!("incomplete answer: {text}")),
        (_, Err(e)) => Err(format!("the body broke without an error event: {e}")),
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn metric(admin: SocketAddr, name: &str, needle: &str) -> f64 {
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://{admin}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let Ok(response) = client.request(request).await else {
        return -1.0;
    };
    let text = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_through_backend_faults_reloads_and_a_key_rotation() {
    let started = Instant::now();
    let eus_addr = free_addr();
    let mut eus = Some(start_on(eus_addr, backend_options("eus")).await);
    let wus = MockServer::start(MockOptions {
        throttled_deployments: vec!["small".into()],
        retry_after_ms: 2_000,
        api_key: Some(OLD_KEY.into()),
        secondary_api_key: Some(NEW_KEY.into()),
        ..backend_options("wus")
    })
    .await
    .unwrap();
    let swc = MockServer::start(backend_options("swc")).await.unwrap();

    let root = tempfile::tempdir().unwrap();
    let env_dir = tempfile::tempdir().unwrap();
    std::fs::write(env_dir.path().join("AZURE_OPENAI_WEIGHT_0"), "1\n").unwrap();
    std::fs::write(env_dir.path().join("AZURE_OPENAI_KEY_1"), OLD_KEY).unwrap();
    let (addr, admin) = (free_addr(), free_addr());
    let vars: BTreeMap<String, String> = [
        ("AZURE_OPENAI_ENDPOINT_0", format!("http://{eus_addr}")),
        ("AZURE_OPENAI_NAME_0", "eus".into()),
        ("AZURE_OPENAI_KEY_0", KEY.into()),
        ("AZURE_OPENAI_ENDPOINT_1", wus.url()),
        ("AZURE_OPENAI_NAME_1", "wus".into()),
        ("AZURE_OPENAI_ENDPOINT_2", swc.url()),
        ("AZURE_OPENAI_NAME_2", "swc".into()),
        ("AZURE_OPENAI_KEY_2", KEY.into()),
        ("GATEWAY_CLIENT_NAME_0", "soak".into()),
        ("GATEWAY_CLIENT_KEY_0", "ck-soak".into()),
        ("GATEWAY_REQUIRE_AUTH", "true".into()),
        ("AI_PROXY_PASSIVE_HEALTH_FAILURES", "2".into()),
        ("AI_PROXY_UNHEALTHY_SECONDS", "1".into()),
        ("AI_PROXY_READ_TIMEOUT", "10".into()),
        ("GATEWAY_LISTEN", addr.to_string()),
        ("GATEWAY_ADMIN_LISTEN", admin.to_string()),
        (
            "SHARED_ROOT",
            root.path().join("shared").display().to_string(),
        ),
        ("HYDRENV_ENV_DIR", env_dir.path().display().to_string()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut supervisor = Command::new(BIN)
        .arg("supervise")
        .env_clear()
        .envs(&vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Collected::from(supervisor.stdout.take().unwrap());
    let stderr = Collected::from(supervisor.stderr.take().unwrap());
    let ready = async || metric(admin, "gateway_build_info", "").await == 1.0;
    wait_for("the gateway to listen", ready).await;
    let proxy = children_of(supervisor.id())
        .into_iter()
        .find(|(_, cmd)| cmd.contains("proxy"))
        .map(|(_, cmd)| cmd)
        .expect("the proxy runs under supervise");
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.replace('\0', " ") == proxy)
        })
        .unwrap();

    // Clients: three streaming, three not; one request in five for the throttled deployment.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..6 {
        let (tally, stop) = (tally.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client: Http = Client::builder(TokioExecutor::new()).build_http();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let deployment = if (n + i).is_multiple_of(5) {
                    "small"
                } else {
                    "large"
                };
                match one(&client, addr, i.is_multiple_of(2), deployment).await {
                    Ok(false) if i.is_multiple_of(2) => {
                        tally.streams_complete.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(true) => {
                        tally
                            .streams_ended_with_error_event
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(problem) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("soak: client {i}, {deployment}: {problem}");
                    }
                }
                tally.answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm: every worker and backend has seen traffic; the baselines.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (fds_warm, rss_warm) = (fds(pid), rss_kib(pid));

    // eus is killed under its requests and streams, and comes back on the same address.
    drop(eus.take());
    tokio::time::sleep(Duration::from_secs(3)).await;
    eus = Some(start_on(eus_addr, backend_options("eus")).await);
    // Let it take traffic again (its half-open trial) before the next fault.
    let eus_back = eus.as_ref().unwrap().stats().clone();
    wait_for("eus to serve again", async || eus_back.requests() > 5).await;

    // swc answers bursts of 500s.
    for _ in 0..2 {
        swc.set_options(MockOptions {
            status_override: Some(500),
            ..swc.options()
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        swc.set_options(MockOptions {
            status_override: None,
            ..swc.options()
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Five hot reloads through supervise (a weight change each), each applied in turn.
    let reloads = async || metric(admin, "gateway_config_reloads_total", "result=\"ok\"").await;
    for weight in 2..=6 {
        let before = reloads().await;
        std::fs::write(
            env_dir.path().join("AZURE_OPENAI_WEIGHT_0"),
            format!("{weight}\n"),
        )
        .unwrap();
        wait_for("a hot reload", async || reloads().await > before).await;
    }
    // A key rotation: the gateway moves to wus's second key, then the first is revoked.
    let before = reloads().await;
    std::fs::write(env_dir.path().join("AZURE_OPENAI_KEY_1"), NEW_KEY).unwrap();
    wait_for("the rotated key's reload", async || {
        reloads().await > before
    })
    .await;
    wus.set_options(MockOptions {
        api_key: Some(NEW_KEY.into()),
        secondary_api_key: None,
        ..wus.options()
    });
    let wus_after = wus.stats().status_count(200);
    wait_for("wus to serve with the new key", async || {
        wus.stats().status_count(200) > wus_after + 3
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    // Idle connections age out only after 90 s; what must not grow is what stays open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_end, rss_end) = (fds(pid), rss_kib(pid));
    let backend_connections: u64 = [eus.as_ref().unwrap().stats(), wus.stats(), swc.stats()]
        .iter()
        .map(|s| s.connections())
        .sum();
    let backend_requests: u64 = [eus.as_ref().unwrap().stats(), wus.stats(), swc.stats()]
        .iter()
        .map(|s| s.requests())
        .sum();

    // The faults happened under load: what the gateway saw of them.
    let attempts = async |outcome: &str| {
        metric(
            admin,
            "gateway_backend_attempts_total",
            &format!("outcome=\"{outcome}\""),
        )
        .await
    };
    let (connect_errors, server_errors, throttled, skipped) = (
        attempts("connect_error").await,
        attempts("http_5xx").await,
        attempts("http_429").await,
        attempts("skipped_cooldown").await + attempts("skipped_unhealthy").await,
    );
    let failovers = metric(admin, "gateway_failovers_total", "").await;
    let reloaded = reloads().await;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = tokio::task::spawn_blocking(move || supervisor.wait())
        .await
        .unwrap()
        .unwrap();
    let (log, errors) = (stdout.finish(), stderr.finish());

    let answered = tally.answered.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let complete = tally.streams_complete.load(Ordering::Relaxed);
    let with_error_event = tally.streams_ended_with_error_event.load(Ordering::Relaxed);
    eprintln!(
        "soak figures: {answered} requests in {:.1} s, {failed} failed; streams: {complete} complete, \
         {with_error_event} ended with an error event; open files {fds_warm} -> {fds_end}; \
         RSS {rss_warm} -> {rss_end} KiB; backend connections accepted {backend_connections} for \
         {backend_requests} backend requests; attempts: {connect_errors} connect errors, \
         {server_errors} 5xx, {throttled} 429, {skipped} skipped; {failovers} failovers; \
         {reloaded} reloads; exit {:?}",
        started.elapsed().as_secs_f64(),
        exit.code()
    );
    assert!(
        connect_errors > 0.0 && server_errors > 0.0 && throttled > 0.0 && failovers > 0.0,
        "a fault did not reach the gateway"
    );
    assert_eq!(reloaded, 6.0, "five reloads and the rotation");
    assert_eq!(
        failed, 0,
        "client requests failed while a backend had capacity\n{errors}"
    );
    assert!(
        answered > 200 && complete > 50,
        "too little traffic to say anything"
    );
    assert!(
        fds_end <= fds_warm + 16,
        "open files grew from {fds_warm} to {fds_end}"
    );
    assert!(
        rss_end <= rss_warm + 64 * 1024,
        "RSS grew from {rss_warm} to {rss_end} KiB"
    );
    assert!(
        backend_connections * 4 < backend_requests,
        "backend connections are not reused: {backend_connections} for {backend_requests}"
    );
    assert_eq!(exit.code(), Some(0), "{errors}");
    for secret in [KEY, OLD_KEY, NEW_KEY, "ck-soak"] {
        assert!(
            !log.contains(secret) && !errors.contains(secret),
            "{secret} logged"
        );
    }
}
