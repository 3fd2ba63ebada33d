//! What only a shared store has: two proxy processes on one Redis, Redis killed or paused,
//! `rediss://` with a password, an admission whose answer never came.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use proxy::RunningGateway;

use super::{CHAT_HIGH, Store, chat_tokens, ended, num, settled};
use crate::harness::*;
use crate::redis_server::RedisServer;

/// A gateway in front of `backend` whose request quota of `requests` an hour lives in `redis`
/// with this timeout and failure policy, started once the store is connected.
async fn quota_in_redis(
    backend: &mock::MockServer,
    redis: &RedisServer,
    requests: u32,
    timeout: &str,
    policy: &str,
) -> RunningGateway {
    let yaml = config_yaml(
        &[b("eus", backend.url())],
        &format!(
            "limits:\n  quota: {{ window: 1h, requests: {requests} }}\n  redis: {{ url: '{}', timeout: {timeout}, on_failure: {policy} }}\n",
            redis.url()
        ),
    );
    let gw = gateway(&yaml).await;
    store_up(gw.admin_addr).await;
    gw
}

/// Waits until the gateway behind `admin` says its limit store is connected.
async fn store_up(admin: std::net::SocketAddr) {
    wait_until(async || {
        let text = send(request(Method::GET, admin, "/metrics", &[], Bytes::new()))
            .await
            .text();
        metric_sum(&text, "gateway_limit_store_up", &[]) == 1.0
    })
    .await;
}

#[tokio::test]
async fn two_proxy_processes_sharing_redis_enforce_one_limit_exactly() {
    use crate::process::{spawn_proxy, write};
    let redis = RedisServer::start();
    let backend = mock("eus").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(
        &[b("eus", backend.url())],
        &format!(
            "limits:\n  quota: {{ window: 1h, requests: 5 }}\n{}",
            Store::Redis(&redis).yaml()
        ),
    );
    let config = write(&dir, "gateway.yaml", &yaml);
    let mut one = spawn_proxy(&config);
    let mut two = spawn_proxy(&config);
    for admin in [one.admin, two.admin] {
        store_up(admin).await;
    }
    let mut passed = 0;
    for i in 0..10 {
        let addr = if i % 2 == 0 { one.addr } else { two.addr };
        let reply = post(addr, CHAT, CHAT_BODY).await;
        if reply.status == 200 {
            passed += 1;
            assert_eq!(num(&reply, "x-ratelimit-remaining"), 5 - passed);
        } else {
            assert_eq!(reply.header("x-gateway-error"), "request_quota_exceeded");
        }
    }
    for spawned in [&mut one, &mut two] {
        let _ = spawned.child.kill();
        let _ = spawned.child.wait();
    }
    assert_eq!(
        passed, 5,
        "five requests in all, whichever replica took them"
    );
}

#[tokio::test]
async fn redis_going_away_gives_the_configured_policy_without_a_hang_and_limits_come_back() {
    for policy in ["open", "closed"] {
        let mut redis = RedisServer::start();
        let backend = mock("eus").await;
        let gw = quota_in_redis(&backend, &redis, 2, "200ms", policy).await;
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
        redis.kill();
        for _ in 0..3 {
            // Bounded by the store's timeout; 10 s here only tells a hang from an answer.
            let reply =
                tokio::time::timeout(Duration::from_secs(10), post(gw.addr, CHAT, CHAT_BODY))
                    .await
                    .expect("a request hung on Redis");
            match policy {
                "open" => {
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    assert!(reply.header("x-ratelimit-limit").is_empty());
                }
                _ => {
                    assert_eq!(reply.status, 503, "{}", reply.text());
                    assert_eq!(reply.header("x-gateway-error"), "limits_unavailable");
                    assert_eq!(reply.header("retry-after"), "1");
                }
            }
        }
        let text = metrics(&gw).await;
        assert!(
            metric_sum(
                &text,
                "gateway_limit_store_errors_total",
                &["op=\"admit\"", &format!("policy=\"{policy}\"")]
            ) >= 3.0,
            "{text}"
        );
        // Back: the gateway reconnects on its own and the limit holds again (the new server
        // is empty: two requests, then the quota refuses).
        redis.restart();
        store_up(gw.admin_addr).await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(post(gw.addr, CHAT, CHAT_BODY).await.status.as_u16());
        }
        assert_eq!(statuses, [200, 200, 429], "{policy}");
    }
}

