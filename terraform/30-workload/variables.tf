# ---------------------------------------------------------------------------------------------
# Naming and placement
# ---------------------------------------------------------------------------------------------

variable "project" {
  description = "Short project code (2-8 lowercase letters or digits). Same value in every stage."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.project))
    error_message = "project must be 2-8 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment code (2-6 lowercase letters or digits). Same value in every stage; also the gateway's ENVIRONMENT (deployment.environment; dev turns the collector's debug exporter on)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,5}$", var.environment))
    error_message = "environment must be 2-6 lowercase letters or digits, starting with a letter."
  }
}

variable "subscription_id" {
  description = "Subscription to deploy into; null reads ARM_SUBSCRIPTION_ID (or the Azure CLI's current subscription)."
  type        = string
  default     = null

  validation {
    condition     = var.subscription_id == null || can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.subscription_id))
    error_message = "subscription_id must be a lowercase GUID or null."
  }
}

variable "tags" {
  description = "Extra tags merged over the standard ones (project, environment, stage, managed-by)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# From 10-platform (same names as its outputs; deploy.sh passes them)
# ---------------------------------------------------------------------------------------------

variable "resource_group_name" {
  description = "Platform resource group; the Container App (and Redis, alerts) go here."
  type        = string

  validation {
    condition     = length(var.resource_group_name) > 0
    error_message = "resource_group_name must not be empty."
  }
}

variable "location" {
  description = "Region of the platform."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "location must be an Azure region name in lowercase without spaces."
  }
}

variable "container_app_environment_id" {
  description = "Container Apps environment that hosts the gateway."
  type        = string

  validation {
    condition     = can(regex("/providers/Microsoft.App/managedEnvironments/[^/]+$", var.container_app_environment_id))
    error_message = "container_app_environment_id must be a Microsoft.App/managedEnvironments resource id."
  }
}

variable "acr_name" {
  description = "Container registry name (accepted with the other platform outputs; the image must come from acr_login_server)."
  type        = string
}

variable "acr_login_server" {
  description = "Registry the gateway identity pulls from with AcrPull."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+\\.azurecr\\.io$", var.acr_login_server))
    error_message = "acr_login_server must be <name>.azurecr.io."
  }
}

variable "key_vault_id" {
  description = "Key Vault that holds the secrets (Key Vault Secrets User for the gateway identity, Secrets Officer for the deployer: 10-platform)."
  type        = string

  validation {
    condition     = can(regex("/providers/Microsoft.KeyVault/vaults/[^/]+$", var.key_vault_id))
    error_message = "key_vault_id must be a Microsoft.KeyVault/vaults resource id."
  }
}

variable "key_vault_name" {
  description = "Key Vault name (accepted with the other platform outputs)."
  type        = string
}

variable "key_vault_uri" {
  description = "Key Vault URI; the gateway's KEY_VAULT_URI, for kv:// references in settings."
  type        = string

  validation {
    condition     = can(regex("^https://[a-zA-Z0-9-]+\\.vault\\.azure\\.net/?$", var.key_vault_uri))
    error_message = "key_vault_uri must be https://<name>.vault.azure.net/."
  }
}

variable "gateway_identity_id" {
  description = "Resource id of the gateway's user-assigned identity: pulls the image, reads the Key Vault secrets, calls Entra ID backends."
  type        = string

  validation {
    condition     = can(regex("/providers/Microsoft.ManagedIdentity/userAssignedIdentities/[^/]+$", var.gateway_identity_id))
    error_message = "gateway_identity_id must be a user-assigned identity resource id."
  }
}

variable "gateway_identity_client_id" {
  description = "Client id of the gateway identity; the gateway's AZURE_CLIENT_ID and ACA_MANAGED_IDENTITY_CLIENT_ID."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.gateway_identity_client_id))
    error_message = "gateway_identity_client_id must be a lowercase GUID."
  }
}

variable "gateway_identity_principal_id" {
  description = "Object id of the gateway identity (accepted with the other platform outputs; roles are granted in 10-platform and 20-openai)."
  type        = string
}

variable "log_analytics_workspace_id" {
  description = "Log Analytics workspace of the environment (accepted with the other platform outputs; the environment already sends its logs there)."
  type        = string
}

