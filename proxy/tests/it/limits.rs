//! The gateway's own limits (docs/proxy.md, "Limits"), in process and through a real
//! `redis-server`: each at its edges, lanes, settlement (streams, estimates, refunds), the bound
//! on concurrent reservations; [`redis`]: what only a shared store has (two processes, Redis
//! going away or slow, TLS, unanswered admissions).

mod redis;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use proxy::RunningGateway;

use crate::harness::*;
use crate::redis_server::RedisServer;

/// The Redis key of the token bucket of the legacy chat route's high (or low) lane.
const CHAT_HIGH: &str = "{gw}:tok:r:high:legacy:chat_completions:-";

/// Where the counters live in a test.
#[derive(Clone, Copy)]
enum Store<'a> {
    InProcess,
    Redis(&'a RedisServer),
}

impl Store<'_> {
    fn yaml(&self) -> String {
        match self {
            Store::InProcess => String::new(),
            Store::Redis(redis) => format!(
                "  redis: {{ url: '{}', timeout: 500ms, on_failure: closed }}\n",
                redis.url()
            ),
        }
    }
}

/// A gateway in front of `backend` with `limits` (YAML lines under `limits:`) and `extra`
/// top-level YAML; with Redis, started once the store is connected.
async fn limited(
    backend: &mock::MockServer,
    store: Store<'_>,
    limits: &str,
    extra: &str,
) -> RunningGateway {
    let yaml = config_yaml(
        &[b("eus", backend.url())],
        &format!("limits:\n{limits}{}{extra}", store.yaml()),
    );
    let gw = gateway(&yaml).await;
    if let Store::Redis(_) = store {
        wait_until(async || metric_sum(&metrics(&gw).await, "gateway_limit_store_up", &[]) == 1.0)
            .await;
    }
    gw
}

/// The same limits in process and in `redis`: each store with a backend and a gateway of its own.
async fn in_each_store<'r>(
    redis: &'r RedisServer,
    limits: &str,
    extra: &str,
) -> Vec<(Store<'r>, mock::MockServer, RunningGateway)> {
    let mut each = Vec::new();
    for store in [Store::InProcess, Store::Redis(redis)] {
        let backend = mock("eus").await;
        let gw = limited(&backend, store, limits, extra).await;
        each.push((store, backend, gw));
    }
    each
}

/// Real total tokens the mock spends on `CHAT_BODY` (its usage), found once without limits.
async fn chat_tokens(backend: &mock::MockServer) -> u64 {
    let gw = gateway(&config_yaml(&[b("eus", backend.url())], "")).await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["usage"]["total_tokens"].as_u64().unwrap()
}

/// The gateway's estimate of a body without `max_tokens`: its bytes / 4, rounded up.
fn estimate(body: &str) -> u64 {
    (body.len() as u64).div_ceil(4)
}

/// Waits until `n` requests have ended (their end settles what limits reserved, in process,
/// before it counts them).
async fn ended(gw: &RunningGateway, n: f64) {
    wait_until(async || metric_sum(&metrics(gw).await, "gateway_requests_total", &[]) >= n).await;
}

/// Waits until the request before has settled: in process when it is counted, in Redis when
/// the counter says `committed`.
async fn settled(gw: &RunningGateway, store: Store<'_>, n: f64, key: &str, committed: u64) {
    ended(gw, n).await;
    if let Store::Redis(redis) = store {
        wait_until(async || redis.committed(key) == Some(committed)).await;
    }
}

/// A chat request with a consumer's key.
async fn as_consumer(gw: &RunningGateway, key: &str) -> Reply {
    send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("content-type", "application/json"), ("api-key", key)],
        Bytes::from_static(CHAT_BODY.as_bytes()),
    ))
    .await
}

fn num(reply: &Reply, name: &str) -> u64 {
    reply
        .header(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name}: `{}`", reply.header(name)))
}

