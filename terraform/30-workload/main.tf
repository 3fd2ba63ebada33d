data "azurerm_client_config" "current" {}

module "naming" {
  source = "../modules/naming"

  project     = var.project
  environment = var.environment
  unique_seed = data.azurerm_client_config.current.subscription_id
  stage       = "30-workload"
  tags        = var.tags
}

locals {
  names = module.naming.names
  tags  = module.naming.tags

  shared_volume    = "shared-configs"
  collector_config = "${local.shared_root}/current/otel-collector.yaml"
  # Consumption profile: 2 GiB of memory per vCPU.
  gateway_memory   = "${var.gateway_cpu * 2}Gi"
  collector_memory = "${var.collector_cpu * 2}Gi"
  # Port of the collector's health_check extension (templates/otel-collector.yaml.tera).
  collector_health_port = 13133
}

# One Key Vault secret per secret variable. The Container App references the versionless id,
# so a new version (scripts/sync-env.sh, or a changed value here) reaches the next revision
# restart without touching the app.
resource "azurerm_key_vault_secret" "env" {
  #checkov:skip=CKV_AZURE_41:No expiry date: these are keys issued by other systems (Azure OpenAI, client keys, connection strings) with their own lifetimes; an expiry here would stop the gateway from starting when it lapses rather than rotate anything.
  for_each = local.secret_env

  name         = each.value
  value        = local.secret_values[each.key]
  key_vault_id = var.key_vault_id
  content_type = "env:${each.key}"
  tags         = local.tags
}

