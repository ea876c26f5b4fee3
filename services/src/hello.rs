//! `hello_world` handlers: `greet` (one per key) and the `summarize` barrier.

use async_trait::async_trait;
use engine::ports::PageRequest;
use engine::{HandlerError, TaskContext, TaskHandler, TaskKey, TaskOutput, TaskStatus};
use serde_json::{Value, json};

/// Members read per page by `summarize`.
const PAGE: usize = 1_000;

/// Greets once; every `fail_every`-th greeting (1-based) fails permanently on purpose.
pub struct Greet;

#[async_trait]
impl TaskHandler for Greet {
    fn name(&self) -> &'static str {
        "greet"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let TaskKey::Int(index) = ctx.key else {
            return Err(HandlerError::permanent(
                "INVALID_INPUT",
                format!("greet key must be an integer, got {:?}", ctx.key),
            ));
        };
        let message = ctx
            .job_params
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("hello");
        let fail_every = ctx
            .job_params
            .get("fail_every")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if fail_every > 0 && (index + 1) % fail_every == 0 {
            return Err(HandlerError::permanent(
                "GREET_FAILED",
                format!("greeting {index} fails on purpose (fail_every = {fail_every})"),
            ));
        }
        TaskOutput::value(json!({ "greeting": format!("{message} #{index}") }))
    }
}

/// Barrier over every greeting: counts them, page by page.
pub struct Summarize;

#[async_trait]
impl TaskHandler for Summarize {
    fn name(&self) -> &'static str {
        "summarize"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let (mut greetings, mut failed, mut seen) = (0u64, 0u64, 0u64);
        let total = ctx.member_counts().await?.total();
        let mut page = PageRequest::first(PAGE);
        let mut first = None;
        loop {
            let members = ctx.members(page.clone()).await?;
            for m in &members.items {
                seen += 1;
                match m.status {
                    TaskStatus::Succeeded => {
                        greetings += 1;
                        if first.is_none() {
                            first = m.result.as_ref().and_then(|r| r.get("greeting")).cloned();
                        }
                    }
                    _ => failed += 1,
                }
            }
            ctx.progress(
                seen as f64 / total.max(1) as f64,
                format!("{seen}/{total} greetings read"),
            )
            .await;
            match members.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let message = ctx
            .job_params
            .get("message")
            .cloned()
            .unwrap_or(Value::Null);
        TaskOutput::value(json!({
            "greetings": greetings,
            "failed": failed,
            "message": message,
            "example": first,
        }))
    }
}
