module "naming" {
  source = "../modules/naming"

  project     = var.project
  environment = var.environment
  unique_seed = data.azurerm_client_config.current.subscription_id
  stage       = "10-platform"
  tags        = var.tags
}

locals {
  names     = module.naming.names
  tags      = module.naming.tags
  deployers = length(var.deployer_principal_ids) > 0 ? toset(var.deployer_principal_ids) : toset([data.azurerm_client_config.current.object_id])
}

resource "azurerm_resource_group" "platform" {
  name     = local.names.resource_group
  location = var.location
  tags     = local.tags
}

# Container Apps environment on its own subnet (workload profiles, Consumption profile), logs
# to the Log Analytics workspace. The gateway app itself is 30-workload's.
resource "azurerm_container_app_environment" "this" {
  name                               = local.names.container_app_environment
  resource_group_name                = azurerm_resource_group.platform.name
  location                           = azurerm_resource_group.platform.location
  logs_destination                   = "log-analytics"
  log_analytics_workspace_id         = azurerm_log_analytics_workspace.this.id
  infrastructure_subnet_id           = azurerm_subnet.container_apps.id
  infrastructure_resource_group_name = "ME_${local.names.container_app_environment}"
  internal_load_balancer_enabled     = var.internal_only
  zone_redundancy_enabled            = var.zone_redundancy_enabled
  tags                               = local.tags

  workload_profile {
    name                  = "Consumption"
    workload_profile_type = "Consumption"
  }

  # The NSG must be on the subnet before the environment's load balancer starts taking traffic.
  depends_on = [azurerm_subnet_network_security_group_association.container_apps]
}

# Images: the gateway identity pulls with AcrPull (no admin user, no anonymous pull).
resource "azurerm_container_registry" "this" {
  #checkov:skip=CKV_AZURE_139:Public endpoint stays on: `az acr build` (ACR Tasks) and deployers push from outside the VNet; only Entra ID principals with AcrPush/AcrPull get in.
  #checkov:skip=CKV_AZURE_165:Geo-replication is a Premium multi-region option; one region per environment is the design (each environment is deployed per region).
  #checkov:skip=CKV_AZURE_166:Quarantine needs an image scanner that releases images; none is part of this deployment (images are built from this repository by ACR Tasks).
  #checkov:skip=CKV_AZURE_164:Content trust (Docker Notary v1) is deprecated by Azure in favour of Notation signing; image provenance comes from ACR Tasks building this repository.
  #checkov:skip=CKV_AZURE_237:Dedicated data endpoints matter with firewall rules on the registry, which it does not use (public endpoint, Entra ID only).
  #checkov:skip=CKV_AZURE_233:Zone redundancy is Premium only; it follows zone_redundancy_enabled when acr_sku is Premium.
  name                          = local.names.container_registry
  resource_group_name           = azurerm_resource_group.platform.name
  location                      = azurerm_resource_group.platform.location
  sku                           = var.acr_sku
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = true
  zone_redundancy_enabled       = var.acr_sku == "Premium" && var.zone_redundancy_enabled
  retention_policy_in_days      = var.acr_sku == "Premium" ? 7 : null
  tags                          = local.tags
}

# Secrets of the workload (30-workload writes them; the Container App references them through
# the gateway identity). RBAC mode, purge protection, firewall: the Container Apps subnet (service
# endpoint) and the deployers' addresses.
resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV2_AZURE_32:No private endpoint by default: deployers write secrets from outside the VNet; the firewall denies everything but the Container Apps subnet and key_vault_allowed_ip_ranges.
  name                          = local.names.key_vault
  resource_group_name           = azurerm_resource_group.platform.name
  location                      = azurerm_resource_group.platform.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = var.key_vault_soft_delete_retention_days
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    default_action             = "Deny"
    bypass                     = "AzureServices"
    ip_rules                   = var.key_vault_allowed_ip_ranges
    virtual_network_subnet_ids = [azurerm_subnet.container_apps.id]
  }
}
