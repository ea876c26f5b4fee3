//! What job types and task handlers implement, and the registry that names them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::events::{EventKind, JobEvent};
use crate::graph::{HandlerDefaults, PlanError};
use crate::ids::{JobId, TaskId, TaskKey, task_id};
use crate::model::{
    ErrorClass, ErrorInfo, JobRecord, OutcomePolicy, Progress, StatusCounts, TaskRecord, TaskSpec,
    TaskStatus, now_millis,
};
use crate::ports::{Page, PageRequest, StoreError, TaskProgress, TaskQuery, TaskReads};
use crate::retry::RetryPolicy;

/// A handler's failure, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HandlerError {
    pub class: ErrorClass,
    /// Stable machine-readable code (`NOT_FOUND`, `INVALID_INPUT`, ...).
    pub code: String,
    pub message: String,
}

impl HandlerError {
    /// Fail now: invalid input, not found, unsupported.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        HandlerError {
            class: ErrorClass::Permanent,
            code: code.into(),
            message: message.into(),
        }
    }
    /// Retry with backoff: a flaky dependency, a busy service.
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        HandlerError {
            class: ErrorClass::Transient,
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        HandlerError {
            class: ErrorClass::Timeout,
            code: crate::model::codes::TIMEOUT.into(),
            message: message.into(),
        }
    }
    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            code: self.code.clone(),
            message: self.message.clone(),
            class: Some(self.class),
        }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        HandlerError::transient("STORAGE", e.to_string())
    }
}

/// What a handler returns: its result and, for orchestrators, the children to create.
#[derive(Debug, Clone, Default)]
pub struct TaskOutput {
    pub result: Value,
    pub children: Vec<TaskSpec>,
}

impl TaskOutput {
    /// A result as JSON. A value that does not serialize (a map with non-string keys, a
    /// failing `Serialize`) is a permanent `RESULT_NOT_SERIALIZABLE` error, never `null`.
    pub fn value(result: impl Serialize) -> Result<Self, HandlerError> {
        Ok(TaskOutput {
            result: serde_json::to_value(result).map_err(|e| {
                HandlerError::permanent(
                    crate::model::codes::RESULT_NOT_SERIALIZABLE,
                    format!("the task's result is not JSON: {e}"),
                )
            })?,
            children: Vec::new(),
        })
    }
    pub fn with_children(
        result: impl Serialize,
        children: Vec<TaskSpec>,
    ) -> Result<Self, HandlerError> {
        Ok(TaskOutput {
            children,
            ..Self::value(result)?
        })
    }
}

/// A member of a barrier's group (or a dependency), as the barrier handler sees it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberResult {
    pub task_id: TaskId,
    pub task: String,
    pub key: TaskKey,
    pub status: TaskStatus,
    pub result: Option<Value>,
    pub error: Option<ErrorInfo>,
}

impl From<TaskRecord> for MemberResult {
    fn from(t: TaskRecord) -> Self {
        MemberResult {
            task_id: t.id,
            task: t.task,
            key: t.key,
            status: t.status,
            result: t.result,
            error: t.error,
        }
    }
}

/// Minimum time between two persisted progress updates of one task.
pub const PROGRESS_THROTTLE: Duration = Duration::from_millis(500);

/// Everything a handler may see and do. It exposes capabilities, never the store itself.
pub struct TaskContext {
    pub job_id: JobId,
    pub task_id: TaskId,
    pub task: String,
    pub key: TaskKey,
    pub attempt: u32,
    pub params: Value,
    pub job_params: Value,
    pub(crate) job_attempt: u32,
    pub(crate) group: Option<String>,
    pub(crate) waits_for: Option<String>,
    pub(crate) cancel: CancellationToken,
    /// What a handler reaches, through the capabilities below: task reads, and its progress.
    pub(crate) tasks: Arc<dyn TaskReads>,
    pub(crate) progress: Arc<dyn TaskProgress>,
    pub(crate) last_progress: Mutex<Option<std::time::Instant>>,
}

