variable "name_prefix" {
  description = "Prefix of the alert rule names."
  type        = string
}

variable "action_group_name" {
  description = "Name of the e-mail action group created when action_group_id is null."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the alert rules."
  type        = string
}

variable "location" {
  description = "Region of the Prometheus rule group (the Azure Monitor workspace's)."
  type        = string
}

variable "container_app_id" {
  description = "The gateway Container App (platform metrics: Requests, RestartCount)."
  type        = string
}

variable "container_app_name" {
  description = "Name of the gateway Container App, for alert descriptions."
  type        = string
}

variable "monitor_workspace_id" {
  description = "Azure Monitor workspace the collector remote-writes the gateway's metrics to."
  type        = string
}

variable "emails" {
  description = "Addresses notified by the created action group."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.emails : can(regex("^[^@\\s]+@[^@\\s]+$", e))])
    error_message = "emails must be e-mail addresses."
  }
}

variable "action_group_id" {
  description = "Existing action group to notify instead of creating one (null = create one for emails)."
  type        = string
  default     = null
}

variable "error_rate_percent" {
  description = "Alert when more than this share of requests (percent, over 5 minutes) ends in a 5xx."
  type        = number
  default     = 5
}

variable "throttle_rate_percent" {
  description = "Alert when more than this share of requests (percent, over 5 minutes) ends in a 429."
  type        = number
  default     = 10
}

variable "zero_traffic_minutes" {
  description = "Alert when no request arrived for this many minutes (an Azure Monitor window size); 0 = off."
  type        = number
  default     = 60
}

variable "tags" {
  description = "Tags of the alert resources."
  type        = map(string)
  default     = {}
}
