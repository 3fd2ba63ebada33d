terraform {
  # Validation rules that refer to other variables and locals need 1.9.
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Floor: a 4.x with every argument used here (Key Vault `rbac_authorization_enabled` came in
      # 4.42, Managed Redis `public_network_access` later); 5.0 will drop the deprecated names.
      version = "~> 4.80"
    }
  }

  # The bootstrap stage creates the remote state store, so its own state is local
  # (terraform/00-bootstrap/terraform.tfstate, gitignored). Keep that file safe or re-import:
  # it holds no secret, only the ids of the state resource group, account and container.
  backend "local" {}
}
