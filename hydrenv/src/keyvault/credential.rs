//! Which Azure identity reads the vault, chosen from the environment map.
//!
//! `azure_identity` 1.0 has no `DefaultAzureCredential`, so the choice is ours:
//! 1. `HYDRENV_DEV_CREDENTIAL=true` → `DeveloperToolsCredential` (Azure CLI, then Azure Developer
//!    CLI login) for a developer machine;
//! 2. `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (injected by Container Apps) →
//!    `ManagedIdentityCredential`, user-assigned by client id from
//!    `ACA_MANAGED_IDENTITY_CLIENT_ID`, else `AZURE_CLIENT_ID`, else the system-assigned identity;
//! 3. nothing usable → an error saying what to set.
//!
//! `ManagedIdentityCredential` reads `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` from the *process*
//! environment, never from a map (the SDK offers no way to pass them). Without them it silently
//! falls back to IMDS (`169.254.169.254`). So when the map selects a managed identity, the process
//! environment must hold the same two values; otherwise this is an error instead of a token request
//! to somewhere else. This is the only place hydrenv reads the process environment after the
//! snapshot, and it only compares.

use std::collections::BTreeMap;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};

use crate::env::parse_bool;

/// Use the developer's Azure CLI / Azure Developer CLI login (ours).
pub const HYDRENV_DEV_CREDENTIAL: &str = "HYDRENV_DEV_CREDENTIAL";
/// Managed identity endpoint (set by Container Apps).
pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// Managed identity endpoint secret (set by Container Apps).
pub const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// User-assigned identity for Key Vault (as in the Container Apps accelerator).
pub const ACA_MANAGED_IDENTITY_CLIENT_ID: &str = "ACA_MANAGED_IDENTITY_CLIENT_ID";
/// User-assigned identity, when `ACA_MANAGED_IDENTITY_CLIENT_ID` is unset.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";

/// What the environment asks for (kept apart from building, so it is testable without Azure).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    Developer,
    ManagedIdentity { client_id: Option<String> },
}

fn set<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

pub(crate) fn choose(env: &BTreeMap<String, String>) -> Result<Choice, String> {
    let developer = match set(env, HYDRENV_DEV_CREDENTIAL) {
        Some(value) => parse_bool(HYDRENV_DEV_CREDENTIAL, value).map_err(|e| e.to_string())?,
        None => false,
    };
    if developer {
        return Ok(Choice::Developer);
    }
    match (set(env, IDENTITY_ENDPOINT), set(env, IDENTITY_HEADER)) {
        (Some(_), Some(_)) => Ok(Choice::ManagedIdentity {
            client_id: set(env, ACA_MANAGED_IDENTITY_CLIENT_ID)
                .or_else(|| set(env, AZURE_CLIENT_ID))
                .map(str::to_owned),
        }),
        (Some(_), None) => Err(format!(
            "{IDENTITY_ENDPOINT} is set but {IDENTITY_HEADER} is not; a managed identity needs both"
        )),
        (None, Some(_)) => Err(format!(
            "{IDENTITY_HEADER} is set but {IDENTITY_ENDPOINT} is not; a managed identity needs both"
        )),
        (None, None) => Err(format!(
            "no identity to read Key Vault with: give the app a managed identity (Container Apps \
             sets {IDENTITY_ENDPOINT} and {IDENTITY_HEADER}), or set {HYDRENV_DEV_CREDENTIAL}=true \
             to use your Azure CLI / Azure Developer CLI login"
        )),
    }
}

/// The process environment must agree with the map for the variables the SDK reads itself.
fn check_process_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    for name in [IDENTITY_ENDPOINT, IDENTITY_HEADER] {
        let in_map = set(env, name);
        let in_process = std::env::var(name).ok();
        if in_map != in_process.as_deref().map(str::trim) {
            return Err(format!(
                "{name} differs between the process environment and the configuration hydrenv \
                 read (e.g. HYDRENV_ENV_DIR); the Azure SDK reads it from the process \
                 environment, so set it there"
            ));
        }
    }
    Ok(())
}

/// Builds the credential the environment asks for; its HTTP calls use `client_options`
/// (transport and retry policy).
pub(crate) fn from_env(
    env: &BTreeMap<String, String>,
    client_options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    match choose(env)? {
        Choice::Developer => DeveloperToolsCredential::new(None)
            .map(|c| c as Arc<dyn TokenCredential>)
            .map_err(|e| format!("developer credential: {e}")),
        Choice::ManagedIdentity { client_id } => {
            check_process_env(env)?;
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(UserAssignedId::ClientId),
                client_options,
            };
            ManagedIdentityCredential::new(Some(options))
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| format!("managed identity: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn container_apps_identity_with_user_assigned_client_id() {
        let base = [
            (IDENTITY_ENDPOINT, "http://localhost:42356/msi/token"),
            (IDENTITY_HEADER, "h"),
            (AZURE_CLIENT_ID, "from-azure-client-id"),
        ];
        assert_eq!(
            choose(&env(&base)).unwrap(),
            Choice::ManagedIdentity {
                client_id: Some("from-azure-client-id".into())
            }
        );
        let mut with_aca = env(&base);
        with_aca.insert(ACA_MANAGED_IDENTITY_CLIENT_ID.into(), "aca".into());
        assert_eq!(
            choose(&with_aca).unwrap(),
            Choice::ManagedIdentity {
                client_id: Some("aca".into())
            }
        );
    }

    #[test]
    fn developer_flag_wins_and_is_a_strict_boolean() {
        let dev = env(&[(HYDRENV_DEV_CREDENTIAL, "YES"), (IDENTITY_ENDPOINT, "x")]);
        assert_eq!(choose(&dev).unwrap(), Choice::Developer);
        let bad = choose(&env(&[(HYDRENV_DEV_CREDENTIAL, "maybe")])).unwrap_err();
        assert!(bad.contains(HYDRENV_DEV_CREDENTIAL), "{bad}");
    }

    #[test]
    fn half_an_identity_or_none_says_what_to_set() {
        let half = choose(&env(&[(IDENTITY_ENDPOINT, "http://x")])).unwrap_err();
        assert!(half.contains(IDENTITY_HEADER), "{half}");
        let none = choose(&env(&[])).unwrap_err();
        assert!(
            none.contains(IDENTITY_ENDPOINT) && none.contains(HYDRENV_DEV_CREDENTIAL),
            "{none}"
        );
    }
}
