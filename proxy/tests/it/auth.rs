//! Client authentication and header hygiene toward backends.

use bytes::Bytes;
use http::Method;

use crate::harness::*;

const CLIENTS: &str = "clients:\n  require_auth: true\n  consumers:\n    - { name: team-a, key: client-key-a }\n    - { name: team-b, key: client-key-b, lane: low }\n";

#[tokio::test]
async fn every_credential_form_is_accepted() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CLIENTS)).await;
    for header in [
        ("authorization", "Bearer client-key-a"),
        ("api-key", "client-key-a"),
        ("ocp-apim-subscription-key", "client-key-a"),
    ] {
        let reply = send(request(Method::POST, gw.addr, CHAT, &[header], CHAT_BODY)).await;
        assert_eq!(reply.status, 200, "{header:?}");
    }
    // The client's credentials never reach the backend; the backend key does.
    for r in backend.stats().requests_log() {
        assert!(
            r.headers.iter().all(|(_, v)| !v.contains("client-key")),
            "{:?}",
            r.headers
        );
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "api-key" && v == BACKEND_KEY)
        );
        assert!(
            !r.headers
                .iter()
                .any(|(k, _)| k == "authorization" || k == "ocp-apim-subscription-key")
        );
    }
}

#[tokio::test]
async fn missing_and_wrong_keys_get_401() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CLIENTS)).await;
    let missing = post(gw.addr, CHAT, CHAT_BODY).await;
    let wrong = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("api-key", "client-key-c")],
        CHAT_BODY,
    ))
    .await;
    let wrong_bearer = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("authorization", "Bearer nope")],
        CHAT_BODY,
    ))
    .await;
    for reply in [&missing, &wrong, &wrong_bearer] {
        assert_eq!(reply.status, 401);
        assert_eq!(reply.header("x-gateway-error"), "unauthorized");
        assert_eq!(reply.json()["error"]["code"], "unauthorized");
        assert!(!reply.text().contains("client-key"));
    }
    assert_eq!(backend.stats().requests(), 0);
}

#[tokio::test]
async fn clients_cannot_set_internal_headers() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], "")).await;
    let reply = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[
            ("x-gateway-backend", "evil"),
            ("x-gateway-attempts", "9"),
            ("api-key", "client-supplied"),
            ("x-custom", "kept"),
        ],
        CHAT_BODY,
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-gateway-backend"), "a");
    assert_eq!(reply.header("x-gateway-attempts"), "1");
    let r = &backend.stats().requests_log()[0];
    assert!(!r.headers.iter().any(|(k, _)| k.starts_with("x-gateway-")));
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "api-key" && v == BACKEND_KEY)
    );
    assert!(!r.headers.iter().any(|(_, v)| v == "client-supplied"));
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-custom" && v == "kept")
    );
}

#[tokio::test]
async fn backend_key_and_client_keys_never_appear_in_gateway_answers_or_metrics() {
    let backend = mock("a").await;
    let gw = gateway(&config_yaml(&[b("a", backend.url())], CLIENTS)).await;
    let ok = send(request(
        Method::POST,
        gw.addr,
        CHAT,
        &[("api-key", "client-key-a")],
        CHAT_BODY,
    ))
    .await;
    let m = metrics(&gw).await;
    let denied = send(request(
        Method::GET,
        gw.addr,
        "/openai/v1/models",
        &[("api-key", "client-key-zzz")],
        Bytes::new(),
    ))
    .await;
    for text in [ok.text(), m, denied.text(), format!("{:?}", ok.headers)] {
        assert!(
            !text.contains(BACKEND_KEY) && !text.contains("client-key"),
            "{text}"
        );
    }
}
