//! Priority tiers, weighted round-robin and consistent hashing.

use std::time::Duration;

use http::Method;
use mock::MockOptions;

use crate::harness::*;

#[tokio::test]
async fn weights_split_traffic_two_to_one() {
    let heavy = mock("heavy").await;
    let light = mock("light").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                weight: 2,
                ..b("heavy", heavy.url())
            },
            B {
                weight: 1,
                ..b("light", light.url())
            },
        ],
        "",
    ))
    .await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            let mut heavy = 0u32;
            for _ in 0..(3000 / 8 + usize::from(worker < 3000 % 8)) {
                let reply = post(addr, CHAT, CHAT_BODY).await;
                assert_eq!(reply.status, 200);
                heavy += u32::from(reply.header("x-gateway-backend") == "heavy");
            }
            heavy
        }));
    }
    let mut heavy_count = 0;
    for t in tasks {
        heavy_count += t.await.unwrap();
    }
    let share = f64::from(heavy_count) / 3000.0;
    assert!(
        (share - 2.0 / 3.0).abs() <= 0.05 * 2.0 / 3.0,
        "heavy share {share}"
    );
    assert_eq!(heavy.stats().requests() + light.stats().requests(), 3000);
}

#[tokio::test]
async fn lower_tier_only_when_higher_is_unavailable_and_traffic_returns() {
    let ptu = mock("ptu").await;
    let payg = mock("payg").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("ptu", ptu.url())
            },
            B {
                priority: 1,
                ..b("payg", payg.url())
            },
        ],
        "",
    ))
    .await;
    for _ in 0..10 {
        assert_eq!(
            post(gw.addr, CHAT, CHAT_BODY)
                .await
                .header("x-gateway-backend"),
            "ptu"
        );
    }
    assert_eq!(payg.stats().requests(), 0);

    // The PTU throttles for a short while: traffic spills over to PAYG...
    ptu.set_options(MockOptions {
        status_override: Some(429),
        retry_after_ms: 300,
        api_key: Some(BACKEND_KEY.into()),
        ..opts("ptu")
    });
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend"),
        "payg"
    );
    ptu.set_options(MockOptions {
        api_key: Some(BACKEND_KEY.into()),
        ..opts("ptu")
    });
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend"),
        "payg"
    );
    // ...and returns once its cooldown is over (letting the 300 ms retry-after pass is the point).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        post(gw.addr, CHAT, CHAT_BODY)
            .await
            .header("x-gateway-backend"),
        "ptu"
    );
}

#[tokio::test]
async fn weight_zero_backend_is_never_picked() {
    let main = mock("main").await;
    let spare = mock("spare").await;
    let gw = gateway(&config_yaml(
        &[
            b("main", main.url()),
            B {
                weight: 0,
                ..b("spare", spare.url())
            },
        ],
        "",
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(
            post(gw.addr, CHAT, CHAT_BODY)
                .await
                .header("x-gateway-backend"),
            "main"
        );
    }
}

#[tokio::test]
async fn consistent_hash_on_header_is_sticky_and_spreads() {
    let mocks = [mock("a").await, mock("b").await, mock("c").await];
    let backends: Vec<B<'_>> = mocks
        .iter()
        .zip(["a", "b", "c"])
        .map(|(m, n)| b(n, m.url()))
        .collect();
    let gw = gateway(&config_yaml(
        &backends,
        "balancer: { algorithm: chash, hash_on: header, hash_key: x-session }\n",
    ))
    .await;
    let mut seen = std::collections::HashSet::new();
    for session in 0..30 {
        let session = format!("session-{session}");
        let mut first = None;
        for _ in 0..5 {
            let reply = send(request(
                Method::POST,
                gw.addr,
                CHAT,
                &[("x-session", &session)],
                CHAT_BODY,
            ))
            .await;
            let backend = reply.header("x-gateway-backend").to_owned();
            assert_eq!(
                first.get_or_insert(backend.clone()),
                &backend,
                "{session} moved"
            );
        }
        seen.insert(first.unwrap());
    }
    assert_eq!(seen.len(), 3, "30 sessions should use every backend");
}

#[tokio::test]
async fn consistent_hash_on_consumer_fails_over_when_its_backend_throttles() {
    let a = mock("a").await;
    let c = mock("c").await;
    let gw = gateway(&config_yaml(
        &[b("a", a.url()), b("c", c.url())],
        "balancer: { algorithm: chash, hash_on: consumer }\nclients:\n  consumers:\n    - { name: team-x, key: kx }\n",
    ))
    .await;
    let first = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("api-key", "kx")],
        CHAT_BODY,
    ))
    .await;
    let home = first.header("x-gateway-backend").to_owned();
    let (home_mock, other) = if home == "a" { (&a, "c") } else { (&c, "a") };
    home_mock.set_options(MockOptions {
        status_override: Some(429),
        retry_after_ms: 60_000,
        api_key: Some(BACKEND_KEY.into()),
        ..opts(&home)
    });
    let moved = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("api-key", "kx")],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(moved.status, 200);
    assert_eq!(moved.header("x-gateway-backend"), other);
}

