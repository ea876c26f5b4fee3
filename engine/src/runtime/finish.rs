//! What happens after a task reaches a terminal status: fail fast, release or skip what waited
//! for it, close the job. Every step is idempotent, so a re-delivery after a crash redoes it.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::{Engine, Metrics, RuntimeError, message_body};
use crate::handler::{Controller, HandlerError, JobResults};
use crate::ids::{JobId, TaskId};
use crate::model::{
    ErrorInfo, JobRecord, JobStatus, OutcomePolicy, TaskKind, TaskRecord, TaskStatus, codes,
};
use crate::schedule::{
    GroupState, Upstream, Verdict, group_read_needed, job_outcome, release_verdict,
};

impl Engine {
    /// Follow-up of a terminal task: fail-fast, release/skip successors (cascading skips),
    /// then the completion check.
    pub(crate) async fn after_terminal(
        &self,
        job: &JobRecord,
        task: TaskRecord,
    ) -> Result<(), RuntimeError> {
        let mut worklist = vec![task];
        // A group with an unfinished member means an unfinished job: no completion check then
        // (that member's own follow-up will do it). Saves a query per task of a fan-out.
        let mut job_unfinished = false;
        while let Some(task) = worklist.pop() {
            debug_assert!(task.status.is_terminal());
            if task.status == TaskStatus::Failed && job.outcome_policy == OutcomePolicy::FailFast {
                // Closes the job and cancels everything not started: nothing left to release.
                return self.fail_fast(&job.id, &task).await;
            }
            if task.kind == TaskKind::Orchestrator {
                let current = self.inner.backend.jobs.get_job(&job.id).await?;
                if let Some(current) = current.filter(|j| j.status.is_terminal()) {
                    // Its children may have been stored after the job was closed.
                    let error =
                        ErrorInfo::new(codes::JOB_CANCELLED, format!("job is {}", current.status));
                    self.inner
                        .backend
                        .tasks
                        .finish_unstarted(&job.id, job.attempt, TaskStatus::Cancelled, &error)
                        .await?;
                    return Ok(());
                }
            }
            if task.n_dependents > 0 {
                for successor in self
                    .inner
                    .backend
                    .tasks
                    .dependents(&job.id, &task.id)
                    .await?
                {
                    if let Some(skipped) = self.try_release(job, &successor, false).await? {
                        worklist.push(skipped);
                    }
                }
            }
            let groups = [task.group.as_deref(), task.child_group.as_deref()];
            for group in groups.into_iter().flatten() {
                let Some(barriers) = job.barriers.get(group) else {
                    continue;
                };
                let unsuccessful = task.status != TaskStatus::Succeeded;
                // Cheap check first: most members finish while others still run.
                if !unsuccessful && self.fresh_unfinished(&job.id, Some(group)).await? {
                    job_unfinished = true;
                    continue;
                }
                for barrier in barriers {
                    if let Some(skipped) = self.try_release(job, barrier, unsuccessful).await? {
                        worklist.push(skipped);
                    }
                }
            }
        }
        if job_unfinished {
            return Ok(());
        }
        self.check_completion(&job.id).await
    }

    /// Release or skip a PENDING task if what it waits for allows. Returns the task when it
    /// was skipped (its own successors must then be looked at).
    async fn try_release(
        &self,
        job: &JobRecord,
        id: &TaskId,
        member_failed: bool,
    ) -> Result<Option<TaskRecord>, RuntimeError> {
        let tasks = &self.inner.backend.tasks;
        let Some(task) = tasks.get_task(&job.id, id).await? else {
            warn!(task_id = %id, "successor not found");
            return Ok(None);
        };
        if task.status != TaskStatus::Pending {
            return Ok(None);
        }
        let mut upstream = Upstream::default();
        if !task.depends_on.is_empty() {
            for (_, status) in tasks.task_statuses(&job.id, &task.depends_on).await? {
                upstream.deps.add(status, 1);
            }
        }
        if let Some(group) = &task.waits_for {
            upstream.group = Some(if !group_read_needed(task.trigger_rule, member_failed) {
                GroupState::MemberFailed
            } else if tasks.any_unfinished(&job.id, Some(group)).await? {
                GroupState::Unfinished
            } else {
                GroupState::Finished(tasks.count_tasks(&job.id, Some(group)).await?)
            });
        }
        match release_verdict(task.trigger_rule, &upstream) {
            Verdict::Wait => Ok(None),
            Verdict::Release => {
                if self
                    .cas_task(&task, TaskStatus::Queued, |_| {})
                    .await?
                    .is_some()
                {
                    debug!(task_id = %task.id, task = %task.task, "released");
                    self.inner
                        .backend
                        .queue
                        .send(&[message_body(&task, task.attempt)], Duration::ZERO)
                        .await?;
                }
                Ok(None)
            }
            Verdict::Skip => {
                let error = ErrorInfo::new(
                    codes::UPSTREAM_FAILED,
                    "a task it waits for did not succeed",
                );
                let skipped = self
                    .cas_task(&task, TaskStatus::Skipped, |t| t.error = Some(error))
                    .await?;
                if skipped.is_some() {
                    Metrics::inc(&self.inner.metrics.tasks_skipped);
                }
                Ok(skipped)
            }
        }
    }

