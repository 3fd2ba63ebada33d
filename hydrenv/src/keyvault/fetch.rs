//! Fetching secrets with the Azure SDK (`azure_security_keyvault_secrets` + `azure_identity`):
//! every distinct reference once, all in parallel, each under a timeout, with a bounded retry
//! policy on 408/429/5xx and network errors (the SDK's default would wait ~80 s on a dead vault).
//! Either every secret arrives or every failure is reported, one per reference, secret-free.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use proxy::secret::Secret;
use tokio::task::JoinSet;

use super::SecretRef;
use super::{credential, transport};

/// How hard to try for each secret.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Bound on one secret, retries included (default 10 s).
    pub timeout: Duration,
    /// Retries after the first attempt on 408/429/5xx and network errors (default 3).
    pub retries: u32,
    /// First back-off; it doubles per retry (plus up to 255 ms of SDK jitter) and yields to a
    /// longer `Retry-After` (default 200 ms).
    pub retry_delay: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 3,
            retry_delay: Duration::from_millis(200),
        }
    }
}

/// A secret value and the version it came from.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub value: Secret,
    pub version: String,
}

/// Why one secret could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// The secret (or that version of it) does not exist.
    NotFound,
    /// The identity may not read it (403), or the vault refused its token (401).
    Forbidden,
    /// Network error, 5xx, 429 after the retries, timeout.
    Unavailable,
    /// The token endpoint refused or could not be reached.
    Identity,
}

impl FetchErrorKind {
    /// Exit code: NotFound|Forbidden → 64 (bad configuration), Unavailable|Identity → 69.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotFound | Self::Forbidden => 64,
            Self::Unavailable | Self::Identity => 69,
        }
    }
}

/// One failed reference. `message` never holds a secret value.
#[derive(Clone, Debug)]
pub struct FetchError {
    pub reference: SecretRef,
    pub kind: FetchErrorKind,
    pub message: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reference, self.message)
    }
}

/// Reads secrets from one or more vaults with one credential.
pub struct KeyVaultSource {
    credential: Arc<dyn TokenCredential>,
    client_options: ClientOptions,
    options: FetchOptions,
    /// One client per vault, kept so repeated fetches (`supervise` polling) reuse the
    /// discovered challenge, the token and the connections.
    clients: Mutex<HashMap<String, Arc<SecretClient>>>,
}

impl std::fmt::Debug for KeyVaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultSource")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Client options shared by the vault clients and the identity credential: our transport and a
/// bounded retry policy.
fn client_options(http: reqwest::Client, options: &FetchOptions) -> ClientOptions {
    let to_sdk = |d: Duration| {
        azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX)
    };
    let retry = ExponentialRetryOptions {
        initial_delay: to_sdk(options.retry_delay),
        max_retries: options.retries,
        max_total_elapsed: to_sdk(options.timeout),
        max_delay: to_sdk(options.timeout.min(Duration::from_secs(4))),
    };
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry: RetryOptions::exponential(retry),
        ..ClientOptions::default()
    }
}

impl KeyVaultSource {
    /// Production: the credential the environment map asks for (see [`credential`]), the
    /// production HTTP client.
    pub fn from_env(env: &BTreeMap<String, String>, options: FetchOptions) -> Result<Self, String> {
        Self::from_env_with_client(env, options, transport::default_http_client()?)
    }

    /// Like [`KeyVaultSource::from_env`] with a given HTTP client (used for the vault and the
    /// identity endpoint); tests pass one that trusts only a test CA
    /// ([`http_client_for_test_ca`](super::http_client_for_test_ca)).
    pub fn from_env_with_client(
        env: &BTreeMap<String, String>,
        options: FetchOptions,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let client_options = client_options(http, &options);
        let credential = credential::from_env(env, client_options.clone())?;
        Ok(Self::build(credential, client_options, options))
    }

    /// An explicit credential and HTTP client.
    pub fn with_credential(
        credential: Arc<dyn TokenCredential>,
        http: reqwest::Client,
        options: FetchOptions,
    ) -> Self {
        let client_options = client_options(http, &options);
        Self::build(credential, client_options, options)
    }

    fn build(
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
        options: FetchOptions,
    ) -> Self {
        Self {
            credential,
            client_options,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, vault_url: &str) -> Result<Arc<SecretClient>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(vault_url) {
            return Ok(Arc::clone(client));
        }
        let options = SecretClientOptions {
            client_options: self.client_options.clone(),
            ..SecretClientOptions::default()
        };
        let client = SecretClient::new(vault_url, Arc::clone(&self.credential), Some(options))
            .map(Arc::new)
            .map_err(|e| format!("cannot create a Key Vault client: {e}"))?;
        clients.insert(vault_url.to_owned(), Arc::clone(&client));
        Ok(client)
    }

