//! Routes, path/query forwarding, rewrites, Responses affinity, body limits, protocols.

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Either, Full};

use crate::harness::*;

/// Clients choose the model; a client sending a new one with every request must not grow the
/// metrics without bound: past the first 64 (in the process), models are counted as `other`.
#[tokio::test]
async fn model_labels_are_bounded() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let models = 80;
    for i in 0..models {
        let body = format!(r#"{{"model":"m-{i}","messages":[{{"role":"user","content":"x"}}]}}"#);
        let reply = post(gw.addr, "/openai/v1/chat/completions", &body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let text = metrics(&gw).await;
    let mut labelled: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("gateway_requests_total{"))
        .filter_map(|line| line.split("model=\"").nth(1)?.split('"').next())
        .collect();
    labelled.sort_unstable();
    labelled.dedup();
    assert_eq!(labelled.len(), 65, "{labelled:?}");
    assert!(labelled.contains(&"m-0") && labelled.contains(&"m-63"));
    assert!(!labelled.contains(&"m-64"));
    let other = metric_sum(&text, "gateway_requests_total", &["model=\"other\""]);
    assert_eq!(other, 16.0, "{text}");
}

#[tokio::test]
async fn path_and_query_are_forwarded_exactly_once() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let paths = [
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        "/openai/deployments/gpt-4o/completions?api-version=2024-10-21&x=1",
        "/openai/deployments/emb/embeddings?api-version=2024-10-21",
        "/openai/v1/chat/completions",
        "/openai/v1/embeddings",
        "/openai/v1/completions?foo=bar",
    ];
    for path in paths {
        let body = if path.contains("embeddings") {
            r#"{"input":"a b","model":"emb"}"#
        } else {
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"prompt":"x"}"#
        };
        let reply = post(gw.addr, path, body).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let seen: Vec<String> = backend
        .stats()
        .requests_log()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(seen, paths);
}

#[tokio::test]
async fn get_and_delete_without_body_work() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let models = send(request(
        Method::GET,
        gw.addr,
        "/openai/v1/models",
        &[],
        Bytes::new(),
    ))
    .await;
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["object"], "list");
    let created = post(
        gw.addr,
        "/openai/v1/responses",
        r#"{"model":"gpt-4o","input":"hi"}"#,
    )
    .await
    .json();
    let id = created["id"].as_str().unwrap();
    let got = send(request(
        Method::GET,
        gw.addr,
        &format!("/openai/v1/responses/{id}"),
        &[],
        Bytes::new(),
    ))
    .await;
    assert_eq!(got.status, 200);
    let items = send(request(
        Method::GET,
        gw.addr,
        &format!("/openai/v1/responses/{id}/input_items"),
        &[],
        Bytes::new(),
    ))
    .await;
    assert_eq!(items.status, 200);
    let cancelled = send(request(
        Method::POST,
        gw.addr,
        &format!("/openai/v1/responses/{id}/cancel"),
        &[],
        Bytes::new(),
    ))
    .await;
    assert_eq!(cancelled.status, 200);
    let deleted = send(request(
        Method::DELETE,
        gw.addr,
        &format!("/openai/v1/responses/{id}"),
        &[],
        Bytes::new(),
    ))
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["deleted"], true);
    let legacy = post(
        gw.addr,
        "/openai/responses?api-version=2025-04-01-preview",
        r#"{"model":"gpt-4o","input":"hi"}"#,
    )
    .await;
    assert_eq!(legacy.status, 200);
}

