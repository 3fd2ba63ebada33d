output "container_app_name" {
  description = "Name of the gateway Container App (az containerapp revision restart ...)."
  value       = azurerm_container_app.gateway.name
}

output "container_app_fqdn" {
  description = "Ingress host name of the gateway."
  value       = azurerm_container_app.gateway.ingress[0].fqdn
}

output "gateway_url" {
  description = "Base URL clients use (e.g. <gateway_url>/openai/deployments/<name>/chat/completions)."
  value       = "https://${azurerm_container_app.gateway.ingress[0].fqdn}"
}

output "latest_revision_name" {
  description = "Revision created by the last apply; deploy.sh waits for it to be ready."
  value       = azurerm_container_app.gateway.latest_revision_name
}

output "secret_names" {
  description = "Secret variables the app references and their Key Vault secret names (names only, never values)."
  value       = local.secret_env
}
