# Alerts of the gateway. Rates come from the gateway's own counters (gateway_requests_total by
# status, remote-written by the collector into managed Prometheus), so they count what clients
# got, after failover; traffic and restarts come from Container Apps' platform metrics, which
# work even when the collector does not. There is no p95 latency alert yet: the proxy exports no
# latency histogram.
locals {
  action_group_id = var.action_group_id != null ? var.action_group_id : azurerm_monitor_action_group.this[0].id
  windows         = { "5" = "PT5M", "15" = "PT15M", "30" = "PT30M", "60" = "PT1H", "360" = "PT6H", "720" = "PT12H", "1440" = "P1D" }
  # Share (percent) of requests over 5 minutes whose final status matches the regex.
  share = "100 * sum(rate(gateway_requests_total{status=~\"%s\"}[5m])) / clamp_min(sum(rate(gateway_requests_total[5m])), 1e-9)"
}

resource "azurerm_monitor_action_group" "this" {
  count = var.action_group_id == null ? 1 : 0

  name                = var.action_group_name
  resource_group_name = var.resource_group_name
  short_name          = substr(replace(var.action_group_name, "-", ""), 0, 12)
  tags                = var.tags

  dynamic "email_receiver" {
    for_each = toset(var.emails)
    content {
      name                    = "email-${index(var.emails, email_receiver.value)}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }
}

resource "azurerm_monitor_alert_prometheus_rule_group" "gateway" {
  name                = "${var.name_prefix}-gateway-rates"
  resource_group_name = var.resource_group_name
  location            = var.location
  scopes              = [var.monitor_workspace_id]
  description         = "Error and throttling rates of ${var.container_app_name}."
  rule_group_enabled  = true
  interval            = "PT1M"
  tags                = var.tags

  # No `for` (pending period) on the rules: checkov's HCL parser cannot read an attribute named
  # `for`, and the expressions already average over 5 minutes.
  rule {
    alert      = "GatewayErrorRateHigh"
    enabled    = true
    expression = "${format(local.share, "5..")} > ${var.error_rate_percent}"
    severity   = 1

    annotations = {
      summary = "More than ${var.error_rate_percent}% of gateway requests end in a 5xx (after failover)."
    }

    action {
      action_group_id = local.action_group_id
    }

    alert_resolution {
      auto_resolved   = true
      time_to_resolve = "PT10M"
    }
  }

  rule {
    alert      = "GatewayThrottleRateHigh"
    enabled    = true
    expression = "${format(local.share, "429")} > ${var.throttle_rate_percent}"
    severity   = 2

    annotations = {
      summary = "More than ${var.throttle_rate_percent}% of gateway requests get a 429: every backend that could serve them is throttling or a limit rejects them."
    }

    action {
      action_group_id = local.action_group_id
    }

    alert_resolution {
      auto_resolved   = true
      time_to_resolve = "PT10M"
    }
  }
}

resource "azurerm_monitor_metric_alert" "zero_traffic" {
  count = var.zero_traffic_minutes > 0 ? 1 : 0

  name                = "${var.name_prefix}-zero-traffic"
  resource_group_name = var.resource_group_name
  scopes              = [var.container_app_id]
  description         = "No request reached ${var.container_app_name} for ${var.zero_traffic_minutes} minutes."
  severity            = 2
  frequency           = var.zero_traffic_minutes >= 60 ? "PT15M" : "PT5M"
  window_size         = local.windows[var.zero_traffic_minutes]
  tags                = var.tags

  criteria {
    metric_namespace = "Microsoft.App/containerApps"
    metric_name      = "Requests"
    aggregation      = "Total"
    operator         = "LessThan"
    threshold        = 1
  }

  action {
    action_group_id = local.action_group_id
  }
}

resource "azurerm_monitor_metric_alert" "restarts" {
  name                = "${var.name_prefix}-restarts"
  resource_group_name = var.resource_group_name
  scopes              = [var.container_app_id]
  description         = "A container of ${var.container_app_name} restarted (crash, failed liveness probe or OOM)."
  severity            = 2
  frequency           = "PT5M"
  window_size         = "PT15M"
  tags                = var.tags

  criteria {
    metric_namespace = "Microsoft.App/containerApps"
    metric_name      = "RestartCount"
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = 0
  }

  action {
    action_group_id = local.action_group_id
  }
}
