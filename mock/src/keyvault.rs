//! [`MockKeyVault`]: a local Azure Key Vault (secrets only) speaking the real REST protocol over
//! real TLS (`spec/azure-protocols.md`, "Key Vault secrets").
//!
//! - `GET /secrets/{name}[/{version}]?api-version=...` → `{"value","id","attributes"}`; a missing
//!   secret or version → 404 `SecretNotFound`.
//! - No bearer token → 401 with the `WWW-Authenticate: Bearer authorization=..., resource=...`
//!   challenge the Azure SDK needs before it asks its credential for a token; a token that the
//!   paired [`MockIdentity`](crate::identity::MockIdentity) did not issue for the Key Vault resource
//!   → 401 as well. So a client only gets a secret after a real token round trip.
//! - Knobs: throttle the next N authorised requests with 429 + `Retry-After`, answer everything
//!   with a status, reset or stall every connection ([`VaultDown`]), refuse with 403.
//! - [`MockKeyVault::set_secret`] adds a new version each time, so a poller sees the change.
//!
//! The server certificate comes from a CA made at start-up ([`MockKeyVault::ca_pem`]); a client
//! that trusts only that CA and resolves `<vault>.vault.azure.net` to [`MockKeyVault::addr`]
//! verifies TLS as it would against Azure.

mod tls;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio_rustls::TlsAcceptor;

use crate::identity::serve::{OnConnect, Reply, Running, Site, json, query_pairs};
use crate::identity::{IssuedTokens, lock};

/// The Entra resource Key Vault tokens are issued for.
pub const KEY_VAULT_RESOURCE: &str = "https://vault.azure.net";

/// The tenant named in the authentication challenge.
pub const MOCK_TENANT_ID: &str = "72f988bf-0000-4000-8000-00000000c0de";

/// `api-version` values the mock accepts (the REST versions of the secrets API in use).
const API_VERSIONS: &[&str] = &["7.3", "7.4", "7.5", "7.6", "2025-07-01"];

/// How a vault that is down behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultDown {
    /// Every connection is closed at once (connection reset before TLS).
    Reset,
    /// Connections are accepted and never answered; requests on connections already open are
    /// recorded (status 0) and never answered either.
    Hang,
    /// Every request is answered with this status (e.g. 503) and an error body.
    Status(u16),
}

/// What the vault made of a request's `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// No bearer token: answered with the challenge.
    Missing,
    /// A token the identity endpoint did not issue for Key Vault.
    Rejected,
    /// A token the identity endpoint issued for Key Vault.
    Accepted,
}

/// One request the vault received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultRequest {
    pub method: String,
    pub path: String,
    /// Secret name, for `/secrets/{name}...`.
    pub secret: Option<String>,
    /// Secret version, when the path had a non-empty one.
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub token: TokenCheck,
    /// Client id of the identity the accepted token belongs to.
    pub client_id: Option<String>,
    pub status: u16,
}

#[derive(Clone, Debug)]
struct StoredVersion {
    version: String,
    value: String,
    created: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Versions of each secret, oldest first; the last one is the current one.
    secrets: HashMap<String, Vec<StoredVersion>>,
    throttle_remaining: u32,
    retry_after_secs: u64,
    down: Option<VaultDown>,
    forbidden: bool,
    requests: Vec<VaultRequest>,
}

struct Vault {
    tokens: IssuedTokens,
    state: Mutex<State>,
}

/// A running mock Key Vault on loopback (HTTPS). Dropping it stops it.
pub struct MockKeyVault {
    running: Running,
    vault: Arc<Vault>,
    ca_pem: String,
    ca_der: Vec<u8>,
}

impl MockKeyVault {
    /// Starts a vault on a free loopback port that accepts tokens from `tokens`
    /// ([`MockIdentity::tokens`](crate::identity::MockIdentity::tokens)).
    pub async fn start(tokens: IssuedTokens) -> io::Result<MockKeyVault> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), tokens).await
    }

    /// Starts a vault on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, tokens: IssuedTokens) -> io::Result<MockKeyVault> {
        let tls = tls::generate()?;
        let vault = Arc::new(Vault {
            tokens,
            state: Mutex::new(State {
                retry_after_secs: 1,
                ..State::default()
            }),
        });
        let acceptor = TlsAcceptor::from(tls.server);
        let running = Running::start(addr, Arc::clone(&vault), Some(acceptor)).await?;
        Ok(MockKeyVault {
            running,
            vault,
            ca_pem: tls.ca_pem,
            ca_der: tls.ca_der,
        })
    }

    /// The address it listens on (resolve `<vault>.vault.azure.net` to it).
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// The test CA that signed the server certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The test CA that signed the server certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// `https://<vault>.vault.azure.net`: the URL a client uses for vault `vault` (every vault
    /// name reaches this server once its host resolves here).
    pub fn vault_url(vault: &str) -> String {
        format!("https://{vault}.vault.azure.net")
    }

    /// Stores a new version of secret `name` and returns its version id.
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        let version = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let created = unix_now();
        self.vault
            .state()
            .secrets
            .entry(name.to_owned())
            .or_default()
            .push(StoredVersion {
                version: version.clone(),
                value: value.to_owned(),
                created,
            });
        version
    }

    /// Removes secret `name` with all its versions; true if it existed.
    pub fn delete_secret(&self, name: &str) -> bool {
        self.vault.state().secrets.remove(name).is_some()
    }

    /// Answers the next `count` authorised requests with 429 and `Retry-After: retry_after_secs`.
    pub fn throttle(&self, count: u32, retry_after_secs: u64) {
        let mut state = self.vault.state();
        state.throttle_remaining = count;
        state.retry_after_secs = retry_after_secs;
    }

    /// Takes the vault down (or back up with `None`).
    pub fn set_down(&self, down: Option<VaultDown>) {
        self.vault.state().down = down;
    }

    /// Refuses every authorised request with 403 (the identity lacks access).
    pub fn set_forbidden(&self, forbidden: bool) {
        self.vault.state().forbidden = forbidden;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<VaultRequest> {
        self.vault.state().requests.clone()
    }

    /// How many times secret `name` was handed out (200 answers).
    pub fn reads(&self, name: &str) -> usize {
        self.vault
            .state()
            .requests
            .iter()
            .filter(|r| r.status == 200 && r.secret.as_deref() == Some(name))
            .count()
    }

    /// Stops the vault; later connections are refused.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

impl std::fmt::Debug for MockKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKeyVault")
            .field("addr", &self.running.addr)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Key Vault's rule for object names.
fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn challenge(message: &str) -> Reply {
    let mut reply = error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    let value = format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{MOCK_TENANT_ID}\", \
         resource=\"{KEY_VAULT_RESOURCE}\""
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        reply
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, value);
    }
    reply
}

