//! `synthetic` handlers for benchmarks and crash tests: a no-op task that may sleep
//! (honouring cancellation) and a barrier that counts its members.

use std::time::Duration;

use async_trait::async_trait;
use engine::{HandlerError, TaskContext, TaskHandler, TaskOutput};
use serde_json::{Value, json};

/// Sleeps `sleep_ms` (job param; 0 = return at once).
pub struct Noop;

#[async_trait]
impl TaskHandler for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let sleep_ms = ctx
            .job_params
            .get("sleep_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if sleep_ms > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                _ = ctx.cancelled() => return Err(HandlerError::permanent("CANCELLED", "stopped on cancellation")),
            }
        }
        TaskOutput::value(Value::Null)
    }
}

/// Fan-in: reports how many members finished in each status.
pub struct NoopBarrier;

#[async_trait]
impl TaskHandler for NoopBarrier {
    fn name(&self) -> &'static str {
        "noop_barrier"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let counts = ctx.member_counts().await?;
        TaskOutput::value(json!({ "members": counts.total(), "by_status": counts }))
    }
}