async fn token_limit_at_its_edge(store: Store<'_>) {
    let backend = mock("eus").await;
    let t = chat_tokens(&backend).await;
    let e = estimate(CHAT_BODY);
    // Three requests of `t` tokens fit under 2t + 1 (0, t, 2t are below it); the fourth not.
    let limit = 2 * t + 1;
    let gw = limited(
        &backend,
        store,
        &format!("  tokens: {{ high: {limit}, low: 5, window: 1h, reject_status: 429, reject_message: 'slow down, team' }}\n"),
        "",
    )
    .await;
    let before = backend.stats().requests();
    for i in 0..3u64 {
        let reply = post(gw.addr, CHAT, CHAT_BODY).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(num(&reply, "x-ai-ratelimit-limit"), limit);
        assert_eq!(
            num(&reply, "x-ai-ratelimit-remaining"),
            limit.saturating_sub(i * t + e)
        );
        let reset = num(&reply, "x-ai-ratelimit-reset");
        assert!((3500..=3600).contains(&reset), "reset {reset}");
        // The per-backend spelling, for clients of APISIX's ai-proxy-multi.
        assert_eq!(
            reply.header("x-ai-ratelimit-remaining-eus"),
            reply.header("x-ai-ratelimit-remaining")
        );
        assert_eq!(num(&reply, "x-ai-ratelimit-limit-eus"), limit);
        settled(&gw, store, (i + 1) as f64, CHAT_HIGH, (i + 1) * t).await;
    }
    let refused = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("x-gateway-error"), "token_rate_limited");
    assert_eq!(refused.json()["error"]["message"], "slow down, team");
    assert_eq!(num(&refused, "x-ai-ratelimit-remaining"), 0);
    assert_eq!(num(&refused, "x-ai-ratelimit-limit"), limit);
    let retry = num(&refused, "retry-after");
    assert!((3500..=3600).contains(&retry), "retry-after {retry}");
    assert_eq!(
        backend.stats().requests() - before,
        3,
        "the refused one never reached it"
    );
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_limit_refusals_total",
            &["token_rate_limited"]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_token_limit_admits_exactly_while_below_and_refuses_the_next_in_process() {
    token_limit_at_its_edge(Store::InProcess).await;
}

#[tokio::test]
async fn a_token_limit_admits_exactly_while_below_and_refuses_the_next_in_redis() {
    let redis = RedisServer::start();
    token_limit_at_its_edge(Store::Redis(&redis)).await;
}

#[tokio::test]
async fn lanes_have_their_own_limits_and_the_test_shim_reads_the_gateways_headers() {
    let backend = mock("eus").await;
    let e = estimate(CHAT_BODY);
    let gw = limited(
        &backend,
        Store::InProcess,
        "  tokens: { high: 100000, low: 1, window: 1h }\n",
        "",
    )
    .await;
    let low = async |path: &str| {
        send(request(
            Method::POST,
            gw.addr,
            path,
            &[("content-type", "application/json"), ("x-priority", "low")],
            CHAT_BODY.to_owned(),
        ))
        .await
    };
    // The low lane takes one request (0 < 1), then refuses; the high lane still serves.
    assert_eq!(low(CHAT).await.status, 200);
    ended(&gw, 1.0).await;
    let refused = low(CHAT).await;
    assert_eq!(refused.status, 503, "the default reject status");
    assert_eq!(refused.json()["error"]["message"], "rate limited");
    assert_eq!(num(&refused, "x-ai-ratelimit-limit"), 1);
    let high = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(high.status, 200);
    assert_eq!(num(&high, "x-ai-ratelimit-limit"), 100000);
    drop(gw);

    // Test mode: `/prioritization-simple` is the low lane, and `x-gw-remaining-tokens` is the
    // gateway's remaining count.
    let yaml = config_yaml(
        &[b("eus", backend.url())],
        "limits:\n  tokens: { high: 100000, low: 1000, window: 1h }\n",
    )
    .replace("server:\n", "server:\n  test_mode: true\n");
    let gw = gateway(&yaml).await;
    let reply = post(gw.addr, &format!("/prioritization-simple{CHAT}"), CHAT_BODY).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(num(&reply, "x-ai-ratelimit-limit"), 1000);
    assert_eq!(
        reply.header("x-gw-remaining-tokens"),
        (1000 - e).to_string()
    );
}

