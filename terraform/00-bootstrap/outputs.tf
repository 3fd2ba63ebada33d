# deploy.sh reads these three for `terraform init -backend-config=...` of stages 10, 20 and 30
# (key "<stage>.tfstate", use_azuread_auth = true). Nothing here is secret.
output "state_resource_group_name" {
  description = "Resource group of the state storage account."
  value       = azurerm_resource_group.state.name
}

output "state_storage_account_name" {
  description = "Storage account holding the remote state of the later stages."
  value       = azurerm_storage_account.state.name
}

output "state_container_name" {
  description = "Blob container of the remote state."
  value       = azurerm_storage_container.state.name
}
