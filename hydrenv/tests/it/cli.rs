//! The binary end to end: dry runs, explain, docs, diff, and `run` starting the real proxy.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::*;

#[test]
fn dry_run_is_byte_identical_across_runs_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut vars = minimal(&[
        ("GATEWAY_CLIENT_NAME_0", "a"),
        ("GATEWAY_CLIENT_KEY_0", "client-secret-0"),
    ]);
    vars.insert("SHARED_ROOT".into(), root.path().display().to_string());
    let first = hydrenv(&["render", "--dry-run"], &vars);
    let second = hydrenv(&["render", "--dry-run"], &vars);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(first.stdout, second.stdout);
    let text = stdout(&first);
    assert!(
        text.starts_with("==> gateway.yaml (mode 0600, from templates/gateway.yaml.tera) <==\n"),
        "{text}"
    );
    assert!(text.contains("==> otel-collector.yaml (mode 0644"));
    assert!(!text.contains("client-secret-0") && !text.contains("sk-backend-0-secret"));
    assert!(text.contains("<redacted:GATEWAY_CLIENT_KEY_0>"));
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn explain_lists_variables_with_redacted_values_and_the_routing() {
    let vars = minimal(&[
        ("AZURE_OPENAI_PRIORITY_0", "10"),
        ("AZURE_OPENAI_ENDPOINT_1", "https://wus"),
        ("AZURE_OPENAI_KEY_1", "k1"),
    ]);
    let out = hydrenv(&["explain"], &vars);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("AZURE_OPENAI_KEY_0=<redacted:AZURE_OPENAI_KEY_0>"),
        "{text}"
    );
    assert!(!text.contains("sk-backend-0-secret"));
    assert!(text.contains("ENABLE_OIDC") && text.contains("not built yet: OIDC"));
    assert!(text.contains("tier 1 (priority 10), used first"), "{text}");
    assert!(
        text.contains("tier 2 (priority 5), used only when every backend above"),
        "{text}"
    );
}

#[test]
fn configuration_guide_is_generated_from_the_code() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap_or_default();
    assert!(
        committed == hydrenv::explain::configuration_doc(),
        "docs/configuration.md is stale: run `cargo run -p hydrenv -- docs > docs/configuration.md`"
    );
}

#[test]
fn diff_shows_what_a_new_render_would_change_with_secrets_redacted() {
    let root = tempfile::tempdir().unwrap();
    let mut vars = minimal(&[]);
    vars.insert("SHARED_ROOT".into(), root.path().display().to_string());
    assert!(hydrenv(&["render"], &vars).status.success());
    assert_eq!(stdout(&hydrenv(&["diff"], &vars)), "");
    vars.insert("AZURE_OPENAI_WEIGHT_0".into(), "4".into());
    vars.insert("AZURE_OPENAI_KEY_0".into(), "sk-rotated-secret".into());
    let text = stdout(&hydrenv(&["diff"], &vars));
    assert!(text.contains("-    weight: 1\n+    weight: 4\n"), "{text}");
    assert!(
        !text.contains("sk-rotated-secret") && !text.contains("sk-backend-0-secret"),
        "{text}"
    );
}

/// The proxy binary built next to hydrenv (the workspace test run builds it).
fn proxy_next_to_hydrenv() -> std::path::PathBuf {
    let proxy = std::path::Path::new(BIN).with_file_name("proxy");
    assert!(
        proxy.exists(),
        "{} is missing: build the workspace (`cargo build --bins`) first",
        proxy.display()
    );
    proxy
}

#[tokio::test]
async fn run_renders_a_release_and_execs_the_bundled_proxy() {
    proxy_next_to_hydrenv();
    let backend = mock::MockServer::start(mock::MockOptions {
        api_key: Some("sk-backend-0-secret".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut vars = minimal(&[
        ("GATEWAY_LISTEN", "127.0.0.1:0"),
        ("GATEWAY_ADMIN_LISTEN", "127.0.0.1:0"),
        ("GATEWAY_LOG_MODE", "dev"),
    ]);
    vars.insert("AZURE_OPENAI_ENDPOINT_0".into(), backend.url());
    vars.insert("SHARED_ROOT".into(), root.path().display().to_string());
    let mut child = Command::new(BIN)
        .arg("run")
        .env_clear()
        .envs(&vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines
            .next()
            .expect("proxy exited before listening")
            .unwrap();
        if line.contains("gateway listening") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    // exec: the proxy replaced hydrenv (same pid).
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("proxy"), "{exe:?}");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("x-gateway-backend: backend-0"),
        "{response}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut stderr_text = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr_text).unwrap();
    assert!(stderr_text.contains("hydrenv: released"), "{stderr_text}");
    assert!(!stderr_text.contains("sk-backend-0-secret"));
}
