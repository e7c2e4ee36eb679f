// TokenVault: a Python Function App (3.11 unless pythonVersion says otherwise) on Flex
// Consumption that keeps OAuth refresh tokens encrypted under per-tenant keys held in Key
// Vault (docs/design.md).
//
// Deploy into an existing resource group:
//   az deployment group create -g <rg> -f infra/main.bicep \
//     -p environmentName=<name> tokenVaultClientId=<app registration client id> \
//        pipelinePrincipalId=<object id of the rotation pipeline's service principal>
// or `azd up` (azure.yaml at the repository root; parameters from infra/main.parameters.json).
//
// infra/azuredeploy.json is the same deployment as one ARM template; tests/infra keeps the
// two in step. The app registration (and its federated credential that trusts the managed
// identity created here) lives in Entra ID, outside this template: see infra/README.md.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(20)
@description('Short name of this environment (dev, prod, ...); part of every resource name.')
param environmentName string

@description('Region of every resource; must offer Flex Consumption.')
param location string = resourceGroup().location

@minLength(36)
@maxLength(36)
@description('Client id of the TokenVault app registration: the audience of accepted user tokens and the client that runs OBO and refresh.')
param tokenVaultClientId string

@description('Comma-separated tenant ids whose users\' records are kept (checked against the record\'s tenant on every path); empty allows any tenant that has a key.')
param allowedTenants string = ''

@description('Comma-separated <app id>@<home tenant id> pairs allowed to call with an app token (roles TokenVault.Redeem / TokenVault.Admin); a bare app id is refused.')
param redeemCallers string = ''

@minValue(0)
@maxValue(86400)
@description('Seconds a fetched tenant key may be used before Key Vault is asked again: the upper bound of the delay before a revoked tenant is refused everywhere.')
param keyCacheTtlSeconds int = 300

@description('Table that holds the records.')
param tableName string = 'tokens'

@description('NCRONTAB (six fields, seconds first) of the sweep timer.')
param refreshSchedule string = '0 0 */6 * * *'

@description('Age after which a stored refresh token is refreshed: ISO 8601 duration or seconds.')
param refreshAfter string = 'P7D'

@description('Entra ID login endpoint; the default follows the cloud this is deployed to.')
param authorityHost string = environment().authentication.loginEndpoint

@description('Object id of the service principal the key-rotation pipeline signs in as (empty: grant nothing).')
param pipelinePrincipalId string = ''

@minValue(7)
@maxValue(90)
@description('Days a deleted tenant key stays recoverable (Key Vault soft delete).')
param softDeleteRetentionInDays int = 90

// Purge protection is off by default on purpose. With it on, nobody (not even ops) can purge
// a deleted secret before softDeleteRetentionInDays have passed, so `keys revoke --purge`
// cannot make a tenant's crypto-shred final until then, and it can never be turned off again.
// With it off, someone holding Key Vault Secrets Officer could purge every tenant key at once
// (all records become undecryptable; users must sign in again). Turn it on where a guaranteed
// recovery window matters more than an immediate, final shred.
@description('Key Vault purge protection: irreversible once on; blocks final tenant shredding until the retention ends. See infra/README.md.')
param enablePurgeProtection bool = false

@allowed([
  512
  2048
  4096
])
@description('Memory of each Flex Consumption instance, in MB.')
param instanceMemoryMB int = 2048

// Flex Consumption: "The lowest maximum scale is currently 40. The highest currently
// supported value is 1000." https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
@minValue(40)
@maxValue(1000)
@description('Upper bound of Flex Consumption scale-out (40 to 1000).')
param maximumInstanceCount int = 100

// Python versions of Flex Consumption (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#supported-language-stack-versions;
// 3.13 and later run on the versioned Python runtime, https://learn.microsoft.com/azure/azure-functions/python-313-changes).
// A region may not offer every version yet: infra/preflight.sh asks
// `az functionapp list-flexconsumption-runtimes` before a deployment. requirements.txt pins
// azure-functions 1.x below 3.13 and 2.x from 3.13 on (the library's own Requires-Python).
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
@description('Python version of the Function App.')
param pythonVersion string = '3.11'

@allowed([
  'Standard_ZRS'
  'Standard_LRS'
])
@description('Storage redundancy: zone-redundant by default; Standard_LRS only in a region without availability zones.')
param storageSkuName string = 'Standard_ZRS'

@minValue(30)
@maxValue(730)
@description('Days Log Analytics keeps the logs.')
param logRetentionInDays int = 30

