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

  # Remote state in the account made by 00-bootstrap. deploy.sh fills in the rest:
  #   terraform init -backend-config=resource_group_name=<state_resource_group_name> \
  #     -backend-config=storage_account_name=<state_storage_account_name> \
  #     -backend-config=container_name=<state_container_name> -backend-config=key=20-openai.tfstate
  backend "azurerm" {
    use_azuread_auth = true
  }
}
