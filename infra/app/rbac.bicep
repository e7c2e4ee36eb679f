// Who may do what, least privilege. Two principals:
// - the function's managed identity: reads tenant keys (never writes them), uses the host's
//   storage and the records, sends telemetry;
// - the rotation pipeline's service principal: writes tenant keys, counts records per key
//   version, and may read the Function App's host keys to start a sweep through the admin
//   endpoint (a custom role with that one action). It cannot read or change records.
// Humans who revoke and purge tenants get their rights outside this template (README.md).

// Role assignment names are GUIDs of (scope, principal, role). For the function, the identity's
// resource id stands for the principal: it is known before deployment, its principal id is not.
param functionIdentityId string
param functionPrincipalId string
@description('Empty: the pipeline gets nothing (grant it later by redeploying with its object id).')
param pipelinePrincipalId string
param vaultName string
param storageAccountName string
param tableName string
param functionAppName string
param applicationInsightsName string

// Built-in role definition ids (Azure built-in roles reference).
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
var grantPipeline = !empty(pipelinePrincipalId)

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource recordsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: tableName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
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

// The Functions host keeps leases and function keys in blobs, and reads the deployment
// package; identity-based AzureWebJobsStorage documents Owner for the host.
resource functionStorageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionIdentityId, roles.storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The sweep queue, its poison queue (the host moves failed messages there) and the plan's
// poison count.
resource functionStorageQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionIdentityId, roles.storageQueueDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionStorageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(recordsTable.id, functionIdentityId, roles.storageTableDataContributor)
  scope: recordsTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionMonitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, functionIdentityId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// `keys create` / `keys rotate --all`: list the tenant secrets and set new versions.
resource pipelineKeyVaultSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantPipeline) {
  name: guid(vault.id, pipelinePrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: pipelinePrincipalId
    principalType: 'ServicePrincipal'
  }
}

// `keys list`: how many records are on each key version. Read-only, and only this table.
resource pipelineStorageTableDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantPipeline) {
  name: guid(recordsTable.id, pipelinePrincipalId, roles.storageTableDataReader)
  scope: recordsTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataReader)
    principalId: pipelinePrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Starting a sweep after a rotation runs the timer function `refresh_plan` now, through the
// Functions admin endpoint, which takes the master key. This role can read the host keys of
// this one app and do nothing else; the sweep itself runs in the app under its own identity.
resource sweepTriggerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (grantPipeline) {
  name: guid(resourceGroup().id, functionAppName, 'tokenvault-sweep-trigger')
  properties: {
    roleName: 'TokenVault sweep trigger (${functionAppName})'
    description: 'Read the host keys of the TokenVault Function App, to run refresh_plan now.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Web/sites/host/listkeys/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource pipelineSweepTrigger 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantPipeline) {
  name: guid(functionApp.id, pipelinePrincipalId, 'tokenvault-sweep-trigger')
  scope: functionApp
  properties: {
    // A custom role's id lives at the subscription, wherever the definition was deployed from.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sweepTriggerRole.name)
    principalId: pipelinePrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    sweepTriggerRole
  ]
}
