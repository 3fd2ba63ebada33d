# The one identity of the gateway Container App (hydrenv, the proxy and the collector sidecar
# share it). Each role is the narrowest built-in one, on the narrowest scope:
#   AcrPull                        on the registry      pull the image
#   Key Vault Secrets User         on the vault         Container Apps secret references, kv:// refs
#   Monitoring Metrics Publisher   on the Prometheus DCR remote-write from the collector
# Cognitive Services OpenAI User on each Azure OpenAI account is granted by 20-openai.
resource "azurerm_user_assigned_identity" "gateway" {
  name                = local.names.gateway_identity
  resource_group_name = azurerm_resource_group.platform.name
  location            = azurerm_resource_group.platform.location
  tags                = local.tags
}

resource "azurerm_role_assignment" "gateway_acr_pull" {
  scope                            = azurerm_container_registry.this.id
  role_definition_name             = "AcrPull"
  principal_id                     = azurerm_user_assigned_identity.gateway.principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

resource "azurerm_role_assignment" "gateway_key_vault_secrets_user" {
  scope                            = azurerm_key_vault.this.id
  role_definition_name             = "Key Vault Secrets User"
  principal_id                     = azurerm_user_assigned_identity.gateway.principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

resource "azurerm_role_assignment" "gateway_metrics_publisher" {
  scope                            = azurerm_monitor_workspace.this.default_data_collection_rule_id
  role_definition_name             = "Monitoring Metrics Publisher"
  principal_id                     = azurerm_user_assigned_identity.gateway.principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

# Deployers: write the workload's secrets (30-workload) and push images (deploy.sh).
resource "azurerm_role_assignment" "deployer_key_vault_secrets_officer" {
  for_each = local.deployers

  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = each.value
}

resource "azurerm_role_assignment" "deployer_acr_push" {
  for_each = local.deployers

  scope                = azurerm_container_registry.this.id
  role_definition_name = "AcrPush"
  principal_id         = each.value
}
