// The user-assigned managed identity of the Function App: the Functions host uses it for its
// storage connection (AzureWebJobsStorage__credential = managedidentity, __clientId), to pull
// the container image and to send telemetry; the tessera handler, for its tables, queues and
// blobs (it reads the same __clientId).

param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