#[tokio::test]
async fn a_full_window_opens_again_when_it_ends() {
    let redis = RedisServer::start();
    for (_store, _backend, gw) in
        in_each_store(&redis, "  tokens: { high: 1, low: 1, window: 1s }\n", "").await
    {
        let first = post(gw.addr, CHAT, CHAT_BODY).await;
        assert_eq!(first.status, 200);
        assert_eq!(num(&first, "x-ai-ratelimit-reset"), 1);
        ended(&gw, 1.0).await;
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 503);
        // A new window: the whole limit again, and only it (one request, then refused).
        wait_until(async || post(gw.addr, CHAT, CHAT_BODY).await.status == 200).await;
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 503);
    }
}

async fn stream_to_the_end(gw: &RunningGateway, body: &str) -> String {
    let reply = post(gw.addr, CHAT, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// A stream through a gateway with `limits` (in process) from a backend that sends no usage
/// chunk: the backend (kept alive), the gateway and the relayed text.
async fn stream_without_usage(limits: &str) -> (mock::MockServer, RunningGateway, String) {
    let backend = mock_with(no_stream_usage("eus")).await;
    let gw = limited(&backend, Store::InProcess, limits, "").await;
    let text = stream_to_the_end(&gw, STREAM_BODY).await;
    (backend, gw, text)
}

#[tokio::test]
async fn a_stream_settles_with_the_usage_the_gateway_read_from_it() {
    let redis = RedisServer::start();
    for (store, _backend, gw) in in_each_store(
        &redis,
        "  tokens: { high: 100000, low: 1, window: 1h }\n",
        "",
    )
    .await
    {
        let text = stream_to_the_end(&gw, STREAM_BODY).await;
        assert!(
            !text.contains("\"usage\":{"),
            "the usage chunk the gateway asked for is hidden"
        );
        // The mock's usage: words of the prompt + one token per delta.
        let t = 2 + 8;
        settled(&gw, store, 1.0, CHAT_HIGH, t).await;
        let next = post(gw.addr, CHAT, CHAT_BODY).await;
        assert_eq!(
            num(&next, "x-ai-ratelimit-remaining"),
            100000 - t - estimate(CHAT_BODY)
        );
        assert_eq!(
            metric_sum(&metrics(&gw).await, "gateway_usage_estimates_total", &[]),
            0.0
        );
    }
}

#[tokio::test]
async fn a_stream_without_usage_settles_with_an_estimate_that_is_counted() {
    let (_backend, gw, text) =
        stream_without_usage("  tokens: { high: 100000, low: 1, window: 1h }\n").await;
    // What was relayed: the mock's deltas; the estimate counts their text, 4 bytes a token.
    let relayed: u64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(|s| s.len() as u64)
        })
        .sum();
    assert!(relayed > 0);
    // The prompt is estimated from the body as sent: with the `stream_options` the gateway
    // added to ask for the usage chunk that never came.
    let sent = STREAM_BODY.replace("}]}", r#"}],"stream_options":{"include_usage":true}}"#);
    let expected = estimate(&sent) + relayed.div_ceil(4);
    ended(&gw, 1.0).await;
    let text = metrics(&gw).await;
    assert_eq!(metric_sum(&text, "gateway_usage_estimates_total", &[]), 1.0);
    let counted = metric_sum(&text, "gateway_tokens_total", &["kind=\"prompt\""])
        + metric_sum(&text, "gateway_tokens_total", &["kind=\"completion\""]);
    assert_eq!(
        counted, expected as f64,
        "token metrics see the estimate too"
    );
    let next = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(
        num(&next, "x-ai-ratelimit-remaining"),
        100000 - expected - estimate(CHAT_BODY)
    );
}

/// A mock that never sends a stream's usage chunk.
fn no_stream_usage(name: &str) -> mock::MockOptions {
    mock::MockOptions {
        stream_usage: false,
        ..opts(name)
    }
}

#[tokio::test]
async fn nothing_is_charged_when_every_backend_failed() {
    let backend = mock_with(mock::MockOptions {
        status_override: Some(500),
        ..opts("eus")
    })
    .await;
    let e = estimate(CHAT_BODY);
    let gw = limited(
        &backend,
        Store::InProcess,
        "  tokens: { high: 1000, low: 1, window: 1h }\n  quota: { window: 1h, requests: 2 }\n",
        "",
    )
    .await;
    for n in 1..=5 {
        let reply = post(gw.addr, CHAT, CHAT_BODY).await;
        assert_eq!(reply.status, 502, "{}", reply.text());
        // Every time the whole limit and quota are there again: nothing was charged.
        assert_eq!(num(&reply, "x-ai-ratelimit-remaining"), 1000 - e);
        assert_eq!(num(&reply, "x-ratelimit-remaining"), 1);
        ended(&gw, n as f64).await;
    }
}

async fn concurrent_requests_stay_within_one_estimate(store: Store<'_>) {
    let backend = mock_with(mock::MockOptions {
        latency: Duration::from_millis(500),
        ..opts("eus")
    })
    .await;
    let body = r#"{"max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}"#;
    let e = estimate(body) + 50;
    let real = 2 + 8;
    let limit: u64 = 1000;
    let gw = limited(
        &backend,
        store,
        &format!("  tokens: {{ high: {limit}, low: 1, window: 1h }}\n"),
        "",
    )
    .await;
    let addr = gw.addr;
    let requests: Vec<_> = (0..200)
        .map(|_| tokio::spawn(async move { post(addr, CHAT, body).await.status }))
        .collect();
    let mut admitted = 0u64;
    for request in requests {
        let status = request.await.unwrap();
        assert!(status == 200 || status == 503, "{status}");
        admitted += u64::from(status == 200);
    }
    // Admitted while committed (used + reserved) was below the limit: at least ceil(limit / e)
    // (more only if some settled, at their real use, while others still arrived), and never so
    // many that what they used overshoots the limit by more than one estimate. Without
    // reservations all 200 would pass: 2000 tokens.
    assert!(
        admitted >= limit.div_ceil(e),
        "{admitted} admitted, e = {e}"
    );
    assert!(
        admitted * real <= limit + e,
        "{admitted} admitted used {} tokens",
        admitted * real
    );
}

#[tokio::test]
async fn two_hundred_concurrent_requests_overshoot_by_at_most_one_estimate_in_process() {
    concurrent_requests_stay_within_one_estimate(Store::InProcess).await;
}

#[tokio::test]
async fn two_hundred_concurrent_requests_overshoot_by_at_most_one_estimate_in_redis() {
    let redis = RedisServer::start();
    concurrent_requests_stay_within_one_estimate(Store::Redis(&redis)).await;
}

#[tokio::test]
async fn the_request_rate_lets_a_burst_through_per_client_address() {
    let redis = RedisServer::start();
    for (_store, _backend, gw) in
        in_each_store(&redis, "  rate: { per_second: 0.001, burst: 2 }\n", "").await
    {
        for remaining in [2, 1, 0] {
            let reply = post(gw.addr, CHAT, CHAT_BODY).await;
            assert_eq!(reply.status, 200);
            assert_eq!(num(&reply, "x-ratelimit-limit"), 3);
            assert_eq!(num(&reply, "x-ratelimit-remaining"), remaining);
            assert!(
                reply.header("x-ai-ratelimit-limit").is_empty(),
                "no token limit here"
            );
        }
        let refused = post(gw.addr, CHAT, CHAT_BODY).await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("x-gateway-error"), "request_rate_limited");
        // One request per 1000 s: the next one is 1000 s away.
        let retry = num(&refused, "retry-after");
        assert!((990..=1000).contains(&retry), "{retry}");
    }
}

