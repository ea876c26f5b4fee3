//! The sweeper: re-sends messages of stranded tasks, resumes interrupted submissions and
//! removes finished jobs after the retention period. Safe to run in every worker process:
//! everything it does is idempotent (a duplicate message is dropped by the worker).

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Engine, Expanded, Metrics, RuntimeError, as_millis, message_body};
use crate::model::{TaskStatus, now_millis};

const SWEEP_BATCH: usize = 500;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub messages_resent: u64,
    pub jobs_resumed: u64,
    pub jobs_removed: u64,
}

/// Sweep every `sweep_interval` (with jitter so several processes spread out) until shutdown.
pub async fn run_sweeper(engine: Engine, shutdown: CancellationToken) {
    let interval = engine.inner.config.sweep_interval;
    loop {
        let jitter = rand::rng().random_range(0.5..1.5);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval.mul_f64(jitter)) => {}
        }
        match engine.sweep().await {
            Ok(report) if report != SweepReport::default() => info!(?report, "sweep"),
            Ok(_) => debug!("sweep: nothing to do"),
            Err(e) => warn!(error = %e, "sweep failed"),
        }
    }
}

impl Engine {
    /// One sweep.
    pub async fn sweep(&self) -> Result<SweepReport, RuntimeError> {
        let config = &self.inner.config;
        let backend = &self.inner.backend;
        let now = now_millis();
        let stale = now - as_millis(config.stale_after);
        let mut report = SweepReport::default();

        // QUEUED whose message may be lost; RETRY_WAIT whose delayed message may be lost;
        // RUNNING whose holder stopped renewing its lease.
        let cases = [
            (TaskStatus::Queued, stale),
            (TaskStatus::RetryWait, stale),
            (TaskStatus::Running, stale - as_millis(config.lease)),
        ];
        for (status, updated_before) in cases {
            for task in backend
                .maintenance
                .stale_tasks(status, updated_before, SWEEP_BATCH)
                .await?
            {
                if status == TaskStatus::RetryWait && task.not_before.is_some_and(|t| t > stale) {
                    continue;
                }
                // Touch the record (no status change) so the next sweep does not re-send at once.
                let mut touched = task.clone();
                touched.updated_at = now;
                let touched = backend.tasks.update_task(&touched, &[]).await?;
                if touched.is_ok() {
                    backend
                        .queue
                        .send(&[message_body(&task, task.attempt)], Duration::ZERO)
                        .await?;
                    Metrics::inc(&self.inner.metrics.messages_resent);
                    report.messages_resent += 1;
                }
            }
        }

        for job in backend
            .maintenance
            .stale_pending_jobs(stale, SWEEP_BATCH)
            .await?
        {
            info!(job_id = %job.id, "expanding a job whose expansion was interrupted");
            match self.expand(&job.id).await {
                Ok(Expanded::Done) => report.jobs_resumed += 1,
                Ok(Expanded::Held { .. }) => debug!(job_id = %job.id, "being expanded elsewhere"),
                Err(e) => warn!(error = %e, "could not resume job"),
            }
        }

        let cutoff = now - as_millis(config.retention);
        for id in backend
            .maintenance
            .jobs_finished_before(cutoff, SWEEP_BATCH)
            .await?
        {
            backend
                .maintenance
                .delete_job(&id, crate::ports::Removal::Everything)
                .await?;
            report.jobs_removed += 1;
        }
        Ok(report)
    }
}
