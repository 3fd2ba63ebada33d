//! Every request ends exactly once, whichever way it ended, with one access-record schema: the
//! binary runs with access records on, each way a request can end is provoked, and its stdout is
//! read after it exited. Also: a stdout that nobody reads never stalls a request.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use mock::MockOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use crate::process::{BIN, KillOnDrop, Spawned, sigterm, spawn_proxy, write};

/// The access records of a run: `fields` of every `access` line.
fn access_records(log: &[String]) -> Vec<serde_json::Map<String, serde_json::Value>> {
    log.iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["target"] == "access")
        .map(|v| v["fields"].as_object().unwrap().clone())
        .collect()
}

/// A raw HTTP/1.1 exchange: writes `request` (then ends its side), reads until the gateway
/// closes (or 10 s).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

fn with_id(id: &str) -> Vec<(&str, &str)> {
    vec![("x-request-id", id), ("api-key", "client-key")]
}

#[tokio::test]
async fn every_request_ends_exactly_once_whichever_way_it_ended() {
    let a = mock_with(MockOptions {
        record_requests: false,
        ..opts("a")
    })
    .await;
    let b = mock_with(opts("b")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "gateway.yaml",
        &config_yaml(
            &[super::harness::b("a", a.url()), super::harness::b("b", b.url())],
            "upstream:\n  passive_health: { failures: 0 }\nclients:\n  require_auth: true\n  consumers:\n    - { name: team-a, key: client-key }\nlog: { access: true }\n",
        )
        .replace("server:\n", "server:\n  max_body_bytes: 1024\n  drain_timeout: 300ms\n"),
    );
    let Spawned {
        child,
        addr,
        admin,
        log,
    } = spawn_proxy(&path);
    let mut child = KillOnDrop(child);
    let mut made = 0u32;

    // Refused before the body: no key (401), and not an AI route (404).
    let r = send(request(
        Method::POST,
        addr,
        CHAT,
        &[("x-request-id", "no-key")],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(r.status, 401);
    let r = send(request(
        Method::GET,
        addr,
        "/nope",
        &with_id("not-found"),
        Bytes::new(),
    ))
    .await;
    assert_eq!(r.status, 404);
    // Refused while the body arrives: a chunked body over the limit (413).
    let big = "x".repeat(700);
    let chunked = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\nx-request-id: too-large\r\napi-key: client-key\r\ntransfer-encoding: chunked\r\n\r\n2bc\r\n{big}\r\n2bc\r\n{big}\r\n0\r\n\r\n"
    );
    assert!(
        raw(addr, chunked.as_bytes())
            .await
            .starts_with("HTTP/1.1 413")
    );
    // Refused by the connection before the stages: not HTTP at all (400).
    assert!(
        raw(addr, b"NOT HTTP\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400")
    );
    made += 4;

    // A buffered answer, and a streamed one read to its end.
    let r = send(request(
        Method::POST,
        addr,
        CHAT,
        &with_id("buffered"),
        CHAT_BODY,
    ))
    .await;
    assert_eq!(r.status, 200);
    let r = send(request(
        Method::POST,
        addr,
        CHAT,
        &with_id("streamed"),
        STREAM_BODY,
    ))
    .await;
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
    made += 2;

    // An error after failover: both backends answer 500 (502, two attempts).
    for backend in [&a, &b] {
        backend.set_options(MockOptions {
            status_override: Some(500),
            ..backend.options()
        });
    }
    let r = send(request(
        Method::POST,
        addr,
        CHAT,
        &with_id("failed-over"),
        CHAT_BODY,
    ))
    .await;
    assert_eq!(r.status, 502);
    for backend in [&a, &b] {
        backend.set_options(MockOptions {
            status_override: None,
            ..backend.options()
        });
    }
    made += 1;

    // The client goes away mid-stream (HTTP/1.1), and before any answer (h2c, while the backend
    // is slow to answer).
    let slow = MockOptions {
        chunk_interval: Duration::from_millis(100),
        chunk_count: 100,
        ..a.options()
    };
    for backend in [&a, &b] {
        backend.set_options(MockOptions {
            name: backend.options().name,
            ..slow.clone()
        });
    }
    let response = open(request(
        Method::POST,
        addr,
        CHAT,
        &with_id("gone-mid-stream"),
        STREAM_BODY,
    ))
    .await;
    let mut body = response.into_body();
    assert!(next_chunk(&mut body).await.is_some());
    drop(body);
    let before = a.stats().requests() + b.stats().requests();
    for backend in [&a, &b] {
        backend.set_options(MockOptions {
            latency: Duration::from_secs(30),
            ..backend.options()
        });
    }
    let (mut sender, connection) = h2c_connect::<Full<Bytes>>(addr).await;
    let pending = tokio::spawn(sender.send_request(request(
        Method::POST,
        addr,
        CHAT,
        &with_id("gone-before-answer"),
        CHAT_BODY,
    )));
    wait_until(async || a.stats().requests() + b.stats().requests() > before).await;
    pending.abort();
    connection.abort();
    made += 2;
    for backend in [&a, &b] {
        backend.set_options(MockOptions {
            latency: Duration::ZERO,
            ..backend.options()
        });
    }

    // Each request so far counted exactly once.
    let counted = async || {
        let text = send(request(Method::GET, admin, "/metrics", &[], Bytes::new()))
            .await
            .text();
        metric_sum(&text, "gateway_requests_total", &[])
    };
    wait_until(async || counted().await >= f64::from(made)).await;
    assert_eq!(counted().await, f64::from(made));

    // A shutdown cuts a stream that outlasts the drain.
    let response = open(request(
        Method::POST,
        addr,
        CHAT,
        &with_id("cut-by-shutdown"),
        STREAM_BODY,
    ))
    .await;
    let mut body = response.into_body();
    assert!(next_chunk(&mut body).await.is_some());
    sigterm(&child.0);
    let mut tail = String::new();
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_secs(10), body.frame()).await
    {
        if let Ok(data) = frame.into_data() {
            tail.push_str(&String::from_utf8_lossy(&data));
        }
    }
    // Not a silent cut: the stream ends with an error event saying why.
    assert!(
        tail.contains("event: error") && tail.contains("\"shutdown\""),
        "{tail}"
    );
    let exit = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    made += 1;

    let log = log.join().unwrap();
    assert!(
        log.iter().any(|line| line.contains("drain timed out")),
        "the log does not say the drain timed out"
    );
    let records = access_records(&log);
    assert_eq!(records.len() as u32, made, "{records:#?}");
    // One schema: every record has the same fields.
    let schema: BTreeSet<&String> = records[0].keys().collect();
    for record in &records {
        assert_eq!(record.keys().collect::<BTreeSet<_>>(), schema, "{record:?}");
    }
    let mut by_id: HashMap<&str, Vec<&serde_json::Map<String, serde_json::Value>>> = HashMap::new();
    for record in &records {
        by_id
            .entry(record["request_id"].as_str().unwrap())
            .or_default()
            .push(record);
    }
    let expect = |id: &str, status: u64, error: &str, completed: bool, broken: &str| {
        let found = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no record of {id}: {records:#?}"));
        assert_eq!(found.len(), 1, "{id} ended more than once: {found:#?}");
        let r = found[0];
        assert_eq!(
            (
                r["status"].as_u64().unwrap(),
                r["error"].as_str().unwrap(),
                r["completed"].as_bool().unwrap(),
                r["broken"].as_str().unwrap()
            ),
            (status, error, completed, broken),
            "{id}: {r:?}"
        );
        r
    };
    let r = expect("no-key", 401, "unauthorized", true, "");
    assert_eq!(
        (r["consumer"].as_str(), r["backend"].as_str()),
        (Some("anonymous"), Some(""))
    );
    expect("not-found", 404, "not_found", true, "");
    expect("too-large", 413, "payload_too_large", true, "");
    let r = expect("buffered", 200, "", true, "");
    assert_eq!(r["consumer"], "team-a");
    assert!(r["completion_tokens"].as_u64().unwrap() > 0, "{r:?}");
    assert_eq!(r["attempts"], 1);
    let r = expect("streamed", 200, "", true, "");
    assert!(r["completion_tokens"].as_u64().unwrap() > 0, "{r:?}");
    let r = expect("failed-over", 502, "all_backends_failed", true, "");
    assert_eq!(r["backend"], "");
    // A refusal after failover says how many backends it tried.
    assert_eq!(r["attempts"], 2, "{r:?}");
    expect("gone-mid-stream", 200, "", false, "client_closed");
    let r = expect("gone-before-answer", 499, "client_closed", false, "");
    assert_eq!(r["operation"], "chat_completions");
    expect("cut-by-shutdown", 200, "", false, "shutdown");
    // The unread request: a record all the same, with what is known of it.
    let unread: Vec<_> = records.iter().filter(|r| r["status"] == 400).collect();
    assert_eq!(unread.len(), 1, "{unread:#?}");
    assert_eq!(
        (unread[0]["method"].as_str(), unread[0]["error"].as_str()),
        (Some(""), Some("bad_request"))
    );
}

/// A stdout pipe that nobody reads: the log queue fills and drops lines (counted), requests go
/// on being answered, and the process still exits on SIGTERM.
#[tokio::test]
async fn a_stdout_nobody_reads_never_stalls_a_request() {
    let backend = mock_with(MockOptions {
        record_requests: false,
        ..opts("a")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "gateway.yaml",
        &config_yaml(
            &[b("a", backend.url())],
            "log: { level: debug, access: true, queue_lines: 16 }\n",
        ),
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read up to the start-up line, then never again (the pipe stays open, unread).
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (addr, admin) = crate::process::listening(&mut lines);
    let child = KillOnDrop(child);
    let dropped = async || {
        let text = send(request(Method::GET, admin, "/metrics", &[], Bytes::new()))
            .await
            .text();
        metric_sum(&text, "gateway_log_lines_dropped_total", &[])
    };
    // Each answer must come (a stalled worker never answers: the test would time out); the
    // pipe (64 KiB) and the queue fill after a few hundred access records.
    let mut requests = 0;
    while dropped().await == 0.0 {
        for _ in 0..50 {
            let r = tokio::time::timeout(Duration::from_secs(10), post(addr, CHAT, CHAT_BODY))
                .await
                .expect("a request stalled behind an unread stdout");
            assert_eq!(r.status, 200);
            requests += 1;
        }
        assert!(requests < 20_000, "no log line was ever dropped");
    }
    sigterm(&child.0);
    let mut child = child;
    let exit = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    drop(lines);
}
