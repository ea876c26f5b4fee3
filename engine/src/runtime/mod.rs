//! The thin I/O shell around the pure functions: submission, workers, completion, sweeping.

mod admission;
mod coalesce;
mod expansion;
mod finish;
mod lease;
mod poison;
mod push;
mod queries;
mod sweeper;
pub mod triage;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tracing::{Instrument, info, warn};

use crate::events::{job_transition, task_transition};
use crate::graph::PlanError;
use crate::handler::{CheckError, Registry, ValidationError};
use crate::ids::{CanonicalJsonError, JobId, job_id};
use crate::model::{
    ErrorInfo, JobRecord, JobStatus, OutcomePolicy, QueueMessage, StatusCounts, TaskMessage,
    TaskRecord, TaskStatus, codes, now_millis,
};
use crate::ports::{Backend, Inserted, QueueError, Removal, StoreError};
use crate::status::InvalidTransition;

use admission::Admission;
use coalesce::Coalescer;
use expansion::Checked;
pub use expansion::Expanded;
pub use poison::{Decision, POISON_LIST_MAX, PoisonContent, PoisonEntry, ReplayError, Replayed};
pub use push::{HostedAnswer, HostedMessage};
pub use queries::EVENTS_PAGE_MAX;
pub use sweeper::{SweepReport, run_sweeper};
pub use worker::{WorkerConfig, run_worker};

/// Engine-wide settings (a `Config` struct rather than boolean parameters).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Queue lease (visibility timeout) of a received message; heartbeats renew it.
    pub lease: Duration,
    /// Deliveries without an outcome before a message is poison.
    pub max_dequeue: u32,
    /// Tasks per insert call (a backend may split further).
    pub insert_chunk: usize,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
    /// QUEUED / RETRY_WAIT / PENDING-job records untouched this long are re-sent or resumed.
    pub stale_after: Duration,
    /// Finished jobs are removed this long after they finish.
    pub retention: Duration,
    /// Most tasks in one queue message. A fan-out of more than [`MESSAGE_SPREAD`] tasks
    /// sends bundles (still at least that many messages); 1 sends one message per task.
    pub bundle_max: usize,
}

/// A fan-out is spread over at least this many messages, so that many workers share it.
pub const MESSAGE_SPREAD: usize = 64;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease: Duration::from_secs(30),
            max_dequeue: 5,
            insert_chunk: 5_000,
            sweep_interval: Duration::from_secs(30),
            stale_after: Duration::from_secs(300),
            retention: Duration::from_secs(7 * 24 * 3600),
            bundle_max: 16,
        }
    }
}

/// Counters of what the runtime did (exported as metrics by the host).
#[derive(Debug, Default)]
pub struct Metrics {
    pub tasks_succeeded: AtomicU64,
    pub tasks_failed: AtomicU64,
    pub tasks_retried: AtomicU64,
    pub tasks_cancelled: AtomicU64,
    pub tasks_skipped: AtomicU64,
    pub tasks_poisoned: AtomicU64,
    pub duplicate_deliveries: AtomicU64,
    pub lost_races: AtomicU64,
    pub invalid_transitions: AtomicU64,
    pub jobs_closed: AtomicU64,
    pub messages_resent: AtomicU64,
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A runtime step failed for a reason other than a lost race.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// What a job's params refer to cannot be checked now (an outage): try again later.
    #[error("{0}")]
    CheckUnavailable(String),
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("unknown job type {job_type:?} (known: {})", .known.join(", "))]
    UnknownJobType {
        job_type: String,
        known: Vec<String>,
    },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// What the params refer to could not be checked now (an outage, not the input).
    #[error("{0}")]
    CheckUnavailable(String),
    #[error("invalid plan")]
    Plan(#[from] PlanError),
    #[error("params cannot be canonicalized")]
    Canonical(#[from] CanonicalJsonError),
    #[error("job {id} is {status}; --force re-runs only FAILED or CANCELLED jobs")]
    NotRerunnable { id: JobId, status: JobStatus },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        SubmitError::Runtime(e.into())
    }
}
impl From<QueueError> for SubmitError {
    fn from(e: QueueError) -> Self {
        SubmitError::Runtime(e.into())
    }
}

