//! Helpers: environments as maps, the hydrenv binary with a clean environment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use hydrenv::env::Env;
use hydrenv::render::Templates;

pub const BIN: &str = env!("CARGO_BIN_EXE_hydrenv");

pub fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A one-backend environment plus extra variables.
pub fn minimal(extra: &[(&str, &str)]) -> Env {
    let mut e = env(&[
        ("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com"),
        ("AZURE_OPENAI_KEY_0", "sk-backend-0-secret"),
    ]);
    e.extend(env(extra));
    e
}

/// The gateway config the proxy reads from a render of `env`.
pub fn gateway_config(env: &Env) -> proxy::GatewayConfig {
    let render = hydrenv::app::render(env, &Default::default(), &Templates::embedded().unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    let file = render
        .files
        .iter()
        .find(|f| f.name == "gateway.yaml")
        .unwrap();
    proxy::GatewayConfig::parse("gateway.yaml", &file.contents).unwrap()
}

/// Renders in memory (no Key Vault); returns the dry-run text or the problems.
pub fn dry_run(env: &Env) -> Result<String, String> {
    hydrenv::app::render(env, &BTreeSet::new(), &Templates::embedded().unwrap())
        .map(|render| render.redacted)
        .map_err(|f| f.to_string())
}

/// Runs the binary with exactly these variables.
pub fn hydrenv(args: &[&str], vars: &BTreeMap<String, String>) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(vars)
        .output()
        .unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, with contents and mode, for before/after comparisons.
pub fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let key = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.file_type().is_symlink() {
                out.insert(
                    key,
                    (
                        std::fs::read_link(&path)
                            .unwrap()
                            .display()
                            .to_string()
                            .into_bytes(),
                        0,
                    ),
                );
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    key,
                    (
                        std::fs::read(&path).unwrap(),
                        meta.permissions().mode() & 0o777,
                    ),
                );
            }
        }
    }
    out
}
