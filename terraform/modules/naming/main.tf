# One place for every resource name of the deployment, so stages that never see each other's
# state still agree on names (the Key Vault of 10-platform, the state account of 00-bootstrap).
# Names follow the Cloud Adoption Framework abbreviations; globally unique ones get a short hash
# of the subscription so two subscriptions can use the same project and environment codes.
locals {
  prefix  = "${var.project}-${var.environment}"
  compact = "${var.project}${var.environment}"
  suffix  = substr(sha256(var.unique_seed), 0, 6)

  names = {
    state_resource_group      = "rg-${local.prefix}-tfstate"
    state_storage_account     = "st${local.compact}${local.suffix}"
    state_container           = "tfstate"
    resource_group            = "rg-${local.prefix}"
    openai_resource_group     = "rg-${local.prefix}-openai"
    virtual_network           = "vnet-${local.prefix}"
    container_apps_subnet     = "snet-${local.prefix}-aca"
    private_endpoint_subnet   = "snet-${local.prefix}-pe"
    network_security_group    = "nsg-${local.prefix}"
    log_analytics_workspace   = "log-${local.prefix}"
    application_insights      = "appi-${local.prefix}"
    monitor_workspace         = "amw-${local.prefix}"
    container_app_environment = "cae-${local.prefix}"
    container_registry        = "cr${local.compact}${local.suffix}"
    key_vault                 = "kv-${local.compact}-${local.suffix}"
    gateway_identity          = "id-${local.prefix}-gateway"
    container_app             = "ca-${local.prefix}-gateway"
    openai_account            = "oai-${local.prefix}"
    redis                     = "redis-${local.prefix}"
    action_group              = "ag-${local.prefix}"
    alert                     = "alert-${local.prefix}"
  }

  tags = merge(
    {
      project     = var.project
      environment = var.environment
      stage       = var.stage
      managed-by  = "terraform"
    },
    var.tags,
  )
}
