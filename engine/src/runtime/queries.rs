//! Reads and administration the front doors need, so that they use the runtime's queries and
//! never the ports: listings, a task, the settled event log, removal of a finished job,
//! gauges and a readiness probe.

use std::time::Duration;

use super::{Engine, RuntimeError};
use crate::events::JobEvent;
use crate::ids::{JobId, TaskId};
use crate::model::{JobRecord, JobStatus, StatusCounts, TaskRecord, now_millis};
use crate::ports::{Page, PageRequest, Removal, StoreError, TaskQuery};

/// Most events a page of the log holds.
pub const EVENTS_PAGE_MAX: usize = 10_000;

impl Engine {
    /// A page of the jobs, newest first.
    pub async fn list_jobs(&self, page: PageRequest) -> Result<Page<JobRecord>, StoreError> {
        self.inner.backend.jobs.list_jobs(page).await
    }

    /// A page of a job's tasks, in a stable order, filtered by `query`.
    pub async fn list_tasks(
        &self,
        id: &JobId,
        query: &TaskQuery,
        page: PageRequest,
    ) -> Result<Page<TaskRecord>, StoreError> {
        self.inner.backend.tasks.list_tasks(id, query, page).await
    }

    /// One task of a job.
    pub async fn task(
        &self,
        id: &JobId,
        task_id: &TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.backend.tasks.get_task(id, task_id).await
    }

    /// The job's task counts by status.
    pub async fn task_counts(&self, id: &JobId) -> Result<StatusCounts, StoreError> {
        self.inner.backend.tasks.count_tasks(id, None).await
    }

    /// Every job's status (for gauges: a scan of the job records).
    pub async fn job_statuses(&self) -> Result<Vec<(JobId, JobStatus)>, StoreError> {
        self.inner.backend.jobs.job_statuses().await
    }

    /// Messages on the task queues, by queue.
    pub async fn queue_depth(&self) -> Result<crate::ports::QueueDepth, RuntimeError> {
        Ok(self.inner.backend.queue.depth().await?)
    }

    /// The job's events after cursor `after`, oldest first (at most `limit`, capped at
    /// [`EVENTS_PAGE_MAX`]), up to where the log is settled (on Azure, 2 s behind the
    /// writers' clocks): a reader following the cursor never steps past an event committed
    /// late, so it gets every event exactly once.
    pub async fn events_after(
        &self,
        id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, StoreError> {
        let events = &self.inner.backend.events;
        let settled = events.settled_cursor(now_millis());
        let mut page = events
            .events_after(id, after, limit.clamp(1, EVENTS_PAGE_MAX))
            .await?;
        page.retain(|(seq, _)| *seq < settled);
        Ok(page)
    }

    /// How long after its commit an event may still be unsettled: a reader that knows no
    /// more events can come waits this long before its last read.
    pub fn event_settle_delay(&self) -> Duration {
        self.inner.backend.events.settle_delay()
    }

    /// Remove a job with its tasks, queued messages and events (the caller checks that it is
    /// finished).
    pub async fn delete_job(&self, id: &JobId) -> Result<(), StoreError> {
        self.inner
            .backend
            .maintenance
            .delete_job(id, Removal::Everything)
            .await
    }

    /// Storage answers: one read of the job listing.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.list_jobs(PageRequest::first(1)).await.map(drop)
    }
}
