# Optional stage: provisions Azure OpenAI accounts for the gateway. Skip it entirely
# (deploy.sh --no-azure-openai) when the backends already exist; then give their endpoints to
# 30-workload through app_settings (AZURE_OPENAI_ENDPOINT_N ...) and secrets (AZURE_OPENAI_KEY_N).

variable "project" {
  description = "Short project code (2-8 lowercase letters or digits). Same value in every stage."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.project))
    error_message = "project must be 2-8 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment code (2-6 lowercase letters or digits). Same value in every stage."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,5}$", var.environment))
    error_message = "environment must be 2-6 lowercase letters or digits, starting with a letter."
  }
}

variable "location" {
  description = "Region of this stage's resource group (10-platform's output by the same name); each account has its own region."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "location must be an Azure region name in lowercase without spaces."
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

variable "gateway_identity_principal_id" {
  description = "Object id of the gateway identity (10-platform output); it gets Cognitive Services OpenAI User on every Entra ID account."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.gateway_identity_principal_id))
    error_message = "gateway_identity_principal_id must be a lowercase GUID."
  }
}

variable "container_apps_subnet_id" {
  description = "Container Apps subnet (10-platform output); allowed through each account's firewall."
  type        = string

  validation {
    condition     = can(regex("/subnets/[^/]+$", var.container_apps_subnet_id))
    error_message = "container_apps_subnet_id must be a subnet resource id."
  }
}

variable "accounts" {
  description = <<-EOT
    Azure OpenAI accounts, in backend order: the account at position i becomes backend
    N = first_backend_index + i of the gateway (AZURE_OPENAI_*_N). Per account:
      name                 unique among the accounts; the account is oai-<project>-<environment>-<name>
                           and the backend id (AZURE_OPENAI_NAME_N) is <name>
      location             region of the account
      priority             tier, higher is tried first (AZURE_OPENAI_PRIORITY_N), e.g. PTU 10, PAYG 5
      weight               share inside the tier (AZURE_OPENAI_WEIGHT_N)
      local_auth_enabled   false (default): Entra ID only, the gateway uses its identity
                           (AZURE_OPENAI_AUTH_MODE_N=entra); true: the api-key goes to Key Vault
                           (AZURE_OPENAI_KEY_N, output openai_secrets)
      deployments          by deployment name: model_name, model_version, sku_name
                           (GlobalStandard, Standard, DataZoneStandard, ProvisionedManaged ...),
                           capacity (thousands of tokens per minute, or PTUs), optional alias (the
                           model name clients use, default the deployment name)
  EOT
  type = list(object({
    name               = string
    location           = string
    priority           = optional(number, 5)
    weight             = optional(number, 1)
    sku_name           = optional(string, "S0")
    local_auth_enabled = optional(bool, false)
    deployments = map(object({
      model_name             = string
      model_version          = string
      sku_name               = optional(string, "GlobalStandard")
      capacity               = number
      alias                  = optional(string)
      version_upgrade_option = optional(string, "NoAutoUpgrade")
    }))
  }))

  validation {
    condition     = length(var.accounts) > 0
    error_message = "accounts needs at least one account (skip the stage instead when the backends exist already)."
  }

  validation {
    condition     = length(distinct([for a in var.accounts : a.name])) == length(var.accounts)
    error_message = "account names must be unique."
  }

  validation {
    condition     = alltrue([for a in var.accounts : can(regex("^[a-z0-9][a-z0-9-]{0,20}[a-z0-9]$", a.name))])
    error_message = "account names must be 2-22 lowercase letters, digits or hyphens."
  }

  validation {
    condition     = alltrue([for a in var.accounts : a.priority >= 0 && a.weight >= 0 && floor(a.priority) == a.priority && floor(a.weight) == a.weight])
    error_message = "priority and weight must be whole numbers >= 0."
  }

  validation {
    condition     = alltrue([for a in var.accounts : length(a.deployments) > 0])
    error_message = "every account needs at least one deployment."
  }

  validation {
    condition = alltrue(flatten([for a in var.accounts : [
      for name, d in a.deployments : can(regex("^[A-Za-z0-9._-]{1,64}$", name)) && (d.alias == null || can(regex("^[A-Za-z0-9._-]{1,64}$", d.alias)))
    ]]))
    error_message = "deployment names and aliases must be 1-64 letters, digits, dots, underscores or hyphens."
  }

  validation {
    condition = alltrue(flatten([for a in var.accounts : [
      for d in values(a.deployments) : d.capacity > 0 && contains(["OnceNewDefaultVersionAvailable", "OnceCurrentVersionExpired", "NoAutoUpgrade"], d.version_upgrade_option)
    ]]))
    error_message = "capacity must be positive; version_upgrade_option must be OnceNewDefaultVersionAvailable, OnceCurrentVersionExpired or NoAutoUpgrade."
  }
}

variable "first_backend_index" {
  description = "Backend index N of the first account, so these backends can sit next to ones given by hand in 30-workload's app_settings (indexes may have gaps)."
  type        = number
  default     = 0

  validation {
    condition     = var.first_backend_index >= 0 && floor(var.first_backend_index) == var.first_backend_index
    error_message = "first_backend_index must be a whole number >= 0."
  }
}

variable "network_default_action" {
  description = "Firewall of every account: Deny (only the Container Apps subnet and allowed_ip_ranges) or Allow."
  type        = string
  default     = "Deny"

  validation {
    condition     = contains(["Allow", "Deny"], var.network_default_action)
    error_message = "network_default_action must be Allow or Deny."
  }
}

variable "allowed_ip_ranges" {
  description = "Public IPs or CIDRs allowed through every account's firewall (operators, tests)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.allowed_ip_ranges : can(cidrhost(strcontains(ip, "/") ? ip : "${ip}/32", 0))])
    error_message = "allowed_ip_ranges must be IPv4 addresses or CIDRs."
  }
}

variable "tags" {
  description = "Extra tags merged over the standard ones (project, environment, stage, managed-by)."
  type        = map(string)
  default     = {}
}
