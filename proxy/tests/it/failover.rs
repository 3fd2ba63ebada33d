//! Failover inside one request, cooldowns, and the answer when every backend is exhausted.

use std::time::Duration;

use http::Method;
use mock::MockOptions;

use crate::harness::*;

#[tokio::test]
async fn fails_over_on_429_and_cools_the_backend_down() {
    let throttled = mock_with(MockOptions {
        status_override: Some(429),
        retry_after_ms: 60_000,
        ..opts("eus")
    })
    .await;
    let healthy = mock("wus").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("eus", throttled.url())
            },
            b("wus", healthy.url()),
        ],
        "",
    ))
    .await;

    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-gateway-backend"), "wus");
    assert_eq!(reply.header("x-gateway-attempts"), "2");
    assert_eq!(throttled.stats().requests(), 1);

    // The throttled backend is not retried before its retry-after passed.
    for _ in 0..5 {
        let reply = post(gw.addr, CHAT, CHAT_BODY).await;
        assert_eq!(reply.header("x-gateway-backend"), "wus");
        assert_eq!(reply.header("x-gateway-attempts"), "1");
    }
    assert_eq!(throttled.stats().requests(), 1);

    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["backend=\"eus\"", "outcome=\"http_429\""]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["backend=\"eus\"", "outcome=\"skipped_cooldown\""]
        ),
        5.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "gateway_failovers_total",
            &[
                "from_backend=\"eus\"",
                "to_backend=\"wus\"",
                "reason=\"http_429\""
            ]
        ),
        1.0
    );
    assert!(
        metric_sum(
            &text,
            "gateway_backend_cooldown_seconds",
            &["backend=\"eus\""]
        ) > 50.0
    );
}

#[tokio::test]
async fn fails_over_on_5xx() {
    let broken = mock_with(MockOptions {
        status_override: Some(503),
        ..opts("a")
    })
    .await;
    let healthy = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("a", broken.url())
            },
            b("b", healthy.url()),
        ],
        "",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-gateway-backend"), "b");
    assert_eq!(broken.stats().requests(), 1);
}

#[tokio::test]
async fn fails_over_on_connect_error() {
    // A port nobody listens on: bind, learn the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let healthy = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("dead", format!("http://{dead}"))
            },
            b("b", healthy.url()),
        ],
        "",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-gateway-backend"), "b");
    assert_eq!(reply.header("x-gateway-attempts"), "2");
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["backend=\"dead\"", "outcome=\"connect_error\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn fails_over_on_connect_timeout() {
    // A listener with a zero backlog that never accepts, filled up: further SYNs are dropped.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let healthy = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("blackhole", format!("http://{addr}"))
            },
            b("b", healthy.url()),
        ],
        "upstream:\n  connect_timeout: 300ms\n",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-gateway-backend"), "b");
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["backend=\"blackhole\"", "outcome=\"timeout\""]
        ),
        1.0
    );
    drop(listener);
}