#[tokio::test]
async fn deployment_aliases_and_forced_api_version_per_backend() {
    let backend = mock("a").await;
    let yaml = format!(
        "version: 1\nserver: {{ listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0 }}\nbackends:\n  - name: a\n    endpoint: {}\n    auth: {{ mode: api-key, api_key: {BACKEND_KEY} }}\n    deployments: {{ chat: gpt-4o-eus }}\n    api_version: 2025-01-01-preview\n",
        backend.url()
    );
    let gw = gateway(&yaml).await;
    assert_eq!(
        post(
            gw.addr,
            "/openai/deployments/chat/chat/completions?api-version=2024-10-21",
            CHAT_BODY
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post(
            gw.addr,
            "/openai/v1/chat/completions",
            r#"{"model":"chat","messages":[{"role":"user","content":"x"}]}"#
        )
        .await
        .status,
        200
    );
    let log = backend.stats().requests_log();
    assert_eq!(
        log[0].path_and_query,
        "/openai/deployments/gpt-4o-eus/chat/completions?api-version=2025-01-01-preview"
    );
    assert_eq!(log[1].path_and_query, "/openai/v1/chat/completions");
    let body: serde_json::Value = serde_json::from_slice(&log[1].body).unwrap();
    assert_eq!(body["model"], "gpt-4o-eus");
}

#[tokio::test]
async fn responses_follow_the_backend_that_created_them() {
    let a = mock("a").await;
    let c = mock("c").await;
    let gw = gateway(&config_yaml(&[b("a", a.url()), b("c", c.url())], "")).await;
    for _ in 0..4 {
        let first = post(
            gw.addr,
            "/openai/v1/responses",
            r#"{"model":"gpt-4o","input":"hi"}"#,
        )
        .await;
        assert_eq!(first.status, 200);
        let home = first.header("x-gateway-backend").to_owned();
        let id = first.json()["id"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            let next = post(
                gw.addr,
                "/openai/v1/responses",
                &format!(r#"{{"model":"gpt-4o","input":"more","previous_response_id":"{id}"}}"#),
            )
            .await;
            assert_eq!(next.status, 200, "{}", next.text());
            assert_eq!(next.header("x-gateway-backend"), home);
        }
        let get = send(request(
            Method::GET,
            gw.addr,
            &format!("/openai/v1/responses/{id}"),
            &[],
            Bytes::new(),
        ))
        .await;
        assert_eq!(get.status, 200);
        assert_eq!(get.header("x-gateway-backend"), home);
    }
}

#[tokio::test]
async fn streamed_responses_are_pinned_too() {
    let a = mock("a").await;
    let c = mock("c").await;
    let gw = gateway(&config_yaml(&[b("a", a.url()), b("c", c.url())], "")).await;
    let first = post(
        gw.addr,
        "/openai/v1/responses",
        r#"{"model":"gpt-4o","input":"hi","stream":true}"#,
    )
    .await;
    let home = first.header("x-gateway-backend").to_owned();
    let text = first.text();
    let at = text.find("\"id\":\"resp_").unwrap() + 6;
    let id = &text[at..at + text[at..].find('"').unwrap()];
    for _ in 0..3 {
        let next = post(
            gw.addr,
            "/openai/v1/responses",
            &format!(r#"{{"model":"gpt-4o","input":"more","previous_response_id":"{id}"}}"#),
        )
        .await;
        assert_eq!(next.status, 200, "{}", next.text());
        assert_eq!(next.header("x-gateway-backend"), home);
    }
}

#[tokio::test]
async fn multipart_bodies_are_forwarded_byte_for_byte() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n".to_vec();
    body.extend((0..=255u8).cycle().take(10_000));
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let reply = send(request(
        Method::POST,
        gw.addr,
        "/openai/deployments/whisper/audio/transcriptions?api-version=2024-10-21",
        &[("content-type", "multipart/form-data; boundary=XyZ")],
        body.clone(),
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let log = backend.stats().requests_log();
    assert_eq!(&log[0].body[..], &body[..]);
    assert!(
        log[0]
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "multipart/form-data; boundary=XyZ")
    );
}

#[tokio::test]
async fn unknown_paths_get_404_in_the_error_shape() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    for path in [
        "/",
        "/v1/chat/completions",
        "/openai/deployments/",
        "/round-robin-simple/openai/v1/models",
    ] {
        let reply = send(request(Method::GET, gw.addr, path, &[], Bytes::new())).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.header("x-gateway-error"), "not_found");
        assert_eq!(reply.json()["error"]["code"], "not_found");
    }
    assert_eq!(backend.stats().requests(), 0);
}

#[tokio::test]
async fn test_mode_prefixes_are_removed_before_forwarding() {
    let backend = mock("a").await;
    let gw = gateway(
        &config_yaml(&[b("a", backend.url())], "")
            .replace("server:\n", "server:\n  test_mode: true\n"),
    )
    .await;
    let reply = post(
        gw.addr,
        "/retry-with-payg/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        CHAT_BODY,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(backend.stats().requests_log()[0].path_and_query, CHAT);
    // The test header shim, on prefixed routes only.
    assert_eq!(reply.header("x-gw-priority"), "high");
    assert!(!reply.header("x-ratelimit-remaining-tokens").is_empty());
    assert_eq!(
        reply.header("x-gw-remaining-tokens"),
        reply.header("x-ratelimit-remaining-tokens")
    );
    let low = send(request(
        Method::POST,
        gw.addr,
        "/prioritization-simple/openai/v1/chat/completions",
        &[("x-priority", "low")],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(low.header("x-gw-priority"), "low");
    let plain = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(plain.header("x-gw-priority"), "");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let backend = mock("a").await;
    let gw = gateway(
        &config_yaml(&[b("a", backend.url())], "")
            .replace("server:\n", "server:\n  max_body_bytes: 1000\n"),
    )
    .await;
    let big = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2000)
    );
    let reply = post(gw.addr, CHAT, &big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("x-gateway-error"), "payload_too_large");
    // Without content-length (chunked) too.
    let streamed = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}{CHAT}", gw.addr))
        .body(Chunks(4))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(streamed).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(backend.stats().requests(), 0);
    let small = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(small.status, 200);
}

/// A body of N 400-byte frames with no declared length (sent chunked).
struct Chunks(usize);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![
            b' ';
            400
        ])))))
    }
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_sent_upstream() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let reply = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("x-request-id", "abc-123")],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(reply.header("x-request-id"), "abc-123");
    let made = post(gw.addr, CHAT, CHAT_BODY).await;
    assert_eq!(made.header("x-request-id").len(), 32);
    let log = backend.stats().requests_log();
    assert!(
        log[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-request-id" && v == "abc-123")
    );
    assert!(
        log[1]
            .headers
            .iter()
            .any(|(k, v)| k == "x-request-id" && v == made.header("x-request-id"))
    );
    // Gateway errors carry it too.
    let missing = send(request(
        Method::GET,
        gw.addr,
        "/nope",
        &[("x-request-id", "r-404")],
        Bytes::new(),
    ))
    .await;
    assert_eq!(missing.header("x-request-id"), "r-404");
}

