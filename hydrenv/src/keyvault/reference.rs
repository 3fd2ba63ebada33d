//! Key Vault references in environment values, the default vault, and the bulk import list
//! (`spec/azure-protocols.md`, "Key Vault secrets"). Pure parsing: nothing here talks to Azure,
//! and every error is raised before any request.

use std::collections::BTreeMap;
use std::fmt;

use crate::redact::mask_userinfo;

/// Default vault: a full vault URL.
pub const KEY_VAULT_URI: &str = "KEY_VAULT_URI";
/// Default vault: a vault name (`https://<name>.vault.azure.net`), when `KEY_VAULT_URI` is unset.
pub const KEY_VAULT_NAME: &str = "KEY_VAULT_NAME";
/// Comma-separated secret names imported as variables (`gateway-key-0` → `GATEWAY_KEY_0`).
pub const HYDRENV_KEY_VAULT_SECRETS: &str = "HYDRENV_KEY_VAULT_SECRETS";

/// App Service style reference prefix (matched without regard to case, like App Service).
const APP_SERVICE_PREFIX: &str = "@Microsoft.KeyVault(";
/// Our short form.
const SHORT_PREFIX: &str = "kv://";

/// DNS suffixes of Key Vault in the Azure clouds (public, China, US Government).
const VAULT_SUFFIXES: &[&str] = &[
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
];

/// One secret in one vault, optionally pinned to a version. Never holds a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    /// `https://<vault>.vault.azure.net`: lower-case host, no trailing slash.
    pub vault_url: String,
    pub name: String,
    pub version: Option<String>,
}

impl SecretRef {
    /// The vault host (`<vault>.vault.azure.net`).
    pub fn vault_host(&self) -> &str {
        self.vault_url
            .strip_prefix("https://")
            .unwrap_or(&self.vault_url)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/secrets/{}", self.vault_host(), self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

/// Key Vault's rule for secret names: 1–127 of `[0-9a-zA-Z-]`.
pub fn valid_secret_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A secret version: Key Vault uses 32 hex digits; accept 1–64 letters and digits.
fn valid_version(version: &str) -> bool {
    (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Vault names: 3–24 letters, digits and dashes, starting with a letter, ending with a letter or
/// digit, no `--`.
fn valid_vault_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=24).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !name.contains("--")
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_secret_name(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid Key Vault secret name (1-127 letters, digits and dashes)"
        ))
    }
}

fn check_version(version: &str) -> Result<(), String> {
    if valid_version(version) {
        Ok(())
    } else {
        Err(format!(
            "`{version}` is not a valid Key Vault secret version (letters and digits)"
        ))
    }
}

/// `https://<vault>.vault.azure.net` from a vault host, checked.
fn vault_url_from_host(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let name = VAULT_SUFFIXES
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix))?;
    valid_vault_name(name).then(|| format!("https://{host}"))
}

/// Splits `https://<host><rest>` into the vault URL and the rest of the path.
fn split_vault_url(url: &str) -> Option<(String, &str)> {
    let rest = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])?;
    let (host, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    Some((vault_url_from_host(host)?, path))
}

/// Normalises a vault URL (`https://<vault>.vault.azure.net[/]`).
fn parse_vault_url(url: &str) -> Option<String> {
    let (vault_url, path) = split_vault_url(url.trim())?;
    matches!(path, "" | "/").then_some(vault_url)
}

/// The default vault URL from the environment: `KEY_VAULT_URI` wins over `KEY_VAULT_NAME`.
/// Empty values count as unset. Errors name the variable.
pub fn default_vault(env: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let set = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(uri) = set(KEY_VAULT_URI) {
        return parse_vault_url(uri).map(Some).ok_or_else(|| {
            format!(
                "{KEY_VAULT_URI}: `{}` is not a Key Vault URL like https://<vault>.vault.azure.net",
                mask_userinfo(uri)
            )
        });
    }
    if let Some(name) = set(KEY_VAULT_NAME) {
        return if valid_vault_name(name) {
            Ok(Some(format!(
                "https://{}.vault.azure.net",
                name.to_ascii_lowercase()
            )))
        } else {
            Err(format!(
                "{KEY_VAULT_NAME}: `{name}` is not a vault name (3-24 letters, digits and dashes, starting with a letter)"
            ))
        };
    }
    Ok(None)
}

/// Parses one environment value. `Ok(None)`: not a reference. Forms:
/// - `@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>[/<version>])`
/// - `@Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>[;SecretVersion=<version>])`
/// - `kv://<name>[/<version>]` in `default_vault` (from [`default_vault`]).
///
/// Errors quote only the reference itself (which is the whole value, and never a secret).
pub fn parse_reference(
    value: &str,
    default_vault: Option<&str>,
) -> Result<Option<SecretRef>, String> {
    let value = value.trim();
    let shown = mask_userinfo(value);
    let is_app_service = value
        .get(..APP_SERVICE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(APP_SERVICE_PREFIX));
    if is_app_service {
        let inner = value[APP_SERVICE_PREFIX.len()..]
            .strip_suffix(')')
            .ok_or_else(|| format!("`{shown}`: a Key Vault reference must end with `)`"))?;
        return parse_app_service(inner.trim())
            .map(Some)
            .map_err(|e| format!("`{shown}`: {}", mask_userinfo(&e)));
    }
    if let Some(rest) = value.strip_prefix(SHORT_PREFIX) {
        let vault_url = default_vault.ok_or_else(|| {
            format!("`{shown}` needs a default vault: set {KEY_VAULT_URI} or {KEY_VAULT_NAME}")
        })?;
        let (name, version) = split_name_version(rest);
        return secret_ref(vault_url, name, version)
            .map(Some)
            .map_err(|e| format!("`{shown}`: {}", mask_userinfo(&e)));
    }
    Ok(None)
}