#[tokio::test]
async fn fails_over_on_idle_timeout_before_first_byte() {
    let slow = mock_with(MockOptions {
        latency: Duration::from_secs(30),
        ..opts("slow")
    })
    .await;
    let healthy = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("slow", slow.url())
            },
            b("b", healthy.url()),
        ],
        "upstream:\n  read_timeout: 300ms\n",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-gateway-backend"), "b");
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["backend=\"slow\"", "outcome=\"timeout\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn fails_over_on_in_stream_throttling_error() {
    let throttled = mock_with(MockOptions {
        stream_error_first: Some("too_many_requests".into()),
        ..opts("a")
    })
    .await;
    let healthy = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("a", throttled.url())
            },
            b("b", healthy.url()),
        ],
        "",
    ))
    .await;
    let reply = post(gw.addr, CHAT, STREAM_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-gateway-backend"), "b");
    let text = reply.text();
    assert!(!text.contains("too_many_requests"), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert_eq!(throttled.stats().requests(), 1);
}

#[tokio::test]
async fn all_throttled_gives_429_with_earliest_reopening() {
    let a = mock_with(MockOptions {
        status_override: Some(429),
        retry_after_ms: 20_000,
        ..opts("a")
    })
    .await;
    let c = mock_with(MockOptions {
        status_override: Some(429),
        retry_after_ms: 7_000,
        ..opts("c")
    })
    .await;
    let gw = gateway(&config_yaml(&[b("a", a.url()), b("c", c.url())], "")).await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("x-gateway-error"), "all_backends_throttled");
    assert_eq!(reply.header("retry-after"), "7");
    let ms: u64 = reply.header("retry-after-ms").parse().unwrap();
    assert!((6_000..=7_000).contains(&ms), "{ms}");
    let body = reply.json();
    let details = body["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    assert!(
        details
            .iter()
            .all(|d| d["outcome"] == "http_429" && d["status"] == 429)
    );

    // While both cool down no backend is called, and the answer still says when to come back.
    let again = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(again.status, 429);
    assert!(
        again.json()["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["outcome"] == "skipped_cooldown")
    );
    assert_eq!(a.stats().requests() + c.stats().requests(), 2);
}

#[tokio::test]
async fn the_gateways_own_429_is_counted_under_the_consumer_route_and_model() {
    let a = mock_with(MockOptions {
        status_override: Some(429),
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(
        &[b("a", a.url())],
        "clients:\n  consumers:\n    - { name: team-a, key: client-key-a }\n",
    ))
    .await;
    let reply = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("api-key", "client-key-a")],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(reply.status, 429);
    // The answer a consumer gets when every backend is throttled is what an operator alerts
    // on: it must carry whose request it was, not `anonymous` / `none`.
    let text = metrics(&gw).await;
    let labels = [
        "route=\"legacy\"",
        "operation=\"chat_completions\"",
        "consumer=\"team-a\"",
        "model=\"gpt-4o\"",
        "status=\"429\"",
    ];
    assert_eq!(
        metric_sum(&text, "gateway_requests_total", &labels),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn all_failed_gives_502_listing_attempts() {
    let a = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("a")
    })
    .await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway(&config_yaml(
        &[b("a", a.url()), b("dead", format!("http://{dead}"))],
        "",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("x-gateway-error"), "all_backends_failed");
    let body = reply.json();
    let outcomes: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.contains(&"http_5xx") && outcomes.contains(&"connect_error"));
}

#[tokio::test]
async fn all_timed_out_gives_504() {
    let slow = mock_with(MockOptions {
        latency: Duration::from_secs(30),
        ..opts("slow")
    })
    .await;
    let gw = gateway(&config_yaml(
        &[b("slow", slow.url())],
        "upstream:\n  read_timeout: 200ms\n",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("x-gateway-error"), "all_backends_timed_out");
}

#[tokio::test]
async fn request_deadline_bounds_all_attempts() {
    let slow_a = mock_with(MockOptions {
        latency: Duration::from_secs(30),
        ..opts("a")
    })
    .await;
    let slow_b = mock_with(MockOptions {
        latency: Duration::from_secs(30),
        ..opts("b")
    })
    .await;
    let gw = gateway(&config_yaml(
        &[b("a", slow_a.url()), b("b", slow_b.url())],
        "upstream:\n  read_timeout: 20s\n  request_deadline: 400ms\n",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 504);
    // The deadline, not the 20 s read timeout, ended the request: one attempt, then no time left.
    assert_eq!(reply.header("x-gateway-error"), "deadline_exceeded");
    assert_eq!(
        reply.json()["error"]["details"].as_array().unwrap().len(),
        1
    );
    assert_eq!(slow_a.stats().requests() + slow_b.stats().requests(), 1);
}

#[tokio::test]
async fn non_retryable_4xx_is_passed_through() {
    let a = mock_with(MockOptions {
        status_override: Some(400),
        ..opts("a")
    })
    .await;
    let other = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("a", a.url())
            },
            b("b", other.url()),
        ],
        "",
    ))
    .await;
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("x-gateway-backend"), "a");
    assert_eq!(reply.header("x-gateway-error"), "");
    assert_eq!(other.stats().requests(), 0);
}

