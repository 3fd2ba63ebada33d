//! The pipeline of `spec/hydrenv.md`, in order: snapshot → resolve secrets → group and type →
//! render → validate → (write). The CLI commands are thin wrappers around these steps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::env::{Env, EnvError};
use crate::fields;
use crate::keyvault::{self, KeyVaultSource, SecretRef};
use crate::render::{RenderError, RenderedFile, Templates, validate};
use crate::settings::{self, Settings};
use crate::vars;

pub const EXIT_CONFIG: u8 = 64;
pub const EXIT_UNAVAILABLE: u8 = 69;
pub const EXIT_INTERNAL: u8 = 70;

/// Why hydrenv stopped: an exit code and every problem found, each naming its culprit.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub problems: Vec<String>,
}

impl Failure {
    pub fn config(problems: Vec<String>) -> Self {
        Self {
            code: EXIT_CONFIG,
            problems,
        }
    }
    pub fn one(code: u8, problem: impl Into<String>) -> Self {
        Self {
            code,
            problems: vec![problem.into()],
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "error: {p}")?;
        }
        Ok(())
    }
}

/// A complete render, in memory.
#[derive(Debug)]
pub struct Render {
    pub settings: Settings,
    /// The settings as shown (free text of secrets and Key Vault values as `<redacted:VARIABLE>`),
    /// for anything printed from them (`check`'s routing table).
    pub shown: Settings,
    /// The files with real values (what a release holds).
    pub files: Vec<RenderedFile>,
    /// The dry-run text: every file under a header line, secrets as `<redacted:VARIABLE>`.
    pub redacted: String,
    /// Key Vault secrets used, with the version that was read.
    pub secret_versions: BTreeMap<SecretRef, String>,
}

/// Where Key Vault secrets come from.
pub enum Vault<'a> {
    /// Build the client from the environment (production).
    FromEnv,
    /// A given source (tests: a local vault over TLS with a test CA).
    Source(&'a KeyVaultSource),
}

/// Layers `HYDRENV_ENV_DIR` (one file per variable, named like the variable) over the environment.
pub fn layer_env_dir(mut env: Env) -> Result<Env, Failure> {
    let Some(dir) = env
        .get("HYDRENV_ENV_DIR")
        .filter(|d| !d.trim().is_empty())
        .cloned()
    else {
        return Ok(env);
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        Failure::one(
            EXIT_CONFIG,
            format!("HYDRENV_ENV_DIR: cannot read {dir}: {e}"),
        )
    })?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let valid =
            !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid || !entry.path().is_file() {
            continue;
        }
        let value = std::fs::read_to_string(entry.path()).map_err(|e| {
            Failure::one(
                EXIT_CONFIG,
                format!("{name} (from HYDRENV_ENV_DIR): cannot read: {e}"),
            )
        })?;
        env.insert(name, value.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(env)
}

/// Variables and the Key Vault secret each refers to.
pub type References = Vec<(String, SecretRef)>;

