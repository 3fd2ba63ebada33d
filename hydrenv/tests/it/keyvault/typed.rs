//! Any value may be a Key Vault reference, whatever its type: the release gets the value typed
//! as usual; what hydrenv shows keeps free text hidden (`<redacted:VARIABLE>`) and shows a
//! number, boolean, duration or choice as parsed (it passed a strict parser, so it can carry no
//! credential, and `hydrenv diff` must show its changes).

use serde_json::Value;

use super::harness::Azure;
use super::pipeline::CHILD_RENDER;

/// Renders with each variable of `from_vault` referring to a vault secret holding its value,
/// plus a one-backend environment and `literal`; returns the child's outcome and the shared root.
async fn render_from_the_vault(
    from_vault: &[(&str, &str)],
    literal: &[(&str, &str)],
) -> (Value, tempfile::TempDir) {
    let azure = Azure::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut scenario = azure
        .scenario()
        .var("SHARED_ROOT", root.path().to_str().unwrap())
        .var("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com")
        .var("AZURE_OPENAI_KEY_0", "sk-literal-0");
    for (name, value) in literal {
        scenario = scenario.var(name, value);
    }
    for (i, (variable, value)) in from_vault.iter().enumerate() {
        let secret = format!("typed-value-{i}");
        azure.vault.set_secret(&secret, value);
        scenario = scenario.var(variable, &format!("kv://{secret}"));
    }
    (scenario.run_child(CHILD_RENDER).await, root)
}

/// Renders with `variable` referring to a vault secret holding `value` (plus a one-backend
/// environment); returns the released gateway config and the dry-run text.
async fn from_the_vault(variable: &str, value: &str) -> (proxy::GatewayConfig, String) {
    let (outcome, root) = render_from_the_vault(&[(variable, value)], &[]).await;
    assert_eq!(outcome["code"], 0, "{outcome}");
    let gateway = std::fs::read_to_string(root.path().join("current/gateway.yaml")).unwrap();
    let config = proxy::GatewayConfig::parse("gateway.yaml", &gateway).unwrap();
    (config, outcome["dry_run"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_number_from_the_vault_is_typed_and_shown() {
    let (config, dry) = from_the_vault("AZURE_OPENAI_WEIGHT_0", "3").await;
    assert_eq!(config.backends[0].weight, 3);
    assert!(dry.contains("    weight: 3\n"), "{dry}");
}

#[tokio::test]
async fn a_boolean_from_the_vault_is_typed_and_shown() {
    let (config, dry) = from_the_vault("GATEWAY_E2E_TEST_MODE", "yes").await;
    assert!(config.server.test_mode);
    assert!(dry.contains("  test_mode: true\n"), "{dry}");
}

#[tokio::test]
async fn seconds_from_the_vault_are_typed_and_shown() {
    let (config, dry) = from_the_vault("AI_PROXY_CONNECT_TIMEOUT", "2.5").await;
    assert_eq!(
        config.upstream.connect_timeout,
        std::time::Duration::from_millis(2500)
    );
    assert!(dry.contains("  connect_timeout: \"2500ms\"\n"), "{dry}");
}

#[tokio::test]
async fn a_list_of_choices_from_the_vault_is_typed_and_shown() {
    let (config, dry) = from_the_vault("AI_PROXY_FALLBACK_STRATEGY", "http_429, timeout").await;
    let triggers = config.upstream.failover;
    assert!(triggers.http_429 && triggers.timeout);
    assert!(!triggers.http_5xx && !triggers.connect_error);
    assert!(
        dry.contains("  failover_on: [\"http_429\", \"timeout\"]\n"),
        "{dry}"
    );
}

#[tokio::test]
async fn a_free_text_list_from_the_vault_is_released_and_hidden() {
    let (config, dry) = from_the_vault(
        "AZURE_OPENAI_DEPLOYMENTS_0",
        "gpt-4o=gpt-4o-eus,mini=mini-eus",
    )
    .await;
    assert_eq!(config.backends[0].deployments["gpt-4o"], "gpt-4o-eus");
    assert_eq!(config.backends[0].deployments["mini"], "mini-eus");
    assert!(
        !dry.contains("gpt-4o-eus") && !dry.contains("mini-eus"),
        "{dry}"
    );
    assert!(
        dry.contains(
            "      \"<redacted:AZURE_OPENAI_DEPLOYMENTS_0>\": \"<redacted:AZURE_OPENAI_DEPLOYMENTS_0>\"\n"
        ),
        "{dry}"
    );
}

#[tokio::test]
async fn a_string_from_the_vault_is_released_and_hidden() {
    let (config, dry) = from_the_vault("AZURE_OPENAI_NAME_0", "eus-from-the-vault").await;
    assert_eq!(&*config.backends[0].name, "eus-from-the-vault");
    assert!(!dry.contains("eus-from-the-vault"), "{dry}");
    assert!(
        dry.contains("  - name: \"<redacted:AZURE_OPENAI_NAME_0>\""),
        "{dry}"
    );
}

#[tokio::test]
async fn a_refused_choice_from_the_vault_is_named_and_quoted_in_no_form() {
    // The reader lowercases a choice before comparing it: the message used to quote
    // `cookie-vault-s3cret`, which the scrub of exact values let through.
    let (outcome, _root) = render_from_the_vault(
        &[
            ("LB_HASH_ON", "Cookie-Vault-S3cret"),
            ("OTEL_LOG_LEVEL", "Loud-Vault-S3cret"),
        ],
        &[("LB_ALG", "chash")],
    )
    .await;
    assert_eq!(outcome["code"], 64, "{outcome}");
    let problems = outcome["problems"].to_string();
    for variable in ["LB_HASH_ON", "OTEL_LOG_LEVEL"] {
        let expected = format!("{variable}: `<redacted:{variable}>` is not one of");
        assert!(
            problems.contains(&expected),
            "expected `{expected}` in {problems}"
        );
    }
    assert!(
        !problems.to_ascii_lowercase().contains("vault-s3cret"),
        "a problem quotes a value from the vault: {problems}"
    );
}
