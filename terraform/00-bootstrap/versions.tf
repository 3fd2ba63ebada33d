terraform {
  # Validation rules that refer to other variables and locals need 1.9.
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.42 brought `rbac_authorization_enabled`; 5.0 will remove the names this code avoids.
      version = "~> 4.42"
    }
  }

  # The bootstrap stage creates the remote state store, so its own state is local
  # (terraform/00-bootstrap/terraform.tfstate, gitignored). Keep that file safe or re-import:
  # it holds no secret, only the ids of the state resource group, account and container.
  backend "local" {}
}
