# Optional Azure Managed Redis for state shared by the replicas (rate-limit counters, Responses
# affinity). Access keys over TLS: the gateway's Redis client has no Entra ID auth. The
# EnterpriseCluster policy gives one endpoint that behaves like a single Redis to a plain
# client (the OSS cluster policy would need a cluster-aware client).
resource "azurerm_managed_redis" "shared" {
  count = var.redis.enabled ? 1 : 0

  name                      = local.names.redis
  resource_group_name       = var.resource_group_name
  location                  = var.location
  sku_name                  = var.redis.sku_name
  high_availability_enabled = var.redis.high_availability
  public_network_access     = "Enabled"
  tags                      = local.tags

  default_database {
    access_keys_authentication_enabled = true
    client_protocol                    = "Encrypted"
    clustering_policy                  = "EnterpriseCluster"
    # Counters and affinity entries all carry a TTL; under memory pressure the ones closest to
    # expiry go first instead of writes failing.
    eviction_policy = "VolatileLRU"
  }
}
