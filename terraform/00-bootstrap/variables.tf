variable "project" {
  description = "Short project code (2-8 lowercase letters or digits); first part of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.project))
    error_message = "project must be 2-8 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment code (2-6 lowercase letters or digits), e.g. dev or prod."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,5}$", var.environment))
    error_message = "environment must be 2-6 lowercase letters or digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region of the state resource group and storage account, e.g. swedencentral."
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

variable "deployer_principal_ids" {
  description = "Object ids of the principals that run Terraform (people, CI service principals); each gets Storage Blob Data Contributor on the state container only. Empty = the identity running this apply."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.deployer_principal_ids : can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", id))])
    error_message = "deployer_principal_ids must be lowercase GUIDs."
  }
}

variable "state_replication_type" {
  description = "Replication of the state account: GZRS (default) survives a zone and a region; LRS is enough for throwaway environments."
  type        = string
  default     = "GZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.state_replication_type)
    error_message = "state_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "state_retention_days" {
  description = "Days a deleted or overwritten state blob (and a deleted container) can be recovered."
  type        = number
  default     = 30

  validation {
    condition     = var.state_retention_days >= 7 && var.state_retention_days <= 365
    error_message = "state_retention_days must be between 7 and 365."
  }
}

variable "allowed_ip_ranges" {
  description = "Public IPs or CIDRs (deployers, CI runners) allowed to reach the state account; the account denies every other network. Empty = no IP allowed, only trusted Azure services (set it before the first remote init)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.allowed_ip_ranges : can(cidrhost(strcontains(ip, "/") ? ip : "${ip}/32", 0))])
    error_message = "allowed_ip_ranges must be IPv4 addresses or CIDRs."
  }
}

variable "lock_state_account" {
  description = "Put a CanNotDelete lock on the state storage account (recommended everywhere but throwaway environments)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags merged over the standard ones (project, environment, stage, managed-by)."
  type        = map(string)
  default     = {}
}
