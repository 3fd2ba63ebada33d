# Every output whose name is a variable of a later stage feeds it by name (deploy.sh writes
# `terraform output -json` into .deploy/<env>/10-platform.auto.tfvars.json); hydrenv's
# terraform test checks that the names match. Add an output here only with that in mind.

output "resource_group_name" {
  description = "Resource group of the platform; 30-workload puts the Container App here."
  value       = azurerm_resource_group.platform.name
}

output "location" {
  description = "Region of the platform."
  value       = azurerm_resource_group.platform.location
}

output "container_app_environment_id" {
  description = "Container Apps environment that hosts the gateway."
  value       = azurerm_container_app_environment.this.id
}

output "acr_name" {
  description = "Container registry name (`az acr build --registry`)."
  value       = azurerm_container_registry.this.name
}

output "acr_login_server" {
  description = "Registry login server, the host part of the image reference."
  value       = azurerm_container_registry.this.login_server
}

output "key_vault_id" {
  description = "Key Vault holding the workload's secrets."
  value       = azurerm_key_vault.this.id
}

output "key_vault_name" {
  description = "Key Vault name (scripts/sync-env.sh)."
  value       = azurerm_key_vault.this.name
}

output "key_vault_uri" {
  description = "Key Vault URI, https://<name>.vault.azure.net/ (KEY_VAULT_URI of hydrenv)."
  value       = azurerm_key_vault.this.vault_uri
}

output "gateway_identity_id" {
  description = "Resource id of the gateway's user-assigned identity."
  value       = azurerm_user_assigned_identity.gateway.id
}

output "gateway_identity_client_id" {
  description = "Client id of the gateway identity (AZURE_CLIENT_ID, ACA_MANAGED_IDENTITY_CLIENT_ID)."
  value       = azurerm_user_assigned_identity.gateway.client_id
}

output "gateway_identity_principal_id" {
  description = "Object id of the gateway identity, for role assignments (20-openai)."
  value       = azurerm_user_assigned_identity.gateway.principal_id
}

output "container_apps_subnet_id" {
  description = "Subnet of the Container Apps environment; 20-openai lets it through the accounts' firewalls."
  value       = azurerm_subnet.container_apps.id
}

output "log_analytics_workspace_id" {
  description = "Log Analytics workspace of the environment."
  value       = azurerm_log_analytics_workspace.this.id
}

output "monitor_workspace_id" {
  description = "Azure Monitor workspace (managed Prometheus); 30-workload's Prometheus alert rules are scoped to it."
  value       = azurerm_monitor_workspace.this.id
}

output "azure_monitor_workspace_endpoint" {
  description = "Prometheus remote-write URL of the Azure Monitor workspace (AZURE_MONITOR_WORKSPACE_ENDPOINT)."
  value       = local.prometheus_remote_write_url
}

output "app_insights_connection_string" {
  description = "Application Insights connection string (APPLICATIONINSIGHTS_CONNECTION_STRING); 30-workload stores it in Key Vault."
  value       = azurerm_application_insights.this.connection_string
  sensitive   = true
}
