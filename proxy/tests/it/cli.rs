//! The `proxy` binary: `--check`, refusing bad configs, the exported schema, SIGTERM drain, and
//! the memory idle connections keep (with the binary's own allocator).

use std::process::Command;
use std::time::Duration;

use http::Method;
use mock::MockOptions;

use crate::harness::*;

use crate::process::{BIN, KillOnDrop, Spawned, sigterm, spawn_proxy, write};

#[test]
fn check_accepts_a_good_file_and_names_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        &dir,
        "good.yaml",
        &config_yaml(&[b("a", "https://eus.openai.azure.com".into())], ""),
    );
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = write(
        &dir,
        "gateway.yaml",
        "version: 1\nbackends:\n  - name: a\n    endpoint: eus.openai.azure.com\n    auth: { mode: api-key, api_key: k }\n  - name: a\n    endpoint: https://x\n    auth: { mode: api-key }\nserver:\n  keepalive_timeout: 0s\nupstream:\n  connect_timeout: 60\n  read_timeout: 0ms\nclients:\n  require_auth: true\n",
    );
    let out = Command::new(BIN).arg("--check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "gateway.yaml: backends[0].endpoint: `eus.openai.azure.com` is a relative URL",
        "gateway.yaml: backends[1].name: `a` is used by another backend",
        "gateway.yaml: backends[1].auth.api_key: required",
        "gateway.yaml: upstream.connect_timeout: `60` has no unit",
        "gateway.yaml: server.keepalive_timeout: must be greater than 0",
        "gateway.yaml: upstream.read_timeout: must be greater than 0",
        "gateway.yaml: clients.require_auth: true, but clients.consumers is empty",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn unknown_fields_and_type_errors_name_the_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let typo = write(
        &dir,
        "gateway.yaml",
        "version: 1\nbackends:\n  - name: a\n    endpoint: https://x\n    wieght: 2\n    auth: { mode: api-key, api_key: k }\n",
    );
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.yaml: backends[0]") && stderr.contains("wieght"),
        "{stderr}"
    );

    let wrong_type = write(
        &dir,
        "gateway.yaml",
        "version: 1\nbackends:\n  - name: a\n    endpoint: https://x\n    weight: heavy\n    auth: { mode: api-key, api_key: k }\n",
    );
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&wrong_type)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.yaml: backends[0].weight"),
        "{stderr}"
    );
}

#[test]
fn errors_never_print_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "gateway.yaml",
        "version: 1\nbackends:\n  - name: a\n    endpoint: nope\n    auth: { mode: api-key, api_key: sk-SECRET-1 }\nclients:\n  consumers:\n    - { name: x, key: ck-SECRET-2 }\n    - { name: y, key: ck-SECRET-2 }\n",
    );
    let out = Command::new(BIN).arg("--check").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("clients.consumers[1].key"), "{stderr}");
    assert!(!stderr.contains("SECRET"), "{stderr}");
}

#[test]
fn serving_refuses_to_start_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(&dir, "gateway.yaml", "version: 2\nbackends: []\n");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.yaml: version: unsupported version 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gateway.yaml: backends: at least one backend is required"),
        "{stderr}"
    );
    let missing = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("absent.yaml"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn exported_json_schema_is_up_to_date() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/gateway-config.schema.json"
    ))
    .unwrap_or_default();
    assert!(
        committed == proxy::config::json_schema(),
        "docs/gateway-config.schema.json is stale: run `cargo run -p proxy -- --print-schema > docs/gateway-config.schema.json`"
    );
}

#[test]
fn example_configs_are_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            proxy::GatewayConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn idle_connections_do_not_keep_the_memory_of_a_big_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = mock_with(MockOptions {
        record_requests: false,
        ..opts("a")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "gateway.yaml",
        &config_yaml(&[b("a", backend.url())], ""),
    );
    let Spawned { child, addr, .. } = spawn_proxy(&path);
    let child = KillOnDrop(child);
    let pid = child.0.id();
    // An agent's prompt: 400 KB of JSON per request, on connections kept open afterwards.
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(400_000)
    );
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let before = rss_kib(pid);
    let mut idle = Vec::new();
    for _ in 0..100 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let length = loop {
            conn.read_buf(&mut got).await.unwrap();
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                break end + 4 + length;
            }
        };
        while got.len() < length {
            conn.read_buf(&mut got).await.unwrap();
        }
        idle.push(conn);
    }
    // 100 idle connections holding on to 40 MB of request buffers would grow the process by
    // that much; without them the allocator gives the memory back.
    wait_until(async || rss_kib(pid) < before + 20 * 1024).await;
    drop(idle);
}

#[tokio::test]
async fn sigterm_drains_in_flight_streams_then_exits_zero_and_logs_no_secret() {
    let backend = mock_with(MockOptions {
        chunk_interval: Duration::from_millis(100),
        chunk_count: 10,
        ..opts("a")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "gateway.yaml",
        &config_yaml(
            &[b("a", backend.url())],
            "clients:\n  consumers:\n    - { name: team-a, key: client-key-in-logs }\nlog: { level: debug, access: true }\n",
        ),
    );
    let Spawned {
        mut child,
        addr,
        log,
        ..
    } = spawn_proxy(&path);
    let plain = send(request(
        Method::POST,
        addr,
        CHAT,
        &[("api-key", "client-key-in-logs")],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(plain.status, 200);
    let response = open(request(
        Method::POST,
        addr,
        CHAT,
        &[("authorization", "Bearer client-key-in-logs")],
        STREAM_BODY,
    ))
    .await;
    let mut body = response.into_body();
    let mut text = String::from_utf8(next_chunk(&mut body).await.unwrap().to_vec()).unwrap();
    // SIGTERM while the stream is in flight.
    sigterm(&child);
    while let Some(chunk) = next_chunk(&mut body).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "stream was cut: {text}");
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    // New connections are refused once draining finished.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The run logged access records at debug level, and never a key.
    let log = log.join().unwrap().join("\n");
    assert!(log.contains("\"consumer\":\"team-a\""), "{log}");
    assert!(
        !log.contains(BACKEND_KEY) && !log.contains("client-key-in-logs"),
        "{log}"
    );
}
