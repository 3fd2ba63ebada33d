module "alerts" {
  source = "../modules/gateway-alerts"
  count  = var.alerts.enabled ? 1 : 0

  name_prefix           = local.names.alert
  action_group_name     = local.names.action_group
  resource_group_name   = var.resource_group_name
  location              = var.location
  container_app_id      = azurerm_container_app.gateway.id
  container_app_name    = azurerm_container_app.gateway.name
  monitor_workspace_id  = var.monitor_workspace_id
  emails                = var.alerts.emails
  action_group_id       = var.alerts.action_group_id
  error_rate_percent    = var.alerts.error_rate_percent
  throttle_rate_percent = var.alerts.throttle_rate_percent
  zero_traffic_minutes  = var.alerts.zero_traffic_minutes
  tags                  = local.tags
}
