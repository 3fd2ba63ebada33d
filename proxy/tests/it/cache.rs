//! The exact-match response cache (`cache`): what is answered from it, what never is, its key,
//! its bound, its TTL and a reload.

use bytes::Bytes;
use http::Method;
use mock::MockOptions;
use proxy::GatewayConfig;

use crate::harness::*;

const CACHE: &str = "cache: { ttl: 300s }\n";
const CHAT_ZERO: &str = r#"{"temperature":0,"messages":[{"role":"user","content":"hello there"}]}"#;
const EMBEDDINGS: &str = "/openai/deployments/emb/embeddings?api-version=2024-10-21";
const EMBEDDINGS_BODY: &str = r#"{"input":"hello there"}"#;

/// Sends a JSON POST with extra header fields.
async fn post_with(
    addr: std::net::SocketAddr,
    path: &str,
    fields: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(fields);
    send(request(Method::POST, addr, path, &all, body.to_owned())).await
}

#[tokio::test]
async fn a_second_identical_request_is_answered_without_a_backend() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CACHE)).await;
    let first = post(gw.addr, CHAT, CHAT_ZERO).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-gateway-cache"), "miss");
    assert_eq!(first.header("x-gateway-backend"), "a");
    let second = post(gw.addr, CHAT, CHAT_ZERO).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-gateway-cache"), "hit");
    assert_eq!(backend.stats().requests(), 1, "the hit reached no backend");
    // The same answer (the mock gives each completion an id of its own), its content type, and
    // nothing of the first request's own: no backend mark, a request id of its own.
    assert_eq!(second.body, first.body);
    assert_eq!(second.json()["id"], first.json()["id"]);
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert_eq!(second.header("x-gateway-backend"), "");
    assert_eq!(second.header("x-gateway-attempts"), "");
    assert_eq!(second.header("x-ms-region"), "");
    assert!(!second.header("x-request-id").is_empty());
    assert_ne!(second.header("x-request-id"), first.header("x-request-id"));

    // Counted as a 200 that no backend served, spending no tokens; and as a hit.
    let text = metrics(&gw).await;
    let lookups = |result: &str| {
        metric_sum(
            &text,
            "gateway_cache_lookups_total",
            &[&format!("result=\"{result}\"")],
        )
    };
    assert_eq!((lookups("hit"), lookups("miss")), (1.0, 1.0));
    let served = |backend: &str| {
        metric_sum(
            &text,
            "gateway_requests_total",
            &[&format!("backend=\"{backend}\""), "status=\"200\""],
        )
    };
    assert_eq!((served("a"), served("")), (1.0, 1.0));
    let prompt = |backend: &str| {
        metric_sum(
            &text,
            "gateway_tokens_total",
            &[&format!("backend=\"{backend}\""), "kind=\"prompt\""],
        )
    };
    assert!(prompt("a") > 0.0);
    assert_eq!(prompt(""), 0.0, "a hit spends no tokens");
}

#[tokio::test]
async fn the_same_body_in_another_key_order_or_layout_hits() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CACHE)).await;
    assert_eq!(
        post(gw.addr, CHAT, CHAT_ZERO)
            .await
            .header("x-gateway-cache"),
        "miss"
    );
    let reordered = "{\n  \"messages\": [ {\"content\": \"hello there\", \"role\": \"user\"} ],\n  \"temperature\": 0\n}\n";
    assert_eq!(
        post(gw.addr, CHAT, reordered)
            .await
            .header("x-gateway-cache"),
        "hit"
    );
    // Embeddings too.
    let first = post(gw.addr, EMBEDDINGS, r#"{"input":"hi","dimensions":4}"#).await;
    assert_eq!(
        (first.status.as_u16(), first.header("x-gateway-cache")),
        (200, "miss")
    );
    let again = post(
        gw.addr,
        EMBEDDINGS,
        r#" { "dimensions" : 4 , "input" : "hi" } "#,
    )
    .await;
    assert_eq!(again.header("x-gateway-cache"), "hit");
    assert_eq!(again.body, first.body);
    assert_eq!(backend.stats().requests(), 2);
}