impl TaskContext {
    /// The job was cancelled (or failed fast) or the attempt timed out: stop soon.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the task should stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Report progress (fraction in 0..=1). Persisted and published at most every
    /// [`PROGRESS_THROTTLE`], except the final 1.0 which always goes through.
    pub async fn progress(&self, fraction: f64, text: impl Into<String>) {
        let fraction = fraction.clamp(0.0, 1.0);
        {
            let mut last = self.last_progress.lock().await;
            let now = std::time::Instant::now();
            if fraction < 1.0 && last.is_some_and(|t| now.duration_since(t) < PROGRESS_THROTTLE) {
                return;
            }
            *last = Some(now);
        }
        let text = text.into();
        let progress = Progress {
            fraction,
            text: text.clone(),
            at: now_millis(),
        };
        let event = JobEvent::now(
            &self.job_id,
            self.job_attempt,
            EventKind::ProgressUpdate {
                task_id: self.task_id.clone(),
                task: self.task.clone(),
                fraction,
                text,
            },
        );
        if let Err(e) = self
            .progress
            .set_progress(&self.job_id, &self.task_id, &progress, &event)
            .await
        {
            tracing::warn!(error = %e, "progress update not stored");
        }
    }

    /// The stored result of another task of this job (a dependency, typically).
    pub async fn result_of(
        &self,
        task: &str,
        key: impl Into<TaskKey>,
    ) -> Result<Option<MemberResult>, HandlerError> {
        let id = task_id(&self.job_id, task, &key.into());
        Ok(self
            .tasks
            .get_task(&self.job_id, &id)
            .await?
            .map(MemberResult::from))
    }

    /// The group this task belongs to.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Barriers: one page of the members of the group they wait for, with their results.
    pub async fn members(&self, page: PageRequest) -> Result<Page<MemberResult>, HandlerError> {
        let Some(group) = &self.waits_for else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let query = TaskQuery {
            group: Some(group.clone()),
            status: None,
        };
        let page = self.tasks.list_tasks(&self.job_id, &query, page).await?;
        Ok(Page {
            items: page.items.into_iter().map(MemberResult::from).collect(),
            next: page.next,
        })
    }

    /// Barriers: counts of the members' statuses.
    pub async fn member_counts(&self) -> Result<StatusCounts, HandlerError> {
        Ok(self
            .tasks
            .count_tasks(&self.job_id, self.waits_for.as_deref())
            .await?)
    }
}

/// A task handler: one atomic, retry-safe unit of work.
#[async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// The task name plans refer to.
    fn name(&self) -> &'static str;
    /// Recorded on every task and log line; bump when the output changes.
    fn version(&self) -> u32 {
        1
    }
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::STANDARD
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(600)
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError>;
}

