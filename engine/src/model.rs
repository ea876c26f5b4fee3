//! The data model: statuses, kinds, policies, task specs and the stored records.
//!
//! Statuses and kinds are enums; they are spelled as strings only at the storage and API edges
//! (`as_str` / `FromStr`, serde in SCREAMING_SNAKE_CASE / snake_case).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{JobId, TaskId, TaskKey};
use crate::retry::RetryPolicy;

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(text: &str) -> Result<Self, UnknownVariant> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        what: stringify!($name),
                        text: text.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A string that names no variant of a status/kind/policy enum.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {text:?} (expected one of {expected:?})")]
pub struct UnknownVariant {
    pub what: &'static str,
    pub text: String,
    pub expected: &'static [&'static str],
}

string_enum! {
    /// Job status machine: `PENDING -> RUNNING -> SUCCEEDED | COMPLETED_WITH_ERRORS | FAILED | CANCELLED`,
    /// `PENDING -> CANCELLED`.
    JobStatus {
        Pending = "PENDING",
        Running = "RUNNING",
        Succeeded = "SUCCEEDED",
        CompletedWithErrors = "COMPLETED_WITH_ERRORS",
        Failed = "FAILED",
        Cancelled = "CANCELLED",
    }
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

string_enum! {
    /// Task status machine, see `status::check_task_transition`.
    TaskStatus {
        Pending = "PENDING",
        Queued = "QUEUED",
        Running = "RUNNING",
        RetryWait = "RETRY_WAIT",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        Skipped = "SKIPPED",
        Cancelled = "CANCELLED",
    }
}

impl TaskStatus {
    pub const TERMINAL: &'static [TaskStatus] = &[
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::Cancelled,
    ];
    /// Not yet running: what a cancellation stops at once.
    pub const UNSTARTED: &'static [TaskStatus] = &[
        TaskStatus::Pending,
        TaskStatus::Queued,
        TaskStatus::RetryWait,
    ];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }
}

string_enum! {
    /// How a task is released and what its handler may return.
    TaskKind {
        Parallel = "parallel",
        Sequential = "sequential",
        Orchestrator = "orchestrator",
        Barrier = "barrier",
    }
}

string_enum! {
    /// When a task with dependencies may run.
    TriggerRule {
        AllSucceeded = "all_succeeded",
        AllDone = "all_done",
    }
}

impl Default for TriggerRule {
    fn default() -> Self {
        TriggerRule::AllSucceeded
    }
}

string_enum! {
    /// What a permanent task failure does to the job.
    OutcomePolicy {
        FailFast = "fail_fast",
        Continue = "continue",
    }
}

impl Default for OutcomePolicy {
    fn default() -> Self {
        OutcomePolicy::FailFast
    }
}

string_enum! {
    /// Classification of a handler error: decides whether the attempt is retried.
    ErrorClass {
        Transient = "transient",
        Permanent = "permanent",
        Timeout = "timeout",
    }
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }
}

/// A task's or a job's failure, as stored and shown to users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable machine-readable code, e.g. `POISONED`, `TIMEOUT`, `GREET_FAILED`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
}

impl ErrorInfo {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            code: code.into(),
            message: message.into(),
            class: None,
        }
    }
}

/// Stable error codes the engine itself writes (handlers add their own).
pub mod codes {
    pub const POISONED: &str = "POISONED";
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const CANCELLED: &str = "CANCELLED";
    pub const UPSTREAM_FAILED: &str = "UPSTREAM_FAILED";
    pub const TASK_FAILED: &str = "TASK_FAILED";
    pub const NO_HANDLER: &str = "NO_HANDLER";
    pub const INVALID_CHILDREN: &str = "INVALID_CHILDREN";
    pub const AGGREGATE_FAILED: &str = "AGGREGATE_FAILED";
    pub const JOB_CANCELLED: &str = "JOB_CANCELLED";
    pub const HANDLER_PANICKED: &str = "HANDLER_PANICKED";
    pub const RESULT_NOT_SERIALIZABLE: &str = "RESULT_NOT_SERIALIZABLE";
    /// Stored data a handler reads (a dependency's result) is not what it expects.
    pub const CORRUPT_RESULT: &str = "CORRUPT_RESULT";
    /// An accepted job whose plan could not be built at expansion.
    pub const INVALID_PLAN: &str = "INVALID_PLAN";
    /// Params refused: at submission (a client's error), or at expansion by the check that
    /// was too costly to run at submission (the job ends FAILED with it).
    pub const INVALID_PARAMS: &str = "INVALID_PARAMS";
}