#[tokio::test]
async fn consistent_hash_on_cookie_and_client_address() {
    let mocks = [mock("a").await, mock("b").await, mock("c").await];
    let backends: Vec<B<'_>> = mocks
        .iter()
        .zip(["a", "b", "c"])
        .map(|(m, n)| b(n, m.url()))
        .collect();
    let by_cookie = gateway(&config_yaml(
        &backends,
        "balancer: { algorithm: chash, hash_on: cookie, hash_key: sid }\n",
    ))
    .await;
    let mut homes = std::collections::HashSet::new();
    for user in 0..20 {
        let cookie = format!("theme=dark; sid=user-{user}");
        let first = send(request(
            Method::POST,
            by_cookie.addr,
            CHAT,
            &[("cookie", &cookie)],
            CHAT_BODY,
        ))
        .await;
        let home = first.header("x-gateway-backend").to_owned();
        for _ in 0..3 {
            let again = send(request(
                Method::POST,
                by_cookie.addr,
                CHAT,
                &[("cookie", &cookie)],
                CHAT_BODY,
            ))
            .await;
            assert_eq!(again.header("x-gateway-backend"), home);
        }
        homes.insert(home);
    }
    assert!(homes.len() >= 2, "{homes:?}");

    let by_addr = gateway(&config_yaml(
        &backends,
        "balancer: { algorithm: chash, hash_on: vars, hash_key: remote_addr }\n",
    ))
    .await;
    let home = post(by_addr.addr, CHAT, CHAT_BODY)
        .await
        .header("x-gateway-backend")
        .to_owned();
    for _ in 0..10 {
        assert_eq!(
            post(by_addr.addr, CHAT, CHAT_BODY)
                .await
                .header("x-gateway-backend"),
            home
        );
    }
}

#[tokio::test]
async fn bounded_load_moves_a_hot_key_off_a_busy_backend() {
    // One session holds long streams on its home backend; with bounded load (1.0) the next
    // concurrent request of the same session goes elsewhere instead of piling up.
    let slow = MockOptions {
        chunk_interval: Duration::from_millis(200),
        chunk_count: 20,
        ..opts("x")
    };
    let a = mock_with(MockOptions {
        name: "a".into(),
        ..slow.clone()
    })
    .await;
    let c = mock_with(MockOptions {
        name: "c".into(),
        ..slow
    })
    .await;
    let gw = gateway(&config_yaml(
        &[b("a", a.url()), b("c", c.url())],
        "balancer: { algorithm: chash, hash_on: header, hash_key: x-session, bounded_load: 1.0 }\n",
    ))
    .await;
    let headers = [("x-session", "hot")];
    let first = open(request(Method::POST, gw.addr, CHAT, &headers, STREAM_BODY)).await;
    let home = first.headers()["x-gateway-backend"]
        .to_str()
        .unwrap()
        .to_owned();
    let second = open(request(Method::POST, gw.addr, CHAT, &headers, STREAM_BODY)).await;
    assert_ne!(
        second.headers()["x-gateway-backend"].to_str().unwrap(),
        home
    );
    drop((first, second));
    // Idle again: the key goes home.
    let c_or_a = if home == "a" { &a } else { &c };
    tokio::time::timeout(
        Duration::from_secs(10),
        c_or_a.stats().wait_for_streams_aborted(1),
    )
    .await
    .unwrap();
    let third = send(request(Method::POST, gw.addr, CHAT, &headers, CHAT_BODY)).await;
    assert_eq!(third.header("x-gateway-backend"), home);
}
