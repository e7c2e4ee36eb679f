// What the rotation pipeline's service principal may do, least privilege: write tenant keys,
// count records per key version, and read the Function App's host keys to start a sweep
// through the admin endpoint (a custom role with that one action). It cannot read or change
// records. The function's own roles are in function-rbac.bicep (assigned before the site
// starts); humans get theirs with the commands in infra/README.md.

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
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
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
