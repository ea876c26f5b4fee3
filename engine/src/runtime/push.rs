//! The push entry point: a message that a host received and owns (the Azure Functions host's
//! queue trigger) is processed with the same triage and steps as the polling worker's, but
//! the engine never deletes it nor changes its visibility. The host deletes it when the
//! invocation answers success, renews it while the invocation runs, and delivers it again
//! (counting) when the invocation fails.
//!
//! - a retry, a postponed delivery and a split bundle are new (delayed) messages the engine
//!   sends before answering;
//! - a poison or malformed message is answered [`HostedAnswer::Park`]: the host moves it to
//!   the dead-letter queue (an output binding), the task having been failed `POISONED`;
//! - a storage error is answered [`HostedAnswer::Redeliver`] (the host retries, counting the
//!   delivery), so nothing is lost;
//! - a redelivery for a finished task only redoes the idempotent follow-up.

use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::lease;
use super::triage::{Opening, open_message};
use super::worker::Part;
use super::{Engine, RuntimeError, WorkerConfig, encode_message};
use crate::model::{TaskStatus, codes};
use crate::ports::Delivery;

/// A message as the host hands it over.
#[derive(Clone, Debug)]
pub struct HostedMessage {
    /// The queue's message ID (for logs).
    pub message_id: String,
    /// Deliveries so far, this one included (the host's `DequeueCount`).
    pub dequeue_count: u32,
    /// The message text, decoded (JSON).
    pub body: String,
}

/// What the host should do with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostedAnswer {
    /// Done: answer success (the host deletes the message).
    Done,
    /// Done, and the message belongs in the dead-letter queue (poison, or not a message of
    /// this engine): answer success and park it there.
    Park { reason: String },
    /// Not done (storage unreachable): answer failure so the host delivers it again.
    Redeliver,
}

impl Engine {
    /// Process a message pushed by its owner: every task attempt it carries, or the expansion
    /// of an accepted job. Never panics on bad input.
    pub async fn process_hosted(
        &self,
        message: HostedMessage,
        config: &WorkerConfig,
    ) -> HostedAnswer {
        let queue = &self.inner.backend.queue;
        let tasks = match open_message(&message.body, message.dequeue_count) {
            Opening::Expand(job_id) => {
                let (mut leases, share) = lease::share_hosted(
                    queue.clone(),
                    delivery_of(&message),
                    vec![message.body.clone()],
                );
                if let Some(lease) = leases.pop() {
                    self.process_part(Part::Expand(job_id), lease, config).await;
                }
                return answer_of(share.outcome(), "its expansion was delivered too often");
            }
            Opening::Malformed(reason) => {
                warn!(message_id = %message.message_id, error = %reason, "malformed message refused");
                return HostedAnswer::Park {
                    reason: format!("not a task message: {reason}"),
                };
            }
            Opening::Split(tasks) => {
                debug!(message_id = %message.message_id, tasks = tasks.len(), "bundle delivered again; split into one message per task");
                let bodies: Vec<String> = tasks.iter().map(encode_message).collect();
                return match queue.send(&bodies, Duration::ZERO).await {
                    Ok(()) => HostedAnswer::Done,
                    Err(e) => {
                        warn!(error = %e, "splitting a bundle failed; it will be delivered again");
                        HostedAnswer::Redeliver
                    }
                };
            }
            Opening::Parts(tasks) => tasks,
        };
        let bodies: Vec<String> = tasks.iter().map(encode_message).collect();
        let (leases, share) = lease::share_hosted(queue.clone(), delivery_of(&message), bodies);
        let mut parts = JoinSet::new();
        for (task, lease) in tasks.into_iter().zip(leases) {
            let (engine, config) = (self.clone(), config.clone());
            parts.spawn(async move { engine.process_part(Part::Task(task), lease, &config).await });
        }
        while let Some(joined) = parts.join_next().await {
            if let Err(e) = joined {
                // A part's step panicked: its lease was dropped unsettled, so the message is
                // delivered again.
                warn!(error = %e, "a part of the message did not finish");
            }
        }
        answer_of(share.outcome(), "delivered too often without an outcome")
    }

