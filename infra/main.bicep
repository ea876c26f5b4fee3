// Tessera on Azure: one resource group, one command (docs/operations.md, "Deploy"):
//
//   az deployment group create -g <group> -f infra/main.bicep -p infra/main.parameters.json
//
// It creates the storage account (tables, queues, containers under `prefix`), a Log
// Analytics workspace with Application Insights, a user-assigned managed identity, the
// Function App (Linux, Elastic Premium, the container image of infra/Dockerfile) and the data
// roles of that identity (the host's and the handler's) on that storage account only. No secret anywhere: shared key
// access is disabled, every connection is an Entra ID identity.

targetScope = 'resourceGroup'

@description('Short name for the resources: lowercase letters and digits.')
@minLength(3)
@maxLength(16)
param name string = 'tessera'

param location string = resourceGroup().location

@description('Prefix of the tables, queues and containers (TESSERA_AZURE_PREFIX): 1-40 lowercase letters and digits, starting with a letter.')
@minLength(1)
@maxLength(40)
param prefix string = 'tessera'

@description('Storage account name (globally unique); default: derived from the resource group.')
@minLength(3)
@maxLength(24)
param storageAccountName string = take('${name}${uniqueString(resourceGroup().id)}', 24)

@description('Container image built from infra/Dockerfile, e.g. myregistry.azurecr.io/tessera:1.4.0.')
param image string

@description('Azure Container Registry in this resource group that holds the image.')
param registryName string

@description('Blob containers the geospatial job types use (their params name them).')
param dataContainers array = []

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@minValue(1)
@maxValue(20)
param minimumInstances int = 1

@minValue(1)
@maxValue(100)
param maximumInstances int = 20

@description('Task lease in seconds (TESSERA_LEASE_SECS); keep below host.json visibilityTimeout.')
@minValue(1)
@maxValue(3600)
param leaseSecs int = 30

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

param tags object = {
  application: 'tessera'
}

module monitoring 'modules/monitoring.bicep' = {
  name: '${name}-monitoring'
  params: {
    namePrefix: name
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: '${name}-storage'
  params: {
    name: storageAccountName
    location: location
    prefix: prefix
    dataContainers: dataContainers
    skuName: storageSku
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module identity 'modules/identity.bicep' = {
  name: '${name}-identity'
  params: {
    name: '${name}-id'
    location: location
    tags: tags
  }
}

module app 'modules/functionapp.bicep' = {
  name: '${name}-app'
  params: {
    namePrefix: name
    location: location
    tags: tags
    image: image
    registryName: registryName
    skuName: planSku
    minimumInstances: minimumInstances
    maximumInstances: maximumInstances
    storageAccountName: storage.outputs.name
    prefix: prefix
    leaseSecs: leaseSecs
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    identityPrincipalId: identity.outputs.principalId
    insightsName: monitoring.outputs.insightsName
    insightsConnectionString: monitoring.outputs.insightsConnectionString
  }
}

module roles 'modules/roles.bicep' = {
  name: '${name}-roles'
  params: {
    storageAccountName: storage.outputs.name
    principalId: identity.outputs.principalId
  }
}

@description('The app: the HTTP API is under it (https://<host>/api/jobs, with a function key).')
output appUrl string = app.outputs.url
output functionAppName string = app.outputs.name
@description('For the CLI: tessera <command> --backend azure --storage-account <this> --azure-prefix <prefix> (after az login, with a data role).')
output storageAccountName string = storage.outputs.name
output azurePrefix string = prefix
output queueNames array = storage.outputs.queueNames
output tableNames array = storage.outputs.tableNames
output containerNames array = storage.outputs.containerNames
output identityClientId string = identity.outputs.clientId
output cliArgs string = '--backend azure --storage-account ${storage.outputs.name} --azure-prefix ${prefix}'
