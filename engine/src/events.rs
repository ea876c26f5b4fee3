//! The per-job event stream, as JSON: `job_started`, `task_started`, `progress_update`,
//! `task_completed`, `task_failed`, `task_cancelled`, `task_skipped`, `tasks_ended` (many
//! unstarted tasks closed at once), `job_completed`.
//!
//! Every status change has its event, derived from the records by [`task_transition`] and
//! [`job_transition`] and stored in the same write as the change (the backends' contract),
//! so a client replaying the stream can count every task's end.

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, TaskId, TaskKey};
use crate::model::{ErrorInfo, JobRecord, JobStatus, Millis, TaskRecord, TaskStatus, now_millis};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    /// The job's attempt (1, then + 1 per forced re-run): a re-run keeps earlier events.
    #[serde(default = "first_attempt")]
    pub job_attempt: u32,
    pub at: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

fn first_attempt() -> u32 {
    1
}

impl JobEvent {
    pub fn now(job_id: &JobId, job_attempt: u32, kind: EventKind) -> Self {
        JobEvent {
            job_id: job_id.clone(),
            job_attempt,
            at: now_millis(),
            kind,
        }
    }

    /// Does this event end a task (or, for `tasks_ended`, several)?
    pub fn ends_tasks(&self) -> u64 {
        match &self.kind {
            EventKind::TaskCompleted { .. }
            | EventKind::TaskCancelled { .. }
            | EventKind::TaskSkipped { .. }
            | EventKind::TaskFailed {
                will_retry: false, ..
            } => 1,
            EventKind::TasksEnded { count, .. } => *count,
            _ => 0,
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
    /// A task was cancelled (job closed while it ran or was about to run).
    TaskCancelled {
        task_id: TaskId,
        task: String,
        key: TaskKey,
        attempt: u32,
        error: ErrorInfo,
    },
    /// A task that never ran because what it waited for did not succeed.
    TaskSkipped {
        task_id: TaskId,
        task: String,
        key: TaskKey,
        error: ErrorInfo,
    },
    /// `count` tasks that had not started were closed at once (job cancelled or failed fast).
    TasksEnded {
        status: TaskStatus,
        count: u64,
        error: ErrorInfo,
    },
    JobCompleted {
        status: JobStatus,
    },
}

impl EventKind {
    /// Every event type's name, as `name` spells it.
    pub const NAMES: &'static [&'static str] = &[
        "job_started",
        "task_started",
        "progress_update",
        "task_completed",
        "task_failed",
        "task_cancelled",
        "task_skipped",
        "tasks_ended",
        "job_completed",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            EventKind::JobStarted { .. } => "job_started",
            EventKind::TaskStarted { .. } => "task_started",
            EventKind::ProgressUpdate { .. } => "progress_update",
            EventKind::TaskCompleted { .. } => "task_completed",
            EventKind::TaskFailed { .. } => "task_failed",
            EventKind::TaskCancelled { .. } => "task_cancelled",
            EventKind::TaskSkipped { .. } => "task_skipped",
            EventKind::TasksEnded { .. } => "tasks_ended",
            EventKind::JobCompleted { .. } => "job_completed",
        }
    }
}

/// The event of a task's change from `prev` to `next`, if it is one the stream reports: a
/// start (takeovers included), or an end (a failed attempt with a retry is `task_failed`
/// with `will_retry`). Heartbeats and releases have none.
pub fn task_transition(prev: &TaskRecord, next: &TaskRecord) -> Option<JobEvent> {
    let error = || {
        next.error.clone().unwrap_or_else(|| {
            ErrorInfo::new(crate::model::codes::TASK_FAILED, "no error recorded")
        })
    };
    let kind = match next.status {
        TaskStatus::Running if next.starts > prev.starts => EventKind::TaskStarted {
            task_id: next.id.clone(),
            task: next.task.clone(),
            key: next.key.clone(),
            attempt: next.attempt,
        },
        _ if next.status == prev.status => return None,
        TaskStatus::Succeeded => EventKind::TaskCompleted {
            task_id: next.id.clone(),
            task: next.task.clone(),
            key: next.key.clone(),
            attempt: next.attempt,
            duration_ms: next.finished_at.unwrap_or(next.updated_at)
                - next.started_at.unwrap_or(next.updated_at),
        },
        TaskStatus::Failed | TaskStatus::RetryWait => EventKind::TaskFailed {
            task_id: next.id.clone(),
            task: next.task.clone(),
            key: next.key.clone(),
            attempt: prev.attempt,
            error: error(),
            will_retry: next.status == TaskStatus::RetryWait,
        },
        TaskStatus::Cancelled => EventKind::TaskCancelled {
            task_id: next.id.clone(),
            task: next.task.clone(),
            key: next.key.clone(),
            attempt: next.attempt,
            error: error(),
        },
        TaskStatus::Skipped => EventKind::TaskSkipped {
            task_id: next.id.clone(),
            task: next.task.clone(),
            key: next.key.clone(),
            error: error(),
        },
        TaskStatus::Pending | TaskStatus::Queued | TaskStatus::Running => return None,
    };
    Some(JobEvent {
        job_id: next.job_id.clone(),
        job_attempt: next.job_attempt,
        at: next.updated_at,
        kind,
    })
}

