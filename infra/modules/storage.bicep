// The storage account Tessera runs on: Table Storage (jobs, job index, tasks), Storage Queues
// (task and job messages, the host's poison queues, the engine's dead-letter queue) and Blob
// (large results, the geospatial containers, the Functions host's own containers).
// Shared keys are off: every client (the Functions host, the tessera binary, operators with
// `az login`) authenticates with Entra ID.

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

param location string

@description('Prefix of every table, queue and container name (TESSERA_AZURE_PREFIX).')
param prefix string

@description('Blob containers the geospatial job types read and write (job params name them).')
param dataContainers array = []

@description('Days a deleted blob or container can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

param tags object = {}

@description('Log Analytics workspace that receives the storage services\' resource logs and metrics.')
param logAnalyticsWorkspaceId string

// Names as the code builds them (backends/azure/src/lib.rs, function-host/src/functions/catalog.rs,
// infra/functions/*/function.json); tests/it/infra.rs checks them against the code.
var queueNames = [
  '${prefix}-tasks' // task messages; trigger of the `tasks` function
  '${prefix}-jobs' // job submissions and expansions; trigger of the `jobs` function
  '${prefix}-tasks-poison' // the host's poison queue of `tasks`; trigger of `tasks-poison`
  '${prefix}-jobs-poison' // the host's poison queue of `jobs`
  '${prefix}-tasks-poison-poison' // the host's poison queue of `tasks-poison`
  '${prefix}-tasks-dead' // the engine's dead-letter queue (the poison API) in functions mode
]
var tableNames = [
  '${prefix}jobs'
  '${prefix}jobindex'
  '${prefix}tasks'
]
var containerNames = concat([
  '${prefix}-results' // task results above the table property limit
], dataContainers)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_59: the Functions host and operators reach the account's public endpoint (no VNet here); every request needs an Entra ID token with a data role, shared keys are off
  // checkov:skip=CKV_AZURE_206: replication is the skuName parameter (default Standard_ZRS), which the check cannot resolve
  // checkov:skip=CKV_AZURE_35: default action Allow for the same reason (a firewall needs the app's outbound addresses or a VNet: docs/operations.md)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

// Resource logs (every request: operation, status, latency, caller) of the three services
// Tessera uses, to the Log Analytics workspace: docs/operations.md has the queries.
resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: queueService
  name: 'tessera-queue-logs'
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      { categoryGroup: 'allLogs', enabled: true }
    ]
    metrics: [
      { category: 'Transaction', enabled: true }
    ]
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: tableService
  name: 'tessera-table-logs'
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      { categoryGroup: 'allLogs', enabled: true }
    ]
    metrics: [
      { category: 'Transaction', enabled: true }
    ]
  }
}

resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: blobService
  name: 'tessera-blob-logs'
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      { categoryGroup: 'allLogs', enabled: true }
    ]
    metrics: [
      { category: 'Transaction', enabled: true }
    ]
  }
}

output name string = storage.name
output id string = storage.id
output queueNames array = queueNames
output tableNames array = tableNames
output containerNames array = containerNames
output blobEndpoint string = storage.properties.primaryEndpoints.blob