/// Latest progress report of a running task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0.0 ..= 1.0
    pub fraction: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    pub at: Millis,
}

/// Refers to another task of the same job by name and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskRef {
    pub task: String,
    pub key: TaskKey,
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.task, self.key)
    }
}

/// What a controller (at submission) or an orchestrator (at run time) asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The handler that runs it.
    pub task: String,
    pub key: TaskKey,
    pub kind: TaskKind,
    #[serde(default)]
    pub params: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TaskRef>,
    /// The group this task belongs to (a barrier may wait for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Orchestrators: the group their children join (defaults to the orchestrator's own group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_group: Option<String>,
    /// Barriers: the group they wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    #[serde(default)]
    pub trigger_rule: TriggerRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_ms"
    )]
    pub timeout: Option<Duration>,
}

impl TaskSpec {
    fn new(task: impl Into<String>, key: impl Into<TaskKey>, kind: TaskKind) -> Self {
        TaskSpec {
            task: task.into(),
            key: key.into(),
            kind,
            params: Value::Null,
            depends_on: Vec::new(),
            group: None,
            child_group: None,
            waits_for: None,
            trigger_rule: TriggerRule::AllSucceeded,
            retry: None,
            timeout: None,
        }
    }
    /// No dependencies: released as soon as the job starts.
    pub fn parallel(task: impl Into<String>, key: impl Into<TaskKey>) -> Self {
        Self::new(task, key, TaskKind::Parallel)
    }
    /// Released when its dependencies (added with `after`) allow.
    pub fn sequential(task: impl Into<String>, key: impl Into<TaskKey>) -> Self {
        Self::new(task, key, TaskKind::Sequential)
    }
    /// Returns child specs at run time; they join `child_group` (or its own group).
    pub fn orchestrator(task: impl Into<String>, key: impl Into<TaskKey>) -> Self {
        Self::new(task, key, TaskKind::Orchestrator)
    }
    /// Waits for every member of `group` (and its feeding orchestrators) to finish.
    pub fn barrier(
        task: impl Into<String>,
        key: impl Into<TaskKey>,
        group: impl Into<String>,
    ) -> Self {
        let mut spec = Self::new(task, key, TaskKind::Barrier);
        spec.waits_for = Some(group.into());
        spec
    }
    pub fn params(mut self, params: Value) -> Self {
        self.params = params;
        self
    }
    pub fn after(mut self, task: impl Into<String>, key: impl Into<TaskKey>) -> Self {
        self.depends_on.push(TaskRef {
            task: task.into(),
            key: key.into(),
        });
        self
    }
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    pub fn children_in(mut self, group: impl Into<String>) -> Self {
        self.child_group = Some(group.into());
        self
    }
    pub fn trigger(mut self, rule: TriggerRule) -> Self {
        self.trigger_rule = rule;
        self
    }
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn reference(&self) -> TaskRef {
        TaskRef {
            task: self.task.clone(),
            key: self.key.clone(),
        }
    }
}

/// Opaque compare-and-set token of a stored record (row version, ETag...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Revision(pub String);

/// A stored job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub job_type: String,
    pub job_version: u32,
    /// Validated params with defaults filled in (what the ID is computed from).
    pub params: Value,
    pub status: JobStatus,
    /// 1 on first submission, + 1 on each forced re-run.
    pub attempt: u32,
    pub outcome_policy: OutcomePolicy,
    /// Barrier task IDs per group: who to wake when a group member finishes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub barriers: BTreeMap<String, Vec<TaskId>>,
    /// Number of tasks planned at submission (orchestrators add more at run time).
    pub planned_tasks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub created_at: Millis,
    pub updated_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// Who is expanding this PENDING job, until when (cleared when it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansion: Option<ExpansionClaim>,
    #[serde(skip)]
    pub revision: Revision,
}

/// A claim on the expansion of a PENDING job: one expansion at a time, whoever runs it (a
/// worker's `{"expand"}` message, the command line's inline path, the sweeper). The holder
/// renews it while it stores a large plan; a claim whose holder died lapses at `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpansionClaim {
    /// A random token of the one expansion that holds the claim.
    pub owner: String,
    /// Epoch milliseconds after which the claim has lapsed.
    pub until: Millis,
}

