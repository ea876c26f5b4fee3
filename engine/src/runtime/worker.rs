//! Queue workers: receive a message, run the task's handler under a lease, record the outcome.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::lease::{self, PartLease};
use super::{
    Engine, Expanded, Metrics, RuntimeError, as_millis, encode_message, expand_message,
    message_body,
};
use crate::graph::{self, PlanScope};
use crate::handler::{HandlerError, TaskContext, TaskOutput};
use crate::model::{
    ErrorInfo, JobRecord, TaskKind, TaskMessage, TaskRecord, TaskStatus, codes, now_millis,
};
use crate::ports::Delivery;
use crate::retry::{RetryDecision, decide_retry};

use super::triage::{
    Decision, DeliveryFacts, Opening, TaskState, expand_allowed, open_message, triage,
};

/// One worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Handlers running at once.
    pub concurrency: usize,
    /// Shortest and longest wait between two empty receives.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Identifies the worker in task records and logs.
    pub worker_id: String,
    /// After shutdown is requested, how long running handlers may take to finish.
    pub drain_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 8,
            poll_min: Duration::from_millis(2),
            poll_max: Duration::from_millis(200),
            worker_id: format!("worker-{}", std::process::id()),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a worker with few free slots waits for more before receiving.
const BATCH_WAIT: Duration = Duration::from_millis(20);

/// Receive and process messages until `shutdown`; then let running handlers finish
/// (up to `drain_timeout`; what is still running is re-delivered after its lease).
pub async fn run_worker(engine: Engine, config: WorkerConfig, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut running = JoinSet::new();
    let mut idle = config.poll_min;
    let config = Arc::new(config);
    info!(worker = %config.worker_id, concurrency = config.concurrency, "worker started");
    // Receive in batches: with fewer than half the slots free, wait briefly for more to free
    // up (one receive of 8 messages costs what a receive of 1 does).
    let batch = config.concurrency.div_ceil(2).clamp(1, 32);
    // Tasks per message lately (bundles carry several): receive about as many messages as
    // there are free slots for their tasks.
    let mut tasks_per_message = 1.0_f64;
    while !shutdown.is_cancelled() {
        while running.try_join_next().is_some() {}
        if slots.available_permits() < batch && !running.is_empty() {
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            while slots.available_permits() < batch && !running.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = running.join_next() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = running.join_next() => continue,
            }
        }
        let want = (free as f64 / tasks_per_message).ceil() as usize;
        let received = engine
            .inner
            .backend
            .queue
            .receive(want.clamp(1, 32), engine.inner.config.lease)
            .await;
        match received {
            Ok(deliveries) if deliveries.is_empty() => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = engine.inner.backend.queue.wait_for_messages(idle) => {}
                }
                idle = (idle * 2).min(config.poll_max);
            }
            Ok(deliveries) => {
                idle = config.poll_min;
                let messages = deliveries.len() as f64;
                let mut tasks = 0;
                for delivery in deliveries {
                    // Parts of a bundle wait here for a slot; the message lease is kept alive
                    // meanwhile.
                    for (message, lease) in engine.open_delivery(delivery).await {
                        tasks += 1;
                        let permit = slots
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed");
                        let engine = engine.clone();
                        let config = config.clone();
                        running.spawn(async move {
                            engine.process_part(message, lease, &config).await;
                            drop(permit);
                        });
                    }
                }
                tasks_per_message = (0.75 * tasks_per_message + 0.25 * f64::from(tasks) / messages)
                    .clamp(1.0, 32.0);
            }
            Err(e) => {
                warn!(error = %e, "receive failed; backing off");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.poll_max) => {}
                }
            }
        }
    }
    info!(worker = %config.worker_id, in_flight = running.len(), "worker stopping");
    if tokio::time::timeout(config.drain_timeout, async {
        while running.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!(worker = %config.worker_id, "handlers still running at shutdown; their tasks will be re-delivered");
        running.abort_all();
    }
}

/// One part of a delivery.
pub(crate) enum Part {
    Task(TaskMessage),
    /// The second step of a submission.
    Expand(crate::ids::JobId),
}