    /// Fail-fast: the first FAILED task fails the job and cancels what has not started.
    async fn fail_fast(&self, job_id: &JobId, failed: &TaskRecord) -> Result<(), RuntimeError> {
        let error = failed
            .error
            .clone()
            .unwrap_or_else(|| ErrorInfo::new(codes::TASK_FAILED, "failed"));
        loop {
            let Some(job) = self.inner.backend.jobs.get_job(job_id).await? else {
                return Ok(());
            };
            if job.status.is_terminal() {
                return Ok(());
            }
            let mut next = job.clone();
            next.status = JobStatus::Failed;
            next.finished_at = Some(crate::model::now_millis());
            next.error = Some(ErrorInfo::new(
                codes::TASK_FAILED,
                format!(
                    "task {} failed: {}: {}",
                    failed.reference(),
                    error.code,
                    error.message
                ),
            ));
            if self.cas_job(&job, next).await?.is_some() {
                Metrics::inc(&self.inner.metrics.jobs_closed);
                info!(job_id = %job_id, task_id = %failed.id, "job failed (fail_fast)");
                let cancel = ErrorInfo::new(codes::JOB_CANCELLED, "job failed");
                self.inner
                    .backend
                    .tasks
                    .finish_unstarted(job_id, job.attempt, TaskStatus::Cancelled, &cancel)
                    .await?;
                return Ok(());
            }
        }
    }

    /// Close the job exactly once (compare-and-set RUNNING -> terminal) when no task is left.
    pub(crate) async fn check_completion(&self, job_id: &JobId) -> Result<(), RuntimeError> {
        let backend = &self.inner.backend;
        loop {
            if self.fresh_unfinished(job_id, None).await? {
                return Ok(());
            }
            let Some(job) = backend.jobs.get_job(job_id).await? else {
                return Ok(());
            };
            if job.status != JobStatus::Running {
                return Ok(());
            }
            let counts = backend.tasks.count_tasks(job_id, None).await?;
            let Some(status) = job_outcome(job.outcome_policy, &counts) else {
                return Ok(());
            };
            let mut next = job.clone();
            next.status = status;
            next.finished_at = Some(crate::model::now_millis());
            match self.inner.registry.controller(&job.job_type) {
                Some(controller) => {
                    let results = JobResults {
                        job_id: job_id.clone(),
                        tasks: backend.tasks.clone(),
                    };
                    match self.aggregate(controller.as_ref(), &job, &results).await? {
                        Ok(result) => next.result = Some(result),
                        Err(e) => {
                            next.status = JobStatus::Failed;
                            next.error =
                                Some(ErrorInfo::new(codes::AGGREGATE_FAILED, e.to_string()));
                        }
                    }
                }
                None => warn!(job_type = %job.job_type, "no controller to aggregate the job"),
            }
            if next.error.is_none() && status != JobStatus::Succeeded {
                next.error = Some(ErrorInfo::new(
                    codes::TASK_FAILED,
                    format!(
                        "{} of {} tasks did not succeed",
                        counts.unsuccessful(),
                        counts.total()
                    ),
                ));
            }
            let status = next.status;
            if self.cas_job(&job, next).await?.is_some() {
                Metrics::inc(&self.inner.metrics.jobs_closed);
                info!(job_id = %job_id, status = %status, "job closed");
                return Ok(());
            }
        }
    }