variable "monitor_workspace_id" {
  description = "Azure Monitor workspace (managed Prometheus) the collector writes to; the Prometheus alert rules are scoped to it."
  type        = string

  validation {
    condition     = can(regex("/providers/Microsoft.Monitor/accounts/[^/]+$", var.monitor_workspace_id))
    error_message = "monitor_workspace_id must be a Microsoft.Monitor/accounts resource id."
  }
}

variable "azure_monitor_workspace_endpoint" {
  description = "Prometheus remote-write URL of the Azure Monitor workspace; becomes AZURE_MONITOR_WORKSPACE_ENDPOINT (empty = no remote write)."
  type        = string
  default     = ""

  validation {
    condition     = var.azure_monitor_workspace_endpoint == "" || can(regex("^https://[^@/]+/", var.azure_monitor_workspace_endpoint))
    error_message = "azure_monitor_workspace_endpoint must be an https URL without user:password@, or empty."
  }
}

variable "app_insights_connection_string" {
  description = "Application Insights connection string; stored in Key Vault and given to the gateway as APPLICATIONINSIGHTS_CONNECTION_STRING (empty = none)."
  type        = string
  default     = ""
  sensitive   = true
}

# ---------------------------------------------------------------------------------------------
# From 20-openai (optional stage; empty when it was skipped)
# ---------------------------------------------------------------------------------------------

variable "openai_app_settings" {
  description = "Backend settings from 20-openai (AZURE_OPENAI_*_N, not secret); merged under app_settings, which wins on a clash."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.openai_app_settings) : contains(local.plain_env_names, name) || anytrue([for group in local.plain_env_groups : length(regexall("^${group}_[0-9]+$", name)) > 0])])
    error_message = "openai_app_settings may only hold non-secret variables of hydrenv/src/vars.rs."
  }
}

variable "openai_secrets" {
  description = "api-keys from 20-openai (AZURE_OPENAI_KEY_N of accounts with local auth); stored in Key Vault like secrets, which wins on a clash."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for name in keys(var.openai_secrets) : contains(local.secret_env_names, name) || anytrue([for group in local.secret_env_groups : length(regexall("^${group}_[0-9]+$", name)) > 0])])
    error_message = "openai_secrets may only hold secret variables of hydrenv/src/vars.rs."
  }
}

# ---------------------------------------------------------------------------------------------
# The gateway's configuration: every variable of hydrenv/src/vars.rs is set through exactly one
# of these two maps (env.tf lists which; hydrenv's terraform test proves it against vars.rs).
# ---------------------------------------------------------------------------------------------

variable "image" {
  description = "Gateway image (hydrenv + proxy), a full reference in the platform registry: <acr_login_server>/<repository>:<tag> or @sha256:<digest>. deploy.sh passes it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+\\.azurecr\\.io/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must be <registry>.azurecr.io/<repository> with a tag or digest, and not :latest."
  }
}

variable "app_settings" {
  description = "Non-secret environment of the gateway: the variables of hydrenv/src/vars.rs (docs/configuration.md) by name, e.g. { AZURE_OPENAI_ENDPOINT_0 = \"https://eus.openai.azure.com\", LB_ALG = \"roundrobin\" }. A secret variable is refused here unless its value is a Key Vault reference (kv://<name>): put secret values in secrets."
  type        = map(string)
  default     = {}

  # A secret variable may stand here only as a Key Vault reference, which hydrenv resolves with
  # the gateway identity (scripts/sync-env.sh writes .env.<env> references here).
  validation {
    condition     = alltrue([for name, value in var.app_settings : !(contains(local.secret_env_names, name) || anytrue([for group in local.secret_env_groups : length(regexall("^${group}_[0-9]+$", name)) > 0])) || startswith(trimspace(value), "kv://") || startswith(lower(trimspace(value)), "@microsoft.keyvault(")])
    error_message = "app_settings holds a secret variable (a key, password, secret or connection string of hydrenv/src/vars.rs) with a plain value: put it in secrets, which go to Key Vault, or give a Key Vault reference (kv://<name>, @Microsoft.KeyVault(...))."
  }

  validation {
    condition     = alltrue([for name in keys(var.app_settings) : !contains(local.platform_env_names, name)])
    error_message = "app_settings sets a variable that Container Apps injects itself (IDENTITY_ENDPOINT, IDENTITY_HEADER); setting it would break the managed identity."
  }

  validation {
    condition     = alltrue([for name in keys(var.app_settings) : contains(local.plain_env_names, name) || contains(local.secret_env_names, name) || contains(local.platform_env_names, name) || anytrue([for group in concat(local.plain_env_groups, local.secret_env_groups) : length(regexall("^${group}_[0-9]+$", name)) > 0])])
    error_message = "app_settings holds a name hydrenv does not know (a typo?); the variables are listed in docs/configuration.md."
  }
}

