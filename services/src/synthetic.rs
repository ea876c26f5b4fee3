//! `synthetic` handlers for benchmarks and crash tests: a no-op task that may sleep
//! (honouring cancellation) and a barrier that counts its members.

use std::time::Duration;

use async_trait::async_trait;
use engine::{HandlerError, TaskContext, TaskHandler, TaskOutput};
use serde_json::{Value, json};

/// Sleeps `sleep_ms` (job param; 0 = return at once); fails its first `transient_failures`
/// attempts (job param, default 0) with a transient error, which the retry policy retries.
pub struct Noop;

/// The code of a `noop` attempt failed on purpose.
pub const TRANSIENT_ON_PURPOSE: &str = "TRANSIENT_ON_PURPOSE";

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
        let failures = ctx
            .job_params
            .get("transient_failures")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if u64::from(ctx.attempt) <= failures {
            return Err(HandlerError::transient(
                TRANSIENT_ON_PURPOSE,
                format!(
                    "attempt {} of {failures} set to fail (transient_failures)",
                    ctx.attempt
                ),
            ));
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
