//! Delivery triage: what to do with a task message given the task's stored state. Pure: the
//! polling worker and the push entry point (Functions host) gather the facts and both call
//! [`triage`], so the two delivery modes cannot drift apart.

use crate::ids::JobId;
use crate::model::{Millis, QueueMessage, TaskMessage, TaskRecord, TaskStatus};

/// The facts of a task record that decide a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskState {
    pub status: TaskStatus,
    pub attempt: u32,
    /// RUNNING: the holder's lease.
    pub lease_until: Option<Millis>,
    /// RETRY_WAIT: not before this instant.
    pub not_before: Option<Millis>,
}

impl TaskState {
    pub fn of(task: &TaskRecord) -> Self {
        TaskState {
            status: task.status,
            attempt: task.attempt,
            lease_until: task.lease_until,
            not_before: task.not_before,
        }
    }
}

/// One delivery of a task message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryFacts {
    /// The attempt the message is for.
    pub attempt: u32,
    /// How many times the queue delivered this message (1 the first time).
    pub dequeue_count: u32,
    /// Deliveries without an outcome before a message is poison.
    pub max_dequeue: u32,
    pub now: Millis,
}

/// What to do with the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No such task (job removed or re-planned): drop the message.
    UnknownTask,
    /// Deliver again at `until` (held by a live lease, or a retry's backoff not over).
    Postpone { until: Millis },
    /// Delivered too often without an outcome: dead-letter, the task FAILS `POISONED`.
    Poison,
    /// Already finished: redo the idempotent follow-up (a crash may have interrupted it),
    /// then drop the message.
    Finished,
    /// For an older attempt than the stored one: drop the message.
    Stale,
    /// The task was never released (PENDING): drop the message.
    NeverReleased,
    /// A retry whose backoff is over: RETRY_WAIT -> QUEUED, then run.
    ReleaseRetry,
    /// Run the handler: QUEUED -> RUNNING, or RUNNING -> RUNNING taking over an expired lease.
    Run { takeover: bool },
}

/// A delivery this close (ms) to the end of a retry's backoff runs now.
pub const EARLY_SLACK: Millis = 50;
/// A postponed delivery for a held task comes back this long (ms) after the lease ends.
pub const LEASE_MARGIN: Millis = 100;

/// Decide a task delivery. Order matters: a live lease postpones even a re-delivered message
/// (its holder is still working), poison wins over everything else unfinished, and a finished
/// task is never run again.
pub fn triage(task: Option<TaskState>, delivery: DeliveryFacts) -> Decision {
    let Some(task) = task else {
        return Decision::UnknownTask;
    };
    let now = delivery.now;
    if task.status == TaskStatus::Running
        && let Some(lease_until) = task.lease_until.filter(|&l| l > now)
    {
        return Decision::Postpone {
            until: lease_until + LEASE_MARGIN,
        };
    }
    if delivery.dequeue_count > delivery.max_dequeue.max(1) && !task.status.is_terminal() {
        return Decision::Poison;
    }
    if task.status.is_terminal() {
        return Decision::Finished;
    }
    if delivery.attempt < task.attempt {
        return Decision::Stale;
    }
    match task.status {
        TaskStatus::Pending => Decision::NeverReleased,
        TaskStatus::RetryWait => {
            let not_before = task.not_before.unwrap_or(0);
            if not_before - now > EARLY_SLACK {
                Decision::Postpone { until: not_before }
            } else {
                Decision::ReleaseRetry
            }
        }
        TaskStatus::Running => Decision::Run { takeover: true },
        _ => Decision::Run { takeover: false },
    }
}

/// Decide an expansion delivery: `true` to expand, `false` when it is poison (the job fails).
pub fn expand_allowed(dequeue_count: u32, max_dequeue: u32) -> bool {
    dequeue_count <= max_dequeue.max(1)
}

/// What a received message holds, and how to open it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The second step of a submission.
    Expand(JobId),
    /// Task attempts to process now, one part each.
    Parts(Vec<TaskMessage>),
    /// A bundle delivered again: split it into one message per task (so each counts its own
    /// deliveries from then on and a poison task cannot take its bundle-mates down with it).
    Split(Vec<TaskMessage>),
    /// Not a message of this engine (or an empty bundle): dead-letter it.
    Malformed(String),
}

