//! The per-job event stream in Table Storage.
//!
//! Events are written with *group commit*: concurrent `emit` calls of this process share one
//! entity-group transaction per (job, partition) of up to 100 events. Job events are stored
//! before `emit` returns; task events linger up to 100 ms in the background to share a
//! transaction (a crash may lose the last 100 ms of task events, never task state). A job's events rotate over 16 partitions (`{job_id}~e{s}`),
//! one per flush, so a busy job does not load one partition; readers merge them.
//!
//! Sequence numbers: `millis << 22 | process tag (10 bits) << 12 | counter (12 bits)`, so the
//! order is the writers' clock order, exact within one process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_data_tables::prelude::TableClient;
use engine::events::{EventKind, JobEvent};
use engine::ids::JobId;
use engine::ports::{EventLog, StoreError};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::AzureBackend;
use crate::codec::SHARDS;
use crate::ops::Ops;
use crate::tables::{self, BATCH, BatchOp, BatchOutcome, Entity, str_prop};

type Waiter = oneshot::Sender<Result<(), String>>;

/// How long a task event may wait for others to share its transaction.
const LINGER: Duration = Duration::from_millis(100);

/// The event writer: group commit, plus a short linger for task events.
#[derive(Clone)]
pub(crate) struct EventWriter {
    inner: Arc<Inner>,
}

struct Inner {
    table: TableClient,
    ops: Arc<Ops>,
    tag: u64,
    counter: AtomicU64,
    flushes: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: Vec<(u64, JobEvent)>,
    waiters: Vec<Waiter>,
    flushing: bool,
    scheduled: bool,
}

/// If the flushing call is dropped midway, the next `emit` must be able to lead: hand the
/// leadership back and fail the waiters of what was not written.
struct Flushing<'a>(&'a Inner, bool);

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let mut state = self.0.state.lock().expect("event state lock");
            state.flushing = false;
            state.events.clear();
            for waiter in state.waiters.drain(..) {
                let _ = waiter.send(Err("event flush interrupted".into()));
            }
        }
    }
}

fn partition(job: &JobId, shard: char) -> String {
    format!("{job}~e{shard}")
}

fn event_entity(pk: &str, seq: u64, event: &JobEvent) -> Result<Entity, StoreError> {
    let mut e = Entity::new();
    e.insert("PartitionKey".into(), pk.into());
    e.insert("RowKey".into(), format!("{seq:020}").into());
    let json = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
        message: format!("event: {e}"),
    })?;
    e.insert("E".into(), Value::String(json));
    Ok(e)
}

impl EventWriter {
    pub fn new(table: TableClient, ops: Arc<Ops>) -> Self {
        EventWriter {
            inner: Arc::new(Inner {
                table,
                ops,
                tag: rand::random::<u64>() & 0x3ff,
                counter: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Queue `events`; with `wait`, return once they (and all queued before) are stored,
    /// else within [`LINGER`] in the background.
    pub async fn emit(&self, events: &[JobEvent], wait: bool) -> Result<(), StoreError> {
        let inner = &self.inner;
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut state = inner.state.lock().expect("event state lock");
            for event in events {
                let seq = inner.seq(event.at.max(engine::model::now_millis()));
                state.events.push((seq, event.clone()));
            }
            if wait {
                state.waiters.push(tx);
                !std::mem::replace(&mut state.flushing, true)
            } else {
                if !state.scheduled && !state.flushing {
                    state.scheduled = true;
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(LINGER).await;
                        let lead = {
                            let mut state = inner.state.lock().expect("event state lock");
                            state.scheduled = false;
                            !std::mem::replace(&mut state.flushing, true)
                        };
                        if lead {
                            inner.flush().await;
                        }
                    });
                }
                return Ok(());
            }
        };
        if lead {
            inner.flush().await;
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Unavailable {
                message: format!("event write: {message}"),
                source: None,
            }),
            Err(_) => Err(StoreError::Unavailable {
                message: "event writer stopped".into(),
                source: None,
            }),
        }
    }
}

