//! An in-memory backend implementing every port: for unit tests, property tests and the
//! conformance suite's reference run. Not durable, one process only.
//!
//! It keeps a log of every stored status change, so tests can check "released once" and
//! "closed once", and it can duplicate sent messages to exercise at-least-once delivery.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use crate::events::JobEvent;
use crate::ids::{JobId, TaskId};
use crate::model::{
    ErrorInfo, JobRecord, JobStatus, Millis, Progress, Revision, StatusCounts, TaskRecord,
    TaskStatus, now_millis,
};
use crate::ports::*;

/// A stored change of status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange<S> {
    pub id: String,
    pub from: Option<S>,
    pub to: S,
}

#[derive(Default)]
struct State {
    jobs: HashMap<JobId, (JobRecord, u64)>,
    tasks: BTreeMap<(JobId, TaskId), (TaskRecord, u64)>,
    messages: BTreeMap<u64, Message>,
    poison: Vec<PoisonMessage>,
    events: Vec<(u64, JobEvent)>,
    next_id: u64,
    task_log: Vec<StatusChange<TaskStatus>>,
    job_log: Vec<StatusChange<JobStatus>>,
    rng: Option<(StdRng, f64)>,
}

struct Message {
    body: String,
    visible_at: Millis,
    dequeue_count: u32,
    receipt: u64,
}

/// Every port in memory.
#[derive(Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    notify: Notify,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Duplicate each sent message with probability `p` (seeded, reproducible).
    pub fn with_duplicates(self, seed: u64, p: f64) -> Self {
        self.state.lock().unwrap().rng = Some((StdRng::seed_from_u64(seed), p));
        self
    }

    /// Every stored task status change, in order (inserts have `from: None`).
    pub fn task_log(&self) -> Vec<StatusChange<TaskStatus>> {
        self.state.lock().unwrap().task_log.clone()
    }

    /// Every stored job status change, in order.
    pub fn job_log(&self) -> Vec<StatusChange<JobStatus>> {
        self.state.lock().unwrap().job_log.clone()
    }

    /// Messages waiting (visible or not) and in the poison queue.
    pub fn queue_lengths(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.messages.len(), s.poison.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn append_events(&mut self, events: &[JobEvent]) {
        for e in events {
            self.next_id += 1;
            let seq = self.next_id;
            self.events.push((seq, e.clone()));
        }
    }
}

fn rev(n: u64) -> Revision {
    Revision(n.to_string())
}

fn is_member(t: &TaskRecord, group: &str) -> bool {
    t.group.as_deref() == Some(group)
}

#[async_trait]
impl JobStore for MemoryBackend {
    async fn insert_job(&self, job: &JobRecord) -> Result<Inserted<JobRecord>, StoreError> {
        let mut s = self.lock();
        if let Some((existing, n)) = s.jobs.get(&job.id) {
            return Ok(Inserted::Existing(JobRecord {
                revision: rev(*n),
                ..existing.clone()
            }));
        }
        s.jobs.insert(job.id.clone(), (job.clone(), 1));
        s.job_log.push(StatusChange {
            id: job.id.to_string(),
            from: None,
            to: job.status,
        });
        Ok(Inserted::Created(rev(1)))
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.lock().jobs.get(id).map(|(j, n)| JobRecord {
            revision: rev(*n),
            ..j.clone()
        }))
    }

    async fn update_job(&self, job: &JobRecord, events: &[JobEvent]) -> Result<Cas, StoreError> {
        let mut s = self.lock();
        let Some((stored, n)) = s.jobs.get_mut(&job.id) else {
            return Ok(Err(Conflict));
        };
        if rev(*n) != job.revision {
            return Ok(Err(Conflict));
        }
        let from = stored.status;
        *stored = job.clone();
        *n += 1;
        let n = *n;
        if from != job.status {
            s.job_log.push(StatusChange {
                id: job.id.to_string(),
                from: Some(from),
                to: job.status,
            });
        }
        s.append_events(events);
        Ok(Ok(rev(n)))
    }

    async fn list_jobs(&self, page: PageRequest) -> Result<Page<JobRecord>, StoreError> {
        let s = self.lock();
        let mut jobs: Vec<_> = s
            .jobs
            .values()
            .map(|(j, n)| JobRecord {
                revision: rev(*n),
                ..j.clone()
            })
            .collect();
        jobs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        paginate(
            jobs,
            page,
            |j| j.id.to_string(),
            |c| JobId::try_from(c.to_owned()).is_ok(),
        )
    }

    async fn job_statuses(&self) -> Result<Vec<(JobId, JobStatus)>, StoreError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .map(|(j, _)| (j.id.clone(), j.status))
            .collect())
    }
}