#[tokio::test]
async fn passive_health_marks_backend_unhealthy_after_consecutive_failures() {
    let broken = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("a")
    })
    .await;
    let healthy = mock("b").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("a", broken.url())
            },
            b("b", healthy.url()),
        ],
        "upstream:\n  passive_health: { failures: 2, unhealthy_for: 60s }\n",
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    }
    assert_eq!(broken.stats().requests(), 2);
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_backend_up", &["backend=\"a\""]),
        0.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["backend=\"a\"", "outcome=\"skipped_unhealthy\""]
        ),
        3.0
    );
}

/// An address where nothing listens (yet).
async fn closed_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_lone_backend_marked_unhealthy_is_still_tried_and_its_recovery_lifts_the_mark() {
    let addr = closed_port().await;
    let gw = gateway(&config_yaml(
        &[b("a", format!("http://{addr}"))],
        "upstream:\n  passive_health: { failures: 2, unhealthy_for: 60s }\n",
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 502);
    }
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_backend_up", &["backend=\"a\""]),
        0.0
    );
    // The region is back. Skipping the only backend for the next 60 s would be an outage the
    // gateway made itself: with nothing else left, the marked backend is tried after all.
    let backend = mock::MockServer::start_on(
        addr,
        MockOptions {
            api_key: Some(BACKEND_KEY.into()),
            ..opts("a")
        },
    )
    .await
    .unwrap();
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    assert_eq!(backend.stats().requests(), 1);
    // Its answer lifted the mark.
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_backend_up", &["backend=\"a\""]),
        1.0
    );
}

#[tokio::test]
async fn marked_backends_are_tried_last_and_reported_once_each() {
    let marked = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("marked")
    })
    .await;
    let broken = mock("broken").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("marked", marked.url())
            },
            b("broken", broken.url()),
        ],
        "upstream:\n  passive_health: { failures: 1, unhealthy_for: 60s }\n",
    ))
    .await;
    // The first tier fails once and is marked (one failure is enough here); the second serves.
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 200);
    // Now the second tier fails too: the marked first tier, skipped at its turn, is tried after
    // it, as the last resort.
    broken.set_options(MockOptions {
        status_override: Some(503),
        ..broken.options()
    });
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.status, 502);
    // Each backend appears once, with what it answered, in the order tried.
    let body = reply.json();
    let details: Vec<(&str, &str)> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["backend"].as_str().unwrap(),
                d["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(details, [("broken", "http_5xx"), ("marked", "http_5xx")]);
    assert_eq!(
        (marked.stats().requests(), broken.stats().requests()),
        (2, 2)
    );
    // A backend tried in the end counts as an attempt, not also as skipped.
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(
            &text,
            "gateway_backend_attempts_total",
            &["backend=\"marked\"", "outcome=\"skipped_unhealthy\""]
        ),
        0.0
    );
}

#[tokio::test]
async fn a_5xx_passed_through_does_not_count_as_a_success_nor_against_the_backend() {
    let backend = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(
        &[b("a", backend.url())],
        "upstream:\n  failover_on: [http_429, connect_error, timeout]\n  passive_health: { failures: 1, unhealthy_for: 60s }\n",
    ))
    .await;
    // 5xx failover is off: the 500s go to the client as they are. They count as `http_5xx`,
    // never as `ok`; and as no other backend answered these requests, they are not held against
    // the backend either (a request every backend answers with a 5xx may be the request's
    // fault: `health.rs` tests the rule).
    for _ in 0..2 {
        assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 500);
    }
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_backend_up", &["backend=\"a\""]),
        1.0
    );
    let attempts = |outcome: &str| {
        let outcome = format!("outcome=\"{outcome}\"");
        metric_sum(&text, "gateway_backend_attempts_total", &[&outcome])
    };
    assert_eq!((attempts("http_5xx"), attempts("ok")), (2.0, 0.0));
}