#[tokio::test]
async fn a_slow_redis_costs_a_request_at_most_the_timeout_then_the_policy() {
    let redis = RedisServer::start();
    let backend = mock("eus").await;
    let gw = quota_in_redis(&backend, &redis, 100, "100ms", "closed").await;
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    // Redis stops answering but keeps its connections: each request waits for the timeout,
    // then gets the closed policy's 503 (10 s only tells a hang from an answer).
    redis.pause();
    for _ in 0..3 {
        let reply = tokio::time::timeout(Duration::from_secs(10), post(gw.addr, CHAT, CHAT_BODY))
            .await
            .expect("a request hung on a slow Redis");
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(reply.header("x-gateway-error"), "limits_unavailable");
    }
    let text = metrics(&gw).await;
    // Each counted: the first ones as timeouts; after a few in a row the connections are made
    // again, and a call meanwhile may find none (down).
    assert_eq!(
        metric_sum(&text, "gateway_limit_store_errors_total", &["op=\"admit\""]),
        3.0,
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "gateway_limit_store_errors_total",
            &["error=\"timeout\""]
        ) >= 1.0,
        "{text}"
    );
    // Answering again: the same connection serves, the count goes on from Redis's.
    redis.resume();
    wait_until(async || post(gw.addr, CHAT, CHAT_BODY).await.status == 200).await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    assert!(num(&reply, "x-ratelimit-remaining") < 98);
}

#[tokio::test]
async fn limits_share_a_tls_redis_with_a_password_and_never_show_it() {
    use crate::process::{spawn_proxy_with, write};
    let password = "pw-SECRET-5f3a";
    let redis = RedisServer::start_tls(password);
    let backend = mock("eus").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(
        &[b("eus", backend.url())],
        &format!(
            "limits:\n  quota: {{ window: 1h, requests: 2 }}\n  redis: {{ url: 'rediss://:{password}@127.0.0.1:{}', timeout: 500ms, on_failure: closed }}\n",
            redis.port
        ),
    );
    let config = write(&dir, "gateway.yaml", &yaml);
    // The process trusts the test CA only (rustls-native-certs reads SSL_CERT_FILE).
    let ca = redis.ca_file();
    let mut gw = spawn_proxy_with(&config, &[("SSL_CERT_FILE", &ca)]);
    store_up(gw.admin).await;
    let statuses = [
        post(gw.addr, CHAT, CHAT_BODY).await.status.as_u16(),
        post(gw.addr, CHAT, CHAT_BODY).await.status.as_u16(),
        post(gw.addr, CHAT, CHAT_BODY).await.status.as_u16(),
    ];
    assert_eq!(
        statuses,
        [200, 200, 429],
        "the quota is counted in the TLS Redis"
    );
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    let log = gw.log.join().unwrap().join("\n");
    assert!(!log.contains(password), "{log}");
    // The worker's own connection (TLS, AUTH) opened: it did not fall back to the store's.
    assert!(!log.contains("own connection"), "{log}");
}

#[tokio::test]
async fn an_admission_whose_answer_never_came_gives_its_reservation_back() {
    let redis = RedisServer::start();
    let backend = mock("eus").await;
    let gw = quota_in_redis(&backend, &redis, 100, "100ms", "open").await;
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    ended(&gw, 1.0).await;
    let key = "{gw}:quota:a:127.0.0.1";
    assert_eq!(redis.committed(key), Some(1));
    // Redis takes the next admissions but answers none in time: the requests are let through
    // (open), and when Redis runs the scripts after all, what they reserved is given back.
    redis.pause();
    for _ in 0..2 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    }
    redis.resume();
    wait_until(async || redis.committed(key).is_some_and(|c| c <= 1)).await;
}

#[tokio::test]
async fn a_reload_that_turns_redis_off_closes_every_connection_to_it() {
    let redis = RedisServer::start();
    let backend = mock("eus").await;
    let gw = quota_in_redis(&backend, &redis, 100, "1s", "open").await;
    // The first call of a worker goes on the store's connection and makes the worker's own;
    // the later ones use it.
    for _ in 0..4 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    }
    wait_until(async || redis.clients().unwrap_or(0) >= 2).await;
    let plain = config_yaml(&[b("eus", backend.url())], "");
    gw.reload(proxy::GatewayConfig::parse("test.yaml", &plain).unwrap());
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    // The store's connection and every worker's own are closed, not kept for the process's life.
    wait_until(async || redis.clients() == Some(0)).await;
}