/// The header contract of a proxied answer, whatever the client's HTTP version: the backend's
/// fields pass on, each gateway field appears exactly once (the backend's own `x-request-id` is
/// replaced), and no hop-by-hop or stale framing field survives: a whole answer carries exactly
/// one `content-length` (its own), a stream none.
fn assert_answer_headers(headers: &http::HeaderMap, backend: &str, streamed: bool) {
    let one = |name: &str| {
        let values: Vec<_> = headers.get_all(name).iter().collect();
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        values[0].to_str().unwrap().to_owned()
    };
    assert_eq!(one("x-ms-region"), backend);
    assert_eq!(one("x-mock-backend"), backend);
    assert_eq!(one("x-gateway-backend"), backend);
    assert_eq!(one("x-gateway-attempts"), "1");
    assert_eq!(one("x-request-id"), "req-7");
    assert!(one("apim-request-id").len() > 8);
    assert!(headers.get("connection").is_none() && headers.get("keep-alive").is_none());
    let lengths = headers.get_all("content-length").iter().count();
    assert_eq!(lengths, usize::from(!streamed), "{headers:?}");
}

#[tokio::test]
async fn answers_carry_backend_fields_once_and_the_gateway_marks() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    for body in [CHAT_BODY, STREAM_BODY] {
        let r = send(request(
            Method::POST,
            gw.addr,
            CHAT,
            &[("x-request-id", "req-7")],
            body.to_owned(),
        ))
        .await;
        assert_eq!(r.status, 200);
        assert_answer_headers(&r.headers, "a", body == STREAM_BODY);
    }
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for body in [CHAT_BODY, STREAM_BODY] {
        let response = client
            .request(request(
                Method::POST,
                gw.addr,
                CHAT,
                &[("x-request-id", "req-7")],
                body.to_owned(),
            ))
            .await
            .unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_answer_headers(response.headers(), "a", body == STREAM_BODY);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&bytes).contains("tok"));
    }
}

/// An h2c connection with no request under way closes after `keepalive_timeout`, as an
/// HTTP/1.1 one does; a stream that lasts longer than that is not cut.
#[tokio::test]
async fn an_idle_h2c_connection_closes_after_keepalive_timeout_but_not_mid_stream() {
    let backend = mock_with(mock::MockOptions {
        chunk_interval: std::time::Duration::from_millis(100),
        chunk_count: 8,
        ..opts("a")
    })
    .await;
    let yaml = config_yaml(&[b("a", backend.url())], "")
        .replace("server:\n", "server:\n  keepalive_timeout: 300ms\n");
    let gw = gateway(&yaml).await;
    let (mut sender, connection) = h2c_connect(gw.addr).await;
    // Eight deltas 100 ms apart: the stream outlasts the keep-alive limit and arrives whole,
    // and while it is under way the connection is not idle: it still takes new requests.
    let stream = request(Method::POST, gw.addr, CHAT, &[], STREAM_BODY.to_owned());
    let response = sender.send_request(stream).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = String::new();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(500) {
        let chunk = next_chunk(&mut body).await.expect("the stream ended early");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let chat = request(Method::POST, gw.addr, CHAT, &[], CHAT_BODY.to_owned());
    let second = sender
        .send_request(chat)
        .await
        .expect("a connection with a stream under way was closed as idle");
    assert_eq!(second.status(), 200);
    while let Some(chunk) = next_chunk(&mut body).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("tok7") && text.contains("[DONE]"), "{text}");
    // Then nothing: the gateway ends the connection (the guard only keeps a broken limit from
    // hanging the test).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), connection).await;
    assert!(ended.is_ok(), "the idle h2c connection was not closed");
}

