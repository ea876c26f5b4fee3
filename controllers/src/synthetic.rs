//! `synthetic` v1: no-op workloads for benchmarks and crash tests.
//!
//! Params: `shape` "fan_out" (n parallel `noop` + a `noop_barrier`) or "chain" (n sequential
//! `noop`), `n` 1..=1000000 (default 10), `sleep_ms` 0..=600000 per task (default 0),
//! `label` free text to make otherwise identical jobs distinct (default ""),
//! `transient_failures` 0..=10 (optional: each `noop` fails that many attempts with a
//! transient error before it succeeds, to exercise retries; absent, nothing is recorded, so
//! the IDs of jobs without it are unchanged).

use async_trait::async_trait;
use engine::graph::PlanError;
use engine::{Controller, HandlerError, JobId, JobRecord, JobResults, TaskSpec, ValidationError};
use serde_json::{Value, json};

use crate::params::Params;

pub struct Synthetic;

#[async_trait]
impl Controller for Synthetic {
    fn job_type(&self) -> &'static str {
        "synthetic"
    }
    fn description(&self) -> &'static str {
        "no-op fan-out or chain of n tasks, for benchmarks and crash tests"
    }
    fn validate(&self, params: Value) -> Result<Value, ValidationError> {
        let mut p = Params::new(params)?;
        declare(&mut p)?;
        p.finish()
    }
    fn params_schema(&self) -> Value {
        Params::describe(declare)
    }
    fn plan(&self, _job_id: &JobId, params: &Value) -> Result<Vec<TaskSpec>, PlanError> {
        let n = params["n"].as_i64().unwrap_or(10);
        Ok(match params["shape"].as_str() {
            Some("chain") => (0..n)
                .map(|i| {
                    if i == 0 {
                        TaskSpec::parallel("noop", 0)
                    } else {
                        TaskSpec::sequential("noop", i).after("noop", i - 1)
                    }
                })
                .collect(),
            _ => {
                let mut specs: Vec<TaskSpec> = (0..n)
                    .map(|i| TaskSpec::parallel("noop", i).in_group("all"))
                    .collect();
                specs.push(TaskSpec::barrier("noop_barrier", 0, "all"));
                specs
            }
        })
    }
    async fn aggregate(
        &self,
        job: &JobRecord,
        results: &JobResults,
    ) -> Result<Value, HandlerError> {
        let counts = results.counts().await?;
        Ok(
            json!({ "shape": job.params["shape"], "tasks": counts.total(), "succeeded": counts.get(engine::TaskStatus::Succeeded) }),
        )
    }
}

/// The params of `synthetic` (validation and schema).
fn declare(p: &mut Params) -> Result<(), ValidationError> {
    p.choice("shape", &["fan_out", "chain"], "fan_out")?;
    p.int("n", 1..=1_000_000, Some(10))?;
    p.int("sleep_ms", 0..=600_000, Some(0))?;
    p.string("label", 0..=200, Some(""))?;
    p.optional_int("transient_failures", 0..=10)?;
    Ok(())
}