#[tokio::test]
async fn request_and_token_quotas_count_per_consumer() {
    let redis = RedisServer::start();
    let t = 2 + 8;
    let clients = format!(
        "clients:\n  consumers:\n    - {{ name: a, key: key-a }}\n    - {{ name: b, key: key-b, token_quota: {} }}\n",
        2 * t + 1
    );
    let quota = "  quota: { window: 1h, requests: 3 }\n";
    for (store, _backend, gw) in in_each_store(&redis, quota, &clients).await {
        // a: three requests, then the quota refuses.
        for remaining in [2, 1, 0] {
            let reply = as_consumer(&gw, "key-a").await;
            assert_eq!(reply.status, 200);
            assert_eq!(num(&reply, "x-ratelimit-limit"), 3);
            assert_eq!(num(&reply, "x-ratelimit-remaining"), remaining);
        }
        let refused = as_consumer(&gw, "key-a").await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("x-gateway-error"), "request_quota_exceeded");
        // b: its own quota; its token quota of 2t + 1 takes three requests of t tokens.
        for i in 0..3u64 {
            let reply = as_consumer(&gw, "key-b").await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(num(&reply, "x-ai-ratelimit-limit"), 2 * t + 1);
            settled(&gw, store, (5 + i) as f64, "{gw}:tq:b", (i + 1) * t).await;
        }
        let refused = as_consumer(&gw, "key-b").await;
        // The request quota (3) and the token quota are both spent; the quota is asked first.
        assert_eq!(refused.header("x-gateway-error"), "request_quota_exceeded");
    }
}