/// A request: path, extra fields, body.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn another_consumer_deployment_model_query_or_body_misses() {
    let backend = mock("a").await;
    let clients = "clients:\n  consumers:\n    - { name: team-a, key: key-a }\n    - { name: team-b, key: key-b }\n";
    let gw = gateway(&config_yaml(
        &[b("a", backend.url())],
        &format!("{CACHE}{clients}"),
    ))
    .await;
    let v1 = "/openai/v1/chat/completions";
    let v1_body = |model: &str| {
        format!(
            r#"{{"model":"{model}","temperature":0,"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    let other_query = "/openai/deployments/gpt-4o/chat/completions?api-version=2025-01-01";
    let other_deployment =
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
    let other_body = r#"{"temperature":0,"messages":[{"role":"user","content":"hello there!"}]}"#;
    let gpt = v1_body("gpt-4o");
    let mini = v1_body("gpt-4o-mini");
    let cases: &[Case<'_>] = &[
        (CHAT, &[("api-key", "key-a")], CHAT_ZERO),
        (CHAT, &[("api-key", "key-b")], CHAT_ZERO),
        // Anonymous (no key matched: served without auth).
        (CHAT, &[], CHAT_ZERO),
        (other_query, &[("api-key", "key-a")], CHAT_ZERO),
        (other_deployment, &[("api-key", "key-a")], CHAT_ZERO),
        (CHAT, &[("api-key", "key-a")], other_body),
        (v1, &[("api-key", "key-a")], &gpt),
        (v1, &[("api-key", "key-a")], &mini),
    ];
    for (round, expected) in [(0, "miss"), (1, "hit")] {
        for (i, (path, fields, body)) in cases.iter().enumerate() {
            let reply = post_with(gw.addr, path, fields, body).await;
            assert_eq!(reply.status, 200, "{path} {fields:?}: {}", reply.text());
            assert_eq!(
                reply.header("x-gateway-cache"),
                expected,
                "round {round}, case {i}: {path} {fields:?} {body}"
            );
        }
    }
    assert_eq!(backend.stats().requests(), cases.len() as u64);
}

#[tokio::test]
async fn other_temperatures_streams_and_other_operations_are_not_cached() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CACHE)).await;
    let stream_zero =
        r#"{"stream":true,"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
    let completions = "/openai/deployments/gpt-4o/completions?api-version=2024-10-21";
    let responses = "/openai/v1/responses";
    let cases = [
        (
            CHAT,
            r#"{"temperature":0.5,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        // No temperature is Azure's default, 1.
        (CHAT, CHAT_BODY),
        (CHAT, stream_zero),
        (completions, r#"{"temperature":0,"prompt":"hi"}"#),
        (
            responses,
            r#"{"model":"gpt-4o","temperature":0,"input":"hi"}"#,
        ),
    ];
    let mut sent = 0;
    for (path, body) in cases {
        for _ in 0..2 {
            let reply = post(gw.addr, path, body).await;
            sent += 1;
            assert_eq!(reply.status, 200, "{path} {body}: {}", reply.text());
            assert_eq!(reply.header("x-gateway-cache"), "", "{path} {body}");
            assert_eq!(reply.header("x-gateway-backend"), "a", "{path} {body}");
            assert_eq!(backend.stats().requests(), sent, "{path} {body}");
        }
    }
    // Not a POST: no cache either (a response retrieved twice goes to its backend twice).
    let created = post(gw.addr, responses, r#"{"model":"gpt-4o","input":"hi"}"#).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let path = format!("{responses}/{id}");
        let got = send(request(Method::GET, gw.addr, &path, &[], Bytes::new())).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.header("x-gateway-cache"), "");
    }
    // While chat at temperature 0 is, on the same gateway: only those two lookups were made.
    assert_eq!(
        post(gw.addr, CHAT, CHAT_ZERO)
            .await
            .header("x-gateway-cache"),
        "miss"
    );
    assert_eq!(
        post(gw.addr, CHAT, CHAT_ZERO)
            .await
            .header("x-gateway-cache"),
        "hit"
    );
    let text = metrics(&gw).await;
    assert_eq!(metric_sum(&text, "gateway_cache_lookups_total", &[]), 2.0);
}

#[tokio::test]
async fn a_backend_error_is_never_cached() {
    for status in [500, 429, 400] {
        let backend = mock_with(MockOptions {
            status_override: Some(status),
            ..opts("a")
        })
        .await;
        // The error is passed on as the backend's answer (its failover trigger off).
        let config = |name: &str| {
            let extra = format!("{CACHE}upstream:\n  failover_on: [connect_error, timeout]\n");
            GatewayConfig::parse("test.yaml", &config_yaml(&[b(name, backend.url())], &extra))
                .unwrap()
        };
        let gw = proxy::RunningGateway::start(config("a")).await.unwrap();
        let failed = post(gw.addr, CHAT, CHAT_ZERO).await;
        assert_eq!(failed.status.as_u16(), status);
        assert_eq!(
            failed.header("x-gateway-backend"),
            "a",
            "the backend's answer"
        );
        assert_eq!(failed.header("x-gateway-cache"), "miss");
        // The backend recovers; under a new name, so that a 429's cooldown stays with the old
        // one (the cache settings are the same: the cache is kept).
        backend.set_options(opts("a"));
        gw.reload(config("recovered"));
        let next = post(gw.addr, CHAT, CHAT_ZERO).await;
        assert_eq!(next.status, 200, "after {status}: {}", next.text());
        assert_eq!(next.header("x-gateway-cache"), "miss", "after {status}");
        assert_eq!(backend.stats().requests(), 2, "after {status}");
        let again = post(gw.addr, CHAT, CHAT_ZERO).await;
        assert_eq!(again.header("x-gateway-cache"), "hit");
    }
    // The gateway's own error after failover is not stored either.
    let backend = mock_with(MockOptions {
        status_override: Some(503),
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CACHE)).await;
    for _ in 0..2 {
        let failed = post(gw.addr, CHAT, CHAT_ZERO).await;
        assert_eq!(failed.status, 502);
        assert_eq!(failed.header("x-gateway-cache"), "miss");
    }
    assert_eq!(backend.stats().requests(), 2);
}

