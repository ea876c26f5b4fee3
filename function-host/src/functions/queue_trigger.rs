//! Queue- and timer-triggered invocations: `tasks` (the push entry point of the engine),
//! `jobs` (expansions, and `{job_type, params}` submissions put on the queue), `tasks-poison`
//! (messages the host gave up on) and `sweep` (the timer). The answer's HTTP status is what
//! the host sees: 200 when the message is done with (the host deletes it), non-2xx when it
//! must come back (a storage outage). A message that can never succeed is answered 200 and
//! parked in the dead-letter queue through the `dead` output binding.

use axum::http::StatusCode;
use engine::runtime::{HostedAnswer, HostedMessage};
use engine::{SubmitOptions, WorkerConfig};
use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::{DEAD_LETTER_BINDING, MESSAGE_BINDING};
use super::envelope::{Invocation, InvocationResponse, dequeue_count, message_id, message_text};
use crate::app::{App, ErrorKind};

pub type Answer = (StatusCode, InvocationResponse);

/// The message of a queue-triggered invocation, or why it cannot be read.
fn hosted(inv: &Invocation) -> Result<HostedMessage, String> {
    let value = inv
        .data
        .get(MESSAGE_BINDING)
        .ok_or_else(|| format!("invocation without Data.{MESSAGE_BINDING}"))?;
    Ok(HostedMessage {
        message_id: message_id(&inv.metadata),
        dequeue_count: dequeue_count(&inv.metadata)?,
        body: message_text(value),
    })
}

/// What goes to the dead-letter queue: the message itself when it is JSON (so it can be
/// replayed), else the text and why it was refused.
fn parked(body: &str, reason: &str) -> Value {
    match serde_json::from_str::<Value>(body) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({ "refused": body, "reason": reason }),
    }
}

fn answer(message: &HostedMessage, answer: HostedAnswer) -> Answer {
    let response = InvocationResponse::default();
    match answer {
        HostedAnswer::Done => (
            StatusCode::OK,
            response.log(format!("message {} done", message.message_id)),
        ),
        HostedAnswer::Park { reason } => (
            StatusCode::OK,
            response
                .log(format!(
                    "message {} parked in the dead-letter queue: {reason}",
                    message.message_id
                ))
                .output(DEAD_LETTER_BINDING, parked(&message.body, &reason)),
        ),
        HostedAnswer::Redeliver => (
            StatusCode::SERVICE_UNAVAILABLE,
            response.log(format!(
                "message {} not done (storage unavailable): deliver it again",
                message.message_id
            )),
        ),
    }
}

/// A message the envelope does not even carry readably: refused once, parked.
fn unreadable(inv: &Invocation, why: String) -> Answer {
    tracing::warn!(error = %why, "invocation refused");
    let body = inv
        .data
        .get(MESSAGE_BINDING)
        .map(message_text)
        .unwrap_or_default();
    (
        StatusCode::OK,
        InvocationResponse::default()
            .log(format!("refused: {why}"))
            .output(
                DEAD_LETTER_BINDING,
                json!({ "refused": body, "reason": why }),
            ),
    )
}

/// `tasks`: run the message's tasks (or expansion) through the push entry point.
pub async fn tasks(app: &App, inv: &Invocation, worker: &WorkerConfig) -> Answer {
    match hosted(inv) {
        Ok(message) => {
            let outcome = app.engine().process_hosted(message.clone(), worker).await;
            answer(&message, outcome)
        }
        Err(why) => unreadable(inv, why),
    }
}

/// `tasks-poison`: the host gave up on the message; its tasks fail `POISONED`.
pub async fn tasks_poison(app: &App, inv: &Invocation) -> Answer {
    match hosted(inv) {
        Ok(message) => {
            let outcome = app.engine().poison_hosted(message.clone()).await;
            answer(&message, outcome)
        }
        Err(why) => unreadable(inv, why),
    }
}

/// A submission put on the jobs queue, as `POST /api/jobs` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuedSubmission {
    job_type: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    outcome_policy: Option<engine::OutcomePolicy>,
}

/// `jobs`: an expansion, or a `{job_type, params}` submission; an invalid submission is
/// refused once (logged with its field errors, parked), never retried.
pub async fn jobs(app: &App, inv: &Invocation, worker: &WorkerConfig) -> Answer {
    let message = match hosted(inv) {
        Ok(m) => m,
        Err(why) => return unreadable(inv, why),
    };
    let value: Value = serde_json::from_str(&message.body).unwrap_or(Value::Null);
    if value.get("job_type").is_none() {
        // An expansion (or junk, which the engine refuses and parks).
        let outcome = app.engine().process_hosted(message.clone(), worker).await;
        return answer(&message, outcome);
    }
    let submission: QueuedSubmission = match serde_json::from_value(value) {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("invalid submission: {e}");
            tracing::warn!(message_id = %message.message_id, error = %reason, "submission refused");
            return answer(&message, HostedAnswer::Park { reason });
        }
    };
    let options = SubmitOptions {
        force: false,
        outcome_policy: submission.outcome_policy,
    };
    match app
        .accept(&submission.job_type, submission.params, options)
        .await
    {
        Ok((sub, _)) => {
            let verb = if sub.created { "accepted" } else { "exists:" };
            let (status, response) = answer(&message, HostedAnswer::Done);
            (
                status,
                response.log(format!("{verb} job {} ({})", sub.job.id, sub.job.job_type)),
            )
        }
        Err(e) if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Internal) => {
            tracing::warn!(error = %e.message, "submission not accepted now; it will be delivered again");
            answer(&message, HostedAnswer::Redeliver)
        }
        Err(e) => {
            let fields: Vec<String> = e
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            tracing::warn!(message_id = %message.message_id, code = e.code, error = %e.message, fields = ?fields, "submission refused");
            let reason = format!("{} {}", e.code, e.message);
            let (status, response) = answer(&message, HostedAnswer::Park { reason });
            (
                status,
                fields
                    .into_iter()
                    .fold(response, |r, f| r.log(format!("field {f}"))),
            )
        }
    }
}

/// `sweep` (timer): one sweep; safe when several instances fire at once (every step is a
/// compare-and-set or an idempotent re-send).
pub async fn sweep(app: &App) -> Answer {
    match app.engine().sweep().await {
        Ok(report) => (
            StatusCode::OK,
            InvocationResponse::default().log(format!("sweep: {report:?}")),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            InvocationResponse::default().log(format!("sweep failed: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_messages_keep_json_and_wrap_the_rest() {
        assert_eq!(parked(r#"{"expand":"x"}"#, "r"), json!({"expand": "x"}));
        assert_eq!(
            parked("junk", "r"),
            json!({"refused": "junk", "reason": "r"})
        );
        assert_eq!(parked("[1]", "r"), json!({"refused": "[1]", "reason": "r"}));
    }
}