/// Why a status or cancel request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobQueryError {
    #[error("no job with id {0}")]
    NotFound(JobId),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<StoreError> for JobQueryError {
    fn from(e: StoreError) -> Self {
        JobQueryError::Runtime(e.into())
    }
}

/// Submission options.
#[derive(Clone, Debug, Default)]
pub struct SubmitOptions {
    /// Re-run a FAILED or CANCELLED job (same ID, attempt + 1).
    pub force: bool,
    /// Override the job type's outcome policy (not part of the job ID).
    pub outcome_policy: Option<OutcomePolicy>,
}

/// The result of a submission.
#[derive(Debug, Clone)]
pub struct Submission {
    pub job: JobRecord,
    /// False when the same request already existed (returned as it is, not run again).
    pub created: bool,
}

/// A job with its task counts, as `status` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRecord,
    pub tasks: StatusCounts,
    pub progress: f64,
}

/// The engine: a backend, the registry of job types and handlers, and settings.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub backend: Backend,
    pub registry: Registry,
    pub config: EngineConfig,
    pub metrics: Metrics,
    /// Fresh job reads (cancellation checks), shared by tasks asking at the same time.
    pub job_reads: Coalescer<JobId, Option<JobRecord>>,
    /// Fresh "is anything unfinished" answers per (job, group), shared likewise.
    pub unfinished: Coalescer<(JobId, Option<String>), bool>,
}

