// The vault of the tenant keys: one secret 'tenant-<tenant id>' per tenant, whose versions are
// the key versions. Access is Azure RBAC only (no access policies): the function reads
// (Key Vault Secrets User), the rotation pipeline only adds versions (a custom role, rbac.bicep).

param location string
param tags object
param vaultName string
param softDeleteRetentionInDays int
// See main.bicep and infra/README.md: on, it blocks a final tenant shred until the retention
// ends, and it can never be turned off again.
param enablePurgeProtection bool
param workspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // ARM accepts only true or an absent property here: once on, it cannot be switched off.
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // The Flex Consumption app (no VNet here) and hosted pipeline agents come from public
      // addresses; access is decided by Entra RBAC alone (see .checkov.yaml).
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Every read, write, delete and purge of a tenant key, with who did it: the evidence behind a
// revocation or a leaked-key investigation (docs/operations.md). Dedicated: the resource-
// specific table AZKVAuditLogs rather than the shared AzureDiagnostics
// (https://learn.microsoft.com/azure/azure-monitor/reference/tables/azkvauditlogs,
// https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs#resource-specific).
resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output vaultName string = vault.name
output vaultUri string = vault.properties.vaultUri
