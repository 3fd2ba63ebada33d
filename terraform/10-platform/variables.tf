variable "project" {
  description = "Short project code (2-8 lowercase letters or digits); first part of every resource name. Same value in every stage."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.project))
    error_message = "project must be 2-8 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment code (2-6 lowercase letters or digits), e.g. dev or prod. Same value in every stage."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,5}$", var.environment))
    error_message = "environment must be 2-6 lowercase letters or digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region of the platform (network, Container Apps environment, registry, vault, monitoring), e.g. swedencentral."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "location must be an Azure region name in lowercase without spaces, e.g. swedencentral."
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

variable "vnet_address_space" {
  description = "Address space of the platform virtual network."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vnet_address_space, 0))
    error_message = "vnet_address_space must be an IPv4 CIDR."
  }
}

variable "container_apps_subnet_prefix" {
  description = "Subnet delegated to the Container Apps environment (workload profiles: /27 or larger; /23 leaves room to scale)."
  type        = string
  default     = "10.40.0.0/23"

  validation {
    condition     = can(cidrhost(var.container_apps_subnet_prefix, 0)) && tonumber(split("/", var.container_apps_subnet_prefix)[1]) <= 27
    error_message = "container_apps_subnet_prefix must be an IPv4 CIDR of /27 or larger."
  }
}

variable "private_endpoint_subnet_prefix" {
  description = "Optional subnet for private endpoints (Redis, OpenAI, Key Vault); null creates none."
  type        = string
  default     = null

  validation {
    condition     = var.private_endpoint_subnet_prefix == null || can(cidrhost(var.private_endpoint_subnet_prefix, 0))
    error_message = "private_endpoint_subnet_prefix must be an IPv4 CIDR or null."
  }
}

variable "internal_only" {
  description = "Give the Container Apps environment an internal load balancer only (reachable from the VNet and peered networks, not the internet)."
  type        = bool
  default     = false
}

variable "ingress_source_address_prefixes" {
  description = "Sources allowed to reach the environment's public HTTPS endpoint through the subnet's NSG (service tags or CIDRs). Ignored when internal_only."
  type        = list(string)
  default     = ["Internet"]

  validation {
    condition     = length(var.ingress_source_address_prefixes) > 0
    error_message = "ingress_source_address_prefixes needs at least one entry (use [\"Internet\"] for everyone)."
  }
}

variable "zone_redundancy_enabled" {
  description = "Spread the Container Apps environment (and a Premium registry) over availability zones. Needs a region with zones."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Days Log Analytics and Application Insights keep data (a value both accept)."
  type        = number
  default     = 30

  validation {
    condition     = contains([30, 60, 90, 120, 180, 270, 365, 550, 730], var.log_retention_days)
    error_message = "log_retention_days must be one of 30, 60, 90, 120, 180, 270, 365, 550, 730 (Application Insights' retention values)."
  }
}

variable "log_daily_quota_gb" {
  description = "Daily ingestion cap of the Log Analytics workspace in GB; -1 = no cap."
  type        = number
  default     = -1

  validation {
    condition     = var.log_daily_quota_gb == -1 || var.log_daily_quota_gb > 0
    error_message = "log_daily_quota_gb must be -1 (no cap) or positive."
  }
}

variable "acr_sku" {
  description = "Container registry SKU. Premium adds zone redundancy, retention of untagged manifests and private endpoints."
  type        = string
  default     = "Standard"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.acr_sku)
    error_message = "acr_sku must be Basic, Standard or Premium."
  }
}

variable "key_vault_allowed_ip_ranges" {
  description = "Public IPs or CIDRs allowed through the Key Vault firewall (deployers writing secrets, CI). The Container Apps subnet is always allowed."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.key_vault_allowed_ip_ranges : can(cidrhost(strcontains(ip, "/") ? ip : "${ip}/32", 0))])
    error_message = "key_vault_allowed_ip_ranges must be IPv4 addresses or CIDRs."
  }
}

variable "key_vault_soft_delete_retention_days" {
  description = "Days a deleted vault or secret stays recoverable (7-90). Fixed once the vault exists."
  type        = number
  default     = 90

  validation {
    condition     = var.key_vault_soft_delete_retention_days >= 7 && var.key_vault_soft_delete_retention_days <= 90
    error_message = "key_vault_soft_delete_retention_days must be between 7 and 90."
  }
}

variable "deployer_principal_ids" {
  description = "Object ids of the principals that run the later stages (people, CI). Each gets Key Vault Secrets Officer on the vault (30-workload writes the secrets) and AcrPush on the registry. Empty = the identity running this apply."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.deployer_principal_ids : can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", id))])
    error_message = "deployer_principal_ids must be lowercase GUIDs."
  }
}

variable "tags" {
  description = "Extra tags merged over the standard ones (project, environment, stage, managed-by)."
  type        = map(string)
  default     = {}
}
