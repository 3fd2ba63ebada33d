//! The mock managed-identity endpoint (plain HTTP) and the mock Key Vault (HTTPS, test CA) over the
//! wire: a hyper client for the identity endpoint, and hyper over tokio-rustls with SNI
//! `<vault>.vault.azure.net` for the vault, trusting only the vault's test CA.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mock::identity::{IssuedToken, MockIdentity, SYSTEM_ASSIGNED_CLIENT_ID};
use mock::keyvault::{KEY_VAULT_RESOURCE, MockKeyVault, TokenCheck, VaultDown};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::{Reply, client, send};

const HEADER_SECRET: &str = "mock-identity-header";
const VAULT_HOST: &str = "kv-mock-test.vault.azure.net";
const RESOURCE_QUERY: &str = "resource=https%3A%2F%2Fvault.azure.net";

async fn identity_get(identity: &MockIdentity, query: &str, header: Option<&str>) -> Reply {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(format!("{}?{query}", identity.endpoint()));
    if let Some(header) = header {
        builder = builder.header("X-IDENTITY-HEADER", header);
    }
    send(&client(), builder.body(Full::new(Bytes::new())).unwrap()).await
}

/// A token for Key Vault from `identity`.
async fn vault_token(identity: &MockIdentity) -> String {
    let query = format!("{RESOURCE_QUERY}&api-version=2019-08-01");
    let reply = identity_get(identity, &query, Some(HEADER_SECRET)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

fn tls_config(roots: RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn trusting(vault: &MockKeyVault) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(vault.ca_der().to_vec()))
        .unwrap();
    tls_config(roots)
}

/// One HTTPS request to the vault as `host`, over a fresh connection.
async fn vault_request(
    vault: &MockKeyVault,
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    path: &str,
    bearer: Option<&str>,
) -> std::io::Result<Reply> {
    let tcp = TcpStream::connect(vault.addr()).await?;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let stream = TlsConnector::from(tls).connect(name, tcp).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut builder = Request::builder().uri(path).header("host", host);
    if let Some(token) = bearer {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    })
}

async fn vault_get(vault: &MockKeyVault, path: &str, bearer: Option<&str>) -> Reply {
    vault_request(vault, trusting(vault), VAULT_HOST, path, bearer)
        .await
        .unwrap()
}

async fn started() -> (MockIdentity, MockKeyVault) {
    let identity = MockIdentity::start(HEADER_SECRET).await.unwrap();
    let vault = MockKeyVault::start(identity.tokens()).await.unwrap();
    (identity, vault)
}

#[tokio::test]
async fn identity_issues_tokens_over_the_container_apps_protocol() {
    let identity = MockIdentity::start(HEADER_SECRET).await.unwrap();
    let query = format!("{RESOURCE_QUERY}&api-version=2019-08-01&client_id=client-a");
    let reply = identity_get(&identity, &query, Some(HEADER_SECRET)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], KEY_VAULT_RESOURCE);
    assert_eq!(body["client_id"], "client-a");
    // `expires_on` is a string of Unix seconds, in the future.
    let expires_on: u64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expires_on > now + 600, "{expires_on} vs {now}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        identity.tokens().lookup(token),
        Some(IssuedToken {
            resource: KEY_VAULT_RESOURCE.to_owned(),
            client_id: "client-a".to_owned(),
        })
    );

    let system = identity_get(
        &identity,
        &format!("{RESOURCE_QUERY}&api-version=2019-08-01"),
        Some(HEADER_SECRET),
    )
    .await;
    assert_eq!(system.json()["client_id"], SYSTEM_ASSIGNED_CLIENT_ID);
    assert_ne!(system.json()["access_token"], body["access_token"]);

    let requests = identity.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].client_id.as_deref(), Some("client-a"));
    assert_eq!(requests[0].resource.as_deref(), Some(KEY_VAULT_RESOURCE));
    assert!(requests[0].header_ok);
    assert_eq!(requests[1].client_id, None);
}