variable "secrets" {
  description = "Secret environment of the gateway, by variable name (AZURE_OPENAI_KEY_N, GATEWAY_CLIENT_KEY_N, APPLICATIONINSIGHTS_CONNECTION_STRING ...). Each becomes a Key Vault secret (name in lower-kebab case) that the Container App references through the gateway identity; values never appear in plans or outputs, but they are in the state (keep the state account locked down). Only secret variables are accepted."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for name in keys(var.secrets) : !contains(local.platform_env_names, name)])
    error_message = "secrets sets a variable that Container Apps injects itself (IDENTITY_ENDPOINT, IDENTITY_HEADER); setting it would break the managed identity."
  }

  validation {
    condition     = alltrue([for name in keys(var.secrets) : contains(local.secret_env_names, name) || anytrue([for group in local.secret_env_groups : length(regexall("^${group}_[0-9]+$", name)) > 0])])
    error_message = "secrets holds a name that is not a secret variable of hydrenv/src/vars.rs: non-secret settings go to app_settings (a typo?)."
  }

  validation {
    condition     = alltrue([for value in values(var.secrets) : length(value) > 0])
    error_message = "secrets must not hold empty values (leave the variable out instead)."
  }
}

# ---------------------------------------------------------------------------------------------
# Revision: containers, probes, scale, ingress
# ---------------------------------------------------------------------------------------------

variable "gateway_cpu" {
  description = "vCPU of the gateway container; with collector_cpu it must make a valid Consumption pair with the memory (0.25 vCPU per 0.5 GiB)."
  type        = number
  default     = 0.5

  validation {
    condition     = contains([0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4], var.gateway_cpu)
    error_message = "gateway_cpu must be one of 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4."
  }
}

variable "collector_cpu" {
  description = "vCPU of the OpenTelemetry Collector sidecar."
  type        = number
  default     = 0.25

  validation {
    condition     = contains([0.25, 0.5, 0.75, 1], var.collector_cpu)
    error_message = "collector_cpu must be one of 0.25, 0.5, 0.75, 1."
  }
}

variable "otel_collector_image" {
  description = "OpenTelemetry Collector contrib image of the sidecar, pinned (mirror it into the registry to avoid Docker Hub limits)."
  type        = string
  default     = "otel/opentelemetry-collector-contrib:0.120.0"

  validation {
    condition     = can(regex("(:[0-9][A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$", var.otel_collector_image))
    error_message = "otel_collector_image must be pinned to a version tag or a digest."
  }
}

variable "min_replicas" {
  description = "Fewest replicas. 0 allows scale to zero (only the HTTP rule then; Container Apps' CPU rule cannot scale to zero, so it is left out)."
  type        = number
  default     = 1

  validation {
    condition     = var.min_replicas >= 0 && var.min_replicas <= 300 && floor(var.min_replicas) == var.min_replicas
    error_message = "min_replicas must be a whole number between 0 and 300."
  }
}

variable "max_replicas" {
  description = "Most replicas. More than one needs shared state for rate limits and Responses affinity (redis)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_replicas >= 1 && var.max_replicas <= 300 && floor(var.max_replicas) == var.max_replicas && var.max_replicas >= var.min_replicas
    error_message = "max_replicas must be a whole number between 1 and 300, and at least min_replicas."
  }
}

variable "http_concurrency" {
  description = "Concurrent requests per replica before the HTTP rule adds one. Streams hold a request for their whole length, so keep it modest."
  type        = number
  default     = 60

  validation {
    condition     = var.http_concurrency >= 1 && floor(var.http_concurrency) == var.http_concurrency
    error_message = "http_concurrency must be a whole number >= 1."
  }
}

variable "cpu_utilization_percent" {
  description = "Average CPU utilisation (percent of the containers' CPU) above which the CPU rule adds replicas; used when min_replicas > 0."
  type        = number
  default     = 70

  validation {
    condition     = var.cpu_utilization_percent >= 10 && var.cpu_utilization_percent <= 95
    error_message = "cpu_utilization_percent must be between 10 and 95."
  }
}

