//! The expansion of an accepted job: plan it, store its tasks, start it; exactly once,
//! whoever runs it (a worker's `{"expand"}` message, the command line's inline path, the
//! sweeper, a duplicate delivery). The expander first takes the job's [`ExpansionClaim`] by
//! compare-and-set ([`claim_verdict`] decides, purely); a live claim of another expansion is
//! left alone (a worker sends its message again for when the claim lapses), a lapsed one (its
//! holder died) is taken over.

use std::time::Duration;

use tracing::warn;

use super::{Engine, Metrics, RuntimeError, as_millis, message_bodies};
use crate::graph::{self, PlanScope};
use crate::handler::CheckError;
use crate::ids::JobId;
use crate::model::{
    ErrorInfo, ExpansionClaim, JobRecord, JobStatus, Millis, TaskRecord, TaskStatus, codes,
    now_millis,
};

/// What an expansion found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expanded {
    /// The job is expanded (by this call or an earlier one), or gone, or no longer PENDING.
    Done,
    /// Another expansion holds the job's claim until then: ask again after it.
    Held { until: Millis },
}

/// What to do with a job a caller wants to expand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimVerdict {
    /// Nothing to expand: the job is gone or no longer PENDING.
    Done,
    /// The caller holds the claim already (the command line stored the job claimed).
    Proceed,
    /// Unclaimed, or its claim has lapsed: take it.
    Claim,
    /// Another expansion's claim is live until then.
    Held { until: Millis },
}

/// Pure: the verdict for `owner` over a job's status and claim at `now`.
pub(crate) fn claim_verdict(
    status: Option<JobStatus>,
    claim: Option<&ExpansionClaim>,
    owner: &str,
    now: Millis,
) -> ClaimVerdict {
    match (status, claim) {
        (Some(JobStatus::Pending), None) => ClaimVerdict::Claim,
        (Some(JobStatus::Pending), Some(c)) if c.owner == owner => ClaimVerdict::Proceed,
        (Some(JobStatus::Pending), Some(c)) if c.until > now => {
            ClaimVerdict::Held { until: c.until }
        }
        (Some(JobStatus::Pending), Some(_)) => ClaimVerdict::Claim,
        _ => ClaimVerdict::Done,
    }
}

/// A new claim token: one per expansion (not per process: two expansions in one process
/// must not share a claim).
pub(crate) fn new_owner() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether the expansion's check already ran (the command line runs it before storing).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    Already,
    No,
}

impl Engine {
    /// How long an expansion claim lasts without renewal.
    pub(crate) fn claim_ttl(&self) -> Duration {
        self.inner.config.lease * 4
    }

    pub(crate) fn claim_for(&self, owner: String) -> ExpansionClaim {
        ExpansionClaim {
            owner,
            until: now_millis() + as_millis(self.claim_ttl()),
        }
    }

    /// The second step of a submission: plan an accepted job, store its tasks, start it.
    /// Idempotent and exclusive: a job no longer PENDING is left alone, and a job another
    /// expansion is working on is [`Expanded::Held`]. A plan that cannot be built closes the
    /// job FAILED with `INVALID_PLAN`: it never stays PENDING.
    pub async fn expand(&self, id: &JobId) -> Result<Expanded, RuntimeError> {
        self.expand_as(id, &new_owner(), Checked::No).await
    }

    pub(crate) async fn expand_as(
        &self,
        id: &JobId,
        owner: &str,
        checked: Checked,
    ) -> Result<Expanded, RuntimeError> {
        let Some(mut job) = self.inner.backend.jobs.get_job(id).await? else {
            return Ok(Expanded::Done);
        };
        loop {
            let verdict = claim_verdict(
                Some(job.status),
                job.expansion.as_ref(),
                owner,
                now_millis(),
            );
            match verdict {
                ClaimVerdict::Done => return Ok(Expanded::Done),
                ClaimVerdict::Held { until } => return Ok(Expanded::Held { until }),
                ClaimVerdict::Proceed => break,
                ClaimVerdict::Claim => {
                    let mut claimed = job.clone();
                    claimed.expansion = Some(self.claim_for(owner.to_owned()));
                    if let Some(claimed) = self.cas_job(&job, claimed).await? {
                        job = claimed;
                        break;
                    }
                    // Lost the race: decide again on what won it.
                    match self.inner.backend.jobs.get_job(id).await? {
                        Some(current) => job = current,
                        None => return Ok(Expanded::Done),
                    }
                }
            }
        }
        self.expand_claimed(job, checked).await?;
        Ok(Expanded::Done)
    }