    /// The controller's aggregate. A transient failure (the store not answering) is tried
    /// again a few times, then returned as a storage error: the job stays RUNNING and the
    /// delivery that got here comes back, so the job closes once the store answers. Only a
    /// permanent failure is the aggregate's verdict (`Ok(Err(_))`).
    async fn aggregate(
        &self,
        controller: &dyn Controller,
        job: &JobRecord,
        results: &JobResults,
    ) -> Result<Result<serde_json::Value, HandlerError>, RuntimeError> {
        let mut delay = Duration::from_millis(100);
        for _ in 0..AGGREGATE_TRIES {
            match controller.aggregate(job, results).await {
                Err(e) if e.class.is_retryable() => {
                    warn!(job_id = %job.id, error = %e, "aggregate failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                verdict => return Ok(verdict),
            }
        }
        Err(crate::ports::StoreError::Unavailable {
            message: format!("aggregating job {}: the store did not answer", job.id),
            source: None,
        }
        .into())
    }
}

/// Attempts of a transient aggregate failure within one completion check.
const AGGREGATE_TRIES: u32 = 3;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::{Value, json};

    use crate::graph::PlanError;
    use crate::handler::{
        Controller, HandlerError, JobResults, Registry, TaskContext, TaskHandler, TaskOutput,
        ValidationError,
    };
    use crate::ids::JobId;
    use crate::memory::MemoryBackend;
    use crate::model::{JobRecord, JobStatus, TaskSpec};
    use crate::ports::Backend;
    use crate::runtime::{Engine, EngineConfig, SubmitOptions, WorkerConfig, run_worker};

    /// A job whose aggregate meets a storage outage `outage` times before the store answers.
    struct Flaky {
        outage: u32,
        calls: Arc<AtomicU32>,
    }

    #[async_trait]
    impl Controller for Flaky {
        fn job_type(&self) -> &'static str {
            "flaky"
        }
        fn description(&self) -> &'static str {
            "aggregate fails transiently at first"
        }
        fn validate(&self, params: Value) -> Result<Value, ValidationError> {
            Ok(params)
        }
        fn plan(&self, _: &JobId, _: &Value) -> Result<Vec<TaskSpec>, PlanError> {
            Ok(vec![TaskSpec::parallel("one", 0)])
        }
        async fn aggregate(&self, _: &JobRecord, _: &JobResults) -> Result<Value, HandlerError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.outage {
                return Err(crate::ports::StoreError::Unavailable {
                    message: "table service unreachable".into(),
                    source: None,
                }
                .into());
            }
            Ok(json!("aggregated"))
        }
    }

    struct One;

    #[async_trait]
    impl TaskHandler for One {
        fn name(&self) -> &'static str {
            "one"
        }
        async fn run(&self, _: &TaskContext) -> Result<TaskOutput, HandlerError> {
            TaskOutput::value(1)
        }
    }

    async fn close_after_outage(outage: u32) -> (JobRecord, u32) {
        let calls = Arc::new(AtomicU32::new(0));
        let registry = Registry::default()
            .with_controller(Flaky {
                outage,
                calls: calls.clone(),
            })
            .with_handler(One);
        let backend = Backend::from_all(Arc::new(MemoryBackend::new()));
        let config = EngineConfig {
            lease: Duration::from_millis(300),
            ..EngineConfig::default()
        };
        let engine = Engine::new(backend, registry, config);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let worker = tokio::spawn(run_worker(
            engine.clone(),
            WorkerConfig::default(),
            shutdown.clone(),
        ));
        let sub = engine
            .submit("flaky", json!({}), SubmitOptions::default())
            .await
            .unwrap();
        let job = loop {
            let job = engine.status(&sub.job.id).await.unwrap().job;
            if job.status.is_terminal() {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        shutdown.cancel();
        worker.await.unwrap();
        (job, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_transient_aggregate_failure_is_retried_in_place() {
        let (job, calls) = close_after_outage(2).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
        assert_eq!(job.result, Some(json!("aggregated")));
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn a_longer_outage_leaves_the_job_running_until_the_store_answers() {
        // More failures than one completion check tries: the delivery comes back after its
        // lease and the next check closes the job.
        let (job, calls) = close_after_outage(super::AGGREGATE_TRIES + 2).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
        assert_eq!(calls, super::AGGREGATE_TRIES + 3);
    }
}
