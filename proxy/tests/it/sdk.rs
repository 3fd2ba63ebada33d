//! The official `openai` Python SDK (legacy `AzureOpenAI` and v1 `OpenAI` clients) through the
//! gateway to two mock backends, one of which throttles every request
//! (with a short retry-after, so the gateway keeps trying it and failing over). The SDK runs
//! with its own retries off: every call must succeed on the first try.
//!
//! Once with backends writing JSON as Azure does, and once each with backends writing it as
//! Python's `json.dumps` does (`"choices": []`) and pretty-printed with shuffled keys (an SSE
//! chunk over several `data:` lines): the gateway must read usage, hide what the client did not
//! ask for and keep Responses working whatever the layout.

use std::path::PathBuf;
use std::process::Command;

use mock::{JsonStyle, MockOptions};

use crate::harness::*;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SDK_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
    assert!(
        venv.exists(),
        "no SDK venv: run scripts/setup-python.sh (scripts/test.sh does it for you)"
    );
    venv
}

/// Runs the SDK script `rounds` times over through a gateway to backends writing JSON in
/// `json_style` (keys shuffled when `shuffle_keys`).
async fn run_sdk(json_style: JsonStyle, shuffle_keys: bool, rounds: u32) {
    let layout = |options: MockOptions| MockOptions {
        json_style,
        shuffle_keys,
        ..options
    };
    let throttling = mock_with(layout(MockOptions {
        status_override: Some(429),
        retry_after_ms: 50,
        ..opts("throttling")
    }))
    .await;
    let healthy = mock_with(layout(opts("healthy"))).await;
    let gw = gateway(&config_yaml(
        &[
            b("throttling", throttling.url()),
            b("healthy", healthy.url()),
        ],
        "clients:\n  require_auth: true\n  consumers:\n    - { name: sdk, key: sdk-client-key }\n",
    ))
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sdk/sdk_e2e.py");
    let url = format!("http://{}", gw.addr);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("GATEWAY_KEY", "sdk-client-key")
            .env("SDK_ROUNDS", rounds.to_string())
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK run failed ({json_style:?}, shuffled keys: {shuffle_keys}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("AzureOpenAI (legacy deployments): ok")
            && stdout.contains("OpenAI (v1): ok"),
        "{stdout}"
    );
    // The throttling backend really throttled, and the gateway moved those requests on.
    assert!(throttling.stats().status_count(429) > 0);
    let m = metrics(&gw).await;
    assert!(
        metric_sum(
            &m,
            "gateway_failovers_total",
            &["from_backend=\"throttling\""]
        ) > 0.0
    );
    usage_is_counted_and_hidden(&gw).await;
}

/// A chat stream whose client did not ask for usage: the gateway asked on its behalf, read the
/// usage from the last chunk (whatever its layout) and hid that chunk and the `usage` members.
async fn usage_is_counted_and_hidden(gw: &proxy::RunningGateway) {
    let completion = async || {
        let m = metrics(gw).await;
        metric_sum(&m, "gateway_tokens_total", &["kind=\"completion\""])
    };
    let before = completion().await;
    let headers = [
        ("content-type", "application/json"),
        ("api-key", "sdk-client-key"),
    ];
    let reply = send(request(
        http::Method::POST,
        gw.addr,
        CHAT,
        &headers,
        STREAM_BODY,
    ))
    .await;
    let text = reply.text();
    assert!(text.contains("tok7"), "{text}");
    assert!(
        !text.contains("\"usage\""),
        "usage the client did not ask for: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The mock's completion is eight tokens. They are counted when the connection is done with
    // the answer, which may be a moment after the client read its last byte.
    wait_until(async || completion().await - before >= 8.0).await;
    assert_eq!(completion().await - before, 8.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn official_openai_sdk_through_the_gateway() {
    run_sdk(JsonStyle::Compact, false, 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn official_openai_sdk_with_backends_writing_json_dumps_spacing() {
    run_sdk(JsonStyle::Spaced, false, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn official_openai_sdk_with_backends_writing_pretty_json_with_shuffled_keys() {
    run_sdk(JsonStyle::Pretty, true, 1).await;
}
