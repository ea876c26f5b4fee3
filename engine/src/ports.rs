//! The ports: small capability traits a backend implements. The engine names no database,
//! cloud or protocol; the embedded SQLite crate and the Azure crate implement these.
//!
//! Shaped for Azure Table Storage and Storage Queues as much as for SQLite:
//! - every update is a compare-and-set on an opaque [`Revision`] (row version / ETag); losing
//!   the race is the expected `Err(Conflict)` inside `Ok`, not a `StoreError` (sled's habit);
//! - inserts come in batches (Table Storage: entity-group transactions of up to 100);
//! - listings are paged with an opaque continuation token (Table Storage: 1 000 per page);
//! - queue messages are small strings (64 KiB limit) with a lease (visibility timeout), a
//!   dequeue count, delayed delivery and a poison queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::events::JobEvent;
use crate::ids::{JobId, TaskId};
use crate::model::{
    ErrorInfo, JobRecord, JobStatus, Millis, Progress, Revision, StatusCounts, TaskRecord,
    TaskStatus,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The record changed since it was read: another writer won the compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// A compare-and-set outcome: the new revision, or the expected conflict.
pub type Cas = Result<Revision, Conflict>;

/// A storage failure (not a lost race).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("stored record is corrupt: {message}")]
    Corrupt { message: String },
    /// A page cursor this listing did not give out (a client's mistake, not an outage).
    #[error("not a cursor of this listing: {cursor:?}")]
    InvalidCursor { cursor: String },
}

impl StoreError {
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// A queue failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("queue unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The lease expired and someone else received the message (pop receipt mismatch).
    #[error("lease lost on message {message_id}")]
    LeaseLost { message_id: String },
}

impl QueueError {
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        QueueError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Continuation token for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Which page to read.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: usize,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { after: None, limit }
    }
}

/// A filter over one job's tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Members of this group.
    pub group: Option<String>,
    pub status: Option<TaskStatus>,
}

/// Whether an insert created the record.
#[derive(Debug)]
pub enum Inserted<T> {
    Created(Revision),
    Existing(T),
}

/// Jobs, each updated by compare-and-set.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Insert if absent; an existing job with that ID is returned untouched.
    async fn insert_job(&self, job: &JobRecord) -> Result<Inserted<JobRecord>, StoreError>;
    async fn get_job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError>;
    /// Replace the job if its stored revision is still `job.revision`, and store `events`
    /// in the same write: both or neither (the event log tells the whole story).
    async fn update_job(&self, job: &JobRecord, events: &[JobEvent]) -> Result<Cas, StoreError>;
    /// Newest first.
    async fn list_jobs(&self, page: PageRequest) -> Result<Page<JobRecord>, StoreError>;
    /// Every job's ID and status (a scan of the job records, not of their tasks: for gauges).
    async fn job_statuses(&self) -> Result<Vec<(JobId, JobStatus)>, StoreError>;
}

/// Reads of a job's tasks.
#[async_trait]
pub trait TaskReads: Send + Sync + 'static {
    async fn get_task(&self, job_id: &JobId, id: &TaskId)
    -> Result<Option<TaskRecord>, StoreError>;
    /// Statuses of several tasks of one job (absent IDs are left out).
    async fn task_statuses(
        &self,
        job_id: &JobId,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskStatus)>, StoreError>;
    /// Sum of the progress fractions of the job's RUNNING tasks.
    async fn running_progress(&self, job_id: &JobId) -> Result<f64, StoreError>;
    /// Tasks of one job in a stable order, paged.
    async fn list_tasks(
        &self,
        job_id: &JobId,
        query: &TaskQuery,
        page: PageRequest,
    ) -> Result<Page<TaskRecord>, StoreError>;
    /// IDs of the tasks whose `depends_on` lists `id`.
    async fn dependents(&self, job_id: &JobId, id: &TaskId) -> Result<Vec<TaskId>, StoreError>;
    /// Counts by status, of the whole job or of one group.
    async fn count_tasks(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<StatusCounts, StoreError>;
    /// Is any task not terminal: in the job, or (with `group`) among the group's members and
    /// the orchestrators feeding it? Must be cheap: it runs after every task.
    async fn any_unfinished(&self, job_id: &JobId, group: Option<&str>)
    -> Result<bool, StoreError>;
}

/// Writes of a job's tasks: inserts, compare-and-set updates, the bulk end of unstarted tasks.
#[async_trait]
pub trait TaskWrites: Send + Sync + 'static {
    /// Insert the tasks whose IDs are absent (idempotent); returns how many were created.
    /// All tasks belong to one job; backends batch them (100 per Table Storage transaction).
    async fn insert_tasks(&self, job_id: &JobId, tasks: &[TaskRecord]) -> Result<u64, StoreError>;
    /// Replace the task if its stored revision is still `task.revision`, and store `events`
    /// in the same write: both or neither.
    async fn update_task(&self, task: &TaskRecord, events: &[JobEvent]) -> Result<Cas, StoreError>;
    /// Move every PENDING / QUEUED / RETRY_WAIT task of the job's attempt `job_attempt` to `to`
    /// (CANCELLED or SKIPPED) with `error`, changing their revisions. Tasks of another attempt
    /// are left alone: a late follow-up of a cancelled attempt never ends a re-run's tasks. Returns how many moved. Each write that moves
    /// tasks stores, in the same write, a `tasks_ended` event (of `job_attempt`) with the
    /// number it moved, so the events' counts add up to the tasks moved.
    async fn finish_unstarted(
        &self,
        job_id: &JobId,
        job_attempt: u32,
        to: TaskStatus,
        error: &ErrorInfo,
    ) -> Result<u64, StoreError>;
}