    /// A message its host gave up on (its invocations failed `maxDequeueCount` times: the
    /// process crashed on every delivery). Its tasks fail `POISONED` and their jobs follow
    /// their outcome policy; an expansion fails its PENDING job. The message is then parked.
    /// A storage error answers [`HostedAnswer::Redeliver`].
    pub async fn poison_hosted(&self, message: HostedMessage) -> HostedAnswer {
        match self.poison_message(&message).await {
            Ok(reason) => HostedAnswer::Park { reason },
            Err(e) => {
                warn!(message_id = %message.message_id, error = %e, "poison message not recorded; it will be delivered again");
                HostedAnswer::Redeliver
            }
        }
    }

    async fn poison_message(&self, message: &HostedMessage) -> Result<String, RuntimeError> {
        let backend = &self.inner.backend;
        let tasks = match open_message(&message.body, 1) {
            Opening::Expand(job_id) => {
                self.fail_pending(
                    &job_id,
                    codes::POISONED,
                    format!(
                        "its expansion was delivered {} times without an outcome",
                        message.dequeue_count
                    ),
                )
                .await?;
                return Ok(format!("expansion of job {job_id} poisoned"));
            }
            Opening::Malformed(reason) => return Ok(format!("not a task message: {reason}")),
            Opening::Parts(tasks) | Opening::Split(tasks) => tasks,
        };
        let mut poisoned = 0;
        for task in &tasks {
            let Some(record) = backend.tasks.get_task(&task.job_id, &task.task_id).await? else {
                continue;
            };
            if record.status.is_terminal() || record.attempt > task.attempt {
                continue;
            }
            if record.status == TaskStatus::Pending {
                continue;
            }
            warn!(job_id = %task.job_id, task_id = %task.task_id, "the host gave up on the task's message; the task fails POISONED");
            self.poison_task(&record, message.dequeue_count).await?;
            poisoned += 1;
        }
        Ok(format!(
            "the host gave up after {} deliveries; {poisoned} of {} tasks poisoned",
            message.dequeue_count,
            tasks.len()
        ))
    }
}

/// A delivery for the lease bookkeeping: the host holds the real receipt.
fn delivery_of(message: &HostedMessage) -> Delivery {
    Delivery {
        message_id: message.message_id.clone(),
        receipt: String::new(),
        dequeue_count: message.dequeue_count,
        body: message.body.clone(),
    }
}