/// How a handler run ended.
enum RunEnd {
    Output(TaskOutput),
    Error(HandlerError),
    /// The job was closed (cancelled / failed fast) or the task taken away while it ran.
    Cancelled(String),
    Panicked(String),
}

impl Engine {
    /// Process one delivery: every task attempt it carries, at once. Never panics on bad
    /// input; storage errors leave the message to be re-delivered after its lease.
    pub async fn process_delivery(&self, delivery: Delivery, config: &WorkerConfig) {
        let mut parts = JoinSet::new();
        for (message, lease) in self.open_delivery(delivery).await {
            let (engine, config) = (self.clone(), config.clone());
            parts.spawn(async move { engine.process_part(message, lease, &config).await });
        }
        while parts.join_next().await.is_some() {}
    }

    /// Decode a delivery into its task attempts, each with a share of the message lease. A
    /// malformed message goes to the poison queue; a bundle delivered again is split into one
    /// message per task (sent before the bundle is deleted: a crash in between duplicates,
    /// never loses) so that each task counts its own deliveries from then on.
    pub(crate) async fn open_delivery(&self, delivery: Delivery) -> Vec<(Part, PartLease)> {
        let queue = &self.inner.backend.queue;
        let tasks = match open_message(&delivery.body, delivery.dequeue_count) {
            Opening::Expand(expand) => {
                let body = delivery.body.clone();
                let leases =
                    lease::share(queue.clone(), delivery, vec![body], self.inner.config.lease);
                return leases
                    .into_iter()
                    .map(|l| (Part::Expand(expand.clone()), l))
                    .collect();
            }
            Opening::Malformed(reason) => {
                warn!(message_id = %delivery.message_id, error = %reason, "malformed message moved to the poison queue");
                if let Err(e) = queue.dead_letter(&delivery).await {
                    warn!(error = %e, "dead-lettering failed");
                }
                return Vec::new();
            }
            Opening::Split(tasks) => {
                debug!(message_id = %delivery.message_id, tasks = tasks.len(), "bundle delivered again; split into one message per task");
                let bodies: Vec<String> = tasks.iter().map(encode_message).collect();
                let split = match queue.send(&bodies, Duration::ZERO).await {
                    Ok(()) => queue.delete(&delivery).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = split {
                    warn!(error = %e, "splitting a bundle failed; it will be delivered again");
                }
                return Vec::new();
            }
            Opening::Parts(tasks) => tasks,
        };
        let bodies: Vec<String> = tasks.iter().map(encode_message).collect();
        let leases = lease::share(queue.clone(), delivery, bodies, self.inner.config.lease);
        tasks.into_iter().map(Part::Task).zip(leases).collect()
    }

    /// Process one part of a delivery: a task attempt, or the expansion of an accepted job.
    pub(crate) async fn process_part(&self, part: Part, lease: PartLease, config: &WorkerConfig) {
        match part {
            Part::Task(message) => self.process_task(message, lease, config).await,
            Part::Expand(job_id) => self.process_expand(job_id, lease).await,
        }
    }

    /// Expand an accepted job under the message's lease (renewed while a large plan is
    /// stored). Delivered too often without an outcome (the expansion crashes the process),
    /// the job is closed FAILED `POISONED`: it never stays PENDING.
    async fn process_expand(&self, job_id: crate::ids::JobId, lease: PartLease) {
        let span = tracing::error_span!("expand", job_id = %job_id);
        async move {
            if !expand_allowed(lease.dequeue_count(), self.inner.config.max_dequeue) {
                warn!(
                    dequeue_count = lease.dequeue_count(),
                    "expansion delivered too often; the job fails"
                );
                let closed = self.fail_pending(
                    &job_id,
                    codes::POISONED,
                    format!(
                        "its expansion was delivered {} times without an outcome",
                        lease.dequeue_count()
                    ),
                );
                match closed.await {
                    Ok(()) => {
                        if let Err(e) = lease.dead_letter().await {
                            warn!(error = %e, "dead-lettering failed");
                        }
                    }
                    Err(e) => warn!(error = %e, "could not fail the job; the message comes back"),
                }
                return;
            }
            match self.expand(&job_id).await {
                Ok(Expanded::Done) => {
                    lease.ack().await.ok();
                }
                Ok(Expanded::Held { until }) => {
                    // Another expansion is at work: ask again when its claim would lapse, with
                    // a new message (this one's delivery count must not grow meanwhile).
                    let wait =
                        Duration::from_millis(u64::try_from(until - now_millis()).unwrap_or(0))
                            + Duration::from_secs(1);
                    debug!(
                        wait_ms = as_millis(wait),
                        "the job is being expanded elsewhere"
                    );
                    match self
                        .inner
                        .backend
                        .queue
                        .send(&[expand_message(&job_id)], wait)
                        .await
                    {
                        Ok(()) => {
                            lease.ack().await.ok();
                        }
                        Err(e) => {
                            warn!(error = %e, "expansion deferred; it will be delivered again")
                        }
                    }
                }
                Err(e) => warn!(error = %e, "expansion not completed; it will be delivered again"),
            }
        }
        .instrument(span)
        .await
    }

    /// Process one task attempt of a delivery, in a span carrying its IDs.
    async fn process_task(&self, message: TaskMessage, lease: PartLease, config: &WorkerConfig) {
        // ERROR level: the span is recorded whatever the log filter, so every line carries its IDs.
        let span = tracing::error_span!(
            "task",
            job_id = %message.job_id,
            task_id = %message.task_id,
            task = tracing::field::Empty,
            task_version = tracing::field::Empty,
            attempt = message.attempt,
        );
        let result = self
            .process_message(lease, &message, config)
            .instrument(span)
            .await;
        if let Err(e) = result {
            warn!(job_id = %message.job_id, task_id = %message.task_id, error = %e, "delivery not completed; it will be re-delivered");
        }
    }

    async fn process_message(
        &self,
        lease: PartLease,
        message: &TaskMessage,
        config: &WorkerConfig,
    ) -> Result<(), RuntimeError> {
        let backend = &self.inner.backend;
        let stored = backend
            .tasks
            .get_task(&message.job_id, &message.task_id)
            .await?;
        if let Some(task) = &stored {
            let span = tracing::Span::current();
            span.record("task", task.task.as_str());
            span.record("task_version", task.task_version);
        }
        let now = now_millis();
        let facts = DeliveryFacts {
            attempt: message.attempt,
            dequeue_count: lease.dequeue_count(),
            max_dequeue: self.inner.config.max_dequeue,
            now,
        };
        let decision = triage(stored.as_ref().map(TaskState::of), facts);
        let Some(mut task) = stored else {
            debug!("message for an unknown task (job removed or re-planned); dropped");
            lease.ack().await.ok();
            return Ok(());
        };
        match decision {
            Decision::Postpone { until } => {
                // Held by a live lease (a duplicate, or the holder's lease not yet expired in
                // the task record), or early for a retry (a sweeper re-send): come back then;
                // a takeover happens then if needed.
                debug!(holder = ?task.worker, status = %task.status, "delivery postponed");
                let wait = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
                lease.postpone(wait).await?;
                return Ok(());
            }
            Decision::Poison => {
                warn!(
                    dequeue_count = lease.dequeue_count(),
                    "poison message: delivered too often without an outcome"
                );
                // The task first: a storage error leaves the message to come back (and be
                // poison again), never parked with its task still unfinished.
                self.poison_task(&task, lease.dequeue_count()).await?;
                lease.dead_letter().await?;
                return Ok(());
            }
            Decision::Finished | Decision::Stale => {
                // A duplicate or stale delivery: redo the idempotent follow-up (a crash may
                // have interrupted it), then drop the message.
                Metrics::inc(&self.inner.metrics.duplicate_deliveries);
                if decision == Decision::Finished
                    && let Some(job) = backend.jobs.get_job(&message.job_id).await?
                {
                    self.after_terminal(&job, task).await?;
                }
                lease.ack().await.ok();
                return Ok(());
            }
            // (An unknown task was dropped above.)
            Decision::NeverReleased | Decision::UnknownTask => {
                warn!("message for a task that was never released; dropped");
                lease.ack().await.ok();
                return Ok(());
            }
            Decision::ReleaseRetry => {
                match self
                    .cas_task(&task, TaskStatus::Queued, |t| t.not_before = None)
                    .await?
                {
                    Some(queued) => task = queued,
                    None => return Ok(()),
                }
            }
            Decision::Run { .. } => {}
        }

        let lease_until = now + as_millis(self.inner.config.lease);
        let took_over = matches!(decision, Decision::Run { takeover: true });
        let dequeue_count = lease.dequeue_count();
        // The `task_started` event is stored with this change (its starts count goes up).
        let Some(running) = self
            .cas_task(&task, TaskStatus::Running, |t| {
                t.lease_until = Some(lease_until);
                t.worker = Some(config.worker_id.clone());
                t.started_at = Some(now);
                t.error = None;
                t.starts += 1;
                t.dequeue_count = dequeue_count;
            })
            .await?
        else {
            return Ok(()); // another delivery won the task
        };
        if took_over {
            info!(previous = ?task.worker, "took over a task whose lease expired");
        }

        // Fresh job status after the task is ours: a job cancelled before this point never
        // sees this handler start.
        let Some(job) = self.fresh_job(&message.job_id).await? else {
            lease.ack().await.ok();
            return Ok(());
        };
        if job.status.is_terminal() {
            let error = ErrorInfo::new(codes::JOB_CANCELLED, format!("job is {}", job.status));
            if let Some(cancelled) = self
                .cas_task(&running, TaskStatus::Cancelled, |t| t.error = Some(error))
                .await?
            {
                Metrics::inc(&self.inner.metrics.tasks_cancelled);
                self.after_terminal(&job, cancelled).await?;
            }
            lease.ack().await.ok();
            return Ok(());
        }

        let (end, running) = self.run_handler(&job, running).await?;
        let Some(finished) = self.record_outcome(&job, &running, end).await? else {
            // Lost the task while it ran (taken over, or cancelled): the winner follows up.
            let current = backend.tasks.get_task(&job.id, &running.id).await?;
            if let Some(current) = current.filter(|t| t.status.is_terminal()) {
                self.after_terminal(&job, current).await?;
            }
            lease.ack().await.ok();
            return Ok(());
        };
        if finished.status.is_terminal() {
            self.after_terminal(&job, finished).await?;
        }
        if let Err(e) = lease.ack().await {
            debug!(error = %e, "message not deleted; a re-delivery will find the task finished");
        }
        Ok(())
    }

    /// Fail a task delivered too often without an outcome (`POISONED`); the job then follows
    /// its outcome policy. Done already (another delivery won): nothing.
    pub(crate) async fn poison_task(
        &self,
        task: &TaskRecord,
        dequeue_count: u32,
    ) -> Result<(), RuntimeError> {
        let error = ErrorInfo::new(
            codes::POISONED,
            format!(
                "delivered {} times without an outcome (max_dequeue {})",
                dequeue_count, self.inner.config.max_dequeue
            ),
        );
        if let Some(failed) = self
            .cas_task(task, TaskStatus::Failed, |t| t.error = Some(error.clone()))
            .await?
        {
            Metrics::inc(&self.inner.metrics.tasks_poisoned);
            Metrics::inc(&self.inner.metrics.tasks_failed);
            if let Some(job) = self.inner.backend.jobs.get_job(&task.job_id).await? {
                self.after_terminal(&job, failed).await?;
            }
        }
        Ok(())
    }

    /// Run the handler with a timeout, a heartbeat that renews the lease, and a watch on the
    /// job so that cancellation reaches the handler through its context.
    async fn run_handler(
        &self,
        job: &JobRecord,
        task: TaskRecord,
    ) -> Result<(RunEnd, TaskRecord), RuntimeError> {
        let Some(handler) = self.inner.registry.handler(&task.task).cloned() else {
            let error = HandlerError::permanent(
                codes::NO_HANDLER,
                format!("no handler named {:?} in this worker", task.task),
            );
            return Ok((RunEnd::Error(error), task));
        };
        let cancel = CancellationToken::new();
        let ctx = Arc::new(TaskContext {
            job_id: job.id.clone(),
            task_id: task.id.clone(),
            task: task.task.clone(),
            key: task.key.clone(),
            attempt: task.attempt,
            params: task.params.clone(),
            job_params: job.params.clone(),
            job_attempt: task.job_attempt,
            group: task.group.clone(),
            waits_for: task.waits_for.clone(),
            cancel: cancel.clone(),
            tasks: self.inner.backend.tasks.clone(),
            progress: self.inner.backend.tasks.clone(),
            last_progress: Mutex::new(None),
        });
        let run_ctx = ctx.clone();
        let mut join = tokio::spawn(async move { handler.run(&run_ctx).await }.in_current_span());
        let timeout = Duration::from_millis(task.timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let lease = self.inner.config.lease;
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
        let mut task = task;
        let mut cancelled_because: Option<String> = None;
        // Once cancelled, a handler has this long to stop before it is aborted.
        let mut grace_deadline = tokio::time::Instant::now();
        let grace = Duration::from_secs(30);
        let end = loop {
            tokio::select! {
                joined = &mut join => {
                    break match (joined, cancelled_because.take()) {
                        (_, Some(reason)) => RunEnd::Cancelled(reason),
                        (Ok(Ok(output)), None) => RunEnd::Output(output),
                        (Ok(Err(error)), None) => RunEnd::Error(error),
                        (Err(e), None) if e.is_panic() => RunEnd::Panicked(panic_message(e)),
                        (Err(e), None) => RunEnd::Cancelled(e.to_string()),
                    };
                }
                _ = tokio::time::sleep_until(deadline), if cancelled_because.is_none() => {
                    cancel.cancel();
                    join.abort();
                    break RunEnd::Error(HandlerError::timeout(format!("no result within {timeout:?}")));
                }
                _ = tokio::time::sleep_until(grace_deadline), if cancelled_because.is_some() => {
                    join.abort();
                    break RunEnd::Cancelled(cancelled_because.take().unwrap_or_default());
                }
                _ = heartbeat.tick() => {
                    if cancelled_because.is_none() {
                        if let Some(reason) = self.heartbeat(job, &mut task).await? {
                            cancel.cancel();
                            cancelled_because = Some(reason);
                            grace_deadline = tokio::time::Instant::now() + grace;
                        }
                    }
                }
            }
        };
        Ok((end, task))
    }

    /// Renew the task record's lease (the message's is renewed by its keeper); report a reason
    /// to stop if the job was closed or the task was taken away.
    async fn heartbeat(
        &self,
        job: &JobRecord,
        task: &mut TaskRecord,
    ) -> Result<Option<String>, RuntimeError> {
        let lease = self.inner.config.lease;
        let lease_until = now_millis() + as_millis(lease);
        match self
            .cas_task(task, TaskStatus::Running, |t| {
                t.lease_until = Some(lease_until)
            })
            .await?
        {
            Some(renewed) => *task = renewed,
            None => {
                let current = self
                    .inner
                    .backend
                    .tasks
                    .get_task(&task.job_id, &task.id)
                    .await?;
                match current {
                    Some(current)
                        if current.status == TaskStatus::Running
                            && current.worker == task.worker =>
                    {
                        *task = current
                    }
                    Some(current) => {
                        return Ok(Some(format!(
                            "task is now {} (held by {:?})",
                            current.status, current.worker
                        )));
                    }
                    None => return Ok(Some("task was removed".into())),
                }
            }
        }
        let status = self.fresh_job(&job.id).await?.map(|j| j.status);
        Ok(match status {
            Some(status) if status.is_terminal() => Some(format!("job is {status}")),
            None => Some("job was removed".into()),
            _ => None,
        })
    }

    /// Store the outcome of a run: SUCCEEDED (with children for orchestrators), RETRY_WAIT
    /// (and the delayed message), FAILED or CANCELLED. `None` when the task changed under us.
    async fn record_outcome(
        &self,
        job: &JobRecord,
        task: &TaskRecord,
        end: RunEnd,
    ) -> Result<Option<TaskRecord>, RuntimeError> {
        let error = match end {
            RunEnd::Output(output) => {
                if !output.children.is_empty() {
                    if let Err(error) = self.store_children(job, task, output.children).await? {
                        return self.fail_or_retry(task, error).await;
                    }
                }
                let succeeded = self
                    .cas_task(task, TaskStatus::Succeeded, |t| {
                        t.result = Some(output.result)
                    })
                    .await?;
                if succeeded.is_some() {
                    Metrics::inc(&self.inner.metrics.tasks_succeeded);
                }
                return Ok(succeeded);
            }
            RunEnd::Cancelled(reason) => {
                let error = ErrorInfo::new(codes::JOB_CANCELLED, reason);
                let cancelled = self
                    .cas_task(task, TaskStatus::Cancelled, |t| t.error = Some(error))
                    .await?;
                if cancelled.is_some() {
                    Metrics::inc(&self.inner.metrics.tasks_cancelled);
                }
                return Ok(cancelled);
            }
            RunEnd::Error(error) => error,
            RunEnd::Panicked(message) => HandlerError::permanent(codes::HANDLER_PANICKED, message),
        };
        self.fail_or_retry(task, error).await
    }

    async fn fail_or_retry(
        &self,
        task: &TaskRecord,
        error: HandlerError,
    ) -> Result<Option<TaskRecord>, RuntimeError> {
        let jitter: f64 = rand::rng().random();
        match decide_retry(&task.retry, task.attempt, error.class, jitter) {
            RetryDecision::RetryAfter(delay) => {
                let not_before = now_millis() + as_millis(delay);
                let waiting = self
                    .cas_task(task, TaskStatus::RetryWait, |t| {
                        t.attempt += 1;
                        t.not_before = Some(not_before);
                        t.error = Some(error.info());
                        t.lease_until = None;
                    })
                    .await?;
                if let Some(waiting) = &waiting {
                    Metrics::inc(&self.inner.metrics.tasks_retried);
                    info!(error = %error, delay_ms = as_millis(delay), "attempt failed; retry scheduled");
                    self.inner
                        .backend
                        .queue
                        .send(&[message_body(waiting, waiting.attempt)], delay)
                        .await?;
                }
                Ok(waiting)
            }
            RetryDecision::GiveUp => {
                let failed = self
                    .cas_task(task, TaskStatus::Failed, |t| t.error = Some(error.info()))
                    .await?;
                if failed.is_some() {
                    Metrics::inc(&self.inner.metrics.tasks_failed);
                    warn!(error = %error, "task failed");
                }
                Ok(failed)
            }
        }
    }

    /// Validate and store an orchestrator's children (idempotent by ID), then send the
    /// messages of those that can start. `Ok(Err(_))` is a permanent planning error.
    async fn store_children(
        &self,
        job: &JobRecord,
        task: &TaskRecord,
        children: Vec<crate::model::TaskSpec>,
    ) -> Result<Result<(), HandlerError>, RuntimeError> {
        if task.kind != TaskKind::Orchestrator {
            let msg = format!(
                "{} tasks cannot create children (only orchestrators can)",
                task.kind
            );
            return Ok(Err(HandlerError::permanent(codes::INVALID_CHILDREN, msg)));
        }
        let scope = PlanScope::Children {
            group: task.child_group.as_deref(),
        };
        let plan = match graph::plan(
            &job.id,
            children,
            scope,
            &|n| self.inner.registry.handler_defaults(n),
            now_millis(),
        ) {
            Ok(plan) => plan,
            Err(e) => {
                return Ok(Err(HandlerError::permanent(
                    codes::INVALID_CHILDREN,
                    e.to_string(),
                )));
            }
        };
        info!(children = plan.len(), "orchestrator created children");
        self.store_tasks(job.clone(), plan.into_records()).await?;
        Ok(Ok(()))
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("handler panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("handler panicked: {s}")
    } else {
        "handler panicked".to_owned()
    }
}
