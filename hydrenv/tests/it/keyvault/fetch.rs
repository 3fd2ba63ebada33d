//! Fetching through the SDK against the mock identity endpoint and vault (see [`super::harness`]):
//! deduplication, versions, the challenge, throttling, outages, identity failures, and errors that
//! never carry a secret value.

use std::net::SocketAddr;
use std::time::Duration;

use mock::identity::IDENTITY_API_VERSION;
use mock::keyvault::{KEY_VAULT_RESOURCE, TokenCheck, VaultDown};

use super::harness::Azure;
use super::{IDENTITY_SECRET, VAULT};

const REF_ALPHA: &str = "kv-hydrenv-test.vault.azure.net/secrets/alpha";

#[tokio::test]
async fn fetches_every_distinct_secret_once_in_parallel() {
    let azure = Azure::start().await;
    let alpha = azure.vault.set_secret("alpha", "alpha-value-7d1e");
    let beta = azure.vault.set_secret("beta", "beta-value-c04a");
    let gamma = azure.vault.set_secret("gateway-key-0", "gamma-value-99b2");
    let outcome = azure
        .scenario()
        // The same secret three ways: fetched once.
        .var("FIRST", "kv://alpha")
        .var(
            "SECOND",
            "@Microsoft.KeyVault(SecretUri=https://kv-hydrenv-test.vault.azure.net/secrets/alpha/)",
        )
        .var(
            "THIRD",
            "@Microsoft.KeyVault(VaultName=kv-hydrenv-test;SecretName=alpha)",
        )
        .var(
            "FOURTH",
            "@Microsoft.KeyVault(VaultName=kv-hydrenv-test;SecretName=beta)",
        )
        .var("HYDRENV_KEY_VAULT_SECRETS", "gateway-key-0")
        .run()
        .await;
    assert_eq!(outcome.setup_error, None);
    assert_eq!(outcome.values.len(), 3, "{outcome:?}");
    assert_eq!(outcome.value(REF_ALPHA), "alpha-value-7d1e");
    assert_eq!(outcome.version(REF_ALPHA), alpha);
    let beta_ref = "kv-hydrenv-test.vault.azure.net/secrets/beta";
    assert_eq!(outcome.value(beta_ref), "beta-value-c04a");
    assert_eq!(outcome.version(beta_ref), beta);
    let gamma_ref = "kv-hydrenv-test.vault.azure.net/secrets/gateway-key-0";
    assert_eq!(outcome.value(gamma_ref), "gamma-value-99b2");
    assert_eq!(outcome.version(gamma_ref), gamma);

    for name in ["alpha", "beta", "gateway-key-0"] {
        assert_eq!(azure.vault.reads(name), 1, "{name}");
    }
    // One token for all of them (the credential caches it), requested with the header secret.
    assert_eq!(azure.identity.token_requests(), 1);
}

#[tokio::test]
async fn challenge_then_managed_identity_token_then_secret() {
    let azure = Azure::start().await;
    azure.vault.set_secret("alpha", "alpha-value-5e21");
    let client_id = "8a6e2f8e-0000-4000-8000-0000000000ca";
    azure
        .identity
        .set_known_client_ids(Some(vec![client_id.to_owned()]));
    let outcome = azure
        .scenario()
        .var("ACA_MANAGED_IDENTITY_CLIENT_ID", client_id)
        .var("AZURE_CLIENT_ID", "not-this-one")
        .var("KEY", "kv://alpha")
        .run()
        .await;
    assert_eq!(outcome.value(REF_ALPHA), "alpha-value-5e21");

    let requests = azure.vault.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0].token,
        TokenCheck::Missing,
        "first request carries no token"
    );
    assert_eq!(requests[0].status, 401);
    assert_eq!(requests[1].token, TokenCheck::Accepted);
    assert_eq!(requests[1].client_id.as_deref(), Some(client_id));
    assert_eq!(requests[1].status, 200);
    assert_eq!(requests[1].secret.as_deref(), Some("alpha"));

    let tokens = azure.identity.requests();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(tokens[0].header_ok, "X-IDENTITY-HEADER sent");
    assert_eq!(tokens[0].resource.as_deref(), Some(KEY_VAULT_RESOURCE));
    assert_eq!(tokens[0].client_id.as_deref(), Some(client_id));
    assert_eq!(tokens[0].status, 200);
    assert_eq!(IDENTITY_API_VERSION, "2019-08-01");
}

