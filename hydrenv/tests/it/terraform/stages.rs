//! The stages as a chain: each one's outputs feed the later ones' inputs by name (deploy.sh
//! passes `terraform output -json` of every earlier stage as a var file), and each stage and
//! module is complete: versions, described and typed variables, outputs, examples.

use std::collections::BTreeSet;

use hcl::{Map, Value};

use super::stage::{self, STAGES, Stage, attr, blocks, label, src};
use super::{DEPLOY_INPUTS, FOR_OPERATORS, WORKLOAD, upstream_outputs, workload_inputs};

#[test]
fn stage_outputs_feed_later_stages_by_name() {
    let stages: Vec<Stage> = STAGES.iter().map(|s| Stage::load(s)).collect();
    let upstream: BTreeSet<String> = upstream_outputs().keys().cloned().collect();
    let produced: BTreeSet<String> = stages[..3]
        .iter()
        .flat_map(|s| s.outputs().into_keys().map(str::to_owned))
        .collect();
    assert_eq!(
        upstream, produced,
        "upstream_outputs() must mirror the outputs of 00, 10 and 20"
    );

    let mut problems = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let examples = [stage.example("dev"), stage.example("prod")];
        let earlier: BTreeSet<&str> = stages[..i]
            .iter()
            .flat_map(|s| s.outputs().into_keys())
            .collect();
        for (name, var) in stage.variables() {
            let has_default = attr(var.body(), "default").is_some();
            let from_examples = examples.iter().all(|e| e.contains_key(name));
            let from_deploy = stage.name == WORKLOAD && DEPLOY_INPUTS.contains(&name);
            if !has_default && !earlier.contains(name) && !from_examples && !from_deploy {
                problems.push(format!(
                    "{}: variable {name} has no default and no source",
                    stage.name
                ));
            }
        }
        // Each output feeds a later stage (00's feed the backends of 10, 20 and 30 instead).
        for (name, output) in stage.outputs() {
            let later: Vec<&Stage> = stages[i + 1..]
                .iter()
                .filter(|s| s.variables().contains_key(name))
                .collect();
            let sensitive = src(attr(output.body(), "sensitive")) == "true";
            let for_operators = FOR_OPERATORS.iter().any(|(n, _)| *n == name);
            if i > 0 && i < 3 && later.is_empty() && !for_operators {
                problems.push(format!(
                    "{}: output {name} feeds no later stage",
                    stage.name
                ));
            }
            for s in later {
                let var = s.variables()[name];
                if sensitive && src(attr(var.body(), "sensitive")) != "true" {
                    problems.push(format!(
                        "{}: {name} is a sensitive output but not a sensitive variable of {}",
                        stage.name, s.name
                    ));
                }
                // 20-openai is optional: what it feeds must have a default.
                if stage.name == "20-openai" && attr(var.body(), "default").is_none() {
                    problems.push(format!(
                        "{}: {name} needs a default (20-openai may be skipped)",
                        s.name
                    ));
                }
            }
        }
        // 00-bootstrap keeps a local state; the others use the account it creates.
        let terraform = stage.blocks("terraform").next().unwrap();
        let backend: Vec<_> = blocks(terraform.body(), "backend")
            .map(|b| label(b, 0))
            .collect();
        let want = if i == 0 { "local" } else { "azurerm" };
        if backend != [want] {
            problems.push(format!(
                "{}: backend {backend:?}, expected {want}",
                stage.name
            ));
        }
    }
    let bootstrap: BTreeSet<&str> = stages[0].outputs().into_keys().collect();
    assert_eq!(
        bootstrap,
        [
            "state_container_name",
            "state_resource_group_name",
            "state_storage_account_name"
        ]
        .into(),
        "deploy.sh builds the backend config of 10, 20 and 30 from these"
    );
    // The names deploy.sh and the other stages rely on (terraform/README.md, the contract).
    for (stage, names) in [
        (
            1,
            &[
                "resource_group_name",
                "location",
                "container_app_environment_id",
                "acr_name",
                "acr_login_server",
                "key_vault_id",
                "key_vault_name",
                "key_vault_uri",
                "gateway_identity_id",
                "gateway_identity_client_id",
                "gateway_identity_principal_id",
                "log_analytics_workspace_id",
                "monitor_workspace_id",
                "app_insights_connection_string",
            ][..],
        ),
        (2, &["openai_app_settings", "openai_account_ids"][..]),
        (
            3,
            &[
                "container_app_name",
                "container_app_fqdn",
                "gateway_url",
                "latest_revision_name",
            ][..],
        ),
    ] {
        for name in names {
            if !stages[stage].outputs().contains_key(name) {
                problems.push(format!(
                    "{}: the output {name} is missing",
                    stages[stage].name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_stage_and_module_is_complete() {
    let mut problems = Vec::new();
    let modules = [
        "modules/naming",
        "modules/openai-account",
        "modules/gateway-alerts",
    ];
    for name in STAGES.iter().chain(modules.iter()) {
        let stage = Stage::load(name);
        let dir = stage::terraform_root().join(name);
        let is_stage = STAGES.contains(name);
        let mut files = vec!["versions.tf", "variables.tf", "main.tf", "outputs.tf"];
        if is_stage {
            files.extend([
                "terraform.tfvars.dev.example",
                "terraform.tfvars.prod.example",
            ]);
        }
        for file in files {
            if !dir.join(file).is_file() {
                problems.push(format!("{name}: {file} is missing"));
            }
        }
        let terraform = stage.blocks("terraform").next().unwrap();
        if !stage::text(terraform.body(), "required_version")
            .is_some_and(|v| v.starts_with(">= 1.9"))
        {
            problems.push(format!("{name}: required_version must be >= 1.9"));
        }
        let providers = blocks(terraform.body(), "required_providers").next();
        if let Some(providers) = providers {
            let azurerm = attr(providers.body(), "azurerm")
                .map(|e| e.to_string())
                .unwrap_or_default();
            if !azurerm.contains("\"~> 4.") {
                problems.push(format!("{name}: azurerm must be pinned to 4.x (~> 4.y)"));
            }
        } else if name.starts_with("modules/naming") {
        } else {
            problems.push(format!("{name}: no required_providers"));
        }
        for (var, block) in stage.variables() {
            if stage::text(block.body(), "description").is_none_or(|d| d.len() <= 10) {
                problems.push(format!("{name}: variable {var} needs a description"));
            }
            if attr(block.body(), "type").is_none() {
                problems.push(format!("{name}: variable {var} needs a type"));
            }
        }
        for (output, block) in stage.outputs() {
            if stage::text(block.body(), "description").is_none_or(|d| d.len() <= 10) {
                problems.push(format!("{name}: output {output} needs a description"));
            }
            let secretish = ["secret", "connection_string", "password", "access_key"]
                .iter()
                .any(|w| output.contains(w));
            if secretish
                && output != "secret_names"
                && src(attr(block.body(), "sensitive")) != "true"
            {
                problems.push(format!("{name}: output {output} must be sensitive"));
            }
        }
        if !is_stage {
            continue;
        }
        let variables = stage.variables();
        // The examples and any committed terraform.tfvars.<env>: declared names, no secret, and
        // (workload) settings its validations accept.
        for file in stage.tfvars_files() {
            let values = stage.tfvars(&file);
            for key in values.keys() {
                if !variables.contains_key(key.as_str()) {
                    problems.push(format!("{name}/{file} sets {key}, which is no variable"));
                }
                let secret = [
                    "secrets",
                    "openai_secrets",
                    "app_insights_connection_string",
                ];
                if secret.contains(&key.as_str()) {
                    problems.push(format!(
                        "{name}/{file} sets {key}: secrets never go in these files"
                    ));
                }
            }
            if *name == WORKLOAD {
                let mut inputs = workload_inputs("dev");
                inputs.extend(values.clone());
                let eval = stage.evaluate(&inputs);
                for map in ["app_settings", "secrets"] {
                    let given = values
                        .get(map)
                        .cloned()
                        .unwrap_or(Value::Object(Map::new()));
                    let refused = eval.refusals(&stage, map, given);
                    if !refused.is_empty() {
                        problems.push(format!("{name}/{file}: {map}: {refused:?}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
