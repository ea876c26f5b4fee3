//! The status machines. Every stored transition goes through these two functions.

use crate::model::{JobStatus, TaskStatus};

/// A transition the status machine does not allow: a bug or a lost race, logged and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} transition {from} -> {to} (code INVALID_TRANSITION)")]
pub struct InvalidTransition {
    pub what: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

/// `PENDING -> QUEUED -> RUNNING -> SUCCEEDED | FAILED`, `RUNNING -> RETRY_WAIT -> QUEUED`,
/// `PENDING | QUEUED | RETRY_WAIT -> CANCELLED | SKIPPED`, `RUNNING -> CANCELLED` (cooperative),
/// and `RUNNING -> RUNNING` (a re-delivery taking over a task whose holder's lease expired).
/// `PENDING | QUEUED | RETRY_WAIT | RUNNING -> FAILED` covers poison and planning errors.
pub fn check_task_transition(from: TaskStatus, to: TaskStatus) -> Result<(), InvalidTransition> {
    use TaskStatus::*;
    let allowed = match (from, to) {
        (Pending, Queued) => true,
        (Queued, Running) | (RetryWait, Queued) => true,
        (Running, Running | Succeeded | Failed | RetryWait | Cancelled) => true,
        (Pending | Queued | RetryWait, Cancelled | Skipped | Failed) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(InvalidTransition {
            what: "task",
            from: from.as_str(),
            to: to.as_str(),
        })
    }
}

/// `PENDING -> RUNNING -> SUCCEEDED | COMPLETED_WITH_ERRORS | FAILED | CANCELLED`,
/// `PENDING -> CANCELLED | FAILED`, and a forced re-run `FAILED | CANCELLED -> PENDING`.
pub fn check_job_transition(from: JobStatus, to: JobStatus) -> Result<(), InvalidTransition> {
    use JobStatus::*;
    let allowed = match (from, to) {
        (Pending, Running | Cancelled | Failed) => true,
        (Running, Succeeded | CompletedWithErrors | Failed | Cancelled) => true,
        (Failed | Cancelled, Pending) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(InvalidTransition {
            what: "job",
            from: from.as_str(),
            to: to.as_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole task table: rows are `from`, columns `to` in `TaskStatus::ALL` order
    /// (PENDING QUEUED RUNNING RETRY_WAIT SUCCEEDED FAILED SKIPPED CANCELLED).
    #[test]
    fn task_transition_table() {
        let table = [
            ("PENDING", "01000111"),
            ("QUEUED", "00100111"),
            ("RUNNING", "00111101"),
            ("RETRY_WAIT", "01000111"),
            ("SUCCEEDED", "00000000"),
            ("FAILED", "00000000"),
            ("SKIPPED", "00000000"),
            ("CANCELLED", "00000000"),
        ];
        for (from, row) in table {
            let from: TaskStatus = from.parse().unwrap();
            for (to, allowed) in TaskStatus::ALL.iter().zip(row.chars()) {
                assert_eq!(
                    check_task_transition(from, *to).is_ok(),
                    allowed == '1',
                    "{from} -> {to}"
                );
            }
        }
    }

    /// Columns: PENDING RUNNING SUCCEEDED COMPLETED_WITH_ERRORS FAILED CANCELLED.
    #[test]
    fn job_transition_table() {
        let table = [
            ("PENDING", "010011"),
            ("RUNNING", "001111"),
            ("SUCCEEDED", "000000"),
            ("COMPLETED_WITH_ERRORS", "000000"),
            ("FAILED", "100000"),
            ("CANCELLED", "100000"),
        ];
        for (from, row) in table {
            let from: JobStatus = from.parse().unwrap();
            for (to, allowed) in JobStatus::ALL.iter().zip(row.chars()) {
                assert_eq!(
                    check_job_transition(from, *to).is_ok(),
                    allowed == '1',
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn error_names_both_states() {
        let err = check_task_transition(TaskStatus::Succeeded, TaskStatus::Running).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid task transition SUCCEEDED -> RUNNING (code INVALID_TRANSITION)"
        );
    }
}