@minValue(1)
@maxValue(400)
@description('Alert when a tenant has records on a key version older than this many days: the rotation period (monthly, infra/pipelines/rotate-keys.yml) plus a day for the sweep to rewrap.')
param staleKeyVersionDays int = 32

@minValue(1)
@description('Alert when more requests than this are answered reauth_required within 15 minutes.')
param reauthRequiredSpike int = 25

@description('E-mail address the alert rules notify (an action group); empty: the rules fire in the portal only.')
param alertEmail string = ''

@description('Tags added to every resource.')
param tags object = {}

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, { 'azd-env-name': environmentName })
var functionAppName = 'func-tokenvault-${resourceToken}'

// The one identity of the app: storage (host and data), Key Vault reads, App Insights
// ingestion, and the federated credential of the app registration. It must be user-assigned:
// only a user-assigned identity can be a federated credential (docs/field-notes.md).
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-tokenvault-${resourceToken}'
  location: location
  tags: allTags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: allTags
    workspaceName: 'log-tokenvault-${resourceToken}'
    applicationInsightsName: 'appi-tokenvault-${resourceToken}'
    retentionInDays: logRetentionInDays
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: allTags
    accountName: 'sttv${resourceToken}'
    skuName: storageSkuName
    deploymentContainerName: 'app-package-${resourceToken}'
    tableName: tableName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: allTags
    vaultName: 'kv-tv-${resourceToken}'
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: enablePurgeProtection
    workspaceId: monitoring.outputs.workspaceId
  }
}

// The function's roles exist before the site does (see function-rbac.bicep).
module functionRbac 'app/function-rbac.bicep' = {
  name: 'function-rbac'
  params: {
    functionIdentityId: identity.id
    functionPrincipalId: identity.properties.principalId
    vaultName: keyVault.outputs.vaultName
    storageAccountName: storage.outputs.accountName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  dependsOn: [
    functionRbac
  ]
  params: {
    location: location
    tags: allTags
    planName: 'plan-tokenvault-${resourceToken}'
    functionAppName: functionAppName
    identityId: identity.id
    identityClientId: identity.properties.clientId
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    storageEndpoints: storage.outputs.endpoints
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    pythonVersion: pythonVersion
    tokenVaultSettings: {
      TOKENVAULT_CLIENT_ID: tokenVaultClientId
      TOKENVAULT_CLIENT_ASSERTION: 'managed_identity'
      AZURE_CLIENT_ID: identity.properties.clientId
      TOKENVAULT_AUTHORITY_HOST: authorityHost
      TOKENVAULT_KEY_VAULT_URL: keyVault.outputs.vaultUri
      TOKENVAULT_ALLOWED_TENANTS: allowedTenants
      TOKENVAULT_REDEEM_CALLERS: redeemCallers
      TOKENVAULT_KEY_CACHE_TTL: string(keyCacheTtlSeconds)
      TOKENVAULT_TABLE: tableName
      TOKENVAULT_REFRESH_SCHEDULE: refreshSchedule
      TOKENVAULT_REFRESH_AFTER: refreshAfter
      TOKENVAULT_SWEEP_CONCURRENCY: '8'
    }
  }
}

// The workbook and the alert rules (docs/operations.md "Watching it").
module observability 'app/observability.bicep' = {
  name: 'observability'
  params: {
    location: location
    tags: allTags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    staleKeyVersionDays: staleKeyVersionDays
    reauthRequiredSpike: reauthRequiredSpike
    alertEmail: alertEmail
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    pipelinePrincipalId: pipelinePrincipalId
    vaultName: keyVault.outputs.vaultName
    storageAccountName: storage.outputs.accountName
    tableName: tableName
    functionAppName: api.outputs.functionAppName
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output SERVICE_API_NAME string = api.outputs.functionAppName
output FUNCTION_APP_NAME string = api.outputs.functionAppName
output FUNCTION_APP_ID string = api.outputs.id
output FUNCTION_APP_URL string = api.outputs.url
output TOKENVAULT_KEY_VAULT_URL string = keyVault.outputs.vaultUri
output KEY_VAULT_NAME string = keyVault.outputs.vaultName
output STORAGE_ACCOUNT_NAME string = storage.outputs.accountName
output MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
// The federated credential of the app registration trusts this subject (see infra/README.md).
output FEDERATED_CREDENTIAL_ISSUER string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
output FEDERATED_CREDENTIAL_SUBJECT string = identity.properties.principalId