/// Invalid request params: names the field and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid params: {field}: {reason}")]
pub struct ValidationError {
    /// Dotted path of the offending field (`n`, `blobs[2]`), or `params` for the whole object.
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why [`Controller::check`] refused a request: the input itself is wrong (exit 2, HTTP
/// 400), or what it refers to cannot be looked at now (an outage: exit 3, HTTP 503, try
/// again). Only the first is the client's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("cannot check {field} now: {message}")]
    Unavailable { field: String, message: String },
}

impl CheckError {
    pub fn unavailable(field: impl Into<String>, message: impl Into<String>) -> Self {
        CheckError::Unavailable {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Read access to a job's tasks, for a controller's aggregate.
pub struct JobResults {
    pub(crate) job_id: JobId,
    pub(crate) tasks: Arc<dyn TaskReads>,
}

impl JobResults {
    pub async fn task(
        &self,
        task: &str,
        key: impl Into<TaskKey>,
    ) -> Result<Option<MemberResult>, HandlerError> {
        let id = task_id(&self.job_id, task, &key.into());
        Ok(self
            .tasks
            .get_task(&self.job_id, &id)
            .await?
            .map(MemberResult::from))
    }
    pub async fn counts(&self) -> Result<StatusCounts, HandlerError> {
        Ok(self.tasks.count_tasks(&self.job_id, None).await?)
    }
}

/// A job type: validates a request and expands it into tasks.
#[async_trait]
pub trait Controller: Send + Sync + 'static {
    fn job_type(&self) -> &'static str;
    fn job_version(&self) -> u32 {
        1
    }
    /// One line for `tessera --help` and the docs.
    fn description(&self) -> &'static str;
    fn outcome_policy(&self) -> OutcomePolicy {
        OutcomePolicy::FailFast
    }
    /// Check the request params and fill in defaults. The result is what the job ID hashes.
    fn validate(&self, params: Value) -> Result<Value, ValidationError>;
    /// The JSON Schema of the params `validate` accepts, from the same declarations (for
    /// clients: `GET /api/job-types`, the OpenAPI document). Cross-field rules are not in it.
    fn params_schema(&self) -> Value {
        serde_json::json!({ "type": "object" })
    }
    /// Check what the normalized params refer to (input files exist and are readable, ...)
    /// before a new job is created, so that what can be known at submission is refused then.
    /// Not part of the job ID; not run when the job already exists.
    /// An outage (the blob store not answering) is [`CheckError::Unavailable`], never invalid
    /// input.
    async fn check(&self, _params: &Value) -> Result<(), CheckError> {
        Ok(())
    }
    /// Check what is too costly to check at submission (10 000 blobs, a raster to download
    /// and open), when the accepted job is expanded: refused params
    /// ([`CheckError::Invalid`]) end the job FAILED `INVALID_PARAMS`, naming the field; an
    /// outage leaves the expansion to be delivered again. `tessera run` and the CLI's
    /// `submit` run it before storing anything, so their users are refused at once.
    async fn check_at_expansion(&self, _params: &Value) -> Result<(), CheckError> {
        Ok(())
    }
    /// Both checks, for a front door that expands at once (the command line): [`check`]
    /// then [`check_at_expansion`]. Override it when the two would read the same thing twice
    /// (the same blob's size, say).
    ///
    /// [`check`]: Controller::check
    /// [`check_at_expansion`]: Controller::check_at_expansion
    async fn check_all(&self, params: &Value) -> Result<(), CheckError> {
        self.check(params).await?;
        self.check_at_expansion(params).await
    }
    /// Expand normalized params into the initial task specs.
    fn plan(&self, job_id: &JobId, params: &Value) -> Result<Vec<TaskSpec>, PlanError>;
    /// The job's result, from its tasks' results, once every task is terminal.
    async fn aggregate(&self, job: &JobRecord, results: &JobResults)
    -> Result<Value, HandlerError>;
}

/// The job types and handlers a process knows.
#[derive(Clone, Default)]
pub struct Registry {
    controllers: BTreeMap<&'static str, Arc<dyn Controller>>,
    handlers: BTreeMap<&'static str, Arc<dyn TaskHandler>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("controllers", &self.controllers.keys().collect::<Vec<_>>())
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub fn with_controller(mut self, controller: impl Controller) -> Self {
        self.controllers
            .insert(controller.job_type(), Arc::new(controller));
        self
    }
    pub fn with_handler(mut self, handler: impl TaskHandler) -> Self {
        self.handlers.insert(handler.name(), Arc::new(handler));
        self
    }
    pub fn controller(&self, job_type: &str) -> Option<&Arc<dyn Controller>> {
        self.controllers.get(job_type)
    }
    pub fn handler(&self, name: &str) -> Option<&Arc<dyn TaskHandler>> {
        self.handlers.get(name)
    }
    pub fn job_types(&self) -> impl Iterator<Item = &Arc<dyn Controller>> {
        self.controllers.values()
    }
    pub fn handler_defaults(&self, name: &str) -> Option<HandlerDefaults> {
        self.handlers.get(name).map(|h| HandlerDefaults {
            task_version: h.version(),
            retry: h.retry_policy(),
            timeout: h.timeout(),
        })
    }
}

#[cfg(test)]
mod output_tests {
    use super::*;

    #[test]
    fn a_result_that_is_not_json_is_an_error_not_null() {
        let mut not_json = std::collections::HashMap::new();
        not_json.insert((1, 2), "a map with tuple keys has no JSON form");
        let e = TaskOutput::value(not_json).unwrap_err();
        assert_eq!(e.code, crate::model::codes::RESULT_NOT_SERIALIZABLE);
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(
            TaskOutput::value(serde_json::json!({"a": 1}))
                .unwrap()
                .result,
            serde_json::json!({"a": 1})
        );
    }
}