#[tokio::test]
async fn identity_refuses_what_azure_refuses_and_on_demand() {
    let identity = MockIdentity::start(HEADER_SECRET).await.unwrap();
    let good = format!("{RESOURCE_QUERY}&api-version=2019-08-01");
    let cases = [
        (good.clone(), None, StatusCode::UNAUTHORIZED),
        (good.clone(), Some("wrong"), StatusCode::UNAUTHORIZED),
        (
            format!("{RESOURCE_QUERY}&api-version=2018-02-01"),
            Some(HEADER_SECRET),
            StatusCode::BAD_REQUEST,
        ),
        (
            "api-version=2019-08-01".to_owned(),
            Some(HEADER_SECRET),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (query, header, status) in &cases {
        let reply = identity_get(&identity, query, *header).await;
        assert_eq!(reply.status, *status, "{query} {header:?}");
        assert_eq!(reply.json()["statusCode"], status.as_u16());
    }

    identity.set_known_client_ids(Some(vec!["assigned".to_owned()]));
    let unknown = identity_get(
        &identity,
        &format!("{good}&client_id=other"),
        Some(HEADER_SECRET),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let known = identity_get(
        &identity,
        &format!("{good}&client_id=assigned"),
        Some(HEADER_SECRET),
    )
    .await;
    assert_eq!(known.status, StatusCode::OK);

    identity.refuse_with(Some(500));
    let refused = identity_get(&identity, &good, Some(HEADER_SECRET)).await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(refused.text().contains("refusing"), "{}", refused.text());
    identity.refuse_with(None);
    assert_eq!(
        identity_get(&identity, &good, Some(HEADER_SECRET))
            .await
            .status,
        StatusCode::OK
    );

    assert_eq!(identity.token_requests(), cases.len() + 4);
    assert_eq!(
        identity.tokens().count(),
        2,
        "only the two 200s issued tokens"
    );
}

#[tokio::test]
async fn vault_challenges_requests_without_a_valid_key_vault_token() {
    let (identity, vault) = started().await;
    vault.set_secret("api-key", "value-1");
    let path = "/secrets/api-key?api-version=7.5";

    let anonymous = vault_get(&vault, path, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.header("www-authenticate"),
        "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-0000-4000-8000-00000000c0de\", \
         resource=\"https://vault.azure.net\""
    );
    assert_eq!(anonymous.json()["error"]["code"], "Unauthorized");

    let forged = vault_get(&vault, path, Some("made-up-token")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    // A real token, but for another resource.
    let query = "resource=https%3A%2F%2Fcognitiveservices.azure.com&api-version=2019-08-01";
    let other = identity_get(&identity, query, Some(HEADER_SECRET)).await;
    let other_token = other.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        vault_get(&vault, path, Some(&other_token)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let checks: Vec<TokenCheck> = vault.requests().iter().map(|r| r.token).collect();
    assert_eq!(
        checks,
        [
            TokenCheck::Missing,
            TokenCheck::Rejected,
            TokenCheck::Rejected
        ]
    );
    assert_eq!(vault.reads("api-key"), 0);
}

#[tokio::test]
async fn vault_serves_secrets_and_their_versions() {
    let (identity, vault) = started().await;
    let token = vault_token(&identity).await;
    let first = vault.set_secret("api-key", "value-1");
    let second = vault.set_secret("api-key", "value-2");
    assert_ne!(first, second);
    assert_eq!(first.len(), 32);

    for path in [
        "/secrets/api-key?api-version=7.5",
        "/secrets/api-key/?api-version=2025-07-01",
    ] {
        let latest = vault_get(&vault, path, Some(&token)).await;
        assert_eq!(latest.status, StatusCode::OK, "{path}");
        let body = latest.json();
        assert_eq!(body["value"], "value-2");
        assert_eq!(
            body["id"],
            format!("https://{VAULT_HOST}/secrets/api-key/{second}")
        );
        assert_eq!(body["attributes"]["enabled"], true);
    }
    let pinned = vault_get(
        &vault,
        &format!("/secrets/api-key/{first}?api-version=7.5"),
        Some(&token),
    )
    .await;
    assert_eq!(pinned.json()["value"], "value-1");
    assert_eq!(vault.reads("api-key"), 3);
    assert!(!pinned.header("x-ms-request-id").is_empty());

    let requests = vault.requests();
    assert_eq!(requests[2].version.as_deref(), Some(first.as_str()));
    assert_eq!(requests[0].api_version.as_deref(), Some("7.5"));
    assert_eq!(requests[0].token, TokenCheck::Accepted);
}

#[tokio::test]
async fn vault_answers_missing_and_malformed_like_azure() {
    let (identity, vault) = started().await;
    let token = vault_token(&identity).await;
    vault.set_secret("present", "value");

    let missing = vault_get(&vault, "/secrets/absent?api-version=7.5", Some(&token)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["code"], "SecretNotFound");
    assert!(missing.text().contains("absent"));

    let version = vault_get(
        &vault,
        "/secrets/present/0000?api-version=7.5",
        Some(&token),
    )
    .await;
    assert_eq!(version.status, StatusCode::NOT_FOUND);
    assert_eq!(version.json()["error"]["code"], "SecretNotFound");

    let no_version = vault_get(&vault, "/secrets/present", Some(&token)).await;
    assert_eq!(no_version.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_version.json()["error"]["code"], "BadParameter");

    let bad_name = vault_get(&vault, "/secrets/bad_name?api-version=7.5", Some(&token)).await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);

    assert!(vault.delete_secret("present"));
    let deleted = vault_get(&vault, "/secrets/present?api-version=7.5", Some(&token)).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn vault_throttles_n_times_then_serves() {
    let (identity, vault) = started().await;
    let token = vault_token(&identity).await;
    vault.set_secret("api-key", "value");
    vault.throttle(2, 7);
    let path = "/secrets/api-key?api-version=7.5";
    for _ in 0..2 {
        let throttled = vault_get(&vault, path, Some(&token)).await;
        assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(throttled.header("retry-after"), "7");
        assert_eq!(throttled.json()["error"]["code"], "Throttled");
    }
    assert_eq!(
        vault_get(&vault, path, Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn vault_can_be_forbidden_or_down() {
    let (identity, vault) = started().await;
    let token = vault_token(&identity).await;
    vault.set_secret("api-key", "value");
    let path = "/secrets/api-key?api-version=7.5";

    vault.set_forbidden(true);
    let forbidden = vault_get(&vault, path, Some(&token)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.json()["error"]["code"], "Forbidden");
    vault.set_forbidden(false);

    vault.set_down(Some(VaultDown::Status(503)));
    assert_eq!(
        vault_get(&vault, path, Some(&token)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    vault.set_down(Some(VaultDown::Reset));
    let reset = vault_request(&vault, trusting(&vault), VAULT_HOST, path, Some(&token)).await;
    assert!(reset.is_err(), "a reset connection gives no answer");

    vault.set_down(None);
    assert_eq!(
        vault_get(&vault, path, Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn vault_tls_is_really_verified() {
    let (_identity, vault) = started().await;
    let path = "/secrets/api-key?api-version=7.5";
    // A client that does not trust the test CA refuses the certificate.
    let stranger = tls_config(RootCertStore::empty());
    assert!(
        vault_request(&vault, stranger, VAULT_HOST, path, None)
            .await
            .is_err()
    );
    // The certificate does not cover other names.
    assert!(
        vault_request(&vault, trusting(&vault), "vault.example.com", path, None)
            .await
            .is_err()
    );
    // It covers every vault and localhost.
    for host in ["other-vault.vault.azure.net", "localhost"] {
        let reply = vault_request(&vault, trusting(&vault), host, path, None)
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{host}");
    }
    assert!(vault.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}
