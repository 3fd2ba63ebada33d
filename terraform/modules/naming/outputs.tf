output "names" {
  description = "Resource names by kind (see main.tf)."
  value       = local.names
}

output "prefix" {
  description = "project-environment, for names built by the caller (e.g. one per OpenAI account)."
  value       = local.prefix
}

output "tags" {
  description = "Standard tags merged with the caller's."
  value       = local.tags
}
