// What ops look at: an Azure Monitor workbook over the app's telemetry and four log search
// alert rules, all on the Application Insights component (classic tables: customMetrics for the
// app's OpenTelemetry instruments, dependencies for its spans, traces for its logs and audit
// records; docs/design.md "Metrics", docs/operations.md). The workbook and the queries live in
// observability/ as files; azuredeploy.json holds the same text (tests/infra/test_observability.py).
//
// Resource formats: https://learn.microsoft.com/azure/templates/microsoft.insights/workbooks
// (2023-06-01: kind 'shared', category 'workbook', serializedData, sourceId, a GUID name),
// https://learn.microsoft.com/azure/templates/microsoft.insights/2021-08-01/scheduledqueryrules
// (kind 'LogAlert', criteria.allOf with query, timeAggregation, metricMeasureColumn, dimensions,
// operator, threshold, failingPeriods) and
// https://learn.microsoft.com/azure/templates/microsoft.insights/2022-04-01/actiongroups
// (an action group's location is 'global').

param location string
param tags object
param applicationInsightsName string
@description('Alert when a tenant has records on a key version older than this many days.')
param staleKeyVersionDays int
@description('Alert when more requests than this are answered reauth_required within 15 minutes.')
param reauthRequiredSpike int
@description('E-mail address the alerts notify; empty: the rules fire without notifying anyone.')
param alertEmail string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, applicationInsightsName, 'tokenvault-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'TokenVault'
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: replace(loadTextContent('observability/workbook.json'), '{application-insights-id}', applicationInsights.id)
  }
}

var notify = !empty(alertEmail)

resource actionGroup 'Microsoft.Insights/actionGroups@2022-04-01' = if (notify) {
  name: 'ag-tokenvault-${uniqueString(resourceGroup().id, applicationInsightsName)}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'tokenvault'
    enabled: true
    emailReceivers: [
      {
        name: 'ops'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = notify ? { actionGroups: [ actionGroup.id ] } : {}

resource sweepFailures 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = {
  name: 'tokenvault-sweep-failures-${applicationInsightsName}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'TokenVault: sweep records failed'
    description: 'The sweep could not refresh or rewrap some records (LastError on each: python -m tokenvault records show).'
    severity: 2
    enabled: true
    scopes: [ applicationInsights.id ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: loadTextContent('observability/sweep-failures.kql')
          timeAggregation: 'Total'
          metricMeasureColumn: 'failed'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource poisonMessages 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = {
  name: 'tokenvault-poison-messages-${applicationInsightsName}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'TokenVault: sweep messages poisoned'
    description: 'A sweep message failed its last attempt, or the poison queue tokenvault-refresh-poison is not empty (docs/operations.md).'
    severity: 2
    enabled: true
    scopes: [ applicationInsights.id ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: loadTextContent('observability/poison-messages.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'poisoned'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource reauthSpike 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = {
  name: 'tokenvault-reauth-spike-${applicationInsightsName}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'TokenVault: spike of reauth_required'
    description: 'Many redeems were refused by Entra ID in 15 minutes: users must sign in again (a tenant-wide revocation, a new Conditional Access policy, a consent removed).'
    severity: 3
    enabled: true
    scopes: [ applicationInsights.id ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('observability/reauth-spike.kql')
          timeAggregation: 'Total'
          metricMeasureColumn: 'reauth_required'
          operator: 'GreaterThan'
          threshold: reauthRequiredSpike
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource staleKeyVersion 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = {
  name: 'tokenvault-stale-key-version-${applicationInsightsName}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'TokenVault: records on a key version older than the rotation period'
    description: 'A tenant still has records on a key version older than staleKeyVersionDays: the rotation pipeline stopped, or the sweep does not rewrap (python -m tokenvault keys list).'
    severity: 3
    enabled: true
    scopes: [ applicationInsights.id ]
    // The gauge is reported while the instance that ran the last plan lives; plans run every
    // 6 hours, so a 12-hour window always holds one.
    evaluationFrequency: 'PT1H'
    windowSize: 'PT12H'
    criteria: {
      allOf: [
        {
          query: loadTextContent('observability/stale-key-version.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'age_days'
          operator: 'GreaterThan'
          threshold: staleKeyVersionDays
          // one alert per tenant over the threshold
          dimensions: [
            {
              name: 'tenant_id'
              operator: 'Include'
              values: [ '*' ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

output workbookId string = workbook.id
