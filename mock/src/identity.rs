//! [`MockIdentity`]: a local managed-identity token endpoint speaking the Container Apps / App
//! Service protocol (`spec/azure-protocols.md`, "Managed identity token").
//!
//! `GET {endpoint}?resource=<resource>&api-version=2019-08-01[&client_id=<id>]` with
//! `X-IDENTITY-HEADER: <secret>` answers `{"access_token","expires_on" (a string of Unix
//! seconds),"resource","token_type":"Bearer","client_id"}`. Every token it hands out is recorded in
//! [`IssuedTokens`], which the mock Key Vault consults to accept or refuse a bearer token, so a test
//! proves the token really travelled from the identity endpoint to the vault. Knobs refuse every
//! request with a status (500, 403 ...) or restrict the user-assigned client ids it knows; counters
//! and a request log tell a test what was asked.

pub(crate) mod serve;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use serve::{Reply, Running, Site, json, query_pairs};

/// The only protocol version of the Container Apps / App Service endpoint.
pub const IDENTITY_API_VERSION: &str = "2019-08-01";

/// The header carrying the `IDENTITY_HEADER` secret.
pub const IDENTITY_HEADER_NAME: &str = "x-identity-header";

/// Client id reported for the system-assigned identity.
pub const SYSTEM_ASSIGNED_CLIENT_ID: &str = "00000000-0000-4000-8000-00000000a551";

/// How long issued tokens live.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// One token handed out by a [`MockIdentity`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The `resource` it was requested for, as sent.
    pub resource: String,
    /// The client id of the identity it belongs to.
    pub client_id: String,
}

/// The tokens a [`MockIdentity`] issued; cheap to clone, shared with the mock Key Vault.
#[derive(Clone, Debug, Default)]
pub struct IssuedTokens(Arc<Mutex<HashMap<String, IssuedToken>>>);

impl IssuedTokens {
    /// The token's record, if this endpoint issued it.
    pub fn lookup(&self, access_token: &str) -> Option<IssuedToken> {
        lock(&self.0).get(access_token).cloned()
    }

    /// How many distinct tokens were issued.
    pub fn count(&self) -> usize {
        lock(&self.0).len()
    }

    fn issue(&self, token: IssuedToken) -> String {
        let access_token = format!(
            "mock-mi-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        lock(&self.0).insert(access_token.clone(), token);
        access_token
    }
}

/// One request the identity endpoint received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// `resource` query parameter, if any.
    pub resource: Option<String>,
    /// `client_id` query parameter (user-assigned identity), if any.
    pub client_id: Option<String>,
    /// Whether `X-IDENTITY-HEADER` carried the expected secret.
    pub header_ok: bool,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    refuse: Option<u16>,
    known_client_ids: Option<Vec<String>>,
    requests: Vec<TokenRequest>,
}

struct Identity {
    header: String,
    tokens: IssuedTokens,
    state: Mutex<State>,
}

/// A running mock managed-identity endpoint on loopback (plain HTTP, like the real one inside a
/// Container App). Dropping it stops it.
pub struct MockIdentity {
    running: Running,
    identity: Arc<Identity>,
}

impl MockIdentity {
    /// Starts an endpoint on a free loopback port that expects `header` in `X-IDENTITY-HEADER`.
    pub async fn start(header: impl Into<String>) -> io::Result<MockIdentity> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), header).await
    }

    /// Starts an endpoint on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, header: impl Into<String>) -> io::Result<MockIdentity> {
        let identity = Arc::new(Identity {
            header: header.into(),
            tokens: IssuedTokens::default(),
            state: Mutex::new(State::default()),
        });
        let running = Running::start(addr, Arc::clone(&identity), None).await?;
        Ok(MockIdentity { running, identity })
    }

    /// The value for `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/msi/token", self.running.addr)
    }

    /// The value for `IDENTITY_HEADER`.
    pub fn header(&self) -> &str {
        &self.identity.header
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// The tokens it issued (hand this to the mock Key Vault).
    pub fn tokens(&self) -> IssuedTokens {
        self.identity.tokens.clone()
    }

    /// Answers every request with `status` and an error body (`None` serves tokens again).
    pub fn refuse_with(&self, status: Option<u16>) {
        self.identity.state().refuse = status;
    }

    /// Only these user-assigned client ids exist (a request for another gets a 400, as on Azure);
    /// `None` accepts any. The system-assigned identity always exists.
    pub fn set_known_client_ids(&self, client_ids: Option<Vec<String>>) {
        self.identity.state().known_client_ids = client_ids;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.identity.state().requests.clone()
    }

    /// How many requests were received.
    pub fn token_requests(&self) -> usize {
        self.identity.state().requests.len()
    }

    /// Stops the endpoint; later requests find nothing listening.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

impl std::fmt::Debug for MockIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIdentity")
            .field("addr", &self.running.addr)
            .finish_non_exhaustive()
    }
}

impl Identity {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn answer(&self, request: &Request<Incoming>) -> (TokenRequest, Reply) {
        let query = query_pairs(request.uri());
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let header_ok = request
            .headers()
            .get(IDENTITY_HEADER_NAME)
            .is_some_and(|value| value.as_bytes() == self.header.as_bytes());
        let mut record = TokenRequest {
            resource: param("resource"),
            client_id: param("client_id"),
            header_ok,
            status: 200,
        };
        let state = self.state();
        let refusal = if let Some(status) = state.refuse {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some((
                status,
                "the mock identity endpoint is refusing requests".to_owned(),
            ))
        } else if request.method() != Method::GET {
            Some((
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is served".to_owned(),
            ))
        } else if !header_ok {
            Some((
                StatusCode::UNAUTHORIZED,
                "X-IDENTITY-HEADER is missing or does not match IDENTITY_HEADER".to_owned(),
            ))
        } else if param("api-version").as_deref() != Some(IDENTITY_API_VERSION) {
            Some((
                StatusCode::BAD_REQUEST,
                format!("api-version must be {IDENTITY_API_VERSION}"),
            ))
        } else if record.resource.as_deref().is_none_or(str::is_empty) {
            Some((
                StatusCode::BAD_REQUEST,
                "the resource parameter is required".to_owned(),
            ))
        } else if let (Some(id), Some(known)) = (&record.client_id, &state.known_client_ids) {
            (!known.contains(id)).then(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("No managed identity found for the specified client id {id}"),
                )
            })
        } else {
            None
        };
        drop(state);
        if let Some((status, message)) = refusal {
            record.status = status.as_u16();
            let body = json!({"statusCode": status.as_u16(), "message": message});
            return (record, json(status, &body));
        }
        let resource = record.resource.clone().unwrap_or_default();
        let client_id = record
            .client_id
            .clone()
            .unwrap_or_else(|| SYSTEM_ASSIGNED_CLIENT_ID.to_owned());
        let access_token = self.tokens.issue(IssuedToken {
            resource: resource.clone(),
            client_id: client_id.clone(),
        });
        let expires_on = SystemTime::now()
            .checked_add(TOKEN_LIFETIME)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let body = json!({
            "access_token": access_token,
            // A string, as the real endpoint sends it.
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        });
        (record, json(StatusCode::OK, &body))
    }
}

impl Site for Identity {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Reply {
        let (record, reply) = self.answer(&request);
        self.state().requests.push(record);
        reply
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the state).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
