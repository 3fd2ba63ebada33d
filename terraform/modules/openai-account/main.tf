# One Azure OpenAI account with its deployments and, for Entra ID backends, the gateway's role.
resource "azurerm_cognitive_account" "this" {
  #checkov:skip=CKV2_AZURE_22:Customer-managed keys need a Key Vault key per account and an identity with wrap/unwrap rights; Microsoft-managed encryption is used (prompts are not stored by the service beyond abuse monitoring).
  #checkov:skip=CKV_AZURE_236:Local auth is off unless a caller opts in per account (20-openai accounts[*].local_auth_enabled, default false); the opt-in exists while hydrenv refuses Entra ID backends (not built yet).
  #checkov:skip=CKV_AZURE_247:Outbound access is restricted with an empty allow-list (nothing may be called); the check wants a non-empty fqdns list, which could only widen it.
  #checkov:skip=CKV_AZURE_134:The public endpoint stays on so the gateway reaches it by service endpoint; the firewall (network_acls) admits only the Container Apps subnet and allowed_ip_ranges when network_default_action is Deny.
  name                          = var.name
  resource_group_name           = var.resource_group_name
  location                      = var.location
  kind                          = "OpenAI"
  sku_name                      = var.sku_name
  custom_subdomain_name         = var.name
  local_auth_enabled            = var.local_auth_enabled
  public_network_access_enabled = true
  # Inference needs no outbound calls from the service ("on your data" features would): none allowed.
  outbound_network_access_restricted = true
  tags                               = var.tags

  identity {
    type = "SystemAssigned"
  }

  network_acls {
    default_action = var.network_default_action
    ip_rules       = var.allowed_ip_ranges

    dynamic "virtual_network_rules" {
      for_each = toset(var.allowed_subnet_ids)
      content {
        subnet_id = virtual_network_rules.value
      }
    }
  }
}

resource "azurerm_cognitive_deployment" "this" {
  for_each = var.deployments

  name                   = each.key
  cognitive_account_id   = azurerm_cognitive_account.this.id
  version_upgrade_option = each.value.version_upgrade_option

  model {
    format  = "OpenAI"
    name    = each.value.model_name
    version = each.value.model_version
  }

  sku {
    name     = each.value.sku_name
    capacity = each.value.capacity
  }
}

# Least privilege for the data plane: inference only, no keys, no management.
resource "azurerm_role_assignment" "gateway_openai_user" {
  count = var.gateway_principal_id != null && !var.local_auth_enabled ? 1 : 0

  scope                            = azurerm_cognitive_account.this.id
  role_definition_name             = "Cognitive Services OpenAI User"
  principal_id                     = var.gateway_principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}
