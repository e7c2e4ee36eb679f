// What the rotation pipeline's service principal may do, least privilege:
// - add a version to a tenant key and read key metadata (a custom role with those two data
//   actions): it can never read a key's value, nor delete, purge or recover one;
// - read the records table, to count records per key version. Storage Table Data Reader reads
//   whole entities, ciphertext included; the ciphertext is useless without a tenant key, which
//   this principal cannot read, and it cannot change a record;
// - read the Function App's host keys to start a sweep through the admin endpoint (a custom
//   role with that one action).
// Revoking and purging a tenant are human operations (Key Vault Secrets Officer, granted to the
// ops group just in time: infra/README.md). The function's own roles are in function-rbac.bicep
// (assigned before the site starts).

// Role assignment names are GUIDs of (scope, principal, role).
@description('Empty: the pipeline gets nothing (grant it later by redeploying with its object id).')
param pipelinePrincipalId string
param vaultName string
param storageAccountName string
param tableName string
param functionAppName string

// Built-in role definition ids, from https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
// (tests/infra/test_templates.py holds each one against that table).
var roles = {
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
}
// Key Vault data actions, from https://learn.microsoft.com/azure/role-based-access-control/permissions/security#microsoftkeyvault
// setSecret adds a version (`keys rotate`); readMetadata lists secrets and versions without
// their values (`keys list`, `keys rotate --all`).
var keyRotatorDataActions = [
  'Microsoft.KeyVault/vaults/secrets/setSecret/action'
  'Microsoft.KeyVault/vaults/secrets/readMetadata/action'
]
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

// `keys rotate --all` / `keys list`: list the tenant secrets and their versions, add new
// versions. Not Key Vault Secrets Officer: that role also reads every key and deletes and
// purges them, so whoever can run the pipeline could decrypt or destroy every tenant.
resource keyRotatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (grantPipeline) {
  name: guid(resourceGroup().id, vaultName, 'tokenvault-key-rotator')
  properties: {
    roleName: 'TokenVault key rotator (${vaultName})'
    description: 'Add versions to the TokenVault tenant keys and read their metadata; never read, delete or purge a key.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: keyRotatorDataActions
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource pipelineKeyRotator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantPipeline) {
  name: guid(vault.id, pipelinePrincipalId, 'tokenvault-key-rotator')
  scope: vault
  properties: {
    // A custom role's id lives at the subscription, wherever the definition was deployed from.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyRotatorRole.name)
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