    /// Fetches every distinct reference once, in parallel. All values, or all errors.
    pub async fn fetch(
        &self,
        refs: &[SecretRef],
    ) -> Result<BTreeMap<SecretRef, Fetched>, Vec<FetchError>> {
        let distinct: BTreeSet<&SecretRef> = refs.iter().collect();
        let mut tasks = JoinSet::new();
        let mut spawned = HashMap::new();
        let mut errors = Vec::new();
        for reference in distinct {
            let client = match self.client(&reference.vault_url) {
                Ok(client) => client,
                Err(message) => {
                    errors.push(FetchError {
                        reference: reference.clone(),
                        kind: FetchErrorKind::Unavailable,
                        message,
                    });
                    continue;
                }
            };
            let task_reference = reference.clone();
            let timeout = self.options.timeout;
            let task = tasks.spawn(async move {
                let result = tokio::time::timeout(timeout, get(&client, &task_reference)).await;
                result.unwrap_or_else(|_| {
                    Err((
                        FetchErrorKind::Unavailable,
                        format!("no answer within {} s", timeout.as_secs_f64()),
                    ))
                })
            });
            spawned.insert(task.id(), reference.clone());
        }
        let mut fetched = BTreeMap::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                // A panic inside the SDK: report it against its reference like any failure.
                Err(e) => (
                    e.id(),
                    Err((
                        FetchErrorKind::Unavailable,
                        format!("internal error while fetching: {e}"),
                    )),
                ),
            };
            let Some(reference) = spawned.remove(&id) else {
                continue;
            };
            match result {
                Ok(value) => {
                    fetched.insert(reference, value);
                }
                Err((kind, message)) => errors.push(FetchError {
                    reference,
                    kind,
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(fetched)
        } else {
            errors.sort_by(|a, b| a.reference.cmp(&b.reference));
            Err(errors)
        }
    }
}

async fn get(
    client: &SecretClient,
    reference: &SecretRef,
) -> Result<Fetched, (FetchErrorKind, String)> {
    let options = SecretClientGetSecretOptions {
        secret_version: reference.version.clone(),
        ..SecretClientGetSecretOptions::default()
    };
    let secret = client
        .get_secret(&reference.name, Some(options))
        .await
        .and_then(|response| response.into_model())
        .map_err(|e| classify(&e))?;
    let version = secret
        .resource_id()
        .ok()
        .and_then(|id| id.version)
        .or_else(|| reference.version.clone())
        .unwrap_or_default();
    let value = secret.value.ok_or((
        FetchErrorKind::Unavailable,
        "the vault answered without a value".to_owned(),
    ))?;
    Ok(Fetched {
        value: Secret::new(value),
        version,
    })
}

/// Context the SDK's retry policy wraps around the real cause; it says nothing to an operator.
const SDK_WRAPPERS: &[&str] = &[
    "non-transport error occurred which will not be retried",
    "retry policy expired and the request will no longer be retried",
];

/// The first line of each error in the chain, without the SDK's retry wrappers, joined by `: `
/// and bounded. SDK messages can carry troubleshooting links and response bodies (on later lines,
/// dropped); none holds a secret value, which never leaves [`get`].
fn describe(error: &azure_core::Error) -> String {
    const LIMIT: usize = 400;
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = next {
        let mut line = current
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        for wrapper in SDK_WRAPPERS {
            line = line.replace(&format!("{wrapper}: "), "");
        }
        let known = parts.iter().any(|p| p.contains(&line));
        if !line.is_empty() && !known && !SDK_WRAPPERS.contains(&line.as_str()) {
            parts.push(line);
        }
        next = current.source();
    }
    let text = parts.join(": ");
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn classify(error: &azure_core::Error) -> (FetchErrorKind, String) {
    match error.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let status = u16::from(*status);
            let kind = match status {
                404 => FetchErrorKind::NotFound,
                401 | 403 => FetchErrorKind::Forbidden,
                _ => FetchErrorKind::Unavailable,
            };
            let hint = match status {
                404 => " (check the vault, the secret name and the version)",
                401 => {
                    " (the vault rejected the identity's token: is the vault in the identity's tenant?)"
                }
                403 => {
                    " (grant the identity the Key Vault Secrets User role or a get-secret access policy)"
                }
                _ => "",
            };
            let code = error_code
                .as_deref()
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            let message = format!(
                "Key Vault answered {status}{code}: {}{hint}",
                describe(error)
            );
            (kind, message)
        }
        ErrorKind::Credential => (
            FetchErrorKind::Identity,
            format!("could not get a token for Key Vault: {}", describe(error)),
        ),
        ErrorKind::Io | ErrorKind::Connection => (
            FetchErrorKind::Unavailable,
            format!("vault unreachable: {}", describe(error)),
        ),
        _ => (FetchErrorKind::Unavailable, describe(error)),
    }
}
