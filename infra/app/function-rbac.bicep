// What the function's managed identity may do, assigned BEFORE the Function App exists:
// main.bicep makes the api module depend on this one, so the host never starts (and never
// caches a 403 from its own storage or from Application Insights) ahead of its roles.
// Role assignments can still take minutes to propagate after ARM reports them done
// (https://learn.microsoft.com/azure/azure-functions/functions-reference#grant-permissions-to-an-identity).
//
// The roles and scopes are the ones Microsoft lists for identity-based host storage, and the
// ones the Flex Consumption managed-identity quickstart assigns (Azure-Samples/
// functions-quickstart-python-http-azd, infra/app/rbac.bicep: every storage role at the
// account, Monitoring Metrics Publisher at Application Insights):
// https://learn.microsoft.com/azure/azure-functions/functions-reference#grant-permissions-to-an-identity
//   - AzureWebJobsStorage: Storage Blob Data Owner (leases, host keys, timer locks, the
//     deployment package) and Storage Table Data Contributor (the host's diagnostic events,
//     AZFD0003 without it: https://learn.microsoft.com/azure/azure-functions/errors-diagnostics/diagnostic-events/azfd0003);
//   - APPLICATIONINSIGHTS_AUTHENTICATION_STRING: Monitoring Metrics Publisher.
// Our own code adds: the sweep queue (send, receive, poison) and the records table, both in
// the same account and so covered by the account-scope roles; Key Vault Secrets User.

@description('Resource id of the user-assigned identity: stands for the principal in role assignment names (known before deployment; its principal id is not).')
param functionIdentityId string
param functionPrincipalId string
param vaultName string
param storageAccountName string
param applicationInsightsName string

// Built-in role definition ids, from https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
// (tests/infra/test_templates.py holds each one against that table).
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The function reads tenant keys and nothing else in the vault: it cannot set, delete or
// purge a key, so a compromised instance cannot rotate or shred a tenant.
resource functionKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionIdentityId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Functions host: leases, host keys, timer locks, the deployment package.
resource functionStorageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionIdentityId, roles.storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The sweep queue and its poison queue (the host moves failed messages there).
resource functionStorageQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionIdentityId, roles.storageQueueDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The host's diagnostic events table and the records table: at the account, because the
// host names its own tables.
resource functionStorageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionIdentityId, roles.storageTableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry with Entra auth (local auth is off on the component).
resource functionMonitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, functionIdentityId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}