#[tokio::test]
async fn a_pinned_version_is_fetched_not_the_latest() {
    let azure = Azure::start().await;
    let first = azure.vault.set_secret("rotating", "rotating-old-81aa");
    let second = azure.vault.set_secret("rotating", "rotating-new-2bd0");
    assert_ne!(first, second, "a new value is a new version");
    let pinned = format!("kv://rotating/{first}");
    let outcome = azure
        .scenario()
        .var("OLD", &pinned)
        .var("NEW", "kv://rotating")
        .run()
        .await;
    let pinned_ref = format!("kv-hydrenv-test.vault.azure.net/secrets/rotating/{first}");
    assert_eq!(outcome.value(&pinned_ref), "rotating-old-81aa");
    assert_eq!(outcome.version(&pinned_ref), first);
    let latest = "kv-hydrenv-test.vault.azure.net/secrets/rotating";
    assert_eq!(outcome.value(latest), "rotating-new-2bd0");
    assert_eq!(outcome.version(latest), second);
    let versions: Vec<_> = azure
        .vault
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.version)
        .collect();
    assert!(versions.contains(&Some(first.clone())), "{versions:?}");
    assert!(versions.contains(&None), "{versions:?}");
}

#[tokio::test]
async fn a_missing_secret_fails_everything_naming_vault_and_secret() {
    let azure = Azure::start().await;
    azure.vault.set_secret("present", "present-value-61f3");
    let outcome = azure
        .scenario()
        .var("OK", "kv://present")
        .var("GONE", "kv://absent-secret")
        .var(
            "GONE_VERSION",
            "kv://present/00000000000000000000000000000000",
        )
        .run()
        .await;
    assert!(outcome.values.is_empty(), "all or errors: {outcome:?}");
    assert_eq!(outcome.errors.len(), 2, "{outcome:?}");
    let absent = &outcome.errors[0];
    assert_eq!(
        absent.reference,
        "kv-hydrenv-test.vault.azure.net/secrets/absent-secret"
    );
    assert_eq!(absent.kind, "NotFound");
    assert_eq!(absent.exit_code, 64);
    assert!(absent.message.contains("404"), "{absent:?}");
    assert!(absent.message.contains("SecretNotFound"), "{absent:?}");
    assert!(absent.message.contains("absent-secret"), "{absent:?}");
    let version = &outcome.errors[1];
    assert_eq!(version.kind, "NotFound");
    assert!(
        version
            .reference
            .ends_with("/present/00000000000000000000000000000000")
    );
    outcome.assert_secret_free(&["present-value-61f3"]);
}

