variable "name" {
  description = "Account name; also its custom subdomain (https://<name>.openai.azure.com), which Entra ID auth and network rules need."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$", var.name))
    error_message = "name must be 2-64 lowercase letters, digits or hyphens, not starting or ending with a hyphen."
  }
}

variable "resource_group_name" {
  description = "Resource group of the account."
  type        = string
}

variable "location" {
  description = "Region of the account (model availability and quota are per region)."
  type        = string
}

variable "sku_name" {
  description = "Account SKU (S0 for Azure OpenAI)."
  type        = string
  default     = "S0"
}

variable "local_auth_enabled" {
  description = "Allow api-key authentication. false (the default) leaves Entra ID as the only way in: the gateway then authenticates with its managed identity."
  type        = bool
  default     = false
}

variable "network_default_action" {
  description = "What the account's firewall does with traffic that no rule allows: Deny (only allowed_subnet_ids and allowed_ip_ranges get in) or Allow."
  type        = string
  default     = "Deny"

  validation {
    condition     = contains(["Allow", "Deny"], var.network_default_action)
    error_message = "network_default_action must be Allow or Deny."
  }
}

variable "allowed_subnet_ids" {
  description = "Subnets (with the Microsoft.CognitiveServices service endpoint) allowed through the firewall: the Container Apps subnet."
  type        = list(string)
  default     = []
}

variable "allowed_ip_ranges" {
  description = "Public IPs or CIDRs allowed through the firewall (operators, tests)."
  type        = list(string)
  default     = []
}

variable "deployments" {
  description = "Model deployments of the account, by deployment name."
  type = map(object({
    model_name             = string
    model_version          = string
    sku_name               = string
    capacity               = number
    version_upgrade_option = string
  }))
}

variable "gateway_principal_id" {
  description = "Object id of the gateway identity; it gets Cognitive Services OpenAI User on the account when local auth is off. null = no role assignment."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags of the account."
  type        = map(string)
  default     = {}
}
