provider "azurerm" {
  subscription_id = var.subscription_id
  # Data-plane calls (the state container) use Entra ID, never account keys: the account has
  # shared keys disabled.
  storage_use_azuread = true

  features {
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}

data "azurerm_client_config" "current" {}
