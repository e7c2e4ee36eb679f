// The Function App on a Flex Consumption plan: Python, code deployed to a blob container read
// with the managed identity, every connection identity-based. Flex Consumption takes the
// runtime from functionAppConfig and deprecates many site properties and app settings
// (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, siteConfig.ftpsState, ...):
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
// tests/infra/test_flex_rules.py keeps every one of them out of both templates.

param location string
param tags object
param planName string
param functionAppName string
param identityId string
param identityClientId string
param deploymentContainerUrl string
@description('The account\'s blob, queue and table endpoints (primaryEndpoints): right in every cloud.')
param storageEndpoints object
param applicationInsightsName string
param instanceMemoryMB int
param maximumInstanceCount int
param pythonVersion string
@description('The TOKENVAULT_* settings of docs/design.md, and AZURE_CLIENT_ID.')
param tokenVaultSettings object

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      // No ftpsState: Flex Consumption rejects it (BadRequest 51021); FTP is off through
      // the basicPublishingCredentialsPolicies below.
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Telemetry: the app exports its own traces, metrics and logs with the Azure Monitor
// OpenTelemetry distro (tokenvault/adapters/telemetry.py) to the component named by
// APPLICATIONINSIGHTS_CONNECTION_STRING, authenticated as the managed identity named by
// APPLICATIONINSIGHTS_AUTHENTICATION_STRING, which the host and the exporter both read
// (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#applicationinsights_authentication_string);
// host.json says telemetryMode OpenTelemetry. PYTHON_ENABLE_OPENTELEMETRY makes the worker
// propagate the trace context of the host into each invocation and tell the host that the
// worker exports its own logs, so they are not sent twice. PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY
// is left unset: with it the worker would call configure_azure_monitor itself, a second set-up
// beside the one of the app (https://github.com/Azure/azure-functions-python-worker/pull/1621,
// https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(tokenVaultSettings, {
    // Identity-based host storage; the queue trigger and the records use the same
    // connection (TOKENVAULT_STORAGE is left unset, so it defaults to AzureWebJobsStorage).
    // Service URIs rather than __accountName: they carry the cloud's storage suffix, which
    // sovereign clouds need (https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity).
    AzureWebJobsStorage__blobServiceUri: storageEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storageEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storageEndpoints.table
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    // Local auth is off on the component: ingestion needs the identity's Entra token.
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    PYTHON_ENABLE_OPENTELEMETRY: 'true'
  })
}

// Publishing with a user name and password (FTP, SCM basic auth) is off: deployments use
// Entra ID (azd, az CLI, Core Tools).
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output functionAppName string = functionApp.name
output id string = functionApp.id
output url string = 'https://${functionApp.properties.defaultHostName}'
