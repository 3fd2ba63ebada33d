//! The whole hydrenv pipeline with Key Vault references, against the mock vault and identity
//! (in a child process, see [`super::harness`]): values substituted into the release and redacted
//! everywhere else; a missing secret, an unreachable vault or a refusing identity endpoint stop
//! everything with the right exit code, a message naming variable, vault and secret, and the
//! previous release untouched; `supervise` picks up a new secret version and signals the proxy.

use std::path::Path;
use std::time::{Duration, Instant};

use hydrenv::app::{self, Vault};
use hydrenv::render::Templates;
use serde_json::{Value, json};

use super::harness::{Azure, Scenario, child_out, child_source};
use crate::support::tree;

pub(super) const CHILD_RENDER: &str = "keyvault::pipeline::child_render";
const CHILD_SUPERVISE: &str = "keyvault::pipeline::child_supervise";
const BACKEND_SECRET: &str = "sk-from-the-vault-7d1e";
const CLIENT_SECRET: &str = "ck-from-the-vault-2b8a";

/// Runs a render + release in a child; returns its outcome.
async fn render(scenario: Scenario) -> Value {
    scenario.run_child(CHILD_RENDER).await
}

/// The mocks, the vault holding both secrets [`with_refs`] refers to.
async fn azure_with_secrets() -> Azure {
    let azure = Azure::start().await;
    azure.vault.set_secret("aoai-key", BACKEND_SECRET);
    azure
        .vault
        .set_secret("gateway-client-key-0", CLIENT_SECRET);
    azure
}

fn with_refs(scenario: Scenario, root: &Path) -> Scenario {
    scenario
        .var("SHARED_ROOT", root.to_str().unwrap())
        .var("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com")
        .var("AZURE_OPENAI_KEY_0", "kv://aoai-key")
        .var("GATEWAY_CLIENT_NAME_0", "team-a")
        .var("HYDRENV_KEY_VAULT_SECRETS", "gateway-client-key-0")
}

#[tokio::test]
async fn references_resolve_into_the_release_and_stay_redacted_elsewhere() {
    let azure = azure_with_secrets().await;
    let root = tempfile::tempdir().unwrap();
    let outcome = render(with_refs(azure.scenario(), root.path())).await;
    assert_eq!(outcome["code"], 0, "{outcome}");
    let gateway = std::fs::read_to_string(root.path().join("current/gateway.yaml")).unwrap();
    let config = proxy::GatewayConfig::parse("gateway.yaml", &gateway).unwrap();
    assert_eq!(config.backends[0].api_key.expose(), BACKEND_SECRET);
    assert_eq!(config.clients.consumers[0].key.expose(), CLIENT_SECRET);
    let dry = outcome["dry_run"].as_str().unwrap();
    assert!(
        dry.contains("<redacted:AZURE_OPENAI_KEY_0>")
            && dry.contains("<redacted:GATEWAY_CLIENT_KEY_0>"),
        "{dry}"
    );
    for place in [
        dry,
        &std::fs::read_to_string(root.path().join("current/rendered.redacted")).unwrap(),
    ] {
        assert!(!place.contains(BACKEND_SECRET) && !place.contains(CLIENT_SECRET));
    }
    assert_eq!(azure.vault.reads("aoai-key"), 1);
}

/// A release made from plain values, then a render that must fail without touching it.
async fn fails_keeping_the_release(scenario: Scenario, root: &Path, code: u64, expected: &[&str]) {
    let good = render(scenario_without_refs(root)).await;
    assert_eq!(good["code"], 0, "{good}");
    let before = tree(root);
    let outcome = render(scenario).await;
    assert_eq!(outcome["code"], code, "{outcome}");
    let problems = outcome["problems"].to_string();
    for e in expected {
        assert!(problems.contains(e), "expected `{e}` in {problems}");
    }
    for secret in [BACKEND_SECRET, CLIENT_SECRET] {
        assert!(
            !problems.contains(secret),
            "a problem shows a secret: {problems}"
        );
    }
    assert_eq!(tree(root), before, "the previous release changed");
}

fn scenario_without_refs(root: &Path) -> Scenario {
    // No references: the child needs no vault at all.
    Scenario::plain()
        .var("SHARED_ROOT", root.to_str().unwrap())
        .var("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com")
        .var("AZURE_OPENAI_KEY_0", "sk-plain")
}

