// Data roles on the one storage account, nothing wider: no account keys, no management-plane
// role, no scope above the account. tests/it/infra.rs checks them against what the code uses.

param storageAccountName string

@description('Principal of the user-assigned identity: the Functions host and the tessera custom handler (AzureWebJobsStorage__clientId).')
param principalId string

var roles = {
  // Built-in role definition IDs (Azure RBAC).
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

var assignments = [
  // The host: its blob containers (azure-webjobs-hosts: leases, timer schedule;
  // azure-webjobs-secrets: function keys), which Functions documents as Blob Data Owner.
  // The handler: the results container and the geospatial containers.
  { principalId: principalId, roleId: roles.storageBlobDataOwner }
  // The host: receive and delete trigger messages, write the `dead` output binding, create and
  // write the `<queue>-poison` queues. The handler: put, peek, delete task messages; create
  // its queues; the poison API.
  { principalId: principalId, roleId: roles.storageQueueDataContributor }
  // The handler: jobs, job index and tasks tables (read, insert, compare-and-set, batches).
  { principalId: principalId, roleId: roles.storageTableDataContributor }
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for a in assignments: {
    name: guid(storage.id, a.principalId, a.roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', a.roleId)
      principalId: a.principalId
      principalType: 'ServicePrincipal'
    }
  }
]