/// Finds Key Vault references (single values and the bulk list).
pub fn references(env: &Env) -> Result<(References, References), Failure> {
    let mut problems = Vec::new();
    let default_vault = keyvault::default_vault(env).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let mut single = Vec::new();
    for (name, value) in env {
        match keyvault::parse_reference(value, default_vault.as_deref()) {
            Ok(Some(reference)) => single.push((name.clone(), reference)),
            Ok(None) => {}
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    let bulk = keyvault::bulk_references(env, default_vault.as_deref()).unwrap_or_else(|e| {
        problems.push(format!("HYDRENV_KEY_VAULT_SECRETS: {e}"));
        Vec::new()
    });
    for (name, _) in &bulk {
        if env.contains_key(name) {
            problems.push(format!(
                "{name}: set directly and imported by HYDRENV_KEY_VAULT_SECRETS; keep one"
            ));
        }
    }
    if problems.is_empty() {
        Ok((single, bulk))
    } else {
        Err(Failure::config(problems))
    }
}

/// A Key Vault client built from the environment, when any value refers to Key Vault.
pub fn vault_from_env(env: &Env) -> Result<Option<KeyVaultSource>, Failure> {
    let env = layer_env_dir(env.clone())?;
    let (single, bulk) = references(&env)?;
    if single.is_empty() && bulk.is_empty() {
        return Ok(None);
    }
    source_from_env(&env).map(Some)
}

/// The Key Vault client hydrenv's own settings describe (credential from the environment).
fn source_from_env(env: &Env) -> Result<KeyVaultSource, Failure> {
    KeyVaultSource::from_env(env, keyvault::FetchOptions::default())
        .map_err(|e| Failure::one(EXIT_CONFIG, format!("Key Vault: {e}")))
}

/// Step 2: replaces every reference by its secret. Returns the environment and the variables
/// whose values came from Key Vault (they are redacted like secrets).
pub async fn resolve_secrets(
    mut env: Env,
    vault: Vault<'_>,
) -> Result<(Env, BTreeSet<String>, BTreeMap<SecretRef, String>), Failure> {
    let (single, bulk) = references(&env)?;
    if single.is_empty() && bulk.is_empty() {
        return Ok((env, BTreeSet::new(), BTreeMap::new()));
    }
    let owned;
    let source = match vault {
        Vault::Source(source) => source,
        Vault::FromEnv => {
            owned = source_from_env(&env)?;
            &owned
        }
    };
    let mut wanted: Vec<SecretRef> = single.iter().chain(&bulk).map(|(_, r)| r.clone()).collect();
    wanted.sort();
    wanted.dedup();
    let fetched = source.fetch(&wanted).await.map_err(|errors| {
        let code = errors
            .iter()
            .map(|e| e.kind.exit_code())
            .max()
            .unwrap_or(EXIT_UNAVAILABLE);
        let problems = errors
            .iter()
            .map(|e| {
                let users: Vec<&str> = single
                    .iter()
                    .chain(&bulk)
                    .filter(|(_, r)| *r == e.reference)
                    .map(|(n, _)| n.as_str())
                    .collect();
                format!(
                    "{}: Key Vault secret {}: {}",
                    users.join(", "),
                    e.reference,
                    e.message
                )
            })
            .collect();
        Failure { code, problems }
    })?;
    let mut from_vault = BTreeSet::new();
    for (name, reference) in single.iter().chain(&bulk) {
        if let Some(secret) = fetched.get(reference) {
            env.insert(name.clone(), secret.value.expose().to_owned());
            from_vault.insert(name.clone());
        }
    }
    let versions = fetched.into_iter().map(|(r, f)| (r, f.version)).collect();
    Ok((env, from_vault, versions))
}

/// Steps 3–5 on a secret-resolved environment. `from_vault`: variables whose value came from
/// Key Vault; like secrets, their free text is shown as `<redacted:VARIABLE>` (see
/// `settings::reader` for why typed values stay visible).
pub fn render(
    env: &Env,
    from_vault: &BTreeSet<String>,
    templates: &Templates,
) -> Result<Render, Failure> {
    let hidden: BTreeSet<&str> = env
        .keys()
        .filter(|k| vars::is_secret(k) || from_vault.contains(*k))
        .map(String::as_str)
        .collect();
    let settings = settings::read(env, &hidden)
        .map_err(|errors| Failure::config(sanitize(errors, env, &hidden)))?;
    let shown_settings = settings::read_shown(env, &hidden)
        .map_err(|errors| Failure::config(sanitize(errors, env, &hidden)))?;
    let err = |e: RenderError| Failure::one(EXIT_CONFIG, e.to_string());
    let mut files = templates.render(&settings).map_err(err)?;
    let shown = templates.render(&shown_settings).map_err(err)?;
    validate(&files).map_err(|e| match e {
        // The proxy's parser names config paths; the operator changes variables.
        RenderError::Invalid {
            file,
            template,
            problems,
        } if file == "gateway.yaml" => Failure::config(
            problems
                .iter()
                .map(|p| fields::attribute(p, &file, &template, &settings))
                .map(|p| redact_text(&p, env, &hidden))
                .collect(),
        ),
        other => Failure::one(EXIT_CONFIG, redact_text(&other.to_string(), env, &hidden)),
    })?;
    for (file, shown) in files.iter_mut().zip(&shown) {
        file.secret = file.contents != shown.contents;
    }
    let mut text = String::new();
    for (file, shown) in files.iter().zip(&shown) {
        let mode = if file.secret { "0600" } else { "0644" };
        text.push_str(&format!(
            "==> {} (mode {mode}, from templates/{}) <==\n",
            file.name, file.template
        ));
        text.push_str(&shown.contents);
        if !shown.contents.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(Render {
        settings,
        shown: shown_settings,
        files,
        redacted: text,
        secret_versions: BTreeMap::new(),
    })
}

/// The whole render: env dir, secrets, settings, templates, validation.
pub async fn prepare(env: Env, templates: &Templates, vault: Vault<'_>) -> Result<Render, Failure> {
    let env = layer_env_dir(env)?;
    let (env, from_vault, secret_versions) = resolve_secrets(env, vault).await?;
    let render = render(&env, &from_vault, templates)?;
    Ok(Render {
        secret_versions,
        ..render
    })
}

/// Loads templates: embedded, or the directory given.
pub fn templates(dir: Option<&Path>) -> Result<Templates, Failure> {
    match dir {
        None => Templates::embedded(),
        Some(dir) => Templates::from_dir(dir),
    }
    .map_err(|e| Failure::one(EXIT_CONFIG, e.to_string()))
}

/// Error messages never carry a secret value, even when a secret variable was malformed.
fn sanitize(errors: Vec<EnvError>, env: &Env, redact: &BTreeSet<&str>) -> Vec<String> {
    errors
        .into_iter()
        .map(|e| redact_text(&e.to_string(), env, redact))
        .collect()
}

fn redact_text(text: &str, env: &Env, redact: &BTreeSet<&str>) -> String {
    crate::redact::text(text, env, redact)
}
