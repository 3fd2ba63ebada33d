# How the containers' environment is built from the two maps (and what this stage adds itself).
#
#   plain env  = stage settings < openai_app_settings < app_settings   (later wins)
#   secret env = stage secrets  < openai_secrets      < secrets
#
# Plain variables become `env { name, value }`; every secret variable becomes a Key Vault secret
# (name: the variable in lower-kebab case, e.g. GATEWAY_CLIENT_KEY_0 -> gateway-client-key-0, the
# same mapping as hydrenv's HYDRENV_KEY_VAULT_SECRETS), a Container Apps secret referencing it
# through the gateway identity, and `env { name, secret_name }`. No secret value is ever a plain
# env value, an output or a log line.
locals {
  # Defaults of hydrenv/src/vars.rs the stage needs to know (ports for ingress and probes, the
  # volume's mount path); the terraform test checks they still match vars.rs.
  default_listen       = "0.0.0.0:8080"
  default_admin_listen = "0.0.0.0:9091"
  default_shared_root  = "/shared-configs"

  shared_root = lookup(var.app_settings, "SHARED_ROOT", local.default_shared_root)
  listen_port = tonumber(reverse(split(":", lookup(var.app_settings, "GATEWAY_LISTEN", local.default_listen)))[0])
  admin_port  = tonumber(reverse(split(":", lookup(var.app_settings, "GATEWAY_ADMIN_LISTEN", local.default_admin_listen)))[0])

  # What the stage knows better than the operator; app_settings can still override each one.
  stage_settings = merge(
    {
      SHARED_ROOT                    = local.shared_root
      KEY_VAULT_URI                  = var.key_vault_uri
      AZURE_CLIENT_ID                = var.gateway_identity_client_id
      ACA_MANAGED_IDENTITY_CLIENT_ID = var.gateway_identity_client_id
      ENVIRONMENT                    = var.environment
    },
    var.azure_monitor_workspace_endpoint == "" ? {} : {
      AZURE_MONITOR_WORKSPACE_ENDPOINT = var.azure_monitor_workspace_endpoint
    },
    var.redis.enabled ? {
      RESPONSES_AFFINITY_REDIS_HOST = azurerm_managed_redis.shared[0].hostname
      RESPONSES_AFFINITY_REDIS_PORT = tostring(azurerm_managed_redis.shared[0].default_database[0].port)
    } : {},
  )

  plain_env = merge(local.stage_settings, var.openai_app_settings, var.app_settings)

  # Secret names are not secret (only their values are): unwrap them so they can drive for_each.
  has_app_insights = nonsensitive(var.app_insights_connection_string != "")
  stage_secret_names = concat(
    local.has_app_insights ? ["APPLICATIONINSIGHTS_CONNECTION_STRING"] : [],
    var.redis.enabled ? ["RATE_LIMIT_REDIS_URL", "RESPONSES_AFFINITY_REDIS_PASSWORD"] : [],
  )
  secret_names = sort(distinct(concat(
    local.stage_secret_names,
    nonsensitive(keys(var.openai_secrets)),
    nonsensitive(keys(var.secrets)),
  )))

  # Variable name -> Key Vault / Container Apps secret name.
  secret_env = { for name in local.secret_names : name => lower(replace(name, "_", "-")) }

  stage_secret_values = merge(
    local.has_app_insights ? {
      APPLICATIONINSIGHTS_CONNECTION_STRING = var.app_insights_connection_string
    } : {},
    var.redis.enabled ? {
      RATE_LIMIT_REDIS_URL              = "rediss://:${urlencode(azurerm_managed_redis.shared[0].default_database[0].primary_access_key)}@${azurerm_managed_redis.shared[0].hostname}:${azurerm_managed_redis.shared[0].default_database[0].port}"
      RESPONSES_AFFINITY_REDIS_PASSWORD = azurerm_managed_redis.shared[0].default_database[0].primary_access_key
    } : {},
  )
  secret_values = merge(local.stage_secret_values, var.openai_secrets, var.secrets)
}
