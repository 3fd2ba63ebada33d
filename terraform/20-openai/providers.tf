provider "azurerm" {
  subscription_id     = var.subscription_id
  storage_use_azuread = true

  features {
    cognitive_account {
      # A deleted account stays soft-deleted (recoverable) instead of being purged.
      purge_soft_delete_on_destroy = false
    }

    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}

data "azurerm_client_config" "current" {}
