//! `hello_world` v1: `n` parallel `greet` tasks (keys 0..n-1), then the barrier `summarize`.
//!
//! Params: `n` integer 1..=100000 (default 3), `message` string of 1..=200 characters (default
//! "hello"), `fail_every` integer >= 0 (default 0: every k-th greet fails permanently).

use async_trait::async_trait;
use engine::graph::PlanError;
use engine::{
    Controller, HandlerError, JobId, JobRecord, JobResults, TaskSpec, TriggerRule, ValidationError,
};
use serde_json::{Value, json};

use crate::params::Params;

pub struct HelloWorld;

const GROUP: &str = "greetings";

#[async_trait]
impl Controller for HelloWorld {
    fn job_type(&self) -> &'static str {
        "hello_world"
    }
    fn description(&self) -> &'static str {
        "n parallel greetings and a summarizing barrier: the engine's smoke test"
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
        let n = params["n"].as_i64().unwrap_or(3);
        let mut specs: Vec<TaskSpec> = (0..n)
            .map(|i| TaskSpec::parallel("greet", i).in_group(GROUP))
            .collect();
        // all_done: under the `continue` policy the summary still runs and counts the failures.
        specs.push(TaskSpec::barrier("summarize", 0, GROUP).trigger(TriggerRule::AllDone));
        Ok(specs)
    }
    async fn aggregate(
        &self,
        _job: &JobRecord,
        results: &JobResults,
    ) -> Result<Value, HandlerError> {
        let summary = results.task("summarize", 0).await?;
        Ok(summary
            .and_then(|s| s.result)
            .unwrap_or_else(|| json!({ "greetings": 0 })))
    }
}

/// The params of `hello_world` (validation and schema).
fn declare(p: &mut Params) -> Result<(), ValidationError> {
    p.int("n", 1..=100_000, Some(3))?;
    p.string("message", 1..=200, Some("hello"))?;
    p.int("fail_every", 0..=100_000, Some(0))?;
    Ok(())
}
