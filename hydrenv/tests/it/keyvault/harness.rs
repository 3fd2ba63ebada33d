//! The fetch harness. The fetch tests run the real `SecretClient` + `ManagedIdentityCredential`
//! against the mock identity endpoint (plain HTTP, Container Apps protocol) and the mock Key Vault
//! (HTTPS with a test CA made at start-up). The SDK reads `IDENTITY_ENDPOINT` / `IDENTITY_HEADER`
//! from the process environment only, and tests never change their own environment, so each fetch
//! runs in a child process: this test binary again, filtered to [`child_fetch`], with exactly the
//! variables the scenario needs. The child trusts only the test CA and resolves the vault host to
//! the mock ([`hydrenv::keyvault::http_client_for_test_ca`]); it writes what it fetched (or every
//! error) to a file; the parent asserts on that and on what the mock servers saw.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use hydrenv::keyvault::{
    self, FetchOptions, KeyVaultSource, SecretRef, bulk_references, default_vault, parse_reference,
};
use mock::identity::MockIdentity;
use mock::keyvault::MockKeyVault;
use serde_json::{Value, json};

use super::{IDENTITY_SECRET, VAULT};
use crate::support::env;

/// Test name of [`child_fetch`] inside the `it` binary.
const CHILD_TEST: &str = "keyvault::harness::child_fetch";

// Variables the parent passes to the child (test only; hydrenv knows none of them).
const CHILD_OUT: &str = "KV_TEST_CHILD_OUT";
const CHILD_CA: &str = "KV_TEST_CA_PEM";
const CHILD_RESOLVE: &str = "KV_TEST_RESOLVE";
const CHILD_TIMEOUT_MS: &str = "KV_TEST_TIMEOUT_MS";
const CHILD_RETRIES: &str = "KV_TEST_RETRIES";

/// The mock identity endpoint and the mock vault, wired together.
pub(crate) struct Azure {
    pub(crate) identity: MockIdentity,
    pub(crate) vault: MockKeyVault,
}

impl Azure {
    pub(crate) async fn start() -> Azure {
        let identity = MockIdentity::start(IDENTITY_SECRET).await.unwrap();
        let vault = MockKeyVault::start(identity.tokens()).await.unwrap();
        Azure { identity, vault }
    }

    /// A fetch run with the Container Apps variables pointing at the mocks.
    pub(crate) fn scenario(&self) -> Scenario {
        Scenario {
            vars: env(&[
                ("IDENTITY_ENDPOINT", &self.identity.endpoint()),
                ("IDENTITY_HEADER", self.identity.header()),
                ("KEY_VAULT_NAME", VAULT),
                (CHILD_CA, self.vault.ca_pem()),
                (CHILD_TIMEOUT_MS, "10000"),
                (CHILD_RETRIES, "3"),
            ]),
            resolve: vec![(format!("{VAULT}.vault.azure.net"), self.vault.addr())],
        }
    }
}

/// The environment of one child run.
pub(crate) struct Scenario {
    vars: BTreeMap<String, String>,
    resolve: Vec<(String, SocketAddr)>,
}

/// What the child fetched: values by reference, or every error.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) values: BTreeMap<String, (String, String)>,
    pub(crate) errors: Vec<ChildError>,
    pub(crate) setup_error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct ChildError {
    pub(crate) reference: String,
    pub(crate) kind: String,
    pub(crate) exit_code: u64,
    pub(crate) message: String,
    pub(crate) debug: String,
}

impl Outcome {
    pub(crate) fn value(&self, reference: &str) -> &str {
        &self
            .values
            .get(reference)
            .unwrap_or_else(|| panic!("{reference} not fetched: {self:?}"))
            .0
    }
    pub(crate) fn version(&self, reference: &str) -> &str {
        &self.values[reference].1
    }
    pub(crate) fn only_error(&self) -> &ChildError {
        assert!(self.values.is_empty(), "all or errors: {self:?}");
        assert_eq!(self.errors.len(), 1, "{self:?}");
        &self.errors[0]
    }
    /// No error text (message or Debug) contains any of `values`.
    pub(crate) fn assert_secret_free(&self, values: &[&str]) {
        for error in &self.errors {
            for value in values {
                assert!(
                    !error.message.contains(value) && !error.debug.contains(value),
                    "an error leaks a secret value: {error:?}"
                );
            }
        }
    }
}

impl Scenario {
    /// A run with no vault and no identity: only the variables set on it.
    pub(crate) fn plain() -> Scenario {
        Scenario {
            vars: BTreeMap::new(),
            resolve: Vec::new(),
        }
    }

