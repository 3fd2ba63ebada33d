//! The Terraform stages (`terraform/`) against the variable table: every variable of
//! `hydrenv/src/vars.rs` can be set through the workload stage, a non-secret one only through
//! `app_settings` and a secret one only through `secrets`; the containers' environment is built
//! from both maps (plain values and Key Vault secret references); and each stage's outputs feed
//! the later stages' inputs by name, the way scripts/deploy.sh passes them. The HCL is parsed
//! and the workload's locals and validation conditions are evaluated (`terraform/stage.rs`).

mod containers;
mod contract;
mod funcs;
mod stage;
mod stages;

use std::collections::BTreeSet;

use hcl::{Map, Value};
use hydrenv::vars::{Target, VARS};

use stage::{Stage, object};

const WORKLOAD: &str = "30-workload";

/// Inputs that deploy.sh passes itself rather than from a stage's outputs.
const DEPLOY_INPUTS: &[&str] = &["image"];

/// Outputs of 10 and 20 that no later stage reads, and who does.
const FOR_OPERATORS: &[(&str, &str)] = &[(
    "openai_account_ids",
    "the accounts' resource ids, for operators and scripts (role checks, metrics); no stage needs them",
)];

/// What the earlier stages' outputs look like after an apply (deploy.sh turns them into
/// `-var-file`s). Its names must be exactly the outputs of 00, 10 and 20 (a test checks), so a
/// new output gets a realistic value here.
fn upstream_outputs() -> Map<String, Value> {
    let sub =
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aigw-dev/providers";
    let mut out: Map<String, Value> = [
        ("state_resource_group_name", "rg-aigw-dev-tfstate".to_owned()),
        ("state_storage_account_name", "staigwdev0a1b2c".to_owned()),
        ("state_container_name", "tfstate".to_owned()),
        ("resource_group_name", "rg-aigw-dev".to_owned()),
        ("location", "swedencentral".to_owned()),
        ("container_app_environment_id", format!("{sub}/Microsoft.App/managedEnvironments/cae-aigw-dev")),
        ("acr_name", "craigwdev0a1b2c".to_owned()),
        ("acr_login_server", "craigwdev0a1b2c.azurecr.io".to_owned()),
        ("key_vault_id", format!("{sub}/Microsoft.KeyVault/vaults/kv-aigwdev-0a1b2c")),
        ("key_vault_name", "kv-aigwdev-0a1b2c".to_owned()),
        ("key_vault_uri", "https://kv-aigwdev-0a1b2c.vault.azure.net/".to_owned()),
        ("gateway_identity_id", format!("{sub}/Microsoft.ManagedIdentity/userAssignedIdentities/id-aigw-dev-gateway")),
        ("gateway_identity_client_id", "11111111-2222-3333-4444-555555555555".to_owned()),
        ("gateway_identity_principal_id", "66666666-7777-8888-9999-000000000000".to_owned()),
        ("container_apps_subnet_id", format!("{sub}/Microsoft.Network/virtualNetworks/vnet-aigw-dev/subnets/snet-aigw-dev-aca")),
        ("log_analytics_workspace_id", format!("{sub}/Microsoft.OperationalInsights/workspaces/log-aigw-dev")),
        ("monitor_workspace_id", format!("{sub}/Microsoft.Monitor/accounts/amw-aigw-dev")),
        ("azure_monitor_workspace_endpoint", "https://dce-aigw.swedencentral-1.metrics.ingest.monitor.azure.com/dataCollectionRules/dcr-0a1b/streams/Microsoft-PrometheusMetrics/api/v1/write?api-version=2023-04-24".to_owned()),
        ("app_insights_connection_string", "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://swedencentral-0.in.applicationinsights.azure.com/".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Value::from(v)))
    .collect();
    out.insert(
        "openai_app_settings".into(),
        object([
            (
                "AZURE_OPENAI_ENDPOINT_0",
                "https://oai-aigw-dev-swc.openai.azure.com/",
            ),
            ("AZURE_OPENAI_NAME_0", "swc"),
            ("AZURE_OPENAI_PRIORITY_0", "5"),
            ("AZURE_OPENAI_WEIGHT_0", "1"),
            ("AZURE_OPENAI_DEPLOYMENTS_0", "gpt-4o-mini=gpt-4o-mini"),
        ]),
    );
    out.insert(
        "openai_secrets".into(),
        object([("AZURE_OPENAI_KEY_0", "key-from-20-openai")]),
    );
    out.insert(
        "openai_account_ids".into(),
        Value::from_iter([format!(
            "{sub}/Microsoft.CognitiveServices/accounts/oai-aigw-dev-swc"
        )]),
    );
    out
}

/// The workload's inputs for one environment: its example, the upstream outputs, the image.
fn workload_inputs(env: &str) -> Map<String, Value> {
    let mut inputs = upstream_outputs();
    inputs.extend(Stage::load(WORKLOAD).example(env));
    inputs.insert(
        "image".into(),
        Value::from("craigwdev0a1b2c.azurecr.io/gateway:0.1.0"),
    );
    inputs
}

/// The variables Container Apps injects into every container itself.
fn platform_injected() -> BTreeSet<&'static str> {
    VARS.iter()
        .filter(|v| v.target == Target::Runtime && v.help.contains("injected by Container Apps"))
        .map(|v| v.name)
        .collect()
}

/// Names to try for a table entry: itself, or a few indexes of a group.
fn concrete(name: &str) -> Vec<String> {
    match name.strip_suffix("_N") {
        Some(group) => ["0", "12"].iter().map(|n| format!("{group}_{n}")).collect(),
        None => vec![name.to_owned()],
    }
}

fn one(name: &str) -> Value {
    object([(name, "value")])
}