    /// Expand a job whose claim this expansion holds.
    async fn expand_claimed(&self, job: JobRecord, checked: Checked) -> Result<(), RuntimeError> {
        let id = job.id.clone();
        let controller = self.inner.registry.controller(&job.job_type);
        if let (Checked::No, Some(controller)) = (checked, controller) {
            match controller.check_at_expansion(&job.params).await {
                Ok(()) => {}
                Err(CheckError::Invalid(e)) => {
                    warn!(job_id = %id, field = %e.field, error = %e.reason, "the accepted job's params are refused at expansion");
                    let message = format!("{}: {}", e.field, e.reason);
                    return self.fail_pending(&id, codes::INVALID_PARAMS, message).await;
                }
                Err(e @ CheckError::Unavailable { .. }) => {
                    return Err(RuntimeError::CheckUnavailable(e.to_string()));
                }
            }
        }
        let plan = match self.plan_of(&job) {
            Ok(plan) => plan,
            Err(message) => {
                warn!(job_id = %id, error = %message, "the accepted job cannot be planned");
                return self.fail_pending(&id, codes::INVALID_PLAN, message).await;
            }
        };
        // The record learns its barriers and size before any task runs (a group member that
        // finishes at once must find the barrier it wakes); the claim is renewed with it.
        let mut sized = job.clone();
        sized.barriers = plan.barriers.clone();
        sized.planned_tasks = plan.len() as u64;
        sized.expansion = job
            .expansion
            .as_ref()
            .map(|c| self.claim_for(c.owner.clone()));
        let Some(job) = self.cas_job(&job, sized).await? else {
            return Ok(()); // a cancel got there first (the claim keeps other expansions out)
        };
        let Some(job) = self.store_tasks(job, plan.into_records()).await? else {
            return Ok(());
        };
        self.start(job).await?;
        Ok(())
    }

    /// Close a PENDING job FAILED with `code` (a job already further is left alone).
    pub(crate) async fn fail_pending(
        &self,
        job_id: &JobId,
        code: &str,
        message: String,
    ) -> Result<(), RuntimeError> {
        let Some(job) = self.inner.backend.jobs.get_job(job_id).await? else {
            return Ok(());
        };
        if job.status != JobStatus::Pending {
            return Ok(());
        }
        let mut failed = job.clone();
        failed.status = JobStatus::Failed;
        failed.finished_at = Some(now_millis());
        failed.error = Some(ErrorInfo::new(code, message));
        failed.expansion = None;
        if self.cas_job(&job, failed).await?.is_some() {
            Metrics::inc(&self.inner.metrics.jobs_closed);
        }
        Ok(())
    }

    /// The validated plan of a job, or why there is none.
    fn plan_of(&self, job: &JobRecord) -> Result<graph::Plan, String> {
        let controller = self
            .inner
            .registry
            .controller(&job.job_type)
            .ok_or_else(|| {
                format!(
                    "no controller for job type {:?} in this worker",
                    job.job_type
                )
            })?;
        let specs = controller
            .plan(&job.id, &job.params)
            .map_err(|e| e.to_string())?;
        graph::plan(
            &job.id,
            specs,
            PlanScope::Job,
            &|n| self.inner.registry.handler_defaults(n),
            now_millis(),
        )
        .map_err(|e| e.to_string())
    }