resource "azurerm_container_app" "gateway" {
  name                         = local.names.container_app
  resource_group_name          = var.resource_group_name
  container_app_environment_id = var.container_app_environment_id
  revision_mode                = "Single"
  workload_profile_name        = "Consumption"
  max_inactive_revisions       = var.max_inactive_revisions
  tags                         = local.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [var.gateway_identity_id]
  }

  # AcrPull through the gateway identity: no registry password anywhere.
  registry {
    server   = var.acr_login_server
    identity = var.gateway_identity_id
  }

  # Key Vault references, resolved by Container Apps with the gateway identity.
  dynamic "secret" {
    for_each = local.secret_env
    content {
      name                = secret.value
      key_vault_secret_id = azurerm_key_vault_secret.env[secret.key].versionless_id
      identity            = var.gateway_identity_id
    }
  }

  ingress {
    external_enabled           = var.ingress_external
    target_port                = local.listen_port
    transport                  = "auto"
    allow_insecure_connections = false

    traffic_weight {
      latest_revision = true
      percentage      = 100
    }

    dynamic "ip_security_restriction" {
      for_each = toset(var.ingress_allowed_cidrs)
      content {
        name             = "allow-${replace(replace(ip_security_restriction.value, ".", "-"), "/", "-")}"
        action           = "Allow"
        ip_address_range = ip_security_restriction.value
      }
    }
  }

  template {
    min_replicas                     = var.min_replicas
    max_replicas                     = var.max_replicas
    termination_grace_period_seconds = var.termination_grace_period_seconds

    # Releases rendered by hydrenv (SHARED_ROOT): written by the gateway, read by the collector.
    volume {
      name         = local.shared_volume
      storage_type = "EmptyDir"
    }

    # Start-up order. The collector reads SHARED_ROOT/current/otel-collector.yaml, which hydrenv
    # writes, but Container Apps starts a revision's app containers together and the contrib
    # image is distroless (no shell for a wait loop; a collector started without its file exits
    # and crash-loops). So this init container, the gateway image running `hydrenv render`,
    # writes the release into the shared volume first and exits; a bad configuration fails the
    # revision right here, with hydrenv's message in the logs, before anything serves. Then the
    # app containers start: the gateway's entrypoint (`hydrenv run`) renders the same
    # environment again, which reuses the identical release, and execs the proxy; the collector
    # finds its file on its first start.
    init_container {
      name  = "render-config"
      image = var.image
      # The templates of the image, as its entrypoint uses them (`hydrenv run --templates ...`).
      command = ["/usr/local/bin/hydrenv", "render", "--templates", "/etc/hydrenv/templates"]
      cpu     = 0.25
      memory  = "0.5Gi"

      dynamic "env" {
        for_each = local.plain_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.secret_env
        content {
          name        = env.key
          secret_name = env.value
        }
      }

      volume_mounts {
        name = local.shared_volume
        path = local.shared_root
      }
    }

    # hydrenv + proxy: the image's entrypoint (`hydrenv run`) renders and execs the proxy, which
    # drains for up to 30 s on SIGTERM (termination_grace_period_seconds is above that).
    container {
      name   = "gateway"
      image  = var.image
      cpu    = var.gateway_cpu
      memory = local.gateway_memory

      dynamic "env" {
        for_each = local.plain_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.secret_env
        content {
          name        = env.key
          secret_name = env.value
        }
      }

      volume_mounts {
        name = local.shared_volume
        path = local.shared_root
      }

      # All probes on the admin listener, never on the API port: /healthz says the process
      # serves, /readyz that its configuration is loaded and it takes traffic.
      startup_probe {
        transport               = "HTTP"
        port                    = local.admin_port
        path                    = "/healthz"
        interval_seconds        = 2
        timeout                 = 2
        failure_count_threshold = 30
      }

      readiness_probe {
        transport               = "HTTP"
        port                    = local.admin_port
        path                    = "/readyz"
        interval_seconds        = 5
        timeout                 = 2
        failure_count_threshold = 3
        success_count_threshold = 1
      }

      liveness_probe {
        transport               = "HTTP"
        port                    = local.admin_port
        path                    = "/healthz"
        interval_seconds        = 10
        timeout                 = 2
        failure_count_threshold = 3
      }
    }

    # OpenTelemetry Collector sidecar: scrapes the admin port, receives OTLP on localhost,
    # exports to Application Insights and the Azure Monitor workspace with the gateway identity.
    container {
      name   = "otel-collector"
      image  = var.otel_collector_image
      cpu    = var.collector_cpu
      memory = local.collector_memory
      args   = ["--config=${local.collector_config}"]

      # The collector's exporters authenticate with the same identity (azureauth).
      env {
        name  = "AZURE_CLIENT_ID"
        value = var.gateway_identity_client_id
      }

      # Offered so a collector config can read it as ${env:APPLICATIONINSIGHTS_CONNECTION_STRING}
      # instead of holding it (a file with a secret is 0600, owned by the gateway's user).
      dynamic "env" {
        for_each = { for name, secret in local.secret_env : name => secret if name == "APPLICATIONINSIGHTS_CONNECTION_STRING" }
        content {
          name        = env.key
          secret_name = env.value
        }
      }

      volume_mounts {
        name = local.shared_volume
        path = local.shared_root
      }

      liveness_probe {
        transport               = "HTTP"
        port                    = local.collector_health_port
        path                    = "/"
        interval_seconds        = 15
        timeout                 = 2
        failure_count_threshold = 3
      }
    }

    # Scale on concurrent requests (default 60 per replica) and, when the app never scales to
    # zero, on CPU (default 70 %): Container Apps' CPU rule cannot scale to zero, so with
    # min_replicas = 0 only the HTTP rule stays and an idle app goes to zero replicas.
    http_scale_rule {
      name                = "http-concurrency"
      concurrent_requests = tostring(var.http_concurrency)
    }

    dynamic "custom_scale_rule" {
      for_each = var.min_replicas > 0 ? [var.cpu_utilization_percent] : []
      content {
        name             = "cpu-utilization"
        custom_rule_type = "cpu"
        metadata = {
          type  = "Utilization"
          value = tostring(custom_scale_rule.value)
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = startswith(var.image, "${var.acr_login_server}/")
      error_message = "image must come from the platform registry (acr_login_server), which the gateway identity can pull from."
    }

    precondition {
      condition     = length(setintersection(toset(keys(local.plain_env)), toset(local.secret_names))) == 0
      error_message = "A variable is set both as a plain setting and as a secret."
    }

    precondition {
      condition     = var.gateway_cpu + var.collector_cpu <= 4
      error_message = "gateway_cpu + collector_cpu must not exceed 4 vCPU (Consumption profile)."
    }

    precondition {
      condition     = local.listen_port != local.admin_port
      error_message = "GATEWAY_LISTEN and GATEWAY_ADMIN_LISTEN must use different ports."
    }
  }
}
