variable "project" {
  description = "Short project code, lowercase letters and digits (2-8 characters); the first part of every name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.project))
    error_message = "project must be 2-8 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment code (dev, test, prod ...), lowercase letters and digits (2-6 characters)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,5}$", var.environment))
    error_message = "environment must be 2-6 lowercase letters or digits, starting with a letter."
  }
}

variable "unique_seed" {
  description = "Stable text hashed into the suffix of globally unique names (storage account, Key Vault, registry); every stage passes the subscription id, so all stages derive the same names."
  type        = string

  validation {
    condition     = length(var.unique_seed) > 0
    error_message = "unique_seed must not be empty."
  }
}

variable "stage" {
  description = "The stage that creates the resources (00-bootstrap, 10-platform ...), written into the `stage` tag."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{2}-[a-z]+$", var.stage))
    error_message = "stage must look like 10-platform."
  }
}

variable "tags" {
  description = "Extra tags merged over the standard ones (project, environment, stage, managed-by)."
  type        = map(string)
  default     = {}
}