#[tokio::test]
async fn a_missing_secret_is_a_bad_configuration_naming_variable_vault_and_secret() {
    let azure = Azure::start().await;
    azure
        .vault
        .set_secret("gateway-client-key-0", CLIENT_SECRET);
    let root = tempfile::tempdir().unwrap();
    fails_keeping_the_release(
        with_refs(azure.scenario(), root.path()),
        root.path(),
        64,
        &["AZURE_OPENAI_KEY_0: Key Vault secret kv-hydrenv-test.vault.azure.net/secrets/aoai-key"],
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_vault_is_a_dependency_failure() {
    let azure = Azure::start().await;
    let root = tempfile::tempdir().unwrap();
    let scenario = with_refs(azure.scenario(), root.path())
        .resolve(
            "kv-hydrenv-test.vault.azure.net",
            "127.0.0.1:1".parse().unwrap(),
        )
        .retries(1);
    fails_keeping_the_release(
        scenario,
        root.path(),
        69,
        &[
            "AZURE_OPENAI_KEY_0",
            "GATEWAY_CLIENT_KEY_0",
            "secrets/aoai-key",
        ],
    )
    .await;
}

#[tokio::test]
async fn an_identity_endpoint_refusing_is_a_dependency_failure() {
    let azure = azure_with_secrets().await;
    azure.identity.refuse_with(Some(403));
    let root = tempfile::tempdir().unwrap();
    fails_keeping_the_release(
        with_refs(azure.scenario(), root.path()),
        root.path(),
        69,
        &["AZURE_OPENAI_KEY_0", "token"],
    )
    .await;
}

#[tokio::test]
async fn supervise_picks_up_a_new_secret_version_and_signals_the_proxy() {
    let azure = azure_with_secrets().await;
    let root = tempfile::tempdir().unwrap();
    let scenario = with_refs(azure.scenario(), &root.path().join("shared"));
    // Stopped with SIGTERM even when an assertion fails (SIGKILL would orphan the stand-in proxy).
    let (mut child, marker, out) = supervise(scenario, root.path());
    let gateway = root.path().join("shared/current/gateway.yaml");
    wait_for(|| read(&marker).contains("ready")).await;
    assert!(read(&gateway).contains(BACKEND_SECRET));
    azure
        .vault
        .set_secret("aoai-key", "sk-rotated-in-the-vault");
    wait_for(|| read(&gateway).contains("sk-rotated-in-the-vault")).await;
    wait_for(|| read(&marker).contains("hup")).await;
    // Refresh polls reuse the client and its token: one token for the first render and all polls.
    assert_eq!(azure.identity.token_requests(), 1);
    let output = child.stop().await;
    let outcome: Value = serde_json::from_str(&read(&out)).unwrap();
    assert_eq!(outcome["code"], 7, "the proxy's exit code");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for secret in [BACKEND_SECRET, CLIENT_SECRET, "sk-rotated-in-the-vault"] {
        assert!(
            !stderr.contains(secret),
            "hydrenv logged a secret: {stderr}"
        );
    }
}

/// Starts `hydrenv supervise` (in a child) over the stand-in proxy; returns it and the marker
/// file the stand-in writes `ready`, `hup` and `term` to.
fn supervise(
    scenario: Scenario,
    root: &Path,
) -> (Terminate, std::path::PathBuf, std::path::PathBuf) {
    let marker = root.join("hups");
    let out = root.join("outcome.json");
    let child = scenario
        .var("HYDRENV_REFRESH_SECONDS", "1")
        .var("PATH", &std::env::var("PATH").unwrap_or_default())
        .var("MARKER", marker.to_str().unwrap())
        .command(CHILD_SUPERVISE, &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (Terminate(Some(child)), marker, out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn sigterm_reaches_the_proxy_while_a_refresh_waits_on_a_hung_vault() {
    let azure = azure_with_secrets().await;
    let root = tempfile::tempdir().unwrap();
    // The vault client would give up on a hung request only after 120 s, far beyond what
    // `wait_for` allows: the signal must not wait for it.
    let scenario =
        with_refs(azure.scenario(), &root.path().join("shared")).timeout(Duration::from_secs(120));
    let (mut child, marker, out) = supervise(scenario, root.path());
    wait_for(|| read(&marker).contains("ready")).await;
    // From now on the vault takes connections and never answers: the next refresh poll hangs.
    azure.vault.set_down(Some(mock::keyvault::VaultDown::Hang));
    let polls_before = azure.vault.requests().len();
    // A refresh poll reached the vault and waits for an answer that never comes.
    wait_for(|| azure.vault.requests().len() > polls_before).await;
    let pid = nix::unistd::Pid::from_raw(child.0.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // Forwarded at once, not after the vault client gives up.
    wait_for(|| read(&marker).contains("term")).await;
    child.stop().await;
    let outcome: Value = serde_json::from_str(&read(&out)).unwrap();
    assert_eq!(outcome["code"], 7, "the proxy's exit code");
}

#[tokio::test]
async fn a_reference_added_in_the_env_dir_starts_refresh_polls() {
    let azure = azure_with_secrets().await;
    let root = tempfile::tempdir().unwrap();
    let env_dir = root.path().join("env");
    std::fs::create_dir(&env_dir).unwrap();
    // No reference at start: nothing to poll.
    let scenario = azure
        .scenario()
        .var("SHARED_ROOT", root.path().join("shared").to_str().unwrap())
        .var("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com")
        .var("AZURE_OPENAI_KEY_0", "sk-literal")
        .var("HYDRENV_ENV_DIR", env_dir.to_str().unwrap());
    let (mut child, marker, _) = supervise(scenario, root.path());
    let gateway = root.path().join("shared/current/gateway.yaml");
    wait_for(|| read(&marker).contains("ready")).await;
    assert!(read(&gateway).contains("sk-literal"));
    std::fs::write(env_dir.join("AZURE_OPENAI_KEY_0"), "kv://aoai-key").unwrap();
    wait_for(|| read(&gateway).contains(BACKEND_SECRET)).await;
    // The render that added the reference turned refresh polls on: a rotation is picked up.
    azure
        .vault
        .set_secret("aoai-key", "sk-rotated-after-the-env-change");
    wait_for(|| read(&gateway).contains("sk-rotated-after-the-env-change")).await;
    child.stop().await;
}

/// A child process that gets SIGTERM and is waited for when dropped.
struct Terminate(Option<std::process::Child>);

impl Terminate {
    fn term(child: &std::process::Child) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }

    /// SIGTERM, then its exit and output.
    async fn stop(&mut self) -> std::process::Output {
        let child = self.0.take().unwrap();
        Self::term(&child);
        tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap()
    }
}

impl Drop for Terminate {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            Self::term(&child);
            let _ = child.wait();
        }
    }
}

/// Polls without blocking the runtime (the mock vault and identity server run on it).
async fn wait_for(mut check: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < give_up, "not reached within 30 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Child side of [`render`]: the pipeline as `hydrenv render` runs it, with the test vault client.
#[tokio::test]
#[ignore = "child process of the Key Vault pipeline tests; does nothing on its own"]
async fn child_render() {
    let Some(out) = child_out() else { return };
    let (vars, _) = hydrenv::env::snapshot();
    let templates = Templates::embedded().unwrap();
    let source = vars
        .contains_key("KEY_VAULT_NAME")
        .then(|| child_source(&vars).unwrap());
    let vault = source.as_ref().map_or(Vault::FromEnv, Vault::Source);
    let outcome = match app::prepare(vars, &templates, vault).await {
        Ok(render) => match hydrenv::cli::publish(&render.settings.shared_root.clone(), &render) {
            Ok(_) => json!({ "code": 0, "dry_run": render.redacted }),
            Err(f) => json!({ "code": f.code, "problems": f.problems }),
        },
        Err(f) => json!({ "code": f.code, "problems": f.problems }),
    };
    std::fs::write(out, outcome.to_string()).unwrap();
}

/// Child side of the supervise test: `hydrenv supervise` with the test vault client, over a
/// stand-in proxy that records SIGHUPs and exits 7 on SIGTERM.
#[tokio::test]
#[ignore = "child process of the Key Vault pipeline tests; does nothing on its own"]
async fn child_supervise() {
    let Some(out) = child_out() else { return };
    let (vars, _) = hydrenv::env::snapshot();
    let source = child_source(&vars).unwrap();
    let script = r#"trap 'echo hup >> "$MARKER"' HUP; trap 'echo term >> "$MARKER"; exit 7' TERM; echo ready >> "$MARKER"; while :; do sleep 0.05; done"#;
    let command = ["sh", "-c", script].map(str::to_owned).to_vec();
    let code =
        hydrenv::supervise::run(vars, Templates::embedded().unwrap(), command, Some(source)).await;
    let code = code.unwrap_or_else(|f| f.code);
    std::fs::write(out, json!({ "code": code }).to_string()).unwrap();
}