/// A running task's advisory progress (the one write a handler makes, through its context).
#[async_trait]
pub trait TaskProgress: Send + Sync + 'static {
    /// Advisory progress: written without a compare-and-set and without changing the
    /// revision, with its `progress_update` event in the same write.
    async fn set_progress(
        &self,
        job_id: &JobId,
        id: &TaskId,
        progress: &Progress,
        event: &JobEvent,
    ) -> Result<(), StoreError>;
}

/// Every task port: what a backend implements and the runtime holds.
pub trait TaskStore: TaskReads + TaskWrites + TaskProgress {}

impl<T: TaskReads + TaskWrites + TaskProgress + ?Sized> TaskStore for T {}

/// A task queue with leases (visibility timeouts), like Azure Storage Queues.
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Enqueue message bodies, visible after `delay`.
    async fn send(&self, bodies: &[String], delay: Duration) -> Result<(), QueueError>;
    /// Receive up to `max` visible messages, each hidden for `lease`; the dequeue count of each
    /// goes up by one.
    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// Hide the message for `lease` from now; updates `delivery.receipt`.
    async fn extend_lease(
        &self,
        delivery: &mut Delivery,
        lease: Duration,
    ) -> Result<(), QueueError>;
    async fn delete(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Move the message to the poison queue.
    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// How many messages the queue and its poison queue hold (approximate on Azure).
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
    /// Wait until messages may be available, at most `max_wait` (a hint, not a promise).
    async fn wait_for_messages(&self, max_wait: Duration) {
        tokio::time::sleep(max_wait).await;
    }
}

/// The poison queue's administration (listing, removal): apart from delivery, which only
/// moves a message there ([`TaskQueue::dead_letter`]).
#[async_trait]
pub trait PoisonQueue: Send + Sync + 'static {
    /// The oldest messages of the poison queue, at most `limit`, oldest first. Azure Storage
    /// Queues can show at most 32 at a time (a peek), so a listing is never longer than that
    /// there.
    async fn poison_messages(&self, limit: usize) -> Result<Vec<PoisonMessage>, QueueError>;
    /// Remove a message from the poison queue; `false` when it holds none with this ID.
    async fn remove_poison(&self, id: &str) -> Result<bool, QueueError>;
}

/// A message in the poison queue: one delivered too often without an outcome, or one that
/// could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoisonMessage {
    /// Stable while the message stays in the poison queue.
    pub id: String,
    pub body: String,
    /// When it entered the poison queue (ms since the epoch).
    pub poisoned_at: Millis,
}

/// Messages in the task queue (visible or not) and in its poison queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    pub messages: u64,
    pub poison: u64,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    /// Proves the lease (pop receipt); changes on every extension.
    pub receipt: String,
    pub dequeue_count: u32,
    pub body: String,
}

/// The per-job event stream.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The cursor below which the log is settled at `now` (ms): no event with a lower
    /// sequence number can still be committed. A reader that follows the log with a cursor
    /// (a live stream, `?after=N` pages) reads only below it, so it never steps past an event
    /// committed late. `u64::MAX` (the default) when sequence numbers follow commit order.
    fn settled_cursor(&self, _now: Millis) -> u64 {
        u64::MAX
    }
    /// How long after its commit an event may still be above [`EventLog::settled_cursor`]:
    /// a reader that knows no more events can come waits this long before its last read.
    /// Zero (the default) when sequence numbers follow commit order.
    fn settle_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Events of a job with sequence numbers greater than `after`, oldest first.
    async fn events_after(
        &self,
        job_id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, StoreError>;
}

/// What the sweeper needs: find stranded work and expired jobs.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// Tasks (of any job) in `status` not updated since `updated_before`.
    async fn stale_tasks(
        &self,
        status: TaskStatus,
        updated_before: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError>;
    /// PENDING jobs created before `created_before` (a submitter died mid-plan).
    async fn stale_pending_jobs(
        &self,
        created_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError>;
    /// Terminal jobs finished before `finished_before`.
    async fn jobs_finished_before(
        &self,
        finished_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobId>, StoreError>;
    /// Remove a job with its tasks and the messages still queued for them; its events too
    /// unless `removal` keeps them (a forced re-run keeps the earlier attempts' story).
    async fn delete_job(&self, id: &JobId, removal: Removal) -> Result<(), StoreError>;
}

/// What [`Maintenance::delete_job`] removes besides the job, its tasks and their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The events too (retention, an explicit delete).
    Everything,
    /// The events stay (a forced re-run: the earlier attempts' events remain readable).
    KeepEvents,
}

/// Every port of one backend, as the runtime uses them.
#[derive(Clone)]
pub struct Backend {
    pub jobs: Arc<dyn JobStore>,
    pub tasks: Arc<dyn TaskStore>,
    pub queue: Arc<dyn TaskQueue>,
    pub poison: Arc<dyn PoisonQueue>,
    pub events: Arc<dyn EventLog>,
    pub maintenance: Arc<dyn Maintenance>,
}

impl Backend {
    /// A backend that implements every port in one type.
    pub fn from_all<B>(backend: Arc<B>) -> Self
    where
        B: JobStore + TaskStore + TaskQueue + PoisonQueue + EventLog + Maintenance,
    {
        Backend {
            jobs: backend.clone(),
            tasks: backend.clone(),
            queue: backend.clone(),
            poison: backend.clone(),
            events: backend.clone(),
            maintenance: backend,
        }
    }
}
