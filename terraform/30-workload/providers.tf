provider "azurerm" {
  subscription_id     = var.subscription_id
  storage_use_azuread = true

  features {
    key_vault {
      # Secrets removed from `secrets` stay soft-deleted (recoverable), as the vault's purge
      # protection requires anyway.
      purge_soft_deleted_secrets_on_destroy = false
      recover_soft_deleted_secrets          = true
    }
  }
}