#[tokio::test]
async fn a_consumers_token_quota_refuses_once_spent() {
    let backend = mock("eus").await;
    let t = 2 + 8;
    let clients = format!(
        "clients:\n  consumers:\n    - {{ name: b, key: key-b, token_quota: {} }}\n",
        2 * t + 1
    );
    let gw = limited(
        &backend,
        Store::InProcess,
        "  quota: { window: 1h }\n",
        &clients,
    )
    .await;
    for i in 0..3 {
        let reply = as_consumer(&gw, "key-b").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.header("x-ratelimit-limit").is_empty(),
            "no request quota"
        );
        ended(&gw, (i + 1) as f64).await;
    }
    let refused = as_consumer(&gw, "key-b").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("x-gateway-error"), "token_quota_exceeded");
    assert!(num(&refused, "retry-after") > 3500);
}

#[tokio::test]
async fn a_reload_keeps_the_counters_when_the_store_stays() {
    let backend = mock("eus").await;
    let quota = |requests: u32| {
        config_yaml(
            &[b("eus", backend.url())],
            &format!("limits:\n  quota: {{ window: 1h, requests: {requests} }}\n"),
        )
    };
    let gw = gateway(&quota(2)).await;
    for _ in 0..2 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    }
    // A new config (another limit, same in-process store): the two requests still count.
    gw.reload(proxy::GatewayConfig::parse("test.yaml", &quota(3)).unwrap());
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(num(&reply, "x-ratelimit-remaining"), 0);
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 429);
}