variable "termination_grace_period_seconds" {
  description = "Seconds a stopping replica gets to finish its requests (streams included) after SIGTERM."
  type        = number
  default     = 120

  validation {
    condition     = var.termination_grace_period_seconds >= 0 && var.termination_grace_period_seconds <= 600
    error_message = "termination_grace_period_seconds must be between 0 and 600."
  }
}

variable "max_inactive_revisions" {
  description = "Inactive revisions kept for rollback."
  type        = number
  default     = 5

  validation {
    condition     = var.max_inactive_revisions >= 0 && var.max_inactive_revisions <= 100
    error_message = "max_inactive_revisions must be between 0 and 100."
  }
}

variable "ingress_external" {
  description = "Expose the gateway outside the environment (internet, or the VNet when the environment is internal). false = only other apps of the environment."
  type        = bool
  default     = true
}

variable "ingress_allowed_cidrs" {
  description = "Client CIDRs allowed by the ingress; empty = every address the network lets through."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.ingress_allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "ingress_allowed_cidrs must be CIDRs (e.g. 203.0.113.0/24 or 198.51.100.7/32)."
  }
}

# ---------------------------------------------------------------------------------------------
# Optional parts
# ---------------------------------------------------------------------------------------------

variable "redis" {
  description = <<-EOT
    Azure Managed Redis shared by the replicas for rate-limit counters and Responses affinity.
    When enabled, the stage sets RATE_LIMIT_REDIS_URL and RESPONSES_AFFINITY_REDIS_PASSWORD
    (secrets) and RESPONSES_AFFINITY_REDIS_HOST/PORT. Note: this hydrenv build refuses the
    RESPONSES_AFFINITY_REDIS_* variables (the shared Responses affinity store in Redis is not
    built yet, hydrenv/src/vars.rs), and RATE_LIMIT_REDIS_URL needs a limit turned on in
    app_settings (ENABLE_AI_RATE_LIMIT, ENABLE_RATE_LIMIT or ENABLE_QUOTA): keep it off until
    both hold.
  EOT
  type = object({
    enabled           = bool
    sku_name          = optional(string, "Balanced_B0")
    high_availability = optional(bool, false)
  })
  default = {
    enabled           = false
    sku_name          = "Balanced_B0"
    high_availability = false
  }

  validation {
    condition     = can(regex("^(Balanced|ComputeOptimized|MemoryOptimized|FlashOptimized)_[A-Z][0-9]+$", var.redis.sku_name))
    error_message = "redis.sku_name must be an Azure Managed Redis SKU such as Balanced_B0 or MemoryOptimized_M10."
  }
}

variable "alerts" {
  description = <<-EOT
    Alerts to an e-mail action group (or an existing action group):
      error_rate_percent      5xx share of requests over 5 minutes (gateway metrics, Prometheus)
      throttle_rate_percent   429 share of requests over 5 minutes
      zero_traffic_minutes    no request at all for this long (platform metric; 0 = off)
      restarts                any container restart (platform metric)
    There is no p95 latency alert yet: the proxy exports no latency histogram to alert on.
  EOT
  type = object({
    enabled               = bool
    emails                = optional(list(string), [])
    action_group_id       = optional(string)
    error_rate_percent    = optional(number, 5)
    throttle_rate_percent = optional(number, 10)
    zero_traffic_minutes  = optional(number, 60)
  })
  default = {
    enabled               = false
    emails                = []
    action_group_id       = null
    error_rate_percent    = 5
    throttle_rate_percent = 10
    zero_traffic_minutes  = 60
  }

  validation {
    condition     = !var.alerts.enabled || length(var.alerts.emails) > 0 || var.alerts.action_group_id != null
    error_message = "alerts.enabled needs emails or an action_group_id to notify."
  }

  validation {
    condition     = var.alerts.error_rate_percent > 0 && var.alerts.error_rate_percent <= 100 && var.alerts.throttle_rate_percent > 0 && var.alerts.throttle_rate_percent <= 100
    error_message = "alerts.error_rate_percent and alerts.throttle_rate_percent must be in (0, 100]."
  }

  validation {
    condition     = contains([0, 5, 15, 30, 60, 360, 720, 1440], var.alerts.zero_traffic_minutes)
    error_message = "alerts.zero_traffic_minutes must be 0 (off) or one of 5, 15, 30, 60, 360, 720, 1440 (Azure Monitor window sizes)."
  }
}