impl Inner {
    fn seq(&self, at: i64) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & 0xfff;
        (u64::try_from(at).unwrap_or(0) << 22) | (self.tag << 12) | n
    }

    /// Write what is pending until nothing is; only one flusher at a time.
    async fn flush(&self) {
        let mut guard = Flushing(self, false);
        loop {
            let (events, waiters) = {
                let mut state = self.state.lock().expect("event state lock");
                if state.events.is_empty() {
                    state.flushing = false;
                    guard.1 = true;
                    for waiter in state.waiters.drain(..) {
                        let _ = waiter.send(Ok(()));
                    }
                    return;
                }
                (
                    std::mem::take(&mut state.events),
                    std::mem::take(&mut state.waiters),
                )
            };
            let shard = SHARDS[(self.flushes.fetch_add(1, Ordering::Relaxed) % 16) as usize];
            let result = self.write(events, shard).await;
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    async fn write(&self, events: Vec<(u64, JobEvent)>, shard: char) -> Result<(), String> {
        let mut by_job: BTreeMap<JobId, Vec<BatchOp>> = BTreeMap::new();
        for (seq, event) in &events {
            let pk = partition(&event.job_id, shard);
            let entity = event_entity(&pk, *seq, event).map_err(|e| e.to_string())?;
            by_job
                .entry(event.job_id.clone())
                .or_default()
                .push(BatchOp::Upsert(format!("{seq:020}"), entity));
        }
        let mut writes = Vec::new();
        for (job, mut ops) in by_job {
            let pk = partition(&job, shard);
            while !ops.is_empty() {
                let rest = ops.split_off(ops.len().min(BATCH));
                let chunk = std::mem::replace(&mut ops, rest);
                let pk = pk.clone();
                writes.push(async move { tables::batch(&self.ops, &self.table, &pk, chunk).await });
            }
        }
        for result in futures::future::join_all(writes).await {
            match result {
                Ok(BatchOutcome::Done) => {}
                Ok(_) => return Err("event write refused".into()),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
}

impl AzureBackend {
    /// Store the events still lingering (before exit).
    pub async fn flush_events(&self) -> Result<(), StoreError> {
        self.event_writer.emit(&[], true).await
    }
}

#[async_trait]
impl EventLog for AzureBackend {
    async fn emit(&self, events: &[JobEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // Job-level events are stored before `emit` returns; task events may linger briefly
        // to share a transaction (events are advisory: the state is in the task entities).
        let wait = events.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::JobStarted { .. } | EventKind::JobCompleted { .. }
            )
        });
        self.event_writer.emit(events, wait).await
    }

    async fn events_after(
        &self,
        job_id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, StoreError> {
        // Read-your-writes: what lingers is stored first.
        self.flush_events().await?;
        let reads = SHARDS.iter().map(|&s| {
            let filter = format!(
                "PartitionKey eq '{}' and RowKey gt '{after:020}'",
                partition(job_id, s)
            );
            async move {
                let mut entities = Vec::new();
                let mut start = None;
                loop {
                    let page = tables::query_page(
                        &self.ops,
                        &self.events,
                        &filter,
                        None,
                        limit - entities.len(),
                        start,
                    )
                    .await?;
                    entities.extend(page.entities);
                    match page.next {
                        Some(next) if entities.len() < limit => start = Some(next),
                        _ => return Ok::<_, StoreError>(entities),
                    }
                }
            }
        });
        let mut out = Vec::new();
        for page in futures::future::join_all(reads).await {
            for entity in page? {
                let seq = str_prop(&entity, "RowKey").and_then(|s| s.parse::<u64>().ok());
                let event = str_prop(&entity, "E").and_then(|s| serde_json::from_str(s).ok());
                match (seq, event) {
                    (Some(seq), Some(event)) => out.push((seq, event)),
                    _ => {
                        return Err(StoreError::Corrupt {
                            message: format!("event entity of job {job_id}"),
                        });
                    }
                }
            }
        }
        out.sort_by_key(|(seq, _)| *seq);
        out.truncate(limit);
        Ok(out)
    }
}

/// Filter on every event partition of a job.
pub(crate) fn job_event_partitions(job: &JobId) -> String {
    format!(
        "PartitionKey ge '{}' and PartitionKey le '{}'",
        partition(job, '0'),
        partition(job, 'f')
    )
}
