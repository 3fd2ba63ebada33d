resource "azurerm_virtual_network" "this" {
  name                = local.names.virtual_network
  resource_group_name = azurerm_resource_group.platform.name
  location            = azurerm_resource_group.platform.location
  address_space       = [var.vnet_address_space]
  tags                = local.tags
}

# Delegated to Microsoft.App/environments (workload profiles). Service endpoints let the
# replicas reach Key Vault and Azure OpenAI through their firewalls by subnet.
resource "azurerm_subnet" "container_apps" {
  name                 = local.names.container_apps_subnet
  resource_group_name  = azurerm_resource_group.platform.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.container_apps_subnet_prefix]
  service_endpoints    = ["Microsoft.KeyVault", "Microsoft.CognitiveServices"]

  delegation {
    name = "container-apps"

    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "private_endpoints" {
  count = var.private_endpoint_subnet_prefix == null ? 0 : 1

  name                              = local.names.private_endpoint_subnet
  resource_group_name               = azurerm_resource_group.platform.name
  virtual_network_name              = azurerm_virtual_network.this.name
  address_prefixes                  = [var.private_endpoint_subnet_prefix]
  private_endpoint_network_policies = "Enabled"
}

# Default rules deny inbound from the internet; the one added rule opens HTTPS to the
# environment's public load balancer (not needed, and not added, when internal_only).
resource "azurerm_network_security_group" "this" {
  name                = local.names.network_security_group
  resource_group_name = azurerm_resource_group.platform.name
  location            = azurerm_resource_group.platform.location
  tags                = local.tags
}

resource "azurerm_network_security_rule" "https_in" {
  count = var.internal_only ? 0 : 1

  name                        = "allow-https-inbound"
  resource_group_name         = azurerm_resource_group.platform.name
  network_security_group_name = azurerm_network_security_group.this.name
  priority                    = 100
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "443"
  source_address_prefixes     = var.ingress_source_address_prefixes
  destination_address_prefix  = var.container_apps_subnet_prefix
}

resource "azurerm_subnet_network_security_group_association" "container_apps" {
  subnet_id                 = azurerm_subnet.container_apps.id
  network_security_group_id = azurerm_network_security_group.this.id
}

resource "azurerm_subnet_network_security_group_association" "private_endpoints" {
  count = var.private_endpoint_subnet_prefix == null ? 0 : 1

  subnet_id                 = azurerm_subnet.private_endpoints[0].id
  network_security_group_id = azurerm_network_security_group.this.id
}