impl Vault {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn check_token(&self, request: &Request<Incoming>) -> (TokenCheck, Option<String>) {
        let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
            return (TokenCheck::Missing, None);
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| self.tokens.lookup(token.trim()));
        match token {
            Some(token) if token.resource.trim_end_matches('/') == KEY_VAULT_RESOURCE => {
                (TokenCheck::Accepted, Some(token.client_id))
            }
            _ => (TokenCheck::Rejected, None),
        }
    }

    fn answer(&self, request: &Request<Incoming>, record: &mut VaultRequest) -> Reply {
        let mut state = self.state();
        if let Some(VaultDown::Status(status)) = state.down {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return error(
                status,
                "ServiceUnavailable",
                "The mock vault is unavailable.",
            );
        }
        let segments: Vec<&str> = record.path.trim_start_matches('/').split('/').collect();
        let (name, version) = match segments.as_slice() {
            ["secrets", name] => (*name, None),
            ["secrets", name, version] => (*name, Some(*version).filter(|v| !v.is_empty())),
            _ => return error(StatusCode::NOT_FOUND, "NotFound", "Resource not found."),
        };
        record.secret = Some(name.to_owned());
        record.version = version.map(str::to_owned);
        match record.token {
            TokenCheck::Missing => {
                return challenge("AKV10000: Request is missing a Bearer or PoP token.");
            }
            TokenCheck::Rejected => {
                return challenge("AKV10032: Invalid issuer or audience.");
            }
            TokenCheck::Accepted => {}
        }
        if request.method() != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The mock vault serves GET only.",
            );
        }
        if !record
            .api_version
            .as_deref()
            .is_some_and(|v| API_VERSIONS.contains(&v))
        {
            return error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The request URI contains an invalid or missing api-version parameter.",
            );
        }
        if !valid_name(name) {
            return error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The secret name is invalid: use 1-127 letters, digits and dashes.",
            );
        }
        if state.throttle_remaining > 0 {
            state.throttle_remaining -= 1;
            let mut reply = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "Request was not processed because too many requests were received. \
                 Reason: VaultRequestTypeLimitReached",
            );
            reply.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(state.retry_after_secs),
            );
            return reply;
        }
        if state.forbidden {
            return error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Caller is not authorized to perform action on resource. \
                 Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
            );
        }
        let stored = state.secrets.get(name).and_then(|versions| match version {
            Some(wanted) => versions.iter().find(|v| v.version == wanted),
            None => versions.last(),
        });
        let Some(stored) = stored else {
            let id = version.map_or_else(|| name.to_owned(), |v| format!("{name}/{v}"));
            return error(
                StatusCode::NOT_FOUND,
                "SecretNotFound",
                &format!("A secret with (name/id) {id} was not found in this key vault."),
            );
        };
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map_or("mock.vault.azure.net", |h| {
                h.rsplit_once(':').map_or(h, |(host, _port)| host)
            });
        json(
            StatusCode::OK,
            &json!({
                "value": stored.value,
                "id": format!("https://{host}/secrets/{name}/{}", stored.version),
                "attributes": {
                    "enabled": true,
                    "created": stored.created,
                    "updated": stored.created,
                    "recoveryLevel": "Recoverable+Purgeable",
                    "recoverableDays": 90,
                },
                "tags": {},
            }),
        )
    }
}

impl Site for Vault {
    fn on_connect(&self) -> OnConnect {
        match self.state().down {
            Some(VaultDown::Reset) => OnConnect::Close,
            Some(VaultDown::Hang) => OnConnect::Stall,
            _ => OnConnect::Serve,
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Reply {
        let api_version = query_pairs(request.uri())
            .into_iter()
            .find(|(key, _)| key == "api-version")
            .map(|(_, value)| value);
        let (token, client_id) = self.check_token(&request);
        let mut record = VaultRequest {
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            secret: None,
            version: None,
            api_version,
            token,
            client_id,
            status: 0,
        };
        if matches!(self.state().down, Some(VaultDown::Hang)) {
            self.state().requests.push(record);
            return std::future::pending().await;
        }
        let mut reply = self.answer(&request, &mut record);
        record.status = reply.status().as_u16();
        let request_id = format!("{:016x}", fastrand::u64(..));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            reply.headers_mut().insert("x-ms-request-id", value);
        }
        self.state().requests.push(record);
        reply
    }
}
