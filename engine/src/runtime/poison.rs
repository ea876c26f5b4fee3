//! Poison messages as operators handle them: list what each carries and where its work
//! stands, replay one (put its work back), or discard it.
//!
//! A poisoned task is FAILED `POISONED`, and its failure already decided the rest of the job
//! (dependents skipped, or the job closed under `fail_fast`). Re-delivering the message alone
//! would change nothing, so replaying re-runs the job, as a forced re-run does (same ID,
//! attempt + 1, earlier events kept), once the job has finished. What to do is the pure
//! [`decide`], tested by a table; [`Engine::replay_poison`] is its shell.

use std::time::Duration;

use serde::Serialize;
use tracing::info;

use super::{Engine, RuntimeError, SubmitError, SubmitOptions, expand_message};
use crate::ids::{JobId, TaskId};
use crate::model::{JobRecord, JobStatus, Millis, QueueMessage, TaskRecord, TaskStatus, codes};
use crate::ports::PoisonMessage;

/// A poison message with what it carries.
#[derive(Debug, Clone, Serialize)]
pub struct PoisonEntry {
    pub id: String,
    /// When it entered the poison queue (ms since the epoch).
    pub poisoned_at: Millis,
    #[serde(flatten)]
    pub content: PoisonContent,
    /// The message as it was queued.
    pub body: String,
}

/// What a poison message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PoisonContent {
    /// Task attempts of a job (one, or a bundle).
    Tasks {
        job_id: JobId,
        task_ids: Vec<TaskId>,
    },
    /// The expansion of an accepted job.
    Expand { job_id: JobId },
    /// Not a message Tessera can read.
    Unreadable { error: String },
}

impl PoisonContent {
    pub fn of(body: &str) -> PoisonContent {
        match serde_json::from_str::<QueueMessage>(body) {
            Ok(QueueMessage::Expand { expand }) => PoisonContent::Expand { job_id: expand },
            Ok(message) => {
                let job_id = message.job_id().clone();
                let task_ids = message
                    .into_tasks()
                    .into_iter()
                    .map(|t| t.task_id)
                    .collect();
                PoisonContent::Tasks { job_id, task_ids }
            }
            Err(e) => PoisonContent::Unreadable {
                error: e.to_string(),
            },
        }
    }

    pub fn job_id(&self) -> Option<&JobId> {
        match self {
            PoisonContent::Tasks { job_id, .. } | PoisonContent::Expand { job_id } => Some(job_id),
            PoisonContent::Unreadable { .. } => None,
        }
    }
}

/// What replaying a poison message does, given where its work stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Re-run the finished job (attempt + 1), then remove the message.
    Rerun,
    /// Queue the expansion again (the job is still PENDING), then remove the message.
    ResendExpand,
    /// Nothing is left to do (the job is gone, re-ran, or its tasks ended otherwise): remove
    /// the message.
    Stale(&'static str),
    /// Refused, the message stays: the job still runs (wait, or cancel it, then replay).
    JobRunning(JobStatus),
    /// Refused, the message stays: it cannot be read, so it can only be discarded.
    Unreadable,
}

fn poisoned(task: &TaskRecord) -> bool {
    task.status == TaskStatus::Failed
        && task
            .error
            .as_ref()
            .is_some_and(|e| e.code == codes::POISONED)
}

/// Decide a replay from the message's content, its job (if it still exists) and the tasks
/// it names (those still stored).
pub fn decide(content: &PoisonContent, job: Option<&JobRecord>, tasks: &[TaskRecord]) -> Decision {
    let (PoisonContent::Tasks { .. } | PoisonContent::Expand { .. }) = content else {
        return Decision::Unreadable;
    };
    let Some(job) = job else {
        return Decision::Stale("its job no longer exists");
    };
    match content {
        PoisonContent::Expand { .. } => match job.status {
            JobStatus::Pending => Decision::ResendExpand,
            // Closed by its poisoned expansion: it never started.
            JobStatus::Failed
                if job.started_at.is_none()
                    && job
                        .error
                        .as_ref()
                        .is_some_and(|e| e.code == codes::POISONED) =>
            {
                Decision::Rerun
            }
            _ => Decision::Stale("the job was expanded since"),
        },
        _ if !tasks.iter().any(poisoned) => Decision::Stale("none of its tasks is poisoned now"),
        _ if !job.status.is_terminal() => Decision::JobRunning(job.status),
        _ => Decision::Rerun,
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Replayed {
    /// The job re-runs (its record, PENDING, attempt + 1).
    Rerun { job: Box<JobRecord> },
    /// The job's expansion is queued again.
    Requeued { job_id: JobId },
    /// Nothing was left to do; the message is removed.
    Stale { reason: String },
}

/// Why a replay was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("no poison message with id {0}")]
    NotFound(String),
    #[error("poison message {id} cannot be read ({error}): it can only be discarded")]
    Unreadable { id: String, error: String },
    #[error(
        "job {job_id} is {status}: a poison message of a job is replayed once the job has \
         finished (wait for it, or cancel it)"
    )]
    JobRunning { job_id: JobId, status: JobStatus },
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<crate::ports::StoreError> for ReplayError {
    fn from(e: crate::ports::StoreError) -> Self {
        ReplayError::Runtime(e.into())
    }
}