#[tokio::test]
async fn an_answer_too_large_for_the_bound_is_not_stored() {
    let backend = mock("a").await;
    // An eighth of 16 KiB at most per entry: a one-dimension embedding fits, 1024 dimensions
    // (some 20 KB of JSON) do not.
    let gw = gateway(&config_yaml(
        &[b("a", backend.url())],
        "cache: { ttl: 300s, max_bytes: 16384 }\n",
    ))
    .await;
    let large = r#"{"input":"hello there","dimensions":1024}"#;
    let first = post(gw.addr, EMBEDDINGS, large).await;
    assert_eq!(first.status, 200);
    assert!(first.body.len() > 16384 / 8, "{} bytes", first.body.len());
    assert_eq!(first.header("x-gateway-cache"), "miss");
    assert_eq!(
        post(gw.addr, EMBEDDINGS, large)
            .await
            .header("x-gateway-cache"),
        "miss"
    );
    assert_eq!(backend.stats().requests(), 2);
    let small = r#"{"input":"hello there","dimensions":1}"#;
    assert_eq!(
        post(gw.addr, EMBEDDINGS, small)
            .await
            .header("x-gateway-cache"),
        "miss"
    );
    assert_eq!(
        post(gw.addr, EMBEDDINGS, small)
            .await
            .header("x-gateway-cache"),
        "hit"
    );
    assert_eq!(backend.stats().requests(), 3);
}

#[tokio::test]
async fn an_entry_expires_after_its_ttl() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(
        &[b("a", backend.url())],
        "cache: { ttl: 300ms }\n",
    ))
    .await;
    assert_eq!(
        post(gw.addr, EMBEDDINGS, EMBEDDINGS_BODY)
            .await
            .header("x-gateway-cache"),
        "miss"
    );
    // Hits while the entry lives (how many depends on the machine's speed), then a miss that
    // goes to the backend again.
    wait_until(async || {
        let reply = post(gw.addr, EMBEDDINGS, EMBEDDINGS_BODY).await;
        assert_eq!(reply.status, 200);
        reply.header("x-gateway-cache") == "miss"
    })
    .await;
    assert_eq!(backend.stats().requests(), 2);
}

#[tokio::test]
async fn a_reload_with_the_same_cache_settings_keeps_the_entries() {
    let backend = mock("a").await;
    let other = mock("b").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CACHE)).await;
    assert_eq!(
        post(gw.addr, CHAT, CHAT_ZERO)
            .await
            .header("x-gateway-cache"),
        "miss"
    );
    let config = |backends: &[B<'_>], extra: &str| {
        GatewayConfig::parse("test.yaml", &config_yaml(backends, extra)).unwrap()
    };
    // Another backend list, the same cache: the entry is still there.
    gw.reload(config(&[b("b", other.url())], CACHE));
    assert_eq!(
        post(gw.addr, CHAT, CHAT_ZERO)
            .await
            .header("x-gateway-cache"),
        "hit"
    );
    assert_eq!(other.stats().requests(), 0);
    // Another bound: a new, empty cache.
    gw.reload(config(
        &[b("b", other.url())],
        "cache: { ttl: 300s, max_bytes: 1048576 }\n",
    ));
    assert_eq!(
        post(gw.addr, CHAT, CHAT_ZERO)
            .await
            .header("x-gateway-cache"),
        "miss"
    );
    assert_eq!(other.stats().requests(), 1);
    // No cache section: no cache, no header.
    gw.reload(config(&[b("b", other.url())], ""));
    let plain = post(gw.addr, CHAT, CHAT_ZERO).await;
    assert_eq!(plain.header("x-gateway-cache"), "");
    assert_eq!(other.stats().requests(), 2);
    assert_eq!(backend.stats().requests(), 1);
}