fn one() -> u32 {
    1
}

/// A stored task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub job_id: JobId,
    pub id: TaskId,
    /// Handler name.
    pub task: String,
    pub key: TaskKey,
    pub kind: TaskKind,
    pub task_version: u32,
    pub status: TaskStatus,
    /// 1-based attempt number; a retry increments it.
    pub attempt: u32,
    /// The job attempt this task belongs to (a forced re-run plans new tasks).
    #[serde(default = "one")]
    pub job_attempt: u32,
    /// How many times a handler was started for this task, every attempt and lease
    /// takeover included: more than `attempt` means some attempt ran twice.
    #[serde(default)]
    pub starts: u32,
    /// Dequeue count of the message that last started it (above 1: a re-delivery).
    #[serde(default)]
    pub dequeue_count: u32,
    #[serde(default)]
    pub params: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TaskId>,
    /// How many tasks list this one in `depends_on` (0 lets a finisher skip the lookup).
    #[serde(default)]
    pub n_dependents: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    #[serde(default)]
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// RETRY_WAIT: not to run before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Millis>,
    /// RUNNING: the holder's lease; a delivery after it expires takes the task over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    #[serde(skip)]
    pub revision: Revision,
}

impl TaskRecord {
    pub fn reference(&self) -> TaskRef {
        TaskRef {
            task: self.task.clone(),
            key: self.key.clone(),
        }
    }
}

/// Task counts by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts(pub BTreeMap<TaskStatus, u64>);

impl StatusCounts {
    pub fn get(&self, status: TaskStatus) -> u64 {
        self.0.get(&status).copied().unwrap_or(0)
    }
    pub fn add(&mut self, status: TaskStatus, n: u64) {
        *self.0.entry(status).or_default() += n;
    }
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
    pub fn terminal(&self) -> u64 {
        TaskStatus::TERMINAL.iter().map(|s| self.get(*s)).sum()
    }
    pub fn unfinished(&self) -> u64 {
        self.total() - self.terminal()
    }
    /// FAILED + SKIPPED + CANCELLED.
    pub fn unsuccessful(&self) -> u64 {
        self.terminal() - self.get(TaskStatus::Succeeded)
    }
}

/// The body of a queue message: IDs only, never params or results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub job_id: JobId,
    pub task_id: TaskId,
    pub attempt: u32,
}

/// What a queue message carries: one task attempt, or a bundle of several tasks of one job (a
/// large fan-out sends one message per bundle instead of one per task: fewer queue operations).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueMessage {
    One(TaskMessage),
    Bundle {
        job_id: JobId,
        /// (task ID, attempt) pairs.
        tasks: Vec<(TaskId, u32)>,
    },
    /// The second step of a submission: plan the accepted (PENDING) job and start it.
    Expand {
        expand: JobId,
    },
}

impl QueueMessage {
    /// The job whose tasks it carries.
    pub fn job_id(&self) -> &JobId {
        match self {
            QueueMessage::One(message) => &message.job_id,
            QueueMessage::Bundle { job_id, .. } => job_id,
            QueueMessage::Expand { expand } => expand,
        }
    }

    /// The task attempts it carries (none for an expansion).
    pub fn into_tasks(self) -> Vec<TaskMessage> {
        match self {
            QueueMessage::Expand { .. } => Vec::new(),
            QueueMessage::One(message) => vec![message],
            QueueMessage::Bundle { job_id, tasks } => tasks
                .into_iter()
                .map(|(task_id, attempt)| TaskMessage {
                    job_id: job_id.clone(),
                    task_id,
                    attempt,
                })
                .collect(),
        }
    }
}

pub(crate) mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_storage_spelling() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), *s);
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                Value::String(s.as_str().into())
            );
        }
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), *s);
        }
        let err = "bogus".parse::<TaskKind>().unwrap_err().to_string();
        assert!(err.contains("unknown TaskKind \"bogus\""), "{err}");
    }

    #[test]
    fn counts_split_terminal_and_unsuccessful() {
        let mut c = StatusCounts::default();
        c.add(TaskStatus::Succeeded, 3);
        c.add(TaskStatus::Failed, 1);
        c.add(TaskStatus::Skipped, 2);
        c.add(TaskStatus::Running, 4);
        assert_eq!(
            (c.total(), c.terminal(), c.unfinished(), c.unsuccessful()),
            (10, 6, 4, 3)
        );
    }
}