impl From<crate::ports::QueueError> for ReplayError {
    fn from(e: crate::ports::QueueError) -> Self {
        ReplayError::Runtime(e.into())
    }
}

/// Messages shown by one listing at most.
pub const POISON_LIST_MAX: usize = 1_000;

impl Engine {
    /// The oldest poison messages, with what each carries.
    pub async fn poison_messages(&self, limit: usize) -> Result<Vec<PoisonEntry>, RuntimeError> {
        let messages = self
            .inner
            .backend
            .poison
            .poison_messages(limit.clamp(1, POISON_LIST_MAX))
            .await?;
        Ok(messages.into_iter().map(entry).collect())
    }

    /// Replay poison message `id`: put its work back (see the module's documentation).
    /// Refused messages stay in the poison queue; the others are removed from it.
    pub async fn replay_poison(&self, id: &str) -> Result<Replayed, ReplayError> {
        let message = self.find_poison(id).await?;
        let content = PoisonContent::of(&message.body);
        let backend = &self.inner.backend;
        let job = match content.job_id() {
            Some(job_id) => backend.jobs.get_job(job_id).await?,
            None => None,
        };
        let mut tasks = Vec::new();
        if let (PoisonContent::Tasks { job_id, task_ids }, Some(_)) = (&content, &job) {
            for task_id in task_ids {
                tasks.extend(backend.tasks.get_task(job_id, task_id).await?);
            }
        }
        let replayed = match decide(&content, job.as_ref(), &tasks) {
            Decision::Unreadable => {
                let PoisonContent::Unreadable { error } = content else {
                    unreachable!("decided on unreadable content")
                };
                return Err(ReplayError::Unreadable {
                    id: id.to_owned(),
                    error,
                });
            }
            Decision::JobRunning(status) => {
                let job_id = content.job_id().cloned().expect("a job's message");
                return Err(ReplayError::JobRunning { job_id, status });
            }
            Decision::Stale(reason) => Replayed::Stale {
                reason: reason.to_owned(),
            },
            Decision::ResendExpand => {
                let job = job.expect("decided on a stored job");
                backend
                    .queue
                    .send(&[expand_message(&job.id)], Duration::ZERO)
                    .await?;
                Replayed::Requeued { job_id: job.id }
            }
            Decision::Rerun => {
                let job = job.expect("decided on a stored job");
                let options = SubmitOptions {
                    force: true,
                    outcome_policy: Some(job.outcome_policy),
                };
                let rerun = self
                    .accept_with(&job.job_type, job.params.clone(), options, |s| {
                        s.is_terminal() && s != JobStatus::Succeeded
                    })
                    .await?;
                if rerun.job.id != job.id {
                    // Cannot happen while the job type's version is unchanged; a new version
                    // is a new job, which the caller asked for no more than the old one.
                    info!(old = %job.id, new = %rerun.job.id, "the job type's version changed: the replay submitted it anew");
                }
                Replayed::Rerun {
                    job: Box::new(rerun.job),
                }
            }
        };
        info!(message_id = id, outcome = ?replayed, "poison message replayed");
        // Removed after its work is back: a crash in between leaves a message whose replay
        // finds nothing left to do.
        backend.poison.remove_poison(id).await?;
        Ok(replayed)
    }

    /// Remove poison message `id` without replaying it.
    pub async fn discard_poison(&self, id: &str) -> Result<PoisonEntry, ReplayError> {
        let message = self.find_poison(id).await?;
        if !self.inner.backend.poison.remove_poison(id).await? {
            return Err(ReplayError::NotFound(id.to_owned()));
        }
        info!(message_id = id, "poison message discarded");
        Ok(entry(message))
    }

    async fn find_poison(&self, id: &str) -> Result<PoisonMessage, ReplayError> {
        // The IDs a backend can address are those it lists (Azure: the oldest 32).
        self.inner
            .backend
            .poison
            .poison_messages(POISON_LIST_MAX)
            .await?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| ReplayError::NotFound(id.to_owned()))
    }
}

