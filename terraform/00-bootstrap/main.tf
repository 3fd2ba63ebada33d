module "naming" {
  source = "../modules/naming"

  project     = var.project
  environment = var.environment
  unique_seed = data.azurerm_client_config.current.subscription_id
  stage       = "00-bootstrap"
  tags        = var.tags
}

locals {
  names     = module.naming.names
  tags      = module.naming.tags
  deployers = length(var.deployer_principal_ids) > 0 ? toset(var.deployer_principal_ids) : toset([data.azurerm_client_config.current.object_id])
  # Storage network rules take single addresses, not /32 networks.
  allowed_ips = [for ip in var.allowed_ip_ranges : trimsuffix(ip, "/32")]
}

resource "azurerm_resource_group" "state" {
  name     = local.names.state_resource_group
  location = var.location
  tags     = local.tags
}

# The remote state of stages 10, 20 and 30. State holds every secret the workload stage writes
# into Key Vault, so the account is locked down: Entra ID only (no shared keys, no SAS), TLS 1.2,
# HTTPS only, no public blobs, a firewall that admits the listed deployer addresses, and
# versioning plus soft delete so an overwritten or deleted state can be recovered.
resource "azurerm_storage_account" "state" {
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys would need a Key Vault before the state store exists (a bootstrap cycle); Microsoft-managed encryption at rest with infrastructure encryption is used.
  #checkov:skip=CKV2_AZURE_33:No private endpoint: deployers and CI reach the state from outside any VNet; the firewall admits only allowed_ip_ranges and Entra ID is required.
  #checkov:skip=CKV_AZURE_59:Public endpoint stays on for the same reason; the network rules deny by default and admit only allowed_ip_ranges.
  #checkov:skip=CKV_AZURE_33:Queue service logging does not apply: the account holds only the state blob container, no queues.
  name                              = local.names.state_storage_account
  resource_group_name               = azurerm_resource_group.state.name
  location                          = azurerm_resource_group.state.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.state_replication_type
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  public_network_access_enabled     = true
  tags                              = local.tags

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = var.state_retention_days
    }

    container_delete_retention_policy {
      days = var.state_retention_days
    }
  }

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
    ip_rules       = local.allowed_ips
  }

  sas_policy {
    expiration_period = "0.01:00:00"
    expiration_action = "Log"
  }
}

resource "azurerm_storage_container" "state" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging needs a diagnostic setting into the Log Analytics workspace that 10-platform creates later (a bootstrap cycle); versioning and soft delete keep every state change recoverable.
  name                  = local.names.state_container
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"
}

# Least privilege for the deployers: data access to the state container only, not to the
# account's keys or settings.
resource "azurerm_role_assignment" "state_deployer" {
  for_each = local.deployers

  scope                = azurerm_storage_container.state.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = each.value
}

resource "azurerm_management_lock" "state" {
  count = var.lock_state_account ? 1 : 0

  name       = "state-cannot-delete"
  scope      = azurerm_storage_account.state.id
  lock_level = "CanNotDelete"
  notes      = "Holds the Terraform state of every later stage."
}
