//! The thin I/O shell around the pure functions: submission, workers, completion, sweeping.

mod coalesce;
mod finish;
mod lease;
mod poison;
mod push;
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
use crate::graph::{self, PlanError, PlanScope};
use crate::handler::{CheckError, Registry, ValidationError};
use crate::ids::{CanonicalJsonError, JobId, job_id};
use crate::model::{
    ErrorInfo, JobRecord, JobStatus, OutcomePolicy, QueueMessage, StatusCounts, TaskMessage,
    TaskRecord, TaskStatus, codes, now_millis,
};
use crate::ports::{Backend, Inserted, QueueError, Removal, StoreError};
use crate::status::InvalidTransition;

use coalesce::Coalescer;
pub use poison::{Decision, POISON_LIST_MAX, PoisonContent, PoisonEntry, ReplayError, Replayed};
pub use push::{HostedAnswer, HostedMessage};
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

    /// Submit a job and expand it at once (the command line's path): [`Engine::accept`], then
    /// [`Engine::expand`] in this process. The same request returns the existing job (a
    /// PENDING one is expanded: its planning was interrupted).
    pub async fn submit(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
    ) -> Result<Submission, SubmitError> {
        // The expansion's check first (for a new job or a re-run): a command-line user is
        // refused at once, nothing stored.
        let (id, normalized, _) = self.normalize(job_type, params.clone())?;
        let checked = if options.force || self.inner.backend.jobs.get_job(&id).await?.is_none() {
            self.controller(job_type)?
                .check_at_expansion(&normalized)
                .await
                .map_err(submit_check_error)?;
            Checked::Already
        } else {
            // An existing PENDING job is expanded below, with its check.
            Checked::No
        };
        let submission = self.accept(job_type, params, options).await?;
        if submission.job.status != JobStatus::Pending {
            return Ok(submission);
        }
        self.expand_checked(&submission.job.id, checked).await?;
        let job = self
            .inner
            .backend
            .jobs
            .get_job(&submission.job.id)
            .await?
            .unwrap_or(submission.job);
        Ok(Submission {
            job,
            created: submission.created,
        })
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
        self.accept_with(job_type, params, options, |s| {
            matches!(s, JobStatus::Failed | JobStatus::Cancelled)
        })
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
        let (id, params, job_version) = self.normalize(job_type, params)?;
        let span = tracing::error_span!("submit", job_id = %id, job_type);
        async move {
            let mut attempt = 1;
            if let Some(existing) = self.inner.backend.jobs.get_job(&id).await? {
                match existing.status {
                    status if options.force && rerunnable(status) => {
                        info!(
                            previous_attempt = existing.attempt,
                            "re-running the job (--force)"
                        );
                        attempt = existing.attempt + 1;
                        self.inner
                            .backend
                            .maintenance
                            .delete_job(&id, Removal::KeepEvents)
                            .await?;
                    }
                    status if options.force => {
                        return Err(SubmitError::NotRerunnable { id, status });
                    }
                    _ => {
                        return Ok(Submission {
                            job: existing,
                            created: false,
                        });
                    }
                }
            }
            let controller = self.controller(job_type)?;
            controller
                .check(&params)
                .await
                .map_err(submit_check_error)?;
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
                revision: Default::default(),
            };
            let job = match self.inner.backend.jobs.insert_job(&job).await? {
                Inserted::Created(revision) => JobRecord { revision, ..job },
                Inserted::Existing(existing) => {
                    return Ok(Submission {
                        job: existing,
                        created: false,
                    });
                }
            };
            self.inner
                .backend
                .queue
                .send(&[expand_message(&job.id)], Duration::ZERO)
                .await?;
            Ok(Submission { job, created: true })
        }
        .instrument(span)
        .await
    }

    /// The second step of a submission: plan an accepted job, store its tasks, start it.
    /// Idempotent (tasks are inserted by ID; a job no longer PENDING is left alone). A plan
    /// that cannot be built closes the job FAILED with `INVALID_PLAN`: it never stays PENDING.
    pub async fn expand(&self, id: &JobId) -> Result<(), RuntimeError> {
        self.expand_checked(id, Checked::No).await
    }

    async fn expand_checked(&self, id: &JobId, checked: Checked) -> Result<(), RuntimeError> {
        let Some(job) = self.inner.backend.jobs.get_job(id).await? else {
            return Ok(());
        };
        if job.status != JobStatus::Pending {
            return Ok(());
        }
        if checked == Checked::No {
            if let Some(controller) = self.inner.registry.controller(&job.job_type) {
                match controller.check_at_expansion(&job.params).await {
                    Ok(()) => {}
                    Err(CheckError::Invalid(e)) => {
                        warn!(job_id = %id, field = %e.field, error = %e.reason, "the accepted job's params are refused at expansion");
                        let message = format!("{}: {}", e.field, e.reason);
                        return self.fail_pending(id, codes::INVALID_PARAMS, message).await;
                    }
                    Err(e @ CheckError::Unavailable { .. }) => {
                        return Err(RuntimeError::CheckUnavailable(e.to_string()));
                    }
                }
            }
        }
        let plan = match self.plan_of(&job) {
            Ok(plan) => plan,
            Err(message) => {
                warn!(job_id = %id, error = %message, "the accepted job cannot be planned");
                return self.fail_pending(id, codes::INVALID_PLAN, message).await;
            }
        };
        // The record learns its barriers and size before any task runs: a group member that
        // finishes at once must find the barrier it wakes.
        let job = if job.barriers != plan.barriers || job.planned_tasks != plan.len() as u64 {
            let mut sized = job.clone();
            sized.barriers = plan.barriers.clone();
            sized.planned_tasks = plan.len() as u64;
            match self.cas_job(&job, sized).await? {
                Some(sized) => sized,
                None => return Ok(()), // another expansion (or a cancel) got there first
            }
        } else {
            job
        };
        self.store_tasks(&job, plan.into_records()).await?;
        self.start(job).await?;
        Ok(())
    }

    /// Close a PENDING job FAILED with `code` (a job already further is left alone).
    pub(crate) async fn fail_pending(
        &self,
        job_id: &JobId,
        code: &str,
        message: String,
    ) -> Result<(), RuntimeError> {
        let Some(job) = self.inner.backend.jobs.get_job(job_id).await? else {
            return Ok(());
        };
        if job.status != JobStatus::Pending {
            return Ok(());
        }
        let mut failed = job.clone();
        failed.status = JobStatus::Failed;
        failed.finished_at = Some(now_millis());
        failed.error = Some(ErrorInfo::new(code, message));
        if self.cas_job(&job, failed).await?.is_some() {
            Metrics::inc(&self.inner.metrics.jobs_closed);
        }
        Ok(())
    }

    /// The validated plan of a job, or why there is none.
    fn plan_of(&self, job: &JobRecord) -> Result<graph::Plan, String> {
        let controller = self
            .inner
            .registry
            .controller(&job.job_type)
            .ok_or_else(|| {
                format!(
                    "no controller for job type {:?} in this worker",
                    job.job_type
                )
            })?;
        let specs = controller
            .plan(&job.id, &job.params)
            .map_err(|e| e.to_string())?;
        graph::plan(
            &job.id,
            specs,
            PlanScope::Job,
            &|n| self.inner.registry.handler_defaults(n),
            now_millis(),
        )
        .map_err(|e| e.to_string())
    }

    /// Insert tasks in chunks, sending the messages of each chunk's root tasks right after it.
    pub(crate) async fn store_tasks(
        &self,
        job: &JobRecord,
        tasks: impl Iterator<Item = TaskRecord>,
    ) -> Result<(), RuntimeError> {
        let chunk = self.inner.config.insert_chunk.max(1);
        let mut tasks = tasks.peekable();
        let mut batch = Vec::with_capacity(chunk);
        while tasks.peek().is_some() {
            batch.clear();
            batch.extend(tasks.by_ref().take(chunk).map(|mut t| {
                t.job_attempt = job.attempt;
                t
            }));
            self.inner
                .backend
                .tasks
                .insert_tasks(&job.id, &batch)
                .await?;
            let queued: Vec<&TaskRecord> = batch
                .iter()
                .filter(|t| t.status == TaskStatus::Queued)
                .collect();
            let bodies = message_bodies(&job.id, &queued, self.inner.config.bundle_max);
            if !bodies.is_empty() {
                self.inner
                    .backend
                    .queue
                    .send(&bodies, Duration::ZERO)
                    .await?;
            }
        }
        Ok(())
    }

    /// PENDING -> RUNNING, then a completion check (everything may have finished already).
    async fn start(&self, job: JobRecord) -> Result<JobRecord, RuntimeError> {
        let mut running = job.clone();
        running.status = JobStatus::Running;
        running.started_at = Some(now_millis());
        match self.cas_job(&job, running).await? {
            Some(running) => {
                self.check_completion(&running.id).await?;
                Ok(self
                    .inner
                    .backend
                    .jobs
                    .get_job(&running.id)
                    .await?
                    .unwrap_or(running))
            }
            None => {
                // Cancelled (or failed fast) while planning: sweep what the last chunks added.
                let current = self
                    .inner
                    .backend
                    .jobs
                    .get_job(&job.id)
                    .await?
                    .unwrap_or(job);
                if current.status.is_terminal() {
                    let error =
                        ErrorInfo::new(codes::JOB_CANCELLED, format!("job is {}", current.status));
                    self.inner
                        .backend
                        .tasks
                        .finish_unstarted(
                            &current.id,
                            current.attempt,
                            TaskStatus::Cancelled,
                            &error,
                        )
                        .await?;
                }
                Ok(current)
            }
        }
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

/// The message that asks a worker to expand an accepted job.
/// Whether the expansion's check already ran (the command line runs it before storing).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checked {
    Already,
    No,
}

fn submit_check_error(e: CheckError) -> SubmitError {
    match e {
        CheckError::Invalid(e) => SubmitError::Invalid(e),
        e @ CheckError::Unavailable { .. } => SubmitError::CheckUnavailable(e.to_string()),
    }
}

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