    /// Insert tasks in chunks, sending the messages of each chunk's root tasks right after
    /// it, and renewing the job's expansion claim when half of it has run out. `None` when
    /// the job changed under the expansion (cancelled): the rest is not stored.
    pub(crate) async fn store_tasks(
        &self,
        mut job: JobRecord,
        tasks: impl Iterator<Item = TaskRecord>,
    ) -> Result<Option<JobRecord>, RuntimeError> {
        let chunk = self.inner.config.insert_chunk.max(1);
        let half = as_millis(self.claim_ttl()) / 2;
        let mut tasks = tasks.peekable();
        let mut batch = Vec::with_capacity(chunk);
        while tasks.peek().is_some() {
            if let Some(claim) = job
                .expansion
                .as_ref()
                .filter(|c| c.until - now_millis() < half)
            {
                let mut renewed = job.clone();
                renewed.expansion = Some(self.claim_for(claim.owner.clone()));
                match self.cas_job(&job, renewed).await? {
                    Some(renewed) => job = renewed,
                    None => return Ok(None),
                }
            }
            batch.clear();
            batch.extend(tasks.by_ref().take(chunk).map(|mut t| {
                t.job_attempt = job.attempt;
                t
            }));
            self.inner
                .backend
                .tasks
                .insert_tasks(&job.id, &batch)
                .await?;
            let queued: Vec<&TaskRecord> = batch
                .iter()
                .filter(|t| t.status == TaskStatus::Queued)
                .collect();
            let bodies = message_bodies(&job.id, &queued, self.inner.config.bundle_max);
            if !bodies.is_empty() {
                self.inner
                    .backend
                    .queue
                    .send(&bodies, Duration::ZERO)
                    .await?;
            }
        }
        Ok(Some(job))
    }

    /// PENDING -> RUNNING (the claim is released), then a completion check (everything may
    /// have finished already).
    async fn start(&self, job: JobRecord) -> Result<JobRecord, RuntimeError> {
        let mut running = job.clone();
        running.status = JobStatus::Running;
        running.started_at = Some(now_millis());
        running.expansion = None;
        match self.cas_job(&job, running).await? {
            Some(running) => {
                self.check_completion(&running.id).await?;
                Ok(self
                    .inner
                    .backend
                    .jobs
                    .get_job(&running.id)
                    .await?
                    .unwrap_or(running))
            }
            None => {
                // Cancelled (or failed fast) while planning: sweep what the last chunks added.
                let current = self
                    .inner
                    .backend
                    .jobs
                    .get_job(&job.id)
                    .await?
                    .unwrap_or(job);
                if current.status.is_terminal() {
                    let error =
                        ErrorInfo::new(codes::JOB_CANCELLED, format!("job is {}", current.status));
                    self.inner
                        .backend
                        .tasks
                        .finish_unstarted(
                            &current.id,
                            current.attempt,
                            TaskStatus::Cancelled,
                            &error,
                        )
                        .await?;
                }
                Ok(current)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str, until: Millis) -> ExpansionClaim {
        ExpansionClaim {
            owner: owner.into(),
            until,
        }
    }

    #[test]
    fn claim_verdicts() {
        use ClaimVerdict::*;
        use JobStatus as S;
        let now = 1_000;
        let cases: &[(Option<S>, Option<ExpansionClaim>, ClaimVerdict)] = &[
            (None, None, Done),
            (Some(S::Running), None, Done),
            (Some(S::Running), Some(claim("other", 2_000)), Done),
            (Some(S::Cancelled), Some(claim("me", 2_000)), Done),
            (Some(S::Failed), None, Done),
            (Some(S::Pending), None, Claim),
            (Some(S::Pending), Some(claim("me", 2_000)), Proceed),
            (Some(S::Pending), Some(claim("me", 500)), Proceed),
            (
                Some(S::Pending),
                Some(claim("other", 2_000)),
                Held { until: 2_000 },
            ),
            (
                Some(S::Pending),
                Some(claim("other", 1_001)),
                Held { until: 1_001 },
            ),
            (Some(S::Pending), Some(claim("other", 1_000)), Claim),
            (Some(S::Pending), Some(claim("other", 10)), Claim),
        ];
        for (status, c, expected) in cases {
            assert_eq!(
                claim_verdict(*status, c.as_ref(), "me", now),
                *expected,
                "{status:?} {c:?}"
            );
        }
    }

    #[test]
    fn owners_differ() {
        assert_ne!(new_owner(), new_owner());
        assert_eq!(new_owner().len(), 32);
    }
}
