module "naming" {
  source = "../modules/naming"

  project     = var.project
  environment = var.environment
  unique_seed = data.azurerm_client_config.current.subscription_id
  stage       = "20-openai"
  tags        = var.tags
}

locals {
  names = module.naming.names
  tags  = module.naming.tags

  # Backend index of each account, in list order.
  accounts = {
    for i, a in var.accounts : a.name => merge(a, { index = var.first_backend_index + i })
  }
}

# Its own resource group, so the optional stage can be destroyed without touching the platform.
resource "azurerm_resource_group" "openai" {
  name     = local.names.openai_resource_group
  location = var.location
  tags     = local.tags
}

module "account" {
  source   = "../modules/openai-account"
  for_each = local.accounts

  name                   = "${local.names.openai_account}-${each.key}"
  resource_group_name    = azurerm_resource_group.openai.name
  location               = each.value.location
  sku_name               = each.value.sku_name
  local_auth_enabled     = each.value.local_auth_enabled
  network_default_action = var.network_default_action
  allowed_subnet_ids     = [var.container_apps_subnet_id]
  allowed_ip_ranges      = var.allowed_ip_ranges
  gateway_principal_id   = var.gateway_identity_principal_id
  tags                   = local.tags

  deployments = {
    for name, d in each.value.deployments : name => {
      model_name             = d.model_name
      model_version          = d.model_version
      sku_name               = d.sku_name
      capacity               = d.capacity
      version_upgrade_option = d.version_upgrade_option
    }
  }
}

locals {
  # The gateway's backend group, exactly the variable names of hydrenv/src/vars.rs.
  openai_app_settings = merge([
    for name, a in local.accounts : merge(
      {
        "AZURE_OPENAI_ENDPOINT_${a.index}"    = module.account[name].endpoint
        "AZURE_OPENAI_NAME_${a.index}"        = name
        "AZURE_OPENAI_PRIORITY_${a.index}"    = tostring(a.priority)
        "AZURE_OPENAI_WEIGHT_${a.index}"      = tostring(a.weight)
        "AZURE_OPENAI_DEPLOYMENTS_${a.index}" = join(",", [for dn, d in a.deployments : "${coalesce(d.alias, dn)}=${dn}"])
      },
      a.local_auth_enabled ? {} : { "AZURE_OPENAI_AUTH_MODE_${a.index}" = "entra" },
    )
  ]...)

  openai_secrets = {
    for name, a in local.accounts : "AZURE_OPENAI_KEY_${a.index}" => module.account[name].primary_access_key
    if a.local_auth_enabled
  }
}