/// The event of a job's change from `prev` to `next`: `job_started` or `job_completed`.
pub fn job_transition(prev: &JobRecord, next: &JobRecord) -> Option<JobEvent> {
    let kind = match (prev.status, next.status) {
        (a, b) if a == b => return None,
        (_, JobStatus::Running) => EventKind::JobStarted {
            job_type: next.job_type.clone(),
            attempt: next.attempt,
            planned_tasks: next.planned_tasks,
        },
        (_, status) if status.is_terminal() => EventKind::JobCompleted { status },
        _ => return None,
    };
    Some(JobEvent {
        job_id: next.id.clone(),
        job_attempt: next.attempt,
        at: next.updated_at,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskSpec;

    fn task(status: TaskStatus) -> TaskRecord {
        let job = crate::ids::job_id("t", 1, &serde_json::json!({})).unwrap();
        let defaults = |_: &str| {
            Some(crate::graph::HandlerDefaults {
                task_version: 1,
                retry: crate::retry::RetryPolicy::NO_RETRY,
                timeout: std::time::Duration::from_secs(1),
            })
        };
        let plan = crate::graph::plan(
            &job,
            vec![TaskSpec::parallel("t", 0)],
            crate::graph::PlanScope::Job,
            &defaults,
            0,
        )
        .unwrap();
        let mut t = plan.into_records().next().unwrap();
        t.status = status;
        t.job_attempt = 3;
        t
    }

    /// (from, to, starts added, attempt added, expected event name)
    #[test]
    fn every_start_and_end_has_its_event_and_nothing_else_does() {
        use TaskStatus::*;
        for (from, to, started, retried, expected) in [
            (Queued, Running, 1, 0, Some("task_started")),
            (Running, Running, 1, 0, Some("task_started")), // a lease takeover
            (Running, Running, 0, 0, None),                 // a heartbeat
            (Pending, Queued, 0, 0, None),                  // a release
            (RetryWait, Queued, 0, 0, None),
            (Running, Succeeded, 0, 0, Some("task_completed")),
            (Running, Failed, 0, 0, Some("task_failed")),
            (Running, RetryWait, 0, 1, Some("task_failed")),
            (Running, Cancelled, 0, 0, Some("task_cancelled")),
            (Queued, Cancelled, 0, 0, Some("task_cancelled")),
            (Pending, Skipped, 0, 0, Some("task_skipped")),
        ] {
            let prev = task(from);
            let mut next = prev.clone();
            next.status = to;
            next.starts += started;
            next.attempt += retried;
            let event = task_transition(&prev, &next);
            assert_eq!(
                event.as_ref().map(|e| e.kind.name()),
                expected,
                "{from} -> {to}"
            );
            if let Some(e) = event {
                assert_eq!(e.job_attempt, 3, "stamped with the task's job attempt");
                let ends = u64::from(to.is_terminal());
                assert_eq!(e.ends_tasks(), ends, "{from} -> {to} ends the task");
            }
        }
    }

    #[test]
    fn a_retry_reports_the_failed_attempt() {
        let prev = task(TaskStatus::Running);
        let mut next = prev.clone();
        next.status = TaskStatus::RetryWait;
        next.attempt = 2;
        let e = task_transition(&prev, &next).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::TaskFailed {
                attempt: 1,
                will_retry: true,
                ..
            }
        ));
    }
}
