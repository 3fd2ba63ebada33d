//! Key Vault: reference parsing here (no network); fetching end to end through the Azure SDK in
//! [`fetch`], with the child-process harness in [`harness`].

mod fetch;
pub(crate) mod harness;
mod pipeline;
mod typed;

use hydrenv::keyvault::{
    self, FetchOptions, KeyVaultSource, SecretRef, bulk_references, default_vault, parse_reference,
};

use crate::support::env;

const VAULT: &str = "kv-hydrenv-test";
const VAULT_URL: &str = "https://kv-hydrenv-test.vault.azure.net";
const IDENTITY_SECRET: &str = "identity-header-secret-3f9c";

fn vault_ref(name: &str, version: Option<&str>) -> SecretRef {
    SecretRef {
        vault_url: VAULT_URL.to_owned(),
        name: name.to_owned(),
        version: version.map(str::to_owned),
    }
}

#[test]
fn reference_forms_parse_to_the_same_secret() {
    let default = Some(VAULT_URL);
    let cases: &[(&str, SecretRef)] = &[
        (
            "@Microsoft.KeyVault(SecretUri=https://kv-hydrenv-test.vault.azure.net/secrets/api-key)",
            vault_ref("api-key", None),
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://KV-Hydrenv-Test.vault.azure.net/secrets/api-key/)",
            vault_ref("api-key", None),
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://kv-hydrenv-test.vault.azure.net/secrets/api-key/0123456789abcdef0123456789abcdef)",
            vault_ref("api-key", Some("0123456789abcdef0123456789abcdef")),
        ),
        (
            "@Microsoft.KeyVault(VaultName=kv-hydrenv-test;SecretName=api-key)",
            vault_ref("api-key", None),
        ),
        (
            " @microsoft.keyvault(vaultname=kv-hydrenv-test; secretname=api-key; secretversion=v2) ",
            vault_ref("api-key", Some("v2")),
        ),
        ("kv://api-key", vault_ref("api-key", None)),
        ("kv://api-key/v2", vault_ref("api-key", Some("v2"))),
    ];
    for (value, expected) in cases {
        assert_eq!(
            parse_reference(value, default).unwrap().as_ref(),
            Some(expected),
            "{value}"
        );
    }
    assert_eq!(
        parse_reference(
            "@Microsoft.KeyVault(SecretUri=https://kv-cn.vault.azure.cn/secrets/a)",
            None
        )
        .unwrap()
        .unwrap()
        .vault_url,
        "https://kv-cn.vault.azure.cn"
    );
}

#[test]
fn plain_values_are_not_references() {
    for value in [
        "",
        "sk-plain-key",
        "https://kv-hydrenv-test.vault.azure.net/secrets/api-key",
        "Microsoft.KeyVault(VaultName=a)",
        "kv:/api-key",
    ] {
        assert_eq!(parse_reference(value, Some(VAULT_URL)), Ok(None), "{value}");
    }
}

#[test]
fn bad_references_are_refused_before_any_request() {
    let bad: &[(&str, &str)] = &[
        ("kv://bad_name", "not a valid Key Vault secret name"),
        ("kv://", "not a valid Key Vault secret name"),
        ("kv://has.dot", "not a valid Key Vault secret name"),
        (
            "kv://name/ver/extra",
            "not a valid Key Vault secret version",
        ),
        ("kv://name/v?x=1", "not a valid Key Vault secret version"),
        (
            "@Microsoft.KeyVault(VaultName=kv-hydrenv-test;SecretName=a",
            "must end with `)`",
        ),
        (
            "@Microsoft.KeyVault(VaultName=kv-hydrenv-test)",
            "SecretName is missing",
        ),
        ("@Microsoft.KeyVault(SecretName=a)", "VaultName is missing"),
        (
            "@Microsoft.KeyVault(VaultName=kv;SecretName=a)",
            "not a vault name",
        ),
        (
            "@Microsoft.KeyVault(VaultName=kv-x;SecretName=a;Colour=red)",
            "unknown field",
        ),
        (
            "@Microsoft.KeyVault(VaultName=kv-x;VaultName=kv-y;SecretName=a)",
            "given twice",
        ),
        (
            "@Microsoft.KeyVault(SecretUri=http://kv-x.vault.azure.net/secrets/a)",
            "SecretUri must be",
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://evil.example.com/secrets/a)",
            "SecretUri must be",
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/keys/a)",
            "/secrets/<name>",
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/a?x=1)",
            "/secrets/<name>",
        ),
    ];
    for (value, expected) in bad {
        let error = parse_reference(value, Some(VAULT_URL)).unwrap_err();
        assert!(error.contains(expected), "{value}: {error}");
    }
    let long = format!("kv://{}", "a".repeat(128));
    assert!(parse_reference(&long, Some(VAULT_URL)).is_err());
    assert!(parse_reference(&format!("kv://{}", "a".repeat(127)), Some(VAULT_URL)).is_ok());

    let no_default = parse_reference("kv://api-key", None).unwrap_err();
    assert!(
        no_default.contains("KEY_VAULT_URI") && no_default.contains("KEY_VAULT_NAME"),
        "{no_default}"
    );
}