#[tokio::test]
async fn throttled_twice_then_served() {
    let azure = Azure::start().await;
    azure.vault.set_secret("alpha", "alpha-value-0c7d");
    azure.vault.throttle(2, 0);
    let outcome = azure.scenario().var("KEY", "kv://alpha").run().await;
    assert_eq!(outcome.value(REF_ALPHA), "alpha-value-0c7d");
    let statuses: Vec<u16> = azure
        .vault
        .requests()
        .iter()
        .filter(|r| r.token == TokenCheck::Accepted)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[tokio::test]
async fn throttled_beyond_the_retries_is_unavailable_after_bounded_attempts() {
    let azure = Azure::start().await;
    azure.vault.set_secret("alpha", "alpha-value-e3a9");
    azure.vault.throttle(100, 0);
    let outcome = azure
        .scenario()
        .retries(2)
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Unavailable");
    assert_eq!(error.exit_code, 69);
    assert!(error.message.contains("429"), "{error:?}");
    let attempts = azure
        .vault
        .requests()
        .iter()
        .filter(|r| r.token == TokenCheck::Accepted)
        .count();
    assert_eq!(attempts, 3, "first try + 2 retries");
    outcome.assert_secret_free(&["alpha-value-e3a9"]);
}

#[tokio::test]
async fn a_vault_that_resets_connections_is_unavailable() {
    let azure = Azure::start().await;
    azure.vault.set_secret("alpha", "alpha-value-4410");
    azure.vault.set_down(Some(VaultDown::Reset));
    let outcome = azure
        .scenario()
        .retries(2)
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Unavailable", "{error:?}");
    assert_eq!(error.exit_code, 69);
    assert_eq!(error.reference, REF_ALPHA);
    assert!(azure.vault.requests().is_empty());
    assert_eq!(
        azure.identity.token_requests(),
        0,
        "no token without a challenge"
    );
}

#[tokio::test]
async fn an_unreachable_vault_is_unavailable() {
    let azure = Azure::start().await;
    let nothing_listens = SocketAddr::from(([127, 0, 0, 1], 1));
    let outcome = azure
        .scenario()
        .retries(1)
        .resolve(&format!("{VAULT}.vault.azure.net"), nothing_listens)
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Unavailable", "{error:?}");
    assert!(error.message.contains("unreachable"), "{error:?}");
}

#[tokio::test]
async fn a_vault_answering_503_is_unavailable() {
    let azure = Azure::start().await;
    azure.vault.set_down(Some(VaultDown::Status(503)));
    let outcome = azure
        .scenario()
        .retries(1)
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Unavailable", "{error:?}");
    assert!(error.message.contains("503"), "{error:?}");
    assert_eq!(azure.vault.requests().len(), 2, "first try + 1 retry");
}

#[tokio::test]
async fn a_hanging_vault_hits_the_timeout() {
    let azure = Azure::start().await;
    azure.vault.set_down(Some(VaultDown::Hang));
    let outcome = azure
        .scenario()
        .timeout(Duration::from_millis(300))
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Unavailable", "{error:?}");
    assert!(
        error.message.contains("no answer within 0.3 s"),
        "{error:?}"
    );
}

#[tokio::test]
async fn access_denied_is_forbidden() {
    let azure = Azure::start().await;
    azure.vault.set_secret("alpha", "alpha-value-a0f0");
    azure.vault.set_forbidden(true);
    let outcome = azure.scenario().var("KEY", "kv://alpha").run().await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Forbidden", "{error:?}");
    assert_eq!(error.exit_code, 64);
    assert!(error.message.contains("403"), "{error:?}");
    outcome.assert_secret_free(&["alpha-value-a0f0"]);
}

#[tokio::test]
async fn an_identity_endpoint_refusing_is_an_identity_error() {
    for status in [500, 403] {
        let azure = Azure::start().await;
        azure.vault.set_secret("alpha", "alpha-value-77c3");
        azure.identity.refuse_with(Some(status));
        let outcome = azure
            .scenario()
            .retries(2)
            .var("KEY", "kv://alpha")
            .run()
            .await;
        let error = outcome.only_error();
        assert_eq!(error.kind, "Identity", "{status}: {error:?}");
        assert_eq!(error.exit_code, 69);
        assert!(error.message.contains("token"), "{error:?}");
        assert!(
            error.message.contains("ManagedIdentityCredential"),
            "{error:?}"
        );
        // Bounded: a 500 is retried (first try + 2 retries), a 403 is final.
        let expected = if status == 500 { 3 } else { 1 };
        assert_eq!(azure.identity.token_requests(), expected, "{status}");
        assert!(azure.vault.requests().iter().all(|r| r.status != 200));
        outcome.assert_secret_free(&["alpha-value-77c3", IDENTITY_SECRET]);
    }
}

#[tokio::test]
async fn an_unassigned_client_id_is_an_identity_error() {
    let azure = Azure::start().await;
    azure
        .identity
        .set_known_client_ids(Some(vec!["the-assigned-one".to_owned()]));
    let outcome = azure
        .scenario()
        .var("AZURE_CLIENT_ID", "some-other-identity")
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Identity", "{error:?}");
    assert!(error.message.contains("not been assigned"), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_identity_endpoint_is_an_identity_error() {
    let azure = Azure::start().await;
    azure.vault.set_secret("alpha", "alpha-value-d1d1");
    let outcome = azure
        .scenario()
        .retries(1)
        .var("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.only_error();
    assert_eq!(error.kind, "Identity", "{error:?}");
    assert_eq!(error.exit_code, 69);
    assert_eq!(azure.vault.reads("alpha"), 0);
}

#[tokio::test]
async fn no_identity_in_the_child_environment_is_a_setup_error() {
    let azure = Azure::start().await;
    let outcome = azure
        .scenario()
        .without("IDENTITY_ENDPOINT")
        .without("IDENTITY_HEADER")
        .var("KEY", "kv://alpha")
        .run()
        .await;
    let error = outcome.setup_error.unwrap();
    assert!(error.contains("IDENTITY_ENDPOINT"), "{error}");
    assert!(azure.vault.requests().is_empty());
}
