//! The per-job event stream (`job_started`, `task_started`, `progress_update`,
//! `task_completed`, `task_failed`, `job_completed`), as JSON.

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, TaskId, TaskKey};
use crate::model::{ErrorInfo, JobStatus, Millis, now_millis};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    pub at: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl JobEvent {
    pub fn now(job_id: &JobId, kind: EventKind) -> Self {
        JobEvent {
            job_id: job_id.clone(),
            at: now_millis(),
            kind,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    JobStarted {
        job_type: String,
        attempt: u32,
        planned_tasks: u64,
    },
    TaskStarted {
        task_id: TaskId,
        task: String,
        key: TaskKey,
        attempt: u32,
    },
    ProgressUpdate {
        task_id: TaskId,
        task: String,
        fraction: f64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
    },
    TaskCompleted {
        task_id: TaskId,
        task: String,
        key: TaskKey,
        attempt: u32,
        duration_ms: i64,
    },
    TaskFailed {
        task_id: TaskId,
        task: String,
        key: TaskKey,
        attempt: u32,
        error: ErrorInfo,
        /// A retry is scheduled (the task is in RETRY_WAIT, not FAILED).
        will_retry: bool,
    },
    JobCompleted {
        status: JobStatus,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::JobStarted { .. } => "job_started",
            EventKind::TaskStarted { .. } => "task_started",
            EventKind::ProgressUpdate { .. } => "progress_update",
            EventKind::TaskCompleted { .. } => "task_completed",
            EventKind::TaskFailed { .. } => "task_failed",
            EventKind::JobCompleted { .. } => "job_completed",
        }
    }
}
