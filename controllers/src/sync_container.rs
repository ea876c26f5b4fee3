//! `sync_container` v1: the `catalog_container` orchestrator lists the rasters of a container
//! and creates one `catalog_file` task per georeferenced raster (group `items`, key: the blob
//! name); the `write_collection` barrier writes the STAC collection.
//!
//! Params: `container`, `prefix` (default ""), `collection_id` (1 to 128 letters, digits, `-`,
//! `_`, `.`). Documents go to the same container: `stac/<collection_id>/<item id>.json` and
//! `stac/<collection_id>/collection.json`. Submission checks that the container exists.

use async_trait::async_trait;
use engine::graph::PlanError;
use engine::{
    CheckError, Controller, HandlerError, JobId, JobRecord, JobResults, TaskSpec, TriggerRule,
    ValidationError,
};
use serde_json::{Value, json};
use services::Services;
use services::listing::check_container_exists;
use services::stac::check_collection_id;

use crate::list_container::container;
use crate::params::Params;

const GROUP: &str = "items";

pub struct SyncContainer {
    pub services: Services,
}

#[async_trait]
impl Controller for SyncContainer {
    fn job_type(&self) -> &'static str {
        "sync_container"
    }
    fn description(&self) -> &'static str {
        "catalog the rasters of a container as a STAC collection with one item per raster"
    }
    fn validate(&self, params: Value) -> Result<Value, ValidationError> {
        let mut p = Params::new(params)?;
        declare(&mut p)?;
        p.finish()
    }
    fn params_schema(&self) -> Value {
        Params::describe(declare)
    }
    async fn check(&self, params: &Value) -> Result<(), CheckError> {
        let container = params["container"].as_str().unwrap_or_default();
        check_container_exists(&self.services.blobs, "container", container).await
    }
    fn plan(&self, _job_id: &JobId, _params: &Value) -> Result<Vec<TaskSpec>, PlanError> {
        Ok(vec![
            TaskSpec::orchestrator("catalog_container", 0).children_in(GROUP),
            // all_done: under the `continue` policy the collection lists the items written.
            TaskSpec::barrier("write_collection", 0, GROUP).trigger(TriggerRule::AllDone),
        ])
    }
    async fn aggregate(
        &self,
        _job: &JobRecord,
        results: &JobResults,
    ) -> Result<Value, HandlerError> {
        let listing = results
            .task("catalog_container", 0)
            .await?
            .and_then(|t| t.result)
            .unwrap_or(Value::Null);
        let collection = results
            .task("write_collection", 0)
            .await?
            .and_then(|t| t.result)
            .unwrap_or(Value::Null);
        Ok(json!({
            "rasters": listing["rasters"],
            "skipped": listing["skipped"],
            "collection": collection["collection"],
            "items": collection["items"],
            "failed": collection["failed"],
            "removed_stale_items": collection["removed_stale_items"],
            "bbox": collection["bbox"],
            "interval": collection["interval"],
        }))
    }
}

#[cfg(test)]
mod tests {
    use engine::JobStatus;
    use serde_json::json;
    use services::stac::{Collection, Item};

    use super::*;
    use crate::cog_conversion::tests::{data_dir, run_job};

    #[test]
    fn params_are_validated() {
        let c = SyncContainer {
            services: Services::local("unused"),
        };
        let v = |p: Value| c.validate(p).map_err(|e| e.to_string());
        assert_eq!(
            v(json!({"container": "c", "collection_id": "landsat"})),
            Ok(json!({"collection_id": "landsat", "container": "c", "prefix": ""}))
        );
        assert_eq!(
            v(json!({"container": "c"})),
            Err("invalid params: collection_id: is required".into())
        );
        assert_eq!(
            v(json!({"container": "c", "collection_id": "a/b"})),
            Err("invalid params: collection_id: only letters, digits, '-', '_' and '.' (not first) are allowed".into())
        );
        assert_eq!(
            v(json!({"container": "c", "collection_id": ""})),
            Err("invalid params: collection_id: must be 1 to 128 characters long, got 0".into())
        );
        assert_eq!(
            v(json!({"collection_id": "x"})),
            Err("invalid params: container: is required".into())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn catalogs_georeferenced_rasters_and_drops_stale_items() {
        let (dir, services) = data_dir(&[
            ("c/RGB.byte.tif", "RGB.byte.tif"),
            ("c/sub/labels.tif", "labels.tif"),
            ("c/slc.tif", "slc_no_georef.tif"),
            ("c/notes.txt", "text:not a raster"),
            ("c/stac/col/gone.json", "text:{}"),
        ]);
        let c = SyncContainer {
            services: services.clone(),
        };
        assert_eq!(
            c.check(&json!({"container": "nope"}))
                .await
                .map_err(|e| e.to_string()),
            Err("invalid params: container: container \"nope\" does not exist".into())
        );
        let params = json!({"container": "c", "collection_id": "col"});
        let (view, tasks) = run_job(&services, "sync_container", params, None, || {}).await;
        assert_eq!(view.job.status, JobStatus::Succeeded, "{tasks:?}");
        let result = view.job.result.unwrap();
        assert_eq!(result["rasters"], 2);
        assert_eq!(result["items"], 2);
        assert_eq!(result["skipped"][0]["blob"], "slc.tif");
        assert_eq!(result["removed_stale_items"], json!(["stac/col/gone.json"]));
        let folder = dir.path().join("c/stac/col");
        assert!(!folder.join("gone.json").exists());

        let collection: Collection =
            serde_json::from_slice(&std::fs::read(folder.join("collection.json")).unwrap())
                .unwrap();
        assert_eq!(collection.job_id, view.job.id.as_str());
        let item: Item =
            serde_json::from_slice(&std::fs::read(folder.join("sub__labels.json")).unwrap())
                .unwrap();
        assert_eq!(item.collection.as_deref(), Some("col"));
        assert_eq!(item.properties.proj_code.as_deref(), Some("EPSG:32617"));
        assert_eq!(item.assets["data"].href, "../../sub/labels.tif");
        assert!(folder.join(&item.assets["data"].href).exists());
        let task = tasks
            .iter()
            .find(|t| t.task == "catalog_file" && t.key.to_string() == "sub/labels.tif")
            .unwrap();
        assert_eq!(item.properties.task_id, task.id.as_str());
        let bbox = collection.extent.spatial.bbox[0];
        assert!(bbox[0] <= item.bbox[0] && bbox[2] >= item.bbox[2]);
    }
}

/// The params of `sync_container` (validation and schema).
fn declare(p: &mut Params) -> Result<(), ValidationError> {
    container(p, "container")?;
    p.string("prefix", 0..=1024, Some(""))?;
    let id = p.string("collection_id", 1..=128, None)?;
    p.check("collection_id", || check_collection_id(&id))?;
    Ok(())
}