/// Page over items in a stable order using the previous page's last key as the token.
/// A page of `items` after the item whose key is the cursor; `valid` checks a cursor's form.
fn paginate<T>(
    items: Vec<T>,
    page: PageRequest,
    key: impl Fn(&T) -> String,
    valid: impl Fn(&str) -> bool,
) -> Result<Page<T>, StoreError> {
    if let Some(cursor) = page.after.as_ref().filter(|c| !valid(c)) {
        return Err(StoreError::InvalidCursor {
            cursor: cursor.clone(),
        });
    }
    let start = match &page.after {
        Some(after) => items
            .iter()
            .position(|i| &key(i) == after)
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let limit = page.limit.max(1);
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = if rest.len() > limit {
        rest.truncate(limit);
        rest.last().map(&key)
    } else {
        None
    };
    Ok(Page { items: rest, next })
}

#[async_trait]
impl TaskReads for MemoryBackend {
    async fn get_task(
        &self,
        job_id: &JobId,
        id: &TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let s = self.lock();
        Ok(s.tasks
            .get(&(job_id.clone(), id.clone()))
            .map(|(t, n)| TaskRecord {
                revision: rev(*n),
                ..t.clone()
            }))
    }

    async fn task_statuses(
        &self,
        job_id: &JobId,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskStatus)>, StoreError> {
        let s = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| {
                s.tasks
                    .get(&(job_id.clone(), id.clone()))
                    .map(|(t, _)| (id.clone(), t.status))
            })
            .collect())
    }

    async fn running_progress(&self, job_id: &JobId) -> Result<f64, StoreError> {
        let s = self.lock();
        Ok(s.tasks
            .values()
            .filter(|(t, _)| &t.job_id == job_id && t.status == TaskStatus::Running)
            .filter_map(|(t, _)| t.progress.as_ref().map(|p| p.fraction))
            .sum())
    }

    async fn list_tasks(
        &self,
        job_id: &JobId,
        query: &TaskQuery,
        page: PageRequest,
    ) -> Result<Page<TaskRecord>, StoreError> {
        let s = self.lock();
        let items: Vec<TaskRecord> = s
            .tasks
            .range((job_id.clone(), min_task_id())..)
            .take_while(|((j, _), _)| j == job_id)
            .filter(|(_, (t, _))| query.group.as_deref().is_none_or(|g| is_member(t, g)))
            .filter(|(_, (t, _))| query.status.is_none_or(|st| t.status == st))
            .map(|(_, (t, n))| TaskRecord {
                revision: rev(*n),
                ..t.clone()
            })
            .collect();
        paginate(
            items,
            page,
            |t| t.id.to_string(),
            |c| TaskId::try_from(c.to_owned()).is_ok(),
        )
    }

    async fn dependents(&self, job_id: &JobId, id: &TaskId) -> Result<Vec<TaskId>, StoreError> {
        let s = self.lock();
        Ok(s.tasks
            .values()
            .filter(|(t, _)| &t.job_id == job_id && t.depends_on.contains(id))
            .map(|(t, _)| t.id.clone())
            .collect())
    }

    async fn count_tasks(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<StatusCounts, StoreError> {
        let s = self.lock();
        let mut counts = StatusCounts::default();
        for (t, _) in s.tasks.values() {
            if &t.job_id == job_id && group.is_none_or(|g| is_member(t, g)) {
                counts.add(t.status, 1);
            }
        }
        Ok(counts)
    }

    async fn any_unfinished(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<bool, StoreError> {
        let s = self.lock();
        Ok(s.tasks.values().any(|(t, _)| {
            &t.job_id == job_id
                && !t.status.is_terminal()
                && group.is_none_or(|g| is_member(t, g) || t.child_group.as_deref() == Some(g))
        }))
    }
}

#[async_trait]
impl TaskWrites for MemoryBackend {
    async fn insert_tasks(&self, job_id: &JobId, tasks: &[TaskRecord]) -> Result<u64, StoreError> {
        let mut s = self.lock();
        let mut created = 0;
        for t in tasks {
            let key = (job_id.clone(), t.id.clone());
            if s.tasks.contains_key(&key) {
                continue;
            }
            s.tasks.insert(key, (t.clone(), 1));
            s.task_log.push(StatusChange {
                id: t.id.to_string(),
                from: None,
                to: t.status,
            });
            created += 1;
        }
        Ok(created)
    }

    async fn update_task(&self, task: &TaskRecord, events: &[JobEvent]) -> Result<Cas, StoreError> {
        let mut s = self.lock();
        let Some((stored, n)) = s.tasks.get_mut(&(task.job_id.clone(), task.id.clone())) else {
            return Ok(Err(Conflict));
        };
        if rev(*n) != task.revision {
            return Ok(Err(Conflict));
        }
        let from = stored.status;
        // Progress is advisory: written only by set_progress.
        let progress = stored.progress.take();
        *stored = task.clone();
        stored.progress = progress;
        *n += 1;
        let n = *n;
        if from != task.status {
            s.task_log.push(StatusChange {
                id: task.id.to_string(),
                from: Some(from),
                to: task.status,
            });
        }
        s.append_events(events);
        Ok(Ok(rev(n)))
    }

    async fn finish_unstarted(
        &self,
        job_id: &JobId,
        job_attempt: u32,
        to: TaskStatus,
        error: &ErrorInfo,
    ) -> Result<u64, StoreError> {
        let mut s = self.lock();
        let now = now_millis();
        let mut changed = Vec::new();
        for (t, n) in s.tasks.values_mut() {
            if &t.job_id == job_id
                && t.job_attempt == job_attempt
                && TaskStatus::UNSTARTED.contains(&t.status)
            {
                changed.push(StatusChange {
                    id: t.id.to_string(),
                    from: Some(t.status),
                    to,
                });
                t.status = to;
                t.error = Some(error.clone());
                t.updated_at = now;
                t.finished_at = Some(now);
                *n += 1;
            }
        }
        let count = changed.len() as u64;
        s.task_log.extend(changed);
        if count > 0 {
            let event = JobEvent::now(
                job_id,
                job_attempt,
                crate::events::EventKind::TasksEnded {
                    status: to,
                    count,
                    error: error.clone(),
                },
            );
            s.append_events(&[event]);
        }
        Ok(count)
    }
}

#[async_trait]
impl TaskProgress for MemoryBackend {
    async fn set_progress(
        &self,
        job_id: &JobId,
        id: &TaskId,
        progress: &Progress,
        event: &JobEvent,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some((t, _)) = s.tasks.get_mut(&(job_id.clone(), id.clone())) {
            t.progress = Some(progress.clone());
            s.append_events(std::slice::from_ref(event));
        }
        Ok(())
    }
}

fn min_task_id() -> TaskId {
    "0".repeat(64).parse().expect("valid id")
}

#[async_trait]
impl TaskQueue for MemoryBackend {
    async fn send(&self, bodies: &[String], delay: Duration) -> Result<(), QueueError> {
        {
            let mut s = self.lock();
            let visible_at = now_millis() + delay.as_millis() as Millis;
            for body in bodies {
                let copies = match &mut s.rng {
                    Some((rng, p)) => {
                        let p = *p;
                        if rng.random_bool(p) { 2 } else { 1 }
                    }
                    None => 1,
                };
                for _ in 0..copies {
                    s.next_id += 1;
                    let id = s.next_id;
                    s.messages.insert(
                        id,
                        Message {
                            body: body.clone(),
                            visible_at,
                            dequeue_count: 0,
                            receipt: 0,
                        },
                    );
                }
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        let mut s = self.lock();
        let now = now_millis();
        let mut out = Vec::new();
        let ids: Vec<u64> = s
            .messages
            .iter()
            .filter(|(_, m)| m.visible_at <= now)
            .map(|(id, _)| *id)
            .take(max)
            .collect();
        for id in ids {
            s.next_id += 1;
            let receipt = s.next_id;
            let m = s.messages.get_mut(&id).expect("listed above");
            m.visible_at = now + lease.as_millis() as Millis;
            m.dequeue_count += 1;
            m.receipt = receipt;
            out.push(Delivery {
                message_id: id.to_string(),
                receipt: receipt.to_string(),
                dequeue_count: m.dequeue_count,
                body: m.body.clone(),
            });
        }
        Ok(out)
    }

    async fn extend_lease(
        &self,
        delivery: &mut Delivery,
        lease: Duration,
    ) -> Result<(), QueueError> {
        let mut s = self.lock();
        s.next_id += 1;
        let receipt = s.next_id;
        let id: u64 = delivery.message_id.parse().unwrap_or(0);
        match s.messages.get_mut(&id) {
            Some(m) if m.receipt.to_string() == delivery.receipt => {
                m.visible_at = now_millis() + lease.as_millis() as Millis;
                m.receipt = receipt;
                delivery.receipt = receipt.to_string();
                Ok(())
            }
            _ => Err(QueueError::LeaseLost {
                message_id: delivery.message_id.clone(),
            }),
        }
    }

    async fn delete(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let mut s = self.lock();
        let id: u64 = delivery.message_id.parse().unwrap_or(0);
        match s.messages.get(&id) {
            Some(m) if m.receipt.to_string() == delivery.receipt => {
                s.messages.remove(&id);
                Ok(())
            }
            _ => Err(QueueError::LeaseLost {
                message_id: delivery.message_id.clone(),
            }),
        }
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.delete(delivery).await?;
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id.to_string();
        s.poison.push(PoisonMessage {
            id,
            body: delivery.body.clone(),
            poisoned_at: now_millis(),
        });
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let s = self.lock();
        Ok(QueueDepth {
            messages: s.messages.len() as u64,
            poison: s.poison.len() as u64,
        })
    }

    async fn wait_for_messages(&self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.notify.notified()).await;
    }
}

#[async_trait]
impl PoisonQueue for MemoryBackend {
    async fn poison_messages(&self, limit: usize) -> Result<Vec<PoisonMessage>, QueueError> {
        Ok(self.lock().poison.iter().take(limit).cloned().collect())
    }

    async fn remove_poison(&self, id: &str) -> Result<bool, QueueError> {
        let mut s = self.lock();
        let before = s.poison.len();
        s.poison.retain(|m| m.id != id);
        Ok(s.poison.len() < before)
    }
}

#[async_trait]
impl EventLog for MemoryBackend {
    async fn events_after(
        &self,
        job_id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, StoreError> {
        let s = self.lock();
        Ok(s.events
            .iter()
            .filter(|(seq, e)| *seq > after && &e.job_id == job_id)
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Maintenance for MemoryBackend {
    async fn stale_tasks(
        &self,
        status: TaskStatus,
        updated_before: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let s = self.lock();
        Ok(s.tasks
            .values()
            .filter(|(t, _)| t.status == status && t.updated_at < updated_before)
            .take(limit)
            .map(|(t, n)| TaskRecord {
                revision: rev(*n),
                ..t.clone()
            })
            .collect())
    }

    async fn stale_pending_jobs(
        &self,
        created_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let s = self.lock();
        Ok(s.jobs
            .values()
            .filter(|(j, _)| j.status == JobStatus::Pending && j.created_at < created_before)
            .take(limit)
            .map(|(j, n)| JobRecord {
                revision: rev(*n),
                ..j.clone()
            })
            .collect())
    }

    async fn jobs_finished_before(
        &self,
        finished_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobId>, StoreError> {
        let s = self.lock();
        Ok(s.jobs
            .values()
            .filter(|(j, _)| {
                j.status.is_terminal() && j.finished_at.is_some_and(|f| f < finished_before)
            })
            .take(limit)
            .map(|(j, _)| j.id.clone())
            .collect())
    }

    async fn delete_job(&self, id: &JobId, removal: Removal) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.jobs.remove(id);
        s.tasks.retain(|(j, _), _| j != id);
        s.messages.retain(|_, m| {
            serde_json::from_str::<crate::model::QueueMessage>(&m.body)
                .map_or(true, |q| q.job_id() != id)
        });
        if removal == Removal::Everything {
            s.events.retain(|(_, e)| &e.job_id != id);
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "conformance"))]
mod conformance {
    use std::sync::Arc;

    use crate::ports::Backend;

    async fn make() -> (Backend, ()) {
        (Backend::from_all(Arc::new(super::MemoryBackend::new())), ())
    }

    crate::conformance_tests!(make);
}