/// The in-process buckets of consumers and routes are found by position in each config (not
/// looked up per request): a new config that lists the consumers in another order still finds
/// each one's counters, not its neighbour's.
#[tokio::test]
async fn a_reload_that_reorders_the_consumers_keeps_each_ones_counters() {
    let backend = mock("eus").await;
    let config = |requests: u32, names: [&str; 2]| {
        let consumers = names
            .iter()
            .map(|n| format!("    - {{ name: {n}, key: key-{n} }}\n"))
            .collect::<String>();
        config_yaml(
            &[b("eus", backend.url())],
            &format!(
                "clients:\n  consumers:\n{consumers}limits:\n  quota: {{ window: 1h, requests: {requests} }}\n  tokens: {{ high: 1000000, low: 1000000, window: 1h }}\n"
            ),
        )
    };
    let gw = gateway(&config(3, ["a", "b"])).await;
    for _ in 0..2 {
        assert_eq!(as_consumer(&gw, "key-a").await.status, 200);
    }
    let before = num(&as_consumer(&gw, "key-b").await, "x-ai-ratelimit-remaining");
    gw.reload(proxy::GatewayConfig::parse("test.yaml", &config(4, ["b", "a"])).unwrap());
    let a = as_consumer(&gw, "key-a").await;
    assert_eq!(
        num(&a, "x-ratelimit-remaining"),
        1,
        "a's two requests still count"
    );
    let b = as_consumer(&gw, "key-b").await;
    assert_eq!(
        num(&b, "x-ratelimit-remaining"),
        2,
        "b's one request still counts"
    );
    // The route's token bucket is the same one too: it holds every request's tokens so far.
    assert!(num(&b, "x-ai-ratelimit-remaining") < before);
}

#[tokio::test]
async fn a_cache_hit_counts_against_the_request_quota_and_gives_its_tokens_back() {
    let backend = mock("eus").await;
    let body = r#"{"temperature":0,"messages":[{"role":"user","content":"hello there"}]}"#;
    let e = estimate(body);
    let gw = limited(
        &backend,
        Store::InProcess,
        "  tokens: { high: 100000, low: 1, window: 1h }\n  quota: { window: 1h, requests: 10 }\n",
        "cache: { ttl: 1h }\n",
    )
    .await;
    let miss = post(gw.addr, CHAT, body).await;
    assert_eq!(miss.header("x-gateway-cache"), "miss");
    let t = miss.json()["usage"]["total_tokens"].as_u64().unwrap();
    ended(&gw, 1.0).await;
    for (n, quota_left) in [(2.0, 8), (3.0, 7)] {
        let hit = post(gw.addr, CHAT, body).await;
        assert_eq!(hit.header("x-gateway-cache"), "hit");
        // Only the miss's real use is committed: each hit's reservation was given back.
        assert_eq!(num(&hit, "x-ai-ratelimit-remaining"), 100000 - t - e);
        assert_eq!(num(&hit, "x-ratelimit-remaining"), quota_left);
        ended(&gw, n).await;
    }
    assert_eq!(backend.stats().requests(), 1);
}

#[tokio::test]
async fn a_huge_max_tokens_reserves_at_most_the_limit_and_settles_to_real_use() {
    let backend = mock("eus").await;
    let t = chat_tokens(&backend).await;
    let gw = limited(
        &backend,
        Store::InProcess,
        "  tokens: { high: 1000, low: 1, window: 1h }\n",
        "",
    )
    .await;
    let huge = r#"{"max_tokens":18446744073709551615,"n":3,"messages":[{"role":"user","content":"hello there"}]}"#;
    let reply = post(gw.addr, CHAT, huge).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        num(&reply, "x-ai-ratelimit-remaining"),
        0,
        "it reserved the whole limit"
    );
    ended(&gw, 1.0).await;
    let next = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(next.status, 200);
    assert_eq!(
        num(&next, "x-ai-ratelimit-remaining"),
        1000 - t - estimate(CHAT_BODY),
        "the reservation became the real use"
    );
}

#[tokio::test]
async fn request_limits_alone_make_no_token_estimate() {
    // The request quota counts requests: nothing estimates tokens (or reads the relayed text
    // for it), so a backend that reports no usage is counted as reporting none.
    let (_backend, gw, text) =
        stream_without_usage("  quota: { window: 1h, requests: 10 }\n").await;
    assert!(text.contains("[DONE]"), "{text}");
    ended(&gw, 1.0).await;
    let text = metrics(&gw).await;
    assert_eq!(metric_sum(&text, "gateway_usage_estimates_total", &[]), 0.0);
    assert_eq!(
        metric_sum(&text, "gateway_tokens_total", &["kind=\"prompt\""]),
        0.0
    );
}