#[test]
fn default_vault_prefers_the_uri_and_names_a_bad_variable() {
    let both = env(&[
        ("KEY_VAULT_URI", "https://KV-Uri.vault.azure.net/"),
        ("KEY_VAULT_NAME", "kv-name"),
    ]);
    assert_eq!(
        default_vault(&both).unwrap().as_deref(),
        Some("https://kv-uri.vault.azure.net")
    );
    assert_eq!(
        default_vault(&env(&[("KEY_VAULT_NAME", "kv-name")]))
            .unwrap()
            .as_deref(),
        Some("https://kv-name.vault.azure.net")
    );
    assert_eq!(
        default_vault(&env(&[("KEY_VAULT_URI", " ")])).unwrap(),
        None
    );
    let bad_uri = default_vault(&env(&[("KEY_VAULT_URI", "https://example.com")])).unwrap_err();
    assert!(bad_uri.starts_with("KEY_VAULT_URI:"), "{bad_uri}");
    let bad_name = default_vault(&env(&[("KEY_VAULT_NAME", "x_y")])).unwrap_err();
    assert!(bad_name.starts_with("KEY_VAULT_NAME:"), "{bad_name}");
}

#[test]
fn bulk_import_maps_names_like_container_apps() {
    let list = env(&[(
        "HYDRENV_KEY_VAULT_SECRETS",
        " gateway-client-key-0, backend-key ,",
    )]);
    let pairs = bulk_references(&list, Some(VAULT_URL)).unwrap();
    assert_eq!(
        pairs,
        vec![
            (
                "GATEWAY_CLIENT_KEY_0".to_owned(),
                vault_ref("gateway-client-key-0", None)
            ),
            ("BACKEND_KEY".to_owned(), vault_ref("backend-key", None)),
        ]
    );
    assert_eq!(bulk_references(&env(&[]), None), Ok(Vec::new()));

    let no_vault = bulk_references(&list, None).unwrap_err();
    assert!(no_vault.contains("KEY_VAULT_URI"), "{no_vault}");
    let clash = env(&[("HYDRENV_KEY_VAULT_SECRETS", "a-b,A_B,bad.name,a-b")]);
    let error = bulk_references(&clash, Some(VAULT_URL)).unwrap_err();
    assert!(error.contains("`bad.name`"), "{error}");
    assert!(error.contains("listed twice"), "{error}");
    // `A_B` is not a valid secret name (underscore), so it is reported as such.
    assert!(error.contains("`A_B` is not a valid"), "{error}");
    let case_clash = env(&[("HYDRENV_KEY_VAULT_SECRETS", "key-a,KEY-A")]);
    let error = bulk_references(&case_clash, Some(VAULT_URL)).unwrap_err();
    assert!(error.contains("both become KEY_A"), "{error}");
}

#[test]
fn display_names_the_vault_and_secret_never_a_value() {
    assert_eq!(
        vault_ref("api-key", Some("v1")).to_string(),
        "kv-hydrenv-test.vault.azure.net/secrets/api-key/v1"
    );
    assert_eq!(
        vault_ref("api-key", None).to_string(),
        "kv-hydrenv-test.vault.azure.net/secrets/api-key"
    );
}

#[test]
fn exit_codes_separate_configuration_from_outages() {
    use keyvault::FetchErrorKind as K;
    assert_eq!(K::NotFound.exit_code(), 64);
    assert_eq!(K::Forbidden.exit_code(), 64);
    assert_eq!(K::Unavailable.exit_code(), 69);
    assert_eq!(K::Identity.exit_code(), 69);
}

#[test]
fn no_identity_says_what_to_set() {
    let error =
        KeyVaultSource::from_env(&env(&[("KEY_VAULT_NAME", VAULT)]), FetchOptions::default())
            .unwrap_err();
    assert!(
        error.contains("IDENTITY_ENDPOINT") && error.contains("HYDRENV_DEV_CREDENTIAL"),
        "{error}"
    );
}

#[test]
fn identity_only_in_the_map_is_refused_instead_of_falling_back_to_imds() {
    // The SDK reads the identity variables from the process environment; a map that has them
    // while the process does not must not lead to a token request elsewhere.
    if std::env::var_os("IDENTITY_ENDPOINT").is_some() {
        return; // running inside a managed identity: the premise does not hold
    }
    let map = env(&[
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
        ("IDENTITY_HEADER", IDENTITY_SECRET),
    ]);
    let error = KeyVaultSource::from_env(&map, FetchOptions::default()).unwrap_err();
    assert!(error.contains("process environment"), "{error}");
    assert!(!error.contains(IDENTITY_SECRET), "{error}");
}