fn entry(message: PoisonMessage) -> PoisonEntry {
    PoisonEntry {
        content: PoisonContent::of(&message.body),
        id: message.id,
        poisoned_at: message.poisoned_at,
        body: message.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{HandlerDefaults, PlanScope, plan};
    use crate::model::{ErrorInfo, OutcomePolicy, Revision, TaskSpec};

    /// Stand-ins for the records `decide` reads.
    mod testing {
        use super::*;

        pub fn job(n: u64) -> JobRecord {
            let params = serde_json::json!({ "n": n });
            JobRecord {
                id: crate::ids::job_id("t", 1, &params).unwrap(),
                job_type: "t".into(),
                job_version: 1,
                params,
                status: JobStatus::Pending,
                attempt: 1,
                outcome_policy: OutcomePolicy::FailFast,
                barriers: Default::default(),
                planned_tasks: 1,
                result: None,
                error: None,
                created_at: 0,
                updated_at: 0,
                started_at: None,
                finished_at: None,
                expansion: None,
                revision: Revision::default(),
            }
        }

        pub fn tasks(job: &JobId) -> Vec<TaskRecord> {
            let defaults = |_: &str| {
                Some(HandlerDefaults {
                    task_version: 1,
                    retry: crate::retry::RetryPolicy::NO_RETRY,
                    timeout: Duration::from_secs(1),
                })
            };
            plan(
                job,
                vec![TaskSpec::parallel("t", 0)],
                PlanScope::Job,
                &defaults,
                0,
            )
            .unwrap()
            .into_records()
            .collect()
        }
    }

    fn job(status: JobStatus, code: Option<&str>) -> JobRecord {
        let mut job = testing::job(1);
        job.status = status;
        job.error = code.map(|c| ErrorInfo::new(c, "x"));
        job
    }

    fn started(mut job: JobRecord) -> JobRecord {
        job.started_at = Some(1);
        job
    }

    fn task(status: TaskStatus, code: Option<&str>) -> TaskRecord {
        let mut task = testing::tasks(&testing::job(1).id).remove(0);
        task.status = status;
        task.error = code.map(|c| ErrorInfo::new(c, "x"));
        task
    }

    #[test]
    fn replay_decisions() {
        use Decision::*;
        use JobStatus as J;
        use TaskStatus as T;
        let id = testing::job(1).id;
        let tasks = PoisonContent::Tasks {
            job_id: id.clone(),
            task_ids: vec![],
        };
        let expand = PoisonContent::Expand { job_id: id };
        let unreadable = PoisonContent::Unreadable { error: "x".into() };
        let poisoned = task(T::Failed, Some(codes::POISONED));
        let other_failure = task(T::Failed, Some("GREET_FAILED"));
        let succeeded = task(T::Succeeded, None);
        type Case<'a> = (
            &'a str,
            &'a PoisonContent,
            Option<JobRecord>,
            Vec<TaskRecord>,
            Decision,
        );
        let cases: Vec<Case> = vec![
            ("unreadable", &unreadable, None, vec![], Unreadable),
            (
                "job deleted",
                &tasks,
                None,
                vec![],
                Stale("its job no longer exists"),
            ),
            (
                "failed job, poisoned task",
                &tasks,
                Some(job(J::Failed, None)),
                vec![poisoned.clone()],
                Rerun,
            ),
            (
                "continue policy, finished with errors",
                &tasks,
                Some(job(J::CompletedWithErrors, None)),
                vec![succeeded.clone(), poisoned.clone()],
                Rerun,
            ),
            (
                "job still running",
                &tasks,
                Some(job(J::Running, None)),
                vec![poisoned.clone()],
                JobRunning(J::Running),
            ),
            (
                "task failed otherwise",
                &tasks,
                Some(job(J::Failed, None)),
                vec![other_failure],
                Stale("none of its tasks is poisoned now"),
            ),
            (
                "job re-ran, task succeeded",
                &tasks,
                Some(job(J::Succeeded, None)),
                vec![succeeded.clone()],
                Stale("none of its tasks is poisoned now"),
            ),
            (
                "job re-running, task queued",
                &tasks,
                Some(job(J::Running, None)),
                vec![task(T::Queued, None)],
                Stale("none of its tasks is poisoned now"),
            ),
            (
                "task re-planned away",
                &tasks,
                Some(job(J::Failed, None)),
                vec![],
                Stale("none of its tasks is poisoned now"),
            ),
            (
                "expansion, job pending",
                &expand,
                Some(job(J::Pending, None)),
                vec![],
                ResendExpand,
            ),
            (
                "expansion poisoned the job",
                &expand,
                Some(job(J::Failed, Some(codes::POISONED))),
                vec![],
                Rerun,
            ),
            (
                "expansion, a task poisoned the started job",
                &expand,
                Some(started(job(J::Failed, Some(codes::POISONED)))),
                vec![],
                Stale("the job was expanded since"),
            ),
            (
                "expansion, job failed otherwise",
                &expand,
                Some(job(J::Failed, Some("INVALID_PLAN"))),
                vec![],
                Stale("the job was expanded since"),
            ),
            (
                "expansion, job running",
                &expand,
                Some(job(J::Running, None)),
                vec![],
                Stale("the job was expanded since"),
            ),
        ];
        for (name, content, job, tasks, want) in cases {
            assert_eq!(decide(content, job.as_ref(), &tasks), want, "{name}");
        }
    }

    #[test]
    fn content_of_each_message_kind() {
        let job = testing::job(1);
        let t = testing::tasks(&job.id).remove(0);
        let one = super::super::message_body(&t, 1);
        assert_eq!(
            PoisonContent::of(&one),
            PoisonContent::Tasks {
                job_id: job.id.clone(),
                task_ids: vec![t.id.clone()]
            }
        );
        assert_eq!(
            PoisonContent::of(&expand_message(&job.id)),
            PoisonContent::Expand { job_id: job.id }
        );
        assert!(matches!(
            PoisonContent::of("not json"),
            PoisonContent::Unreadable { .. }
        ));
    }
}