/// A request body that sends its first bytes, then nothing, and never ends.
struct Stalled(bool);

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0 {
            return std::task::Poll::Pending;
        }
        self.0 = true;
        let first = Bytes::from_static(br#"{"messages":"#);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first))))
    }
}

/// An h2c request whose body falls silent gets 408 after `server.client_timeout`, as an HTTP/1.1
/// one does, and the connection goes on serving.
#[tokio::test]
async fn a_silent_h2c_request_body_times_out_with_408() {
    let backend = mock("a").await;
    let yaml = config_yaml(&[b("a", backend.url())], "")
        .replace("server:\n", "server:\n  client_timeout: 300ms\n");
    let gw = gateway(&yaml).await;
    let (mut sender, _connection) = h2c_connect(gw.addr).await;
    let stalled = http::Request::post(format!("http://{}{CHAT}", gw.addr))
        .header("content-type", "application/json")
        .body(Either::Left(Stalled(false)))
        .unwrap();
    // The guard only keeps a missing limit from hanging the test.
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        sender.send_request(stalled),
    )
    .await
    .expect("no answer to a request whose body stopped: no client_timeout on h2c")
    .unwrap();
    assert_eq!(response.status(), 408);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("client_timeout"),
        "{body:?}"
    );
    let next = request(Method::POST, gw.addr, CHAT, &[], CHAT_BODY.to_owned()).map(Either::Right);
    assert_eq!(sender.send_request(next).await.unwrap().status(), 200);
}

#[tokio::test]
async fn lost_response_state_fails_over_on_invalid_encrypted_content() {
    let a = mock("a").await;
    let c = mock("c").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("a", a.url())
            },
            b("c", c.url()),
        ],
        "",
    ))
    .await;
    let created = post(
        gw.addr,
        "/openai/v1/responses",
        r#"{"model":"gpt-4o","input":"hi"}"#,
    )
    .await;
    assert_eq!(created.header("x-gateway-backend"), "a");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    // Backend a restarts on the same address and has forgotten the response.
    let addr = a.addr();
    a.shutdown().await;
    let _a = mock::MockServer::start_on(
        addr,
        mock::MockOptions {
            api_key: Some(BACKEND_KEY.into()),
            ..opts("a")
        },
    )
    .await
    .unwrap();
    let next = post(
        gw.addr,
        "/openai/v1/responses",
        &format!(r#"{{"model":"gpt-4o","input":"more","previous_response_id":"{id}"}}"#),
    )
    .await;
    // Pinned a said it cannot verify the state, so the request moved on (c cannot either here:
    // the mock keeps no shared state, and its answer is passed through).
    assert_eq!(next.header("x-gateway-attempts"), "2");
    assert_eq!(next.header("x-gateway-backend"), "c");
    assert_eq!(c.stats().requests(), 1);
}

#[tokio::test]
async fn pinned_backend_errors_other_than_lost_state_do_not_move_the_request() {
    let a = mock("a").await;
    let c = mock("c").await;
    let gw = gateway(&config_yaml(
        &[
            B {
                priority: 10,
                ..b("a", a.url())
            },
            b("c", c.url()),
        ],
        "",
    ))
    .await;
    let created = post(
        gw.addr,
        "/openai/v1/responses",
        r#"{"model":"gpt-4o","input":"hi"}"#,
    )
    .await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    a.set_options(mock::MockOptions {
        status_override: Some(429),
        retry_after_ms: 5000,
        api_key: Some(BACKEND_KEY.into()),
        ..opts("a")
    });
    let next = post(
        gw.addr,
        "/openai/v1/responses",
        &format!(r#"{{"model":"gpt-4o","input":"more","previous_response_id":"{id}"}}"#),
    )
    .await;
    assert_eq!(next.status, 429);
    assert!(next.header("retry-after-ms").parse::<u64>().unwrap() > 4000);
    assert_eq!(c.stats().requests(), 0, "the state lives on a only");
}
