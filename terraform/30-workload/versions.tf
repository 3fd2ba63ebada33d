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

  # Remote state in the account made by 00-bootstrap. deploy.sh fills in the rest:
  #   terraform init -backend-config=resource_group_name=<state_resource_group_name> \
  #     -backend-config=storage_account_name=<state_storage_account_name> \
  #     -backend-config=container_name=<state_container_name> -backend-config=key=30-workload.tfstate
  backend "azurerm" {
    use_azuread_auth = true
  }
}