/// `<name>`, `<name>/`, `<name>/<version>` or `<name>/<version>/`.
fn split_name_version(path: &str) -> (&str, Option<&str>) {
    let path = path.strip_suffix('/').unwrap_or(path);
    match path.split_once('/') {
        Some((name, version)) => (name, Some(version)),
        None => (path, None),
    }
}

fn secret_ref(vault_url: &str, name: &str, version: Option<&str>) -> Result<SecretRef, String> {
    check_name(name)?;
    if let Some(version) = version {
        check_version(version)?;
    }
    Ok(SecretRef {
        vault_url: vault_url.to_owned(),
        name: name.to_owned(),
        version: version.map(str::to_owned),
    })
}

fn parse_app_service(inner: &str) -> Result<SecretRef, String> {
    let mut fields: BTreeMap<String, &str> = BTreeMap::new();
    for part in inner.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not KEY=VALUE"))?;
        let key = key.trim().to_ascii_lowercase();
        if !matches!(
            key.as_str(),
            "secreturi" | "vaultname" | "secretname" | "secretversion"
        ) {
            return Err(format!(
                "unknown field `{}` (use SecretUri, or VaultName + SecretName [+ SecretVersion])",
                key
            ));
        }
        if fields.insert(key.clone(), value.trim()).is_some() {
            return Err(format!("field `{key}` is given twice"));
        }
    }
    if let Some(uri) = fields.remove("secreturi") {
        if !fields.is_empty() {
            return Err("SecretUri cannot be combined with other fields".to_owned());
        }
        let (vault_url, path) = split_vault_url(uri).ok_or_else(|| {
            "SecretUri must be https://<vault>.vault.azure.net/secrets/<name>[/<version>]"
                .to_owned()
        })?;
        let rest = path
            .strip_prefix("/secrets/")
            .filter(|rest| !rest.contains(['?', '#']))
            .ok_or_else(|| "SecretUri must have the path /secrets/<name>[/<version>]".to_owned())?;
        let (name, version) = split_name_version(rest);
        return secret_ref(&vault_url, name, version);
    }
    let vault = fields
        .remove("vaultname")
        .ok_or("VaultName is missing (or use SecretUri)")?;
    let name = fields.remove("secretname").ok_or("SecretName is missing")?;
    let version = fields.remove("secretversion").filter(|v| !v.is_empty());
    if !valid_vault_name(vault) {
        return Err(format!(
            "`{vault}` is not a vault name (3-24 letters, digits and dashes)"
        ));
    }
    let vault_url = format!("https://{}.vault.azure.net", vault.to_ascii_lowercase());
    secret_ref(&vault_url, name, version)
}

/// The variable a bulk-imported secret becomes: upper case, `-` → `_` (as Container Apps does).
pub fn bulk_variable_name(secret_name: &str) -> String {
    secret_name.to_ascii_uppercase().replace('-', "_")
}

/// `HYDRENV_KEY_VAULT_SECRETS=name1,name2` → `(VARIABLE, reference)` pairs in list order.
/// Errors (without the variable name; the caller adds it): a bad name, a name given twice, two
/// names mapping to one variable, or no default vault.
pub fn bulk_references(
    env: &BTreeMap<String, String>,
    default_vault: Option<&str>,
) -> Result<Vec<(String, SecretRef)>, String> {
    let Some(list) = env
        .get(HYDRENV_KEY_VAULT_SECRETS)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(Vec::new());
    };
    let vault_url = default_vault.ok_or_else(|| {
        format!("importing secrets needs a default vault: set {KEY_VAULT_URI} or {KEY_VAULT_NAME}")
    })?;
    let mut problems = Vec::new();
    let mut pairs: Vec<(String, SecretRef)> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Err(e) = check_name(name) {
            problems.push(e);
            continue;
        }
        let variable = bulk_variable_name(name);
        if let Some((_, earlier)) = pairs.iter().find(|(v, _)| *v == variable) {
            problems.push(if earlier.name == name {
                format!("`{name}` is listed twice")
            } else {
                format!("`{name}` and `{}` both become {variable}", earlier.name)
            });
            continue;
        }
        pairs.push((
            variable,
            SecretRef {
                vault_url: vault_url.to_owned(),
                name: name.to_owned(),
                version: None,
            },
        ));
    }
    if problems.is_empty() {
        Ok(pairs)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_follow_azure_rules() {
        assert!(valid_vault_name("kv-prod-01"));
        assert!(!valid_vault_name("kv"));
        assert!(!valid_vault_name("1kv"));
        assert!(!valid_vault_name("kv-"));
        assert!(!valid_vault_name("kv--prod"));
        assert!(!valid_vault_name("a234567890123456789012345"));
    }

    #[test]
    fn display_names_host_secret_and_version() {
        let r = SecretRef {
            vault_url: "https://kv1.vault.azure.net".into(),
            name: "key".into(),
            version: Some("abc".into()),
        };
        assert_eq!(r.to_string(), "kv1.vault.azure.net/secrets/key/abc");
    }
}
