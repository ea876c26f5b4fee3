//! `list_container` v1: one `list_container` task that inventories a container.
//!
//! Params: `container` (required, a container name), `prefix` (string, default "": only blobs
//! whose names start with it). Submission checks that the container exists. Result: the
//! task's inventory (count, total bytes, counts per extension, the rasters found).

use async_trait::async_trait;
use engine::graph::PlanError;
use engine::{
    CheckError, Controller, HandlerError, JobId, JobRecord, JobResults, TaskSpec, ValidationError,
};
use serde_json::Value;
use services::Services;
use services::listing::check_container_exists;

use crate::params::Params;

pub struct ListContainer {
    pub services: Services,
}

/// A required container name (a single path segment).
pub(crate) fn container(p: &mut Params, field: &str) -> Result<String, ValidationError> {
    let name = p.string(field, 1..=63, None)?;
    p.check(field, || {
        services::blob::check_container(&name).map_err(|e| e.to_string())
    })?;
    Ok(name)
}

/// The params of `list_container` (validation and schema).
fn declare(p: &mut Params) -> Result<(), ValidationError> {
    container(p, "container")?;
    p.string("prefix", 0..=1024, Some(""))?;
    Ok(())
}

#[async_trait]
impl Controller for ListContainer {
    fn job_type(&self) -> &'static str {
        "list_container"
    }
    fn description(&self) -> &'static str {
        "inventory of a container: counts, bytes, extensions and the rasters in it"
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
        Ok(vec![TaskSpec::parallel("list_container", 0)])
    }
    async fn aggregate(
        &self,
        _job: &JobRecord,
        results: &JobResults,
    ) -> Result<Value, HandlerError> {
        let task = results.task("list_container", 0).await?;
        Ok(task.and_then(|t| t.result).unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use engine::JobStatus;
    use serde_json::json;

    use super::*;
    use crate::cog_conversion::tests::{data_dir, run_job};

    #[test]
    fn params_are_validated() {
        let c = ListContainer {
            services: Services::local("unused"),
        };
        let v = |p: Value| c.validate(p).map_err(|e| e.to_string());
        assert_eq!(
            v(json!({"container": "rasters"})),
            Ok(json!({"container": "rasters", "prefix": ""}))
        );
        assert_eq!(
            v(json!({"container": "rasters", "prefix": "2024/"})),
            Ok(json!({"container": "rasters", "prefix": "2024/"}))
        );
        assert_eq!(
            v(json!({})),
            Err("invalid params: container: is required".into())
        );
        assert_eq!(
            v(json!({"container": "../etc"})),
            Err("invalid params: container: invalid container name \"../etc\": only letters, digits, '-', '_' and '.' (not first) are allowed".into())
        );
        assert_eq!(
            v(json!({"container": "c", "prefix": 3})),
            Err("invalid params: prefix: must be a string, got a number".into())
        );
        assert_eq!(
            v(json!({"container": "c", "recursive": true})),
            Err("invalid params: recursive: unknown field (known fields: [\"container\", \"prefix\"])".into())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_container_is_refused_and_an_inventory_is_returned() {
        let (_dir, services) = data_dir(&[
            ("c/RGB.byte.tif", "RGB.byte.tif"),
            ("c/docs/notes.txt", "text:hello"),
        ]);
        let c = ListContainer {
            services: services.clone(),
        };
        assert_eq!(
            c.check(&json!({"container": "nope", "prefix": ""}))
                .await
                .map_err(|e| e.to_string()),
            Err("invalid params: container: container \"nope\" does not exist".into())
        );
        assert_eq!(
            c.check(&json!({"container": "c", "prefix": ""})).await,
            Ok(())
        );
        let (view, _) = run_job(
            &services,
            "list_container",
            json!({"container": "c"}),
            None,
            || {},
        )
        .await;
        assert_eq!(view.job.status, JobStatus::Succeeded);
        let inv = view.job.result.unwrap();
        assert_eq!(inv["count"], 2);
        assert_eq!(inv["extensions"]["txt"], json!({"count": 1, "bytes": 5}));
        assert_eq!(inv["rasters"][0]["name"], "RGB.byte.tif");
        assert_eq!(inv["rasters"][0]["epsg"], 32618);
        assert_eq!(inv["rasters"].as_array().unwrap().len(), 1);
    }
}
