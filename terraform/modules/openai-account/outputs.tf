output "id" {
  description = "Resource id of the account."
  value       = azurerm_cognitive_account.this.id
}

output "endpoint" {
  description = "Base URL of the account (AZURE_OPENAI_ENDPOINT_N)."
  value       = azurerm_cognitive_account.this.endpoint
}

output "primary_access_key" {
  description = "api-key of the account when local auth is on, else null."
  value       = var.local_auth_enabled ? azurerm_cognitive_account.this.primary_access_key : null
  sensitive   = true
}

output "deployment_names" {
  description = "Names of the deployments created."
  value       = [for d in azurerm_cognitive_deployment.this : d.name]
}