impl Engine {
    pub fn new(backend: Backend, registry: Registry, config: EngineConfig) -> Self {
        Engine {
            inner: Arc::new(Inner {
                backend,
                registry,
                config,
                metrics: Metrics::default(),
                job_reads: Coalescer::default(),
                unfinished: Coalescer::default(),
            }),
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn controller(
        &self,
        job_type: &str,
    ) -> Result<&Arc<dyn crate::handler::Controller>, SubmitError> {
        self.inner
            .registry
            .controller(job_type)
            .ok_or_else(|| SubmitError::UnknownJobType {
                job_type: job_type.to_owned(),
                known: self
                    .inner
                    .registry
                    .job_types()
                    .map(|c| c.job_type().to_owned())
                    .collect(),
            })
    }

    /// Validate params and compute the job ID without storing anything.
    pub fn normalize(
        &self,
        job_type: &str,
        params: Value,
    ) -> Result<(JobId, Value, u32), SubmitError> {
        let controller = self.controller(job_type)?;
        let params = controller.validate(params)?;
        let id = job_id(job_type, controller.job_version(), &params)?;
        Ok((id, params, controller.job_version()))
    }

    /// Submit a job and expand it at once (the command line's path): the submission's and
    /// the expansion's checks run first (refused: nothing stored), then the job is stored
    /// PENDING under this call's expansion claim, with no `{"expand"}` message, and expanded
    /// in this process. Should the process die before it starts the job, the claim lapses and
    /// the sweeper expands it. The same request returns the existing job (a PENDING one that
    /// nobody is expanding is expanded: its planning was interrupted).
    pub async fn submit(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
    ) -> Result<Submission, SubmitError> {
        self.admit(
            job_type,
            params,
            options,
            Front::Inline,
            failed_or_cancelled,
        )
        .await
    }

    /// The first step of a submission, answering fast whatever the job's size: validate the
    /// params, compute the job ID, run the controller's `check` (what the params refer to),
    /// store the job PENDING and enqueue its expansion; a worker then plans and starts it
    /// ([`Engine::expand`]). The same request returns the existing job unchanged.
    pub async fn accept(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
    ) -> Result<Submission, SubmitError> {
        self.admit(job_type, params, options, Front::Queue, failed_or_cancelled)
            .await
    }

    /// [`Engine::accept`], where `force` re-runs a job whose status passes `rerunnable`.
    pub(crate) async fn accept_with(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
        rerunnable: impl Fn(JobStatus) -> bool,
    ) -> Result<Submission, SubmitError> {
        self.admit(job_type, params, options, Front::Queue, rerunnable)
            .await
    }

    /// One submission path for both front doors: validate once, read the job once, check,
    /// store, then hand the expansion to a worker (`Front::Queue`) or do it here.
    async fn admit(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
        front: Front,
        rerunnable: impl Fn(JobStatus) -> bool,
    ) -> Result<Submission, SubmitError> {
        let (id, params, job_version) = self.normalize(job_type, params)?;
        let span = tracing::error_span!("submit", job_id = %id, job_type);
        async move {
            let existing = self.inner.backend.jobs.get_job(&id).await?;
            let attempt = match existing {
                None => 1,
                Some(job) => {
                    match admission::admit(job.status, job.attempt, options.force, &rerunnable) {
                        Admission::Rerun { attempt } => attempt,
                        Admission::NotRerunnable => {
                            return Err(SubmitError::NotRerunnable {
                                id,
                                status: job.status,
                            });
                        }
                        Admission::Existing => return self.existing(job, front).await,
                    }
                }
            };
            let controller = self.controller(job_type)?;
            match front {
                Front::Queue => controller.check(&params).await,
                Front::Inline => controller.check_all(&params).await,
            }
            .map_err(submit_check_error)?;
            if attempt > 1 {
                info!(
                    previous_attempt = attempt - 1,
                    "re-running the job (--force)"
                );
                self.inner
                    .backend
                    .maintenance
                    .delete_job(&id, Removal::KeepEvents)
                    .await?;
            }
            let owner = (front == Front::Inline).then(expansion::new_owner);
            let now = now_millis();
            let job = JobRecord {
                id: id.clone(),
                job_type: job_type.to_owned(),
                job_version,
                params,
                status: JobStatus::Pending,
                attempt,
                outcome_policy: options
                    .outcome_policy
                    .unwrap_or_else(|| controller.outcome_policy()),
                // Known once the job is expanded.
                barriers: Default::default(),
                planned_tasks: 0,
                result: None,
                error: None,
                created_at: now,
                updated_at: now,
                started_at: None,
                finished_at: None,
                expansion: owner.clone().map(|owner| self.claim_for(owner)),
                revision: Default::default(),
            };
            let job = match self.inner.backend.jobs.insert_job(&job).await? {
                Inserted::Created(revision) => JobRecord { revision, ..job },
                Inserted::Existing(existing) => return self.existing(existing, front).await,
            };
            let Some(owner) = owner else {
                self.inner
                    .backend
                    .queue
                    .send(&[expand_message(&job.id)], Duration::ZERO)
                    .await?;
                return Ok(Submission { job, created: true });
            };
            self.expand_as(&job.id, &owner, Checked::Already).await?;
            Ok(Submission {
                job: self.inner.backend.jobs.get_job(&id).await?.unwrap_or(job),
                created: true,
            })
        }
        .instrument(span)
        .await
    }

    /// The same request again: the stored job as it is; on the command line a PENDING job
    /// that nobody is expanding is expanded first (its planning was interrupted).
    async fn existing(&self, job: JobRecord, front: Front) -> Result<Submission, SubmitError> {
        if front == Front::Queue || job.status != JobStatus::Pending {
            return Ok(Submission {
                job,
                created: false,
            });
        }
        self.expand_as(&job.id, &expansion::new_owner(), Checked::No)
            .await?;
        Ok(Submission {
            job: self
                .inner
                .backend
                .jobs
                .get_job(&job.id)
                .await?
                .unwrap_or(job),
            created: false,
        })
    }

    /// The job with task counts and progress.
    pub async fn status(&self, id: &JobId) -> Result<JobView, JobQueryError> {
        let job = self
            .inner
            .backend
            .jobs
            .get_job(id)
            .await?
            .ok_or_else(|| JobQueryError::NotFound(id.clone()))?;
        let tasks = self.inner.backend.tasks.count_tasks(id, None).await?;
        let progress = if job.status.is_terminal() {
            1.0
        } else {
            let running = self.inner.backend.tasks.running_progress(id).await?;
            crate::schedule::job_progress(&tasks, running)
        };
        Ok(JobView {
            job,
            tasks,
            progress,
        })
    }

    /// Cancel a job: every task not yet running is cancelled at once; running handlers see it
    /// through their context. Cancelling a finished job returns it unchanged.
    pub async fn cancel(&self, id: &JobId) -> Result<JobRecord, JobQueryError> {
        loop {
            let job = self
                .inner
                .backend
                .jobs
                .get_job(id)
                .await?
                .ok_or_else(|| JobQueryError::NotFound(id.clone()))?;
            if job.status.is_terminal() {
                return Ok(job);
            }
            let mut cancelled = job.clone();
            cancelled.status = JobStatus::Cancelled;
            cancelled.finished_at = Some(now_millis());
            cancelled.error = Some(ErrorInfo::new(codes::JOB_CANCELLED, "cancelled on request"));
            if let Some(cancelled) = self.cas_job(&job, cancelled).await? {
                Metrics::inc(&self.inner.metrics.jobs_closed);
                let n = self
                    .inner
                    .backend
                    .tasks
                    .finish_unstarted(
                        id,
                        cancelled.attempt,
                        TaskStatus::Cancelled,
                        &ErrorInfo::new(codes::JOB_CANCELLED, "job cancelled"),
                    )
                    .await
                    .map_err(RuntimeError::from)?;
                info!(job_id = %id, tasks_cancelled = n, "job cancelled");
                return Ok(cancelled);
            }
        }
    }

    /// Compare-and-set a job to `next` (checked against the status machine), with the event
    /// of the change in the same write.
    pub(crate) async fn cas_job(
        &self,
        current: &JobRecord,
        mut next: JobRecord,
    ) -> Result<Option<JobRecord>, RuntimeError> {
        if next.status != current.status {
            if let Err(e) = crate::status::check_job_transition(current.status, next.status) {
                Metrics::inc(&self.inner.metrics.invalid_transitions);
                warn!(job_id = %current.id, error = %e, "refused job transition");
                return Err(e.into());
            }
        }
        next.revision = current.revision.clone();
        next.updated_at = now_millis();
        let events: Vec<_> = job_transition(current, &next).into_iter().collect();
        match self.inner.backend.jobs.update_job(&next, &events).await? {
            Ok(revision) => Ok(Some(JobRecord { revision, ..next })),
            Err(_conflict) => {
                Metrics::inc(&self.inner.metrics.lost_races);
                Ok(None)
            }
        }
    }

    /// Compare-and-set a task to `to`, applying `change` (checked against the status machine),
    /// with the event of the change in the same write.
    pub(crate) async fn cas_task(
        &self,
        current: &TaskRecord,
        to: TaskStatus,
        change: impl FnOnce(&mut TaskRecord),
    ) -> Result<Option<TaskRecord>, RuntimeError> {
        if let Err(e) = crate::status::check_task_transition(current.status, to) {
            Metrics::inc(&self.inner.metrics.invalid_transitions);
            warn!(task_id = %current.id, error = %e, "refused task transition");
            return Err(e.into());
        }
        let mut next = current.clone();
        next.status = to;
        next.updated_at = now_millis();
        if to.is_terminal() {
            next.finished_at = Some(next.updated_at);
            next.lease_until = None;
        }
        change(&mut next);
        let events: Vec<_> = task_transition(current, &next).into_iter().collect();
        match self.inner.backend.tasks.update_task(&next, &events).await? {
            Ok(revision) => Ok(Some(TaskRecord { revision, ..next })),
            Err(_conflict) => {
                Metrics::inc(&self.inner.metrics.lost_races);
                Ok(None)
            }
        }
    }

    /// The job as of a read that started after this call (shared with concurrent callers).
    pub(crate) async fn fresh_job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let jobs = &self.inner.backend.jobs;
        self.inner.job_reads.fresh(id, || jobs.get_job(id)).await
    }

    /// Is any task of the job (or of `group`) unfinished, as of a read that started after this
    /// call (shared with concurrent callers)?
    pub(crate) async fn fresh_unfinished(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<bool, StoreError> {
        let tasks = &self.inner.backend.tasks;
        let key = (job_id.clone(), group.map(str::to_owned));
        self.inner
            .unfinished
            .fresh(&key, || tasks.any_unfinished(job_id, group))
            .await
    }
}

/// What a forced submission re-runs (a replay of poison may re-run more).
fn failed_or_cancelled(status: JobStatus) -> bool {
    matches!(status, JobStatus::Failed | JobStatus::Cancelled)
}

/// Which front door a submission came in by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Front {
    /// HTTP, the queue trigger: accept and enqueue the expansion, answer at once.
    Queue,
    /// The command line: check everything, then expand in this process.
    Inline,
}

fn submit_check_error(e: CheckError) -> SubmitError {
    match e {
        CheckError::Invalid(e) => SubmitError::Invalid(e),
        e @ CheckError::Unavailable { .. } => SubmitError::CheckUnavailable(e.to_string()),
    }
}

/// A duration in milliseconds (saturating).
pub(crate) fn as_millis(d: Duration) -> crate::model::Millis {
    crate::model::Millis::try_from(d.as_millis()).unwrap_or(crate::model::Millis::MAX)
}

/// The message that asks a worker to expand an accepted job.
pub(crate) fn expand_message(id: &JobId) -> String {
    serde_json::to_string(&QueueMessage::Expand { expand: id.clone() })
        .expect("a message of IDs always serializes")
}

/// The queue message of a task attempt: IDs only.
pub(crate) fn message_body(task: &TaskRecord, attempt: u32) -> String {
    encode_message(&TaskMessage {
        job_id: task.job_id.clone(),
        task_id: task.id.clone(),
        attempt,
    })
}

pub(crate) fn encode_message(message: &TaskMessage) -> String {
    serde_json::to_string(message).expect("a message of IDs always serializes")
}

/// The messages of tasks of one job released together: one per task up to [`MESSAGE_SPREAD`]
/// tasks, then bundles of up to `bundle_max` tasks over at least `MESSAGE_SPREAD` messages.
pub(crate) fn message_bodies(
    job_id: &JobId,
    tasks: &[&TaskRecord],
    bundle_max: usize,
) -> Vec<String> {
    let per_message = (tasks.len() / MESSAGE_SPREAD).clamp(1, bundle_max.max(1));
    tasks
        .chunks(per_message)
        .map(|chunk| match chunk {
            [task] => message_body(task, task.attempt),
            _ => serde_json::to_string(&QueueMessage::Bundle {
                job_id: job_id.clone(),
                tasks: chunk.iter().map(|t| (t.id.clone(), t.attempt)).collect(),
            })
            .expect("a message of IDs always serializes"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{self, PlanScope};
    use crate::ids::TaskId;

    fn tasks(n: usize) -> (JobId, Vec<TaskRecord>) {
        let job = crate::ids::job_id("t", 1, &serde_json::json!({})).unwrap();
        let specs = (0..n)
            .map(|i| crate::model::TaskSpec::parallel("add", i))
            .collect();
        let defaults = |_: &str| {
            Some(graph::HandlerDefaults {
                task_version: 1,
                retry: crate::retry::RetryPolicy::NO_RETRY,
                timeout: Duration::from_secs(1),
            })
        };
        let plan = graph::plan(&job, specs, PlanScope::Job, &defaults, 0).unwrap();
        (job.clone(), plan.into_records().collect())
    }

    fn carried(job: &JobId, bodies: &[String]) -> Vec<TaskId> {
        bodies
            .iter()
            .flat_map(|b| {
                serde_json::from_str::<QueueMessage>(b)
                    .unwrap()
                    .into_tasks()
            })
            .map(|m| {
                assert_eq!(&m.job_id, job);
                m.task_id
            })
            .collect()
    }

    #[test]
    fn small_fan_outs_send_one_message_per_task_and_large_ones_bundle() {
        for (n, bundle_max, messages) in [
            (10, 16, 10),
            (64, 16, 64),
            (200, 16, 67),
            (1_000, 16, 67),
            (10_000, 16, 625),
            (1_000, 1, 1_000),
        ] {
            let (job, records) = tasks(n);
            let refs: Vec<&TaskRecord> = records.iter().collect();
            let bodies = message_bodies(&job, &refs, bundle_max);
            assert_eq!(bodies.len(), messages, "{n} tasks, bundle_max {bundle_max}");
            let ids: Vec<TaskId> = records.iter().map(|t| t.id.clone()).collect();
            assert_eq!(carried(&job, &bodies), ids, "every task once, in order");
        }
    }
}
