//! Results too big for a table property, in a Blob container (`{prefix}-results`), one blob
//! per record: `{job_id}/{task_id}.json` (or `{job_id}/job.json`).

use azure_storage_blobs::prelude::ContainerClient;
use engine::ports::StoreError;
use futures::StreamExt;
use serde_json::Value;

use crate::ops::{Op, Ops};
use crate::status_of;
use crate::tables::unavailable;

pub(crate) async fn create_if_missing(container: &ContainerClient) -> azure_core::Result<()> {
    match container.create().await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) struct Results {
    container: ContainerClient,
}

impl Results {
    pub fn new(container: ContainerClient) -> Self {
        Results { container }
    }

    pub async fn create_if_missing(&self) -> azure_core::Result<()> {
        create_if_missing(&self.container).await
    }

    pub async fn put(&self, ops: &Ops, name: &str, value: &Value) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            message: format!("result: {e}"),
        })?;
        ops.count(Op::Blob);
        self.container
            .blob_client(name)
            .put_block_blob(body)
            .content_type("application/json")
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&format!("blob {name}"), e))
    }

    pub async fn get(&self, ops: &Ops, name: &str) -> Result<Value, StoreError> {
        ops.count(Op::Blob);
        let bytes = self
            .container
            .blob_client(name)
            .get_content()
            .await
            .map_err(|e| unavailable(&format!("blob {name}"), e))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            message: format!("blob {name}: {e}"),
        })
    }

    /// Delete every blob under `prefix`.
    pub async fn delete_prefix(&self, ops: &Ops, prefix: &str) -> Result<(), StoreError> {
        let mut names = Vec::new();
        let mut pages = self
            .container
            .list_blobs()
            .prefix(prefix.to_owned())
            .into_stream();
        while let Some(page) = pages.next().await {
            ops.count(Op::Blob);
            let page = page.map_err(|e| unavailable("blob listing", e))?;
            names.extend(page.blobs.blobs().map(|b| b.name.clone()));
        }
        for name in names {
            ops.count(Op::Blob);
            match self.container.blob_client(&name).delete().await {
                Ok(_) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(unavailable(&format!("blob {name}"), e)),
            }
        }
        Ok(())
    }
}