fn answer_of(outcome: lease::HostedOutcome, park_reason: &str) -> HostedAnswer {
    if outcome.redeliver {
        HostedAnswer::Redeliver
    } else if outcome.park {
        HostedAnswer::Park {
            reason: park_reason.to_owned(),
        }
    } else {
        HostedAnswer::Done
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::{Value, json};

    use super::*;
    use crate::graph::PlanError;
    use crate::handler::{
        Controller, HandlerError, JobResults, Registry, TaskContext, TaskHandler, TaskOutput,
        ValidationError,
    };
    use crate::ids::JobId;
    use crate::memory::MemoryBackend;
    use crate::model::{JobRecord, JobStatus, TaskSpec};
    use crate::ports::{Backend, PageRequest, TaskQuery};
    use crate::retry::RetryPolicy;
    use crate::runtime::{EngineConfig, SubmitOptions};

    /// `n` parallel `flaky` tasks: key 0 fails transiently on its first attempt.
    struct Flakes;

    #[async_trait]
    impl Controller for Flakes {
        fn job_type(&self) -> &'static str {
            "flakes"
        }
        fn description(&self) -> &'static str {
            "n tasks, the first fails once"
        }
        fn validate(&self, params: Value) -> Result<Value, ValidationError> {
            let n = params
                .get("n")
                .and_then(Value::as_u64)
                .ok_or_else(|| ValidationError::new("n", "required integer"))?;
            Ok(json!({ "n": n }))
        }
        fn plan(&self, _job_id: &JobId, params: &Value) -> Result<Vec<TaskSpec>, PlanError> {
            let n = params["n"].as_i64().unwrap_or(1);
            Ok((0..n).map(|i| TaskSpec::parallel("flaky", i)).collect())
        }
        async fn aggregate(&self, _: &JobRecord, _: &JobResults) -> Result<Value, HandlerError> {
            Ok(Value::Null)
        }
    }

    struct Flaky;

    #[async_trait]
    impl TaskHandler for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn retry_policy(&self) -> RetryPolicy {
            RetryPolicy::new(3, 1_000, 1_000)
        }
        async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
            if ctx.key == crate::TaskKey::Int(0) && ctx.attempt == 1 {
                return Err(HandlerError::transient("FLAKY", "first attempt fails"));
            }
            TaskOutput::value(1)
        }
    }

    fn engine() -> (Engine, Backend) {
        let backend = Backend::from_all(std::sync::Arc::new(MemoryBackend::new()));
        let registry = Registry::default()
            .with_controller(Flakes)
            .with_handler(Flaky);
        let config = EngineConfig {
            lease: Duration::from_secs(5),
            ..EngineConfig::default()
        };
        (Engine::new(backend.clone(), registry, config), backend)
    }

    fn config() -> WorkerConfig {
        WorkerConfig {
            worker_id: "host-1".into(),
            ..WorkerConfig::default()
        }
    }

    /// A host: receive, push, delete on success (count the parked ones), leave the message
    /// for redelivery otherwise; until the job is terminal.
    async fn host_until_done(engine: &Engine, backend: &Backend, job: &JobId) -> usize {
        let mut parked = 0;
        for _ in 0..400 {
            let job = backend.jobs.get_job(job).await.unwrap().unwrap();
            if job.status.is_terminal() {
                return parked;
            }
            let deliveries = backend
                .queue
                .receive(8, Duration::from_secs(30))
                .await
                .unwrap();
            if deliveries.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for delivery in deliveries {
                let message = HostedMessage {
                    message_id: delivery.message_id.clone(),
                    dequeue_count: delivery.dequeue_count,
                    body: delivery.body.clone(),
                };
                match engine.process_hosted(message, &config()).await {
                    HostedAnswer::Done => backend.queue.delete(&delivery).await.unwrap(),
                    HostedAnswer::Park { .. } => {
                        parked += 1;
                        backend.queue.delete(&delivery).await.unwrap()
                    }
                    HostedAnswer::Redeliver => panic!("no storage error expected"),
                }
            }
        }
        panic!("job {job} did not finish");
    }

    /// The task messages on the queue (the expansion message `submit` leaves is deleted).
    async fn task_deliveries(backend: &Backend) -> Vec<Delivery> {
        let mut out = Vec::new();
        for d in backend
            .queue
            .receive(32, Duration::from_secs(30))
            .await
            .unwrap()
        {
            if d.body.contains("expand") {
                backend.queue.delete(&d).await.unwrap();
            } else {
                out.push(d);
            }
        }
        out
    }

    async fn tasks(backend: &Backend, job: &JobId) -> Vec<crate::model::TaskRecord> {
        backend
            .tasks
            .list_tasks(job, &TaskQuery::default(), PageRequest::first(100))
            .await
            .unwrap()
            .items
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hosted_job_runs_with_a_retry_as_a_delayed_message() {
        let (engine, backend) = engine();
        let sub = engine
            .accept("flakes", json!({ "n": 5 }), SubmitOptions::default())
            .await
            .unwrap();
        let parked = host_until_done(&engine, &backend, &sub.job.id).await;
        let job = backend.jobs.get_job(&sub.job.id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(parked, 0);
        let tasks = tasks(&backend, &sub.job.id).await;
        assert_eq!(tasks.len(), 5);
        for t in &tasks {
            let expected = if t.key == crate::TaskKey::Int(0) {
                2
            } else {
                1
            };
            assert_eq!(
                (t.attempt, t.starts),
                (expected, expected),
                "task {}",
                t.key
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_engine_never_deletes_nor_hides_a_hosted_message() {
        let (engine, backend) = engine();
        engine
            .submit("flakes", json!({ "n": 1 }), SubmitOptions::default())
            .await
            .unwrap();
        let mut delivery = task_deliveries(&backend).await.pop().unwrap();
        let message = HostedMessage {
            message_id: delivery.message_id.clone(),
            dequeue_count: delivery.dequeue_count,
            body: delivery.body.clone(),
        };
        // Attempt 1 fails transiently: the retry is a new, delayed message.
        assert_eq!(
            engine.process_hosted(message, &config()).await,
            HostedAnswer::Done
        );
        // The host's receipt still holds: the engine neither deleted nor updated the message.
        backend
            .queue
            .extend_lease(&mut delivery, Duration::from_secs(30))
            .await
            .expect("the hosted message is untouched");
        assert_eq!(
            backend
                .queue
                .receive(8, Duration::from_secs(1))
                .await
                .unwrap()
                .len(),
            0,
            "the retry is delayed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicates_run_once_poison_fails_the_job_and_junk_is_parked() {
        let (engine, backend) = engine();
        let sub = engine
            .submit("flakes", json!({ "n": 3 }), SubmitOptions::default())
            .await
            .unwrap();
        let bodies: Vec<String> = task_deliveries(&backend)
            .await
            .into_iter()
            .map(|d| d.body)
            .collect();
        assert_eq!(bodies.len(), 3);
        let hosted = |body: &String, dequeue_count| HostedMessage {
            message_id: "m".into(),
            dequeue_count,
            body: body.clone(),
        };
        let all = tasks(&backend, &sub.job.id).await;
        let first = |key: i64| {
            let id = &all
                .iter()
                .find(|t| t.key == crate::TaskKey::Int(key))
                .unwrap()
                .id;
            bodies
                .iter()
                .find(|b| b.contains(&id.to_string()))
                .unwrap()
                .clone()
        };
        // Key 1 delivered twice: it runs once.
        let one = first(1);
        for _ in 0..2 {
            assert_eq!(
                engine.process_hosted(hosted(&one, 1), &config()).await,
                HostedAnswer::Done
            );
        }
        // Key 2 beyond the dequeue limit: parked, POISONED, the job fails fast.
        let two = first(2);
        assert!(matches!(
            engine.process_hosted(hosted(&two, 6), &config()).await,
            HostedAnswer::Park { .. }
        ));
        // Junk: parked, nothing else happens.
        for junk in ["", "{", r#"{"job_id":"x"}"#, r#""{}""#] {
            assert!(matches!(
                engine
                    .process_hosted(hosted(&junk.to_owned(), 1), &config())
                    .await,
                HostedAnswer::Park { .. }
            ));
        }
        let all = tasks(&backend, &sub.job.id).await;
        let by_key = |k: i64| {
            all.iter()
                .find(|t| t.key == crate::TaskKey::Int(k))
                .unwrap()
        };
        assert_eq!(
            (by_key(1).status, by_key(1).starts),
            (TaskStatus::Succeeded, 1)
        );
        assert_eq!(by_key(2).status, TaskStatus::Failed);
        assert_eq!(by_key(2).error.as_ref().unwrap().code, codes::POISONED);
        let job = backend.jobs.get_job(&sub.job.id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_the_host_gave_up_on_poisons_its_task_and_closes_the_job() {
        let (engine, backend) = engine();
        let sub = engine
            .submit("flakes", json!({ "n": 1 }), SubmitOptions::default())
            .await
            .unwrap();
        let body = task_deliveries(&backend).await.pop().unwrap().body;
        let message = HostedMessage {
            message_id: "m".into(),
            dequeue_count: 5,
            body,
        };
        assert!(matches!(
            engine.poison_hosted(message.clone()).await,
            HostedAnswer::Park { .. }
        ));
        let task = &tasks(&backend, &sub.job.id).await[0];
        assert_eq!(
            (task.status, task.error.as_ref().unwrap().code.as_str()),
            (TaskStatus::Failed, codes::POISONED)
        );
        let job = backend.jobs.get_job(&sub.job.id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        // Again (the host redelivers the poison message): nothing changes.
        assert!(matches!(
            engine.poison_hosted(message).await,
            HostedAnswer::Park { .. }
        ));
        assert_eq!(
            tasks(&backend, &sub.job.id).await[0].revision,
            task.revision
        );
    }
}