/// Redis forgot the scripts (`SCRIPT FLUSH`, or a failover to a replica without them) while the
/// worker's own connection is up: the admission and the settlement each load their script
/// again on it, and both keep counting. A wrong script loaded would answer NOSCRIPT again: the
/// admission refused (policy closed), the settlement lost (the counter left at the
/// reservations).
#[tokio::test]
async fn scripts_redis_forgot_are_loaded_again_by_the_own_connections() {
    let redis = RedisServer::start();
    let backend = mock("eus").await;
    let t = chat_tokens(&backend).await;
    let gw = with_own_connection(
        &redis,
        &backend,
        t,
        "  quota: { window: 1h, requests: 3 }\n",
    )
    .await;
    redis.flush_scripts();
    let monitor = redis.monitor();
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(num(&reply, "x-ratelimit-remaining"), 1);
    settled(&gw, Store::Redis(&redis), 2.0, CHAT_HIGH, 2 * t).await;
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_limit_store_errors_total", &[]),
        0.0,
        "{text}"
    );
    // Both loaded again, by the worker's connection that called them (the test's own reads of
    // the counter left out).
    redis.echo("done");
    wait_until(async || monitor.saw("done")).await;
    let calls: Vec<(String, String)> = monitor
        .commands()
        .into_iter()
        .filter(|(_, words)| words[0] == "EVALSHA" || words[0] == "SCRIPT")
        .map(|(addr, words)| (addr, words[..2].join(" ")))
        .collect();
    let loads = calls.iter().filter(|(_, c)| c == "SCRIPT LOAD").count();
    assert_eq!(loads, 2, "{calls:?}");
    assert!(
        calls.iter().all(|(addr, _)| *addr == calls[0].0),
        "{calls:?}"
    );
}

/// A gateway in front of `backend` (whose chat answers use `t` tokens) with a token limit (and
/// the `more` limits) in `redis`, once its worker's own connection is up: one request made (its
/// admission opened that connection and went through the store's meanwhile) and settled.
async fn with_own_connection(
    redis: &RedisServer,
    backend: &mock::MockServer,
    t: u64,
    more: &str,
) -> RunningGateway {
    let yaml = config_yaml(
        &[b("eus", backend.url())],
        &format!(
            "limits:\n{more}  tokens: {{ high: 1000000, low: 1000000, window: 1h }}\n{}",
            Store::Redis(redis).yaml()
        ),
    );
    let gw = gateway(&yaml).await;
    store_up(gw.admin_addr).await;
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    settled(&gw, Store::Redis(redis), 1.0, CHAT_HIGH, t).await;
    // The store's connection and the worker's own.
    wait_until(async || redis.clients() >= Some(2)).await;
    gw
}

/// A request's settlement goes on the connection of the worker that served it, right after
/// the request: no other thread is woken for it. Before, every settlement was queued for the
/// background runtime, whose own connection (or the store's) sent it.
#[tokio::test]
async fn a_settlement_goes_on_the_connection_of_the_worker_that_served_the_request() {
    let redis = RedisServer::start();
    let backend = mock("eus").await;
    let t = chat_tokens(&backend).await;
    let gw = with_own_connection(&redis, &backend, t, "").await;
    let monitor = redis.monitor();
    for i in 2..=4_u32 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
        settled(
            &gw,
            Store::Redis(&redis),
            f64::from(i),
            CHAT_HIGH,
            u64::from(i) * t,
        )
        .await;
    }
    redis.echo("done");
    wait_until(async || monitor.saw("done")).await;
    let calls: Vec<(String, usize)> = monitor
        .commands()
        .into_iter()
        .filter(|(_, words)| words[0] == "EVALSHA")
        .map(|(addr, words)| (addr, words.len()))
        .collect();
    // Each request: its admission (one key: 3 + 5 words), then its settlement (the same).
    assert_eq!(calls.len(), 6, "{calls:?}");
    for pair in calls.chunks(2) {
        assert_eq!(
            pair[0].0, pair[1].0,
            "admission and settlement from one connection: {calls:?}"
        );
    }
    assert!(
        calls.iter().all(|(addr, _)| *addr == calls[0].0),
        "{calls:?}"
    );
}
