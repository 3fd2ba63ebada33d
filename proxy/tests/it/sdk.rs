//! The official `openai` Python SDK (legacy `AzureOpenAI` and v1 `OpenAI` clients) through the
//! gateway to two mock backends, one of which throttles every request
//! (with a short retry-after, so the gateway keeps trying it and failing over). The SDK runs
//! with its own retries off: every call must succeed on the first try.

use std::path::PathBuf;
use std::process::Command;

use mock::MockOptions;

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

#[tokio::test(flavor = "multi_thread")]
async fn official_openai_sdk_through_the_gateway() {
    let throttling = mock_with(MockOptions {
        status_override: Some(429),
        retry_after_ms: 50,
        ..opts("throttling")
    })
    .await;
    let healthy = mock("healthy").await;
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
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK run failed:\n{stdout}\n{stderr}"
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
}
