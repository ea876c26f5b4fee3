//! `cog_conversion` v1: one `cog` task per input raster (group `cogs`, key: the blob name),
//! then the `collect_cogs` barrier.
//!
//! Params: `container`, `blobs` (array of blob names) or `blob` (one name), `output_container`,
//! `target_crs` (optional: EPSG code, WKT or PROJ string), `compression` (`deflate` (default),
//! `lzw`, `zstd`, `jpeg`, `none`), `blocksize` (power of two in 64..=4096, default 512).
//! Normalized (what the job ID hashes): `blob: "x"` becomes `blobs: ["x"]`, the list is
//! sorted without duplicates, defaults are filled in, an absent `target_crs` stays absent.
//! Each `blobs[i]` is written to `output_container` as `<stem>.cog.tif` in the same folder;
//! two inputs with the same output, or an output that is one of the inputs, are refused.
//! Submission checks that the target CRS is known and that the first
//! [`OPENED_AT_SUBMISSION`] blobs exist and are rasters these options can convert; the
//! expansion checks that every other blob exists (opening 10 000 rasters, downloaded from
//! Azure, would not answer fast), and a `cog` task whose input is no raster fails with the
//! reason.

use std::collections::BTreeMap;

use async_trait::async_trait;
use engine::graph::PlanError;
use engine::{
    CheckError, Controller, HandlerError, JobId, JobRecord, JobResults, TaskSpec, TriggerRule,
    ValidationError,
};
use serde_json::{Value, json};
use services::Services;
use services::cog::{
    BLOCKSIZES, COMPRESSIONS, CogJob, DEFAULT_BLOCKSIZE, DEFAULT_COMPRESSION, check_job,
    output_name,
};

use crate::list_container::container;
use crate::params::Params;

/// Most inputs one job converts.
pub const MAX_BLOBS: usize = 10_000;
/// Inputs opened with GDAL when a job is submitted; the rest are checked to exist when it is
/// expanded.
pub const OPENED_AT_SUBMISSION: usize = 8;
/// Existence checks (blob HEADs) in flight at once at expansion.
const HEADS_AT_ONCE: usize = 32;
const GROUP: &str = "cogs";

pub struct CogConversion {
    pub services: Services,
}

fn job(params: &Value) -> Result<CogJob, ValidationError> {
    serde_json::from_value(params.clone())
        .map_err(|e| ValidationError::new("params", e.to_string()))
}

