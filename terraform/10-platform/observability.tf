# Logs of the environment and of the gateway (stdout JSON) land here.
resource "azurerm_log_analytics_workspace" "this" {
  name                = local.names.log_analytics_workspace
  resource_group_name = azurerm_resource_group.platform.name
  location            = azurerm_resource_group.platform.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  daily_quota_gb      = var.log_daily_quota_gb
  tags                = local.tags
}

# Traces and logs from the OTel Collector sidecar (azuremonitor exporter).
resource "azurerm_application_insights" "this" {
  name                = local.names.application_insights
  resource_group_name = azurerm_resource_group.platform.name
  location            = azurerm_resource_group.platform.location
  workspace_id        = azurerm_log_analytics_workspace.this.id
  application_type    = "other"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

# Managed Prometheus: the collector remote-writes the gateway's /metrics here (azureauth with the
# gateway identity, which gets Monitoring Metrics Publisher on the workspace's default DCR).
resource "azurerm_monitor_workspace" "this" {
  name                = local.names.monitor_workspace
  resource_group_name = azurerm_resource_group.platform.name
  location            = azurerm_resource_group.platform.location
  tags                = local.tags
}

# The remote-write URL is the default data collection endpoint's metrics ingestion host plus the
# default rule's immutable id; both live in the workspace's managed resource group.
locals {
  dcr_id_parts = split("/", azurerm_monitor_workspace.this.default_data_collection_rule_id)
  dce_id_parts = split("/", azurerm_monitor_workspace.this.default_data_collection_endpoint_id)
}

data "azurerm_monitor_data_collection_rule" "prometheus" {
  name                = local.dcr_id_parts[8]
  resource_group_name = local.dcr_id_parts[4]
}

data "azurerm_monitor_data_collection_endpoint" "prometheus" {
  name                = local.dce_id_parts[8]
  resource_group_name = local.dce_id_parts[4]
}

locals {
  prometheus_remote_write_url = "${data.azurerm_monitor_data_collection_endpoint.prometheus.metrics_ingestion_endpoint}/dataCollectionRules/${data.azurerm_monitor_data_collection_rule.prometheus.immutable_id}/streams/Microsoft-PrometheusMetrics/api/v1/write?api-version=2023-04-24"
}
