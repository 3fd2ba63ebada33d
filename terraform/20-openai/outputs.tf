# Feed 30-workload by name (see 10-platform/outputs.tf).

output "openai_app_settings" {
  description = "Backend settings of the accounts: AZURE_OPENAI_ENDPOINT_N, _NAME_N, _PRIORITY_N, _WEIGHT_N, _DEPLOYMENTS_N and, for Entra ID accounts, _AUTH_MODE_N=entra."
  value       = local.openai_app_settings
}

output "openai_secrets" {
  description = "AZURE_OPENAI_KEY_N of the accounts with local auth on; 30-workload stores them in Key Vault."
  value       = local.openai_secrets
  sensitive   = true
}

output "openai_account_ids" {
  description = "Resource ids of the accounts, in backend order."
  value       = [for a in var.accounts : module.account[a.name].id]
}