#[async_trait]
impl Controller for CogConversion {
    fn job_type(&self) -> &'static str {
        "cog_conversion"
    }
    fn description(&self) -> &'static str {
        "convert rasters to validated Cloud Optimized GeoTIFFs, one task per raster"
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
        let mut job = job(params)?;
        job.blobs.truncate(OPENED_AT_SUBMISSION);
        check_job(&self.services, &job).await
    }
    async fn check_at_expansion(&self, params: &Value) -> Result<(), CheckError> {
        use futures::{StreamExt, TryStreamExt};
        let CogJob {
            blobs: names,
            container,
            ..
        } = job(params)?;
        let blobs = self.services.blobs.clone();
        futures::stream::iter(names.into_iter().enumerate().skip(OPENED_AT_SUBMISSION))
            .map(move |(i, blob)| {
                let (blobs, container) = (blobs.clone(), container.clone());
                async move {
                    blobs
                        .head(&container, &blob)
                        .await
                        .map(drop)
                        .map_err(|e| services::failure::check_failure(&format!("blobs[{i}]"), e))
                }
            })
            // In order: the first missing blob is the one reported.
            .buffered(HEADS_AT_ONCE)
            .try_collect()
            .await
    }
    fn plan(&self, _job_id: &JobId, params: &Value) -> Result<Vec<TaskSpec>, PlanError> {
        let blobs: Vec<&str> = params["blobs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut specs: Vec<TaskSpec> = blobs
            .iter()
            .map(|b| {
                TaskSpec::parallel("cog", *b)
                    .in_group(GROUP)
                    .params(json!({ "blob": b }))
            })
            .collect();
        // all_done: under the `continue` policy the summary lists the failures too.
        specs.push(TaskSpec::barrier("collect_cogs", 0, GROUP).trigger(TriggerRule::AllDone));
        Ok(specs)
    }
    async fn aggregate(
        &self,
        _job: &JobRecord,
        results: &JobResults,
    ) -> Result<Value, HandlerError> {
        let summary = results.task("collect_cogs", 0).await?;
        Ok(summary.and_then(|s| s.result).unwrap_or(Value::Null))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use engine::memory::MemoryBackend;
    use engine::model::{ErrorClass, TaskRecord};
    use engine::ports::{PageRequest, TaskQuery};
    use engine::runtime::{JobView, run_worker};
    use engine::{
        Backend, Controller, Engine, EngineConfig, JobStatus, OutcomePolicy, SubmitOptions,
        TaskStatus, WorkerConfig,
    };
    use serde_json::{Value, json};
    use services::Services;

    use super::*;

    /// A fixture of `tests/fixtures/geotiff/`.
    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/geotiff")
            .join(name)
    }

    /// A data directory with `files` (`container/blob` -> fixture name, or text with `text:`).
    pub(crate) fn data_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, Services) {
        let dir = tempfile::tempdir().unwrap();
        for (blob, source) in files {
            let path = dir.path().join(blob);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            match source.strip_prefix("text:") {
                Some(text) => std::fs::write(&path, text).unwrap(),
                None => {
                    std::fs::copy(fixture(source), &path).unwrap();
                }
            }
        }
        let mut services = Services::local(dir.path());
        services.scratch = dir.path().join("scratch");
        (dir, services)
    }

    /// Submit a job to an in-memory engine, let `between` change the data, run it to the end.
    pub(crate) async fn run_job(
        services: &Services,
        job_type: &str,
        params: Value,
        policy: Option<OutcomePolicy>,
        between: impl FnOnce(),
    ) -> (JobView, Vec<TaskRecord>) {
        let engine = Engine::new(
            Backend::from_all(Arc::new(MemoryBackend::new())),
            crate::registry(services),
            EngineConfig::default(),
        );
        let options = SubmitOptions {
            outcome_policy: policy,
            ..SubmitOptions::default()
        };
        let job = engine.submit(job_type, params, options).await.unwrap().job;
        between();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let worker = tokio::spawn(run_worker(
            engine.clone(),
            WorkerConfig {
                concurrency: 2,
                ..WorkerConfig::default()
            },
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let view = loop {
            let view = engine.status(&job.id).await.unwrap();
            if view.job.status.is_terminal() && view.tasks.unfinished() == 0 {
                break view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job stuck: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        shutdown.cancel();
        worker.await.unwrap();
        let tasks = engine
            .backend()
            .tasks
            .list_tasks(&job.id, &TaskQuery::default(), PageRequest::first(1000))
            .await
            .unwrap()
            .items;
        (view, tasks)
    }

    fn controller() -> CogConversion {
        CogConversion {
            services: Services::local("unused"),
        }
    }

    #[track_caller]
    fn check(params: Value, expected: Result<Value, &str>) {
        let got = controller().validate(params).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned));
    }

    #[test]
    fn params_are_validated_and_normalized() {
        let normalized = json!({
            "blobs": ["a.tif"], "blocksize": 512, "compression": "deflate",
            "container": "in", "output_container": "out",
        });
        check(
            json!({"container": "in", "blob": "a.tif", "output_container": "out"}),
            Ok(normalized.clone()),
        );
        check(
            json!({"container": "in", "blobs": ["a.tif"], "output_container": "out",
                   "target_crs": null, "compression": "deflate", "blocksize": 512.0}),
            Ok(normalized),
        );
        check(
            json!({"container": "in", "blobs": ["s/b.tif", "a.tif", "s/b.tif"],
                   "output_container": "in", "target_crs": "EPSG:3857",
                   "compression": "zstd", "blocksize": 256}),
            Ok(
                json!({"blobs": ["a.tif", "s/b.tif"], "blocksize": 256, "compression": "zstd",
                      "container": "in", "output_container": "in", "target_crs": "EPSG:3857"}),
            ),
        );
        let base = |extra: Value| {
            let mut p = json!({"container": "in", "blob": "a.tif", "output_container": "out"});
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    p.as_object_mut().unwrap().remove(k);
                } else {
                    p[k] = v.clone();
                }
            }
            p
        };
        let table: &[(Value, &str)] = &[
            (
                json!({"blobs": ["b.tif"]}),
                "blob: give either `blob` or `blobs`, not both",
            ),
            (
                json!({"blob": null}),
                "blobs: is required (or give a single `blob`)",
            ),
            (
                json!({"blob": null, "blobs": []}),
                "blobs: must list 1 to 10000 names, got 0",
            ),
            (
                json!({"blob": null, "blobs": "a.tif"}),
                "blobs: must be an array of strings, got a string",
            ),
            (
                json!({"blob": null, "blobs": ["a.tif", 7]}),
                "blobs[1]: must be a string, got a number",
            ),
            (
                json!({"blob": null, "blobs": ["a.tif", "../x.tif"]}),
                "blobs[1]: invalid blob name \"../x.tif\": must be a relative path without empty, '.' or '..' segments",
            ),
            (
                json!({"blob": "/abs.tif"}),
                "blob: invalid blob name \"/abs.tif\": must be a relative path without empty, '.' or '..' segments",
            ),
            (json!({"blob": 3}), "blob: must be a string, got a number"),
            (json!({"container": null}), "container: is required"),
            (
                json!({"container": "a/b"}),
                "container: invalid container name \"a/b\": only letters, digits, '-', '_' and '.' (not first) are allowed",
            ),
            (
                json!({"output_container": null}),
                "output_container: is required",
            ),
            (
                json!({"target_crs": ""}),
                "target_crs: must be 1 to 10000 characters long, got 0",
            ),
            (
                json!({"target_crs": 4326}),
                "target_crs: must be a string, got a number",
            ),
            (
                json!({"compression": "gzip"}),
                "compression: must be one of [\"deflate\", \"lzw\", \"zstd\", \"jpeg\", \"none\"], got \"gzip\"",
            ),
            (
                json!({"blocksize": 100}),
                "blocksize: must be a power of two between 64 and 4096, got 100",
            ),
            (
                json!({"blocksize": 8192}),
                "blocksize: must be an integer between 64 and 4096, got 8192",
            ),
            (
                json!({"blocksize": 32}),
                "blocksize: must be an integer between 64 and 4096, got 32",
            ),
            (
                json!({"blob": null, "blobs": ["a.tif", "a.tiff"]}),
                "blobs: \"a.tif\" and \"a.tiff\" would both be written as \"a.cog.tif\"",
            ),
            (
                json!({"blob": null, "blobs": ["a.tif", "a.cog.tif"], "output_container": "in"}),
                "blobs: \"a.cog.tif\" is an input and the output of \"a.tif\" in container \"in\"",
            ),
            (
                json!({"colour": "red"}),
                "colour: unknown field (known fields: [\"blobs\", \"blocksize\", \"compression\", \"container\", \"output_container\"])",
            ),
        ];
        for (extra, message) in table {
            let got = controller()
                .validate(base(extra.clone()))
                .map_err(|e| e.to_string());
            assert_eq!(got, Err(format!("invalid params: {message}")), "{extra}");
        }
        // Same inputs in another container are fine.
        assert!(
            controller()
                .validate(base(json!({"blob": null, "blobs": ["a.tif", "a.cog.tif"]})))
                .is_ok()
        );
    }

    #[test]
    fn one_blob_or_a_list_of_it_is_the_same_job() {
        let c = controller();
        let id =
            |p: Value| engine::ids::job_id("cog_conversion", 1, &c.validate(p).unwrap()).unwrap();
        assert_eq!(
            id(json!({"container": "in", "blob": "a.tif", "output_container": "out"})),
            id(
                json!({"output_container": "out", "blobs": ["a.tif", "a.tif"], "container": "in",
                      "compression": "deflate", "blocksize": 512, "target_crs": null})
            ),
        );
        assert_ne!(
            id(json!({"container": "in", "blob": "a.tif", "output_container": "out"})),
            id(
                json!({"container": "in", "blob": "a.tif", "output_container": "out", "compression": "lzw"})
            ),
        );
    }

    #[test]
    fn one_cog_task_per_blob_then_a_barrier() {
        let c = controller();
        let params = c
            .validate(json!({"container": "in", "blobs": ["b.tif", "a/x.tif"], "output_container": "out"}))
            .unwrap();
        let id = engine::ids::job_id("cog_conversion", 1, &params).unwrap();
        let specs = c.plan(&id, &params).unwrap();
        let shape: Vec<String> = specs
            .iter()
            .map(|s| format!("{}[{}]:{}:{}", s.task, s.key, s.kind, s.params))
            .collect();
        assert_eq!(
            shape,
            [
                "cog[a/x.tif]:parallel:{\"blob\":\"a/x.tif\"}",
                "cog[b.tif]:parallel:{\"blob\":\"b.tif\"}",
                "collect_cogs[0]:barrier:null",
            ]
        );
        assert_eq!(specs[2].waits_for.as_deref(), Some("cogs"));
        assert!(
            specs[..2]
                .iter()
                .all(|s| s.group.as_deref() == Some("cogs"))
        );
    }

    #[tokio::test]
    async fn submission_refuses_what_it_can_know() {
        let (_dir, services) = data_dir(&[
            ("in/a.tif", "RGB.byte.tif"),
            ("in/notes.txt", "text:not a raster"),
        ]);
        let c = &CogConversion { services };
        let check = |p: Value| async move {
            let params = c.validate(p).unwrap();
            c.check(&params).await.map_err(|e| e.to_string())
        };
        assert_eq!(
            check(json!({"container": "in", "blob": "a.tif", "output_container": "out"})).await,
            Ok(())
        );
        assert_eq!(
            check(json!({"container": "in", "blobs": ["a.tif", "missing.tif"], "output_container": "out"})).await,
            Err("invalid params: blobs[1]: blob in/missing.tif does not exist".into())
        );
        let e = check(json!({"container": "in", "blob": "notes.txt", "output_container": "out"}))
            .await
            .unwrap_err();
        assert!(
            e.starts_with("invalid params: blobs[0]: notes.txt: not a raster GDAL can read"),
            "{e}"
        );
        let e = check(json!({"container": "in", "blob": "a.tif", "output_container": "out", "target_crs": "EPSG:0"}))
            .await
            .unwrap_err();
        assert!(
            e.starts_with("invalid params: target_crs: unknown CRS \"EPSG:0\""),
            "{e}"
        );
        assert_eq!(
            check(json!({"container": "nope", "blob": "a.tif", "output_container": "out"})).await,
            Err("invalid params: blobs[0]: blob nope/a.tif does not exist".into())
        );
    }

    /// Beyond the first `OPENED_AT_SUBMISSION` inputs, submission opens nothing; the
    /// expansion checks that each exists and names the first missing one.
    #[tokio::test]
    async fn later_blobs_are_checked_to_exist_at_expansion() {
        let names: Vec<String> = (0..OPENED_AT_SUBMISSION + 4)
            .map(|i| format!("in/r{i:02}.tif"))
            .collect();
        let mut files: Vec<(&str, &str)> =
            names.iter().map(|n| (n.as_str(), "RGB.byte.tif")).collect();
        // Not a raster: only a task would find out (submission does not open it).
        files[OPENED_AT_SUBMISSION].1 = "text:not a raster";
        let (_dir, services) = data_dir(&files);
        let c = CogConversion { services };
        let mut blobs: Vec<String> = names.iter().map(|n| n["in/".len()..].to_owned()).collect();
        let all = c
            .validate(json!({"container": "in", "blobs": blobs.clone(), "output_container": "out"}))
            .unwrap();
        assert!(c.check(&all).await.is_ok());
        assert!(c.check_at_expansion(&all).await.is_ok());

        let last = OPENED_AT_SUBMISSION + 2;
        blobs[last] = "zz-missing.tif".into();
        blobs.push("zz-missing-too.tif".into());
        let params = c
            .validate(json!({"container": "in", "blobs": blobs, "output_container": "out"}))
            .unwrap();
        assert!(
            c.check(&params).await.is_ok(),
            "submission opens the first ones only"
        );
        let e = c.check_at_expansion(&params).await.unwrap_err().to_string();
        // Sorted: the first missing one is at the end of the existing names.
        assert_eq!(
            e,
            format!(
                "invalid params: blobs[{}]: blob in/zz-missing-too.tif does not exist",
                OPENED_AT_SUBMISSION + 3
            )
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn converts_every_blob_into_the_output_container() {
        let (dir, services) = data_dir(&[
            ("in/a.tif", "RGB.byte.tif"),
            ("in/sub/labels.tif", "labels.tif"),
        ]);
        let params = json!({"container": "in", "blobs": ["a.tif", "sub/labels.tif"], "output_container": "out"});
        let (view, tasks) = run_job(&services, "cog_conversion", params, None, || {}).await;
        assert_eq!(view.job.status, JobStatus::Succeeded, "{tasks:?}");
        let result = view.job.result.unwrap();
        assert_eq!(result["converted"], 2);
        assert_eq!(result["failed"], 0);
        assert_eq!(result["outputs"][1]["output"], "sub/labels.cog.tif");
        for out in ["out/a.cog.tif", "out/sub/labels.cog.tif"] {
            let path = dir.path().join(out);
            let report = services::cog_validate::validate_cog(&path, true).unwrap();
            assert!(report.is_valid(), "{out}: {report:?}");
        }
        let cog = tasks
            .iter()
            .find(|t| t.task == "cog" && t.key.to_string() == "a.tif")
            .unwrap();
        let r = cog.result.as_ref().unwrap();
        assert_eq!(
            r["output"],
            json!({"container": "out", "blob": "a.cog.tif"})
        );
        assert_eq!(r["cog"]["bands"], 3);
        // Lineage in the file: this job and this task.
        let ds = gdal::Dataset::open(dir.path().join("out/a.cog.tif")).unwrap();
        use gdal::Metadata;
        assert_eq!(
            ds.metadata_item("TESSERA_JOB_ID", "").as_deref(),
            Some(view.job.id.as_str())
        );
        assert_eq!(
            ds.metadata_item("TESSERA_TASK_ID", "").as_deref(),
            Some(cog.id.as_str())
        );
        // The scratch directory is cleaned up.
        assert_eq!(
            std::fs::read_dir(dir.path().join("scratch"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blob_gone_after_submission_fails_once_without_output() {
        let (dir, services) = data_dir(&[("in/a.tif", "RGB.byte.tif")]);
        let params = json!({"container": "in", "blob": "a.tif", "output_container": "out"});
        let gone = dir.path().join("in/a.tif");
        let (view, tasks) = run_job(&services, "cog_conversion", params, None, || {
            std::fs::remove_file(&gone).unwrap();
        })
        .await;
        assert_eq!(view.job.status, JobStatus::Failed);
        let cog = tasks.iter().find(|t| t.task == "cog").unwrap();
        assert_eq!(
            (cog.status, cog.attempt),
            (TaskStatus::Failed, 1),
            "no retry"
        );
        let error = cog.error.as_ref().unwrap();
        assert_eq!(error.code, "NOT_FOUND");
        assert_eq!(error.class, Some(ErrorClass::Permanent));
        assert_eq!(error.message, "blob in/a.tif does not exist");
        assert!(!dir.path().join("out").exists(), "no partial output");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_continue_the_good_rasters_are_converted_and_the_bad_reported() {
        let (dir, services) = data_dir(&[("in/a.tif", "RGB.byte.tif"), ("in/b.tif", "byte.tif")]);
        let params =
            json!({"container": "in", "blobs": ["a.tif", "b.tif"], "output_container": "out"});
        let broken = dir.path().join("in/b.tif");
        let (view, tasks) = run_job(
            &services,
            "cog_conversion",
            params,
            Some(OutcomePolicy::Continue),
            || std::fs::write(&broken, "no longer a raster").unwrap(),
        )
        .await;
        assert_eq!(view.job.status, JobStatus::CompletedWithErrors);
        let b = tasks.iter().find(|t| t.key.to_string() == "b.tif").unwrap();
        let error = b.error.as_ref().unwrap();
        assert_eq!((b.attempt, error.code.as_str()), (1, "NOT_A_RASTER"));
        assert!(
            error.message.starts_with("b.tif: not a raster"),
            "{}",
            error.message
        );
        let result = view.job.result.unwrap();
        assert_eq!(
            (result["converted"].as_u64(), result["failed"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(result["errors"][0]["error"]["code"], "NOT_A_RASTER");
        assert!(dir.path().join("out/a.cog.tif").exists());
        assert!(!dir.path().join("out/b.cog.tif").exists());
    }
}

/// The params of `cog_conversion` (validation and schema).
fn declare(p: &mut Params) -> Result<(), ValidationError> {
    let input = container(p, "container")?;
    let blobs = p.name_set("blob", "blobs", MAX_BLOBS, |b| {
        services::blob::check_blob(b).map_err(|e| e.to_string())
    })?;
    let output = container(p, "output_container")?;
    p.optional_string("target_crs", 1..=10_000)?;
    p.choice("compression", COMPRESSIONS, DEFAULT_COMPRESSION)?;
    let blocksize = p.int("blocksize", BLOCKSIZES, Some(DEFAULT_BLOCKSIZE))?;
    p.check("blocksize", || {
        if blocksize.count_ones() != 1 {
            Err(format!(
                "must be a power of two between {} and {}, got {blocksize}",
                BLOCKSIZES.start(),
                BLOCKSIZES.end()
            ))
        } else {
            Ok(())
        }
    })?;
    p.check("blobs", || {
        let mut outputs: BTreeMap<String, &str> = BTreeMap::new();
        for blob in &blobs {
            let out = output_name(blob);
            if let Some(first) = outputs.insert(out.clone(), blob) {
                return Err(format!(
                    "{first:?} and {blob:?} would both be written as {out:?}"
                ));
            }
        }
        let overwritten = outputs.iter().find(|(out, _)| blobs.contains(out));
        if let (true, Some((out, blob))) = (input == output, overwritten) {
            return Err(format!(
                "{out:?} is an input and the output of {blob:?} in container {input:?}"
            ));
        }
        Ok(())
    })?;
    Ok(())
}