/// With 429 failover off the 429 goes to the client, but it is throttling all the same: counted
/// as `http_429` (never `ok`), and the deployment cools down for the time the backend asked, so
/// the next request is answered by the gateway (429, `Retry-After`) without reaching it.
#[tokio::test]
async fn a_429_passed_through_is_throttling_not_a_success() {
    let backend = mock_with(MockOptions {
        rate_429: 1.0,
        retry_after_ms: 30_000,
        ..opts("a")
    })
    .await;
    let gw = gateway(&config_yaml(
        &[b("a", backend.url())],
        "upstream:\n  failover_on: [http_5xx, connect_error, timeout]\n",
    ))
    .await;
    let first = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(first.status, 429);
    assert_eq!(first.header("x-gateway-backend"), "a");
    let second = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(second.status, 429);
    assert_eq!(second.json()["error"]["code"], "all_backends_throttled");
    assert!(second.header("retry-after").parse::<u64>().unwrap() > 0);
    assert_eq!(backend.stats().requests(), 1);
    let text = metrics(&gw).await;
    let attempts = |outcome: &str| {
        let outcome = format!("outcome=\"{outcome}\"");
        metric_sum(&text, "gateway_backend_attempts_total", &[&outcome])
    };
    assert_eq!((attempts("http_429"), attempts("ok")), (1.0, 0.0));
}

#[tokio::test]
async fn active_health_checks_probe_and_recover() {
    let backend = mock_with(MockOptions {
        status_override: Some(503),
        ..opts("a")
    })
    .await;
    let spare = mock("b").await;
    let gw = gateway(&config_yaml(
        &[B { priority: 10, ..b("a", backend.url()) }, b("b", spare.url())],
        "upstream:\n  passive_health: { failures: 0 }\n  active_health: { enabled: true, path: /openai/v1/models, healthy_interval: 50ms, unhealthy_interval: 50ms, timeout: 1s }\n",
    ))
    .await;
    // Wait (bounded) until a probe saw the 503 and readiness reflects the other backend.
    wait_until(|| async {
        metric_sum(
            &metrics(&gw).await,
            "gateway_backend_up",
            &["backend=\"a\""],
        ) == 0.0
    })
    .await;
    let probes = backend.stats().requests_log();
    assert!(
        probes
            .iter()
            .all(|r| r.method == "GET" && r.path_and_query == "/openai/v1/models")
    );
    assert!(probes.iter().all(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "api-key" && v == BACKEND_KEY)
    }));
    let before = backend.stats().requests();
    let reply = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(reply.header("x-gateway-backend"), "b");
    // Only probes reached the unhealthy backend, not the request.
    assert!(
        backend.stats().requests_log()[before as usize..]
            .iter()
            .all(|r| r.method == "GET")
    );

    backend.set_options(MockOptions {
        api_key: Some(BACKEND_KEY.into()),
        ..opts("a")
    });
    wait_until(|| async {
        metric_sum(
            &metrics(&gw).await,
            "gateway_backend_up",
            &["backend=\"a\""],
        ) == 1.0
    })
    .await;
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend"),
        "a"
    );
}

#[tokio::test]
async fn readyz_reflects_reachable_backends_and_never_5xx_marks() {
    let answering = mock_with(MockOptions {
        status_override: Some(500),
        ..opts("a")
    })
    .await;
    let addr = closed_port().await;
    let gw = gateway(&config_yaml(
        &[b("a", answering.url()), b("b", format!("http://{addr}"))],
        "upstream:\n  passive_health: { failures: 1, unhealthy_for: 60s }\n",
    ))
    .await;
    let ready =
        |gw: &proxy::RunningGateway| send(request(Method::GET, gw.admin_addr, "/readyz", &[], ""));
    assert_eq!(ready(&gw).await.status, 200);
    assert_eq!(
        send(request(Method::GET, gw.admin_addr, "/healthz", &[], ""))
            .await
            .status,
        200
    );
    // `b` cannot be reached and is marked; `a` answers 500 to everything: the replica stays
    // ready (an orchestrator would pull it, and `a` is there).
    assert_eq!(post(gw.addr, CHAT, CHAT_BODY).await.status, 502);
    let text = metrics(&gw).await;
    assert_eq!(
        metric_sum(&text, "gateway_backend_up", &["backend=\"b\""]),
        0.0
    );
    assert_eq!(ready(&gw).await.status, 200);
    // When no backend can be reached at all, the replica is not ready.
    drop(answering);
    wait_until(async || {
        post(gw.addr, CHAT, CHAT_BODY).await;
        ready(&gw).await.status == 503
    })
    .await;
}
