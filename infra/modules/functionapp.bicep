// The Function App: Linux, Elastic Premium, the container image of infra/Dockerfile (the
// Functions host, the tessera custom handler and GDAL's runtime libraries). Why this plan:
// docs/operations.md, "Hosting plan".

param namePrefix string
param location string
param tags object = {}

@description('Container image, e.g. myregistry.azurecr.io/tessera:1.4.0 (built from infra/Dockerfile).')
param image string

@description('Azure Container Registry (same resource group) the image is pulled from, with the user-assigned identity.')
param registryName string

@description('Elastic Premium size: EP1 (1 core, 3.5 GB), EP2 (2 cores, 7 GB), EP3 (4 cores, 14 GB).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param skuName string = 'EP1'

@description('Instances kept warm (always ready).')
@minValue(1)
@maxValue(20)
param minimumInstances int = 1

@description('Most instances the app scales out to.')
@minValue(1)
@maxValue(100)
param maximumInstances int = 20

param storageAccountName string
param prefix string

@minValue(1)
@maxValue(3600)
param leaseSecs int = 30

@minValue(1)
@maxValue(1024)
param concurrency int = 8

param identityId string
param identityClientId string
param identityPrincipalId string
param insightsName string
param insightsConnectionString string

@allowed([
  'text'
  'json'
])
param logFormat string = 'json'
param logLevel string = 'info'

var roles = {
  // Built-in role definition IDs (Azure RBAC).
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: insightsName
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, identityPrincipalId, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy needs at least three instances and a zone-redundant storage account; left to the operator (docs/operations.md)
  name: '${namePrefix}-plan'
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: skuName
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true // Linux
    maximumElasticWorkerCount: maximumInstances
  }
}

resource app 'Microsoft.Web/sites@2023-12-01' = {
  // checkov:skip=CKV_AZURE_212: warm instances are a parameter (minimumInstances, default 1); the plan scales out to maximumInstances on queue length
  // checkov:skip=CKV_AZURE_16: the app has managed identities (system- and user-assigned, for the handler and the host); Entra ID sign-in for callers is optional (docs/operations.md)
  // checkov:skip=CKV_AZURE_222: the HTTP API is public by design behind function keys or Entra ID; private access needs a VNet this template does not create
  // checkov:skip=CKV_AZURE_17: client certificates are not how callers authenticate; HTTP functions take function keys or Entra ID (docs/operations.md)
  // checkov:skip=CKV_AZURE_213: no App Service health check path: every HTTP function takes a function key, which the platform's probe does not send (the host restarts a handler that stops answering)
  // checkov:skip=CKV_AZURE_67: the Functions runtime version is pinned by the container image and FUNCTIONS_EXTENSION_VERSION ~4
  name: '${namePrefix}-app'
  location: location
  tags: tags
  kind: 'functionapp,linux,container'
  identity: {
    // One identity for the host (storage triggers, image pull, telemetry) and the tessera
    // binary, which asks App Service's identity endpoint for the client ID of
    // AzureWebJobsStorage__clientId (docs/operations.md, "Identities and roles").
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  dependsOn: [
    acrPull
    metricsPublisher
  ]
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      linuxFxVersion: 'DOCKER|${image}'
      acrUseManagedIdentityCreds: true
      acrUserManagedIdentityID: identityClientId
      minimumElasticInstanceCount: minimumInstances
      functionAppScaleLimit: maximumInstances
      alwaysOn: false
      http20Enabled: true
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      remoteDebuggingEnabled: false
      appSettings: [
        { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
        { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'Custom' }
        // The host's storage and every queue binding (connection AzureWebJobsStorage), with
        // the user-assigned identity; the tessera binary reads the account name and the
        // identity's client ID from it too.
        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        // Function keys live in the host's blob container, reached with the identity.
        { name: 'AzureWebJobsSecretStorageType', value: 'blob' }
        // The code is in the image: no content share (it would need a shared key).
        { name: 'WEBSITES_ENABLE_APP_SERVICE_STORAGE', value: 'false' }
        // The image's host listens on 8080 as a non-root user (infra/Dockerfile).
        { name: 'WEBSITES_PORT', value: '8080' }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insightsConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
        // The project's own settings (function-host/src/functions/settings.rs).
        { name: 'TESSERA_AZURE_PREFIX', value: prefix }
        { name: 'TESSERA_LEASE_SECS', value: string(leaseSecs) }
        { name: 'TESSERA_DATA_STORE', value: 'azure' }
        { name: 'TESSERA_DATA_DIR', value: '/tmp/tessera-data' }
        { name: 'TESSERA_CONCURRENCY', value: string(concurrency) }
        { name: 'TESSERA_LOG_FORMAT', value: logFormat }
        { name: 'RUST_LOG', value: logLevel }
      ]
    }
  }
}

// No publishing with user names and passwords: deploy by image tag (docs/operations.md).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output url string = 'https://${app.properties.defaultHostName}'