    pub(crate) fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }
    pub(crate) fn without(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }
    pub(crate) fn resolve(mut self, host: &str, addr: SocketAddr) -> Self {
        self.resolve.retain(|(h, _)| h != host);
        self.resolve.push((host.to_owned(), addr));
        self
    }
    pub(crate) fn timeout(self, timeout: Duration) -> Self {
        let ms = timeout.as_millis().to_string();
        self.var(CHILD_TIMEOUT_MS, &ms)
    }
    pub(crate) fn retries(self, retries: u32) -> Self {
        self.var(CHILD_RETRIES, &retries.to_string())
    }

    /// This test binary, filtered to the ignored child test `test`, with exactly these variables
    /// (plus where to write its outcome).
    pub(crate) fn command(&self, test: &str, out: &std::path::Path) -> Command {
        let resolve: Vec<String> = self
            .resolve
            .iter()
            .map(|(host, addr)| format!("{host}={addr}"))
            .collect();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([test, "--exact", "--ignored", "--test-threads=1"])
            .env_clear()
            .envs(&self.vars)
            .env(CHILD_RESOLVE, resolve.join(","))
            .env(CHILD_OUT, out);
        command
    }

    /// Runs the ignored child test `test` with exactly these variables; returns the outcome it
    /// wrote (the child's output is shown if it fails or writes none).
    pub(crate) async fn run_child(&self, test: &str) -> Value {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("outcome.json");
        let mut command = self.command(test, &out);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "child failed: {stdout}\n{stderr}");
        let text = std::fs::read_to_string(&out)
            .unwrap_or_else(|e| panic!("child wrote no outcome ({e}): {stdout}\n{stderr}"));
        serde_json::from_str(&text).unwrap()
    }

    /// Runs [`child_fetch`] in a child process with exactly these variables.
    pub(crate) async fn run(self) -> Outcome {
        let outcome = self.run_child(CHILD_TEST).await;
        let values = outcome["values"]
            .as_object()
            .map(|values| {
                values
                    .iter()
                    .map(|(reference, fetched)| {
                        let field = |name: &str| fetched[name].as_str().unwrap().to_owned();
                        (reference.clone(), (field("value"), field("version")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let errors = outcome["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| ChildError {
                        reference: e["reference"].as_str().unwrap().to_owned(),
                        kind: e["kind"].as_str().unwrap().to_owned(),
                        exit_code: e["exit_code"].as_u64().unwrap(),
                        message: e["message"].as_str().unwrap().to_owned(),
                        debug: e["debug"].as_str().unwrap().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let setup_error = outcome["setup_error"].as_str().map(str::to_owned);
        Outcome {
            values,
            errors,
            setup_error,
        }
    }
}

/// The child side: resolves every reference of its own environment, as hydrenv does, through
/// `KeyVaultSource::from_env_with_client` (the production credential choice) with an HTTP client
/// that trusts only the test CA. Does nothing unless started by [`Scenario::run`].
#[tokio::test]
#[ignore = "child process of the Key Vault tests; does nothing on its own"]
async fn child_fetch() {
    let Some(out) = child_out() else {
        return;
    };
    let (vars, _) = hydrenv::env::snapshot();
    let outcome = child_outcome(&vars).await;
    std::fs::write(out, outcome.to_string()).unwrap();
}

/// In a child: the Key Vault client hydrenv would build from `vars`, trusting only the test CA.
pub(crate) fn child_source(vars: &BTreeMap<String, String>) -> Result<KeyVaultSource, String> {
    let number = |name: &str| vars[name].parse::<u64>().unwrap();
    let options = FetchOptions {
        timeout: Duration::from_millis(number(CHILD_TIMEOUT_MS)),
        retries: u32::try_from(number(CHILD_RETRIES)).unwrap(),
        retry_delay: Duration::from_millis(1),
    };
    let resolve: Vec<(&str, SocketAddr)> = vars[CHILD_RESOLVE]
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (host, addr) = pair.split_once('=').unwrap();
            (host, addr.parse().unwrap())
        })
        .collect();
    let http = keyvault::http_client_for_test_ca(&vars[CHILD_CA], &resolve).unwrap();
    KeyVaultSource::from_env_with_client(vars, options, http)
}

/// In a child: where the parent wants the outcome written (None: not started by a parent).
pub(crate) fn child_out() -> Option<std::ffi::OsString> {
    std::env::var_os(CHILD_OUT)
}

async fn child_outcome(vars: &BTreeMap<String, String>) -> Value {
    let source = match child_source(vars) {
        Ok(source) => source,
        Err(e) => return json!({ "setup_error": e }),
    };
    let default = default_vault(vars).unwrap();
    let mut refs: Vec<SecretRef> = vars
        .values()
        .filter_map(|value| parse_reference(value, default.as_deref()).unwrap())
        .collect();
    refs.extend(
        bulk_references(vars, default.as_deref())
            .unwrap()
            .into_iter()
            .map(|(_, r)| r),
    );
    match source.fetch(&refs).await {
        Ok(fetched) => {
            let values: serde_json::Map<String, Value> = fetched
                .iter()
                .map(|(r, f)| {
                    let fetched = json!({"value": f.value.expose(), "version": f.version});
                    (r.to_string(), fetched)
                })
                .collect();
            json!({ "values": values })
        }
        Err(errors) => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| {
                    json!({
                        "reference": e.reference.to_string(),
                        "kind": format!("{:?}", e.kind),
                        "exit_code": e.kind.exit_code(),
                        "message": e.message,
                        "debug": format!("{e:?}"),
                    })
                })
                .collect();
            json!({ "errors": errors })
        }
    }
}
