output "action_group_id" {
  description = "Action group the alerts notify."
  value       = local.action_group_id
}