/// Decode a message body and decide how to open it.
pub fn open_message(body: &str, dequeue_count: u32) -> Opening {
    match serde_json::from_str::<QueueMessage>(body) {
        Ok(QueueMessage::Expand { expand }) => Opening::Expand(expand),
        Ok(message) => {
            let tasks = message.into_tasks();
            match tasks.len() {
                0 => Opening::Malformed("a bundle of no tasks".into()),
                1 => Opening::Parts(tasks),
                _ if dequeue_count > 1 => Opening::Split(tasks),
                _ => Opening::Parts(tasks),
            }
        }
        Err(e) => Opening::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_000_000;

    /// "R2 lease+500" = RUNNING attempt 2 with a lease ending 500 ms from now; "W1 nb+20" =
    /// RETRY_WAIT attempt 1 due in 20 ms; "-" = no task.
    fn state(spec: &str) -> Option<TaskState> {
        if spec == "-" {
            return None;
        }
        let mut parts = spec.split_whitespace();
        let head = parts.next().unwrap();
        let (letter, attempt) = head.split_at(1);
        let status = match letter {
            "P" => TaskStatus::Pending,
            "Q" => TaskStatus::Queued,
            "R" => TaskStatus::Running,
            "W" => TaskStatus::RetryWait,
            "S" => TaskStatus::Succeeded,
            "F" => TaskStatus::Failed,
            "K" => TaskStatus::Skipped,
            "C" => TaskStatus::Cancelled,
            _ => panic!("bad letter {letter}"),
        };
        let mut task = TaskState {
            status,
            attempt: attempt.parse().unwrap(),
            lease_until: None,
            not_before: None,
        };
        for part in parts {
            let (name, offset) = part.split_once(['+', '-']).unwrap();
            let sign = if part.contains('-') { -1 } else { 1 };
            let at = NOW + sign * offset.parse::<Millis>().unwrap();
            match name {
                "lease" => task.lease_until = Some(at),
                "nb" => task.not_before = Some(at),
                _ => panic!("bad field {name}"),
            }
        }
        Some(task)
    }

    #[test]
    fn decisions() {
        use Decision::*;
        // (task, message attempt, dequeue count, expected) with max_dequeue 5.
        let cases = [
            ("-", 1, 1, UnknownTask),
            ("-", 1, 9, UnknownTask),
            ("Q1", 1, 1, Run { takeover: false }),
            ("Q1", 1, 5, Run { takeover: false }),
            ("Q1", 1, 6, Poison),
            ("Q2", 1, 1, Stale),
            ("Q2", 3, 1, Run { takeover: false }),
            ("P1", 1, 1, NeverReleased),
            ("P1", 1, 6, Poison),
            // Held by a live lease: postponed, even past the dequeue limit.
            ("R1 lease+500", 1, 1, Postpone { until: NOW + 600 }),
            ("R1 lease+500", 1, 9, Postpone { until: NOW + 600 }),
            // Lease over: take over, or poison when delivered too often.
            ("R1 lease-1", 1, 2, Run { takeover: true }),
            ("R1", 1, 2, Run { takeover: true }),
            ("R1 lease+0", 1, 2, Run { takeover: true }),
            ("R1 lease-1", 1, 6, Poison),
            ("R2 lease-1", 1, 1, Stale),
            // Retries: early deliveries wait, due ones release.
            ("W2 nb+5000", 2, 1, Postpone { until: NOW + 5000 }),
            ("W2 nb+50", 2, 1, ReleaseRetry),
            ("W2 nb-10", 2, 1, ReleaseRetry),
            ("W2", 2, 1, ReleaseRetry),
            ("W2 nb-10", 1, 1, Stale),
            ("W2 nb-10", 2, 6, Poison),
            // Finished: follow up and drop, whatever the count or attempt.
            ("S1", 1, 1, Finished),
            ("S1", 1, 9, Finished),
            ("F3", 1, 1, Finished),
            ("K1", 1, 1, Finished),
            ("C1", 2, 7, Finished),
        ];
        for (task, attempt, dequeue_count, expected) in cases {
            let facts = DeliveryFacts {
                attempt,
                dequeue_count,
                max_dequeue: 5,
                now: NOW,
            };
            assert_eq!(
                triage(state(task), facts),
                expected,
                "task {task:?}, message attempt {attempt}, dequeue count {dequeue_count}"
            );
        }
    }

    #[test]
    fn max_dequeue_zero_means_one() {
        let facts = |dequeue_count| DeliveryFacts {
            attempt: 1,
            dequeue_count,
            max_dequeue: 0,
            now: NOW,
        };
        assert_eq!(
            triage(state("Q1"), facts(1)),
            Decision::Run { takeover: false }
        );
        assert_eq!(triage(state("Q1"), facts(2)), Decision::Poison);
    }

    #[test]
    fn expansions() {
        for (dequeue_count, max, expected) in [
            (1, 5, true),
            (5, 5, true),
            (6, 5, false),
            (2, 0, false),
            (1, 0, true),
        ] {
            assert_eq!(
                expand_allowed(dequeue_count, max),
                expected,
                "{dequeue_count}/{max}"
            );
        }
    }

    #[test]
    fn openings() {
        let job = "a".repeat(64);
        let task = |c: &str| c.repeat(64);
        let one = format!(
            r#"{{"job_id":"{job}","task_id":"{}","attempt":2}}"#,
            task("b")
        );
        let bundle = format!(
            r#"{{"job_id":"{job}","tasks":[["{}",1],["{}",3]]}}"#,
            task("b"),
            task("c")
        );
        let empty = format!(r#"{{"job_id":"{job}","tasks":[]}}"#);
        let expand = format!(r#"{{"expand":"{job}"}}"#);
        let kind = |o: &Opening| match o {
            Opening::Expand(_) => "expand".to_owned(),
            Opening::Parts(t) => format!("parts {}", t.len()),
            Opening::Split(t) => format!("split {}", t.len()),
            Opening::Malformed(_) => "malformed".to_owned(),
        };
        let cases = [
            (one.as_str(), 1, "parts 1"),
            (one.as_str(), 4, "parts 1"),
            (bundle.as_str(), 1, "parts 2"),
            (bundle.as_str(), 2, "split 2"),
            (empty.as_str(), 1, "malformed"),
            (expand.as_str(), 3, "expand"),
            ("", 1, "malformed"),
            ("not json", 1, "malformed"),
            (
                r#"{"job_id":"short","task_id":"x","attempt":1}"#,
                1,
                "malformed",
            ),
            (r#""a string""#, 1, "malformed"),
            (r#"{"job_type":"hello_world","params":{}}"#, 1, "malformed"),
        ];
        for (body, dequeue_count, expected) in cases {
            assert_eq!(
                kind(&open_message(body, dequeue_count)),
                expected,
                "{body:?} x{dequeue_count}"
            );
        }
        match open_message(&bundle, 1) {
            Opening::Parts(t) => {
                assert_eq!(t[1].attempt, 3);
                assert_eq!(t[1].task_id.to_string(), task("c"));
            }
            other => panic!("{other:?}"),
        }
    }
}
