//! The per-job event stream in Table Storage, stored **beside the records it reports on**, so
//! that a status change and its event are one entity-group transaction:
//!
//! - an event about a task (`task_started`, `task_completed`, `progress_update`, ...) is a row
//!   of the task's own partition (`{job_id}~{s}` in the tasks table), RowKey `~ev{seq:020}`;
//! - an event about the job (`job_started`, `job_completed`) is a row of the job's partition
//!   (the job ID, in the jobs table), same RowKey scheme;
//! - `tasks_ended` (many unstarted tasks closed at once) goes with each transaction that
//!   closes them, in their partition, carrying how many that transaction closed.
//!
//! A reader merges the job's 17 partitions by sequence number. Sequence numbers:
//! `millis << 22 | process tag (10 bits) << 12 | counter (12 bits)`, so the order is the
//! writers' clock order, exact within one process. RowKeys start with `~`, after every task
//! ID (hex) and the `job` row, so the records' own range reads never meet an event row.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use engine::events::JobEvent;
use engine::ids::JobId;
use engine::ports::{EventLog, StoreError};
use serde_json::Value;

use crate::AzureBackend;
use crate::codec::SHARDS;
use crate::tables::{self, BatchOp, Entity, lit, str_prop};

/// RowKey prefix of event rows; `EVENT_END` bounds their range.
pub(crate) const EVENT_RK: &str = "~ev";
const EVENT_END: &str = "~ew";

/// Gives each event of this process its sequence number.
pub(crate) struct Sequencer {
    tag: u64,
    counter: AtomicU64,
}

impl Default for Sequencer {
    fn default() -> Self {
        Sequencer {
            tag: rand::random::<u64>() & 0x3ff,
            counter: AtomicU64::new(0),
        }
    }
}

impl Sequencer {
    fn next(&self, at: i64) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & 0xfff;
        let at = at.max(engine::model::now_millis());
        (u64::try_from(at).unwrap_or(0) << 22) | (self.tag << 12) | n
    }
}

/// Which table an event row lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    Tasks,
    Jobs,
}

impl AzureBackend {
    /// The insert of an event row into partition `pk` (to join a transaction there).
    pub(crate) fn event_op(&self, pk: &str, event: &JobEvent) -> Result<BatchOp, StoreError> {
        let seq = self.sequencer.next(event.at);
        let mut e = Entity::new();
        e.insert("PartitionKey".into(), pk.into());
        e.insert("RowKey".into(), format!("{EVENT_RK}{seq:020}").into());
        e.insert("T".into(), "e".into());
        let json = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
            message: format!("event: {e}"),
        })?;
        e.insert("E".into(), Value::String(json));
        Ok(BatchOp::Insert(e))
    }

    /// Event rows of one job partition after `after`, oldest first, at most `limit`.
    async fn partition_events(
        &self,
        home: Home,
        pk: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, StoreError> {
        let table = match home {
            Home::Tasks => &self.tasks,
            Home::Jobs => &self.jobs,
        };
        let filter = format!(
            "PartitionKey eq {} and RowKey gt {} and RowKey lt {}",
            lit(pk),
            lit(&format!("{EVENT_RK}{after:020}")),
            lit(EVENT_END)
        );
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page =
                tables::query_page(&self.ops, table, &filter, None, limit - out.len(), start)
                    .await?;
            for entity in &page.entities {
                out.push(parse_event(entity, pk)?);
            }
            match page.next {
                Some(next) if out.len() < limit => start = Some(next),
                _ => return Ok(out),
            }
        }
    }
}

fn parse_event(entity: &Entity, pk: &str) -> Result<(u64, JobEvent), StoreError> {
    let seq = str_prop(entity, "RowKey")
        .and_then(|rk| rk.strip_prefix(EVENT_RK))
        .and_then(|s| s.parse::<u64>().ok());
    let event = str_prop(entity, "E").and_then(|s| serde_json::from_str(s).ok());
    match (seq, event) {
        (Some(seq), Some(event)) => Ok((seq, event)),
        _ => Err(StoreError::Corrupt {
            message: format!("event row in partition {pk}"),
        }),
    }
}

/// How long after its sequence number is drawn an event may still be committed: the
/// writers' clock skew plus a transaction's latency, with a margin. Readers that follow the
/// log stay this far behind (`settled_cursor`).
pub const EVENT_SETTLE_MS: i64 = 2_000;

fn settled_cursor_at(now: engine::model::Millis) -> u64 {
    u64::try_from(now - EVENT_SETTLE_MS).unwrap_or(0) << 22
}

#[async_trait]
impl EventLog for AzureBackend {
    /// Sequence numbers come from the writers' clocks, not from the commit: an event drawn at
    /// `t` may be committed after one drawn at `t + 1` by another process. Below
    /// `now - EVENT_SETTLE_MS`, every event is in.
    fn settled_cursor(&self, now: engine::model::Millis) -> u64 {
        settled_cursor_at(now)
    }

    fn settle_delay(&self) -> std::time::Duration {
        // The cursor has millisecond steps: one more for the event drawn in the last one.
        std::time::Duration::from_millis(EVENT_SETTLE_MS.unsigned_abs() + 1)
    }

    async fn events_after(
        &self,
        job_id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, StoreError> {
        let mut partitions: Vec<(Home, String)> = SHARDS
            .iter()
            .map(|s| (Home::Tasks, format!("{job_id}~{s}")))
            .collect();
        partitions.push((Home::Jobs, job_id.to_string()));
        let reads = partitions
            .iter()
            .map(|(home, pk)| self.partition_events(*home, pk, after, limit));
        let mut out = Vec::new();
        for page in futures::future::join_all(reads).await {
            out.extend(page?);
        }
        out.sort_by_key(|(seq, _)| *seq);
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(millis: i64, tag: u64, counter: u64) -> u64 {
        (u64::try_from(millis).unwrap() << 22) | (tag << 12) | counter
    }

    /// A follower reads below the settled cursor: every event drawn before the last
    /// `EVENT_SETTLE_MS` (by any process: any tag, any counter), none drawn after.
    #[test]
    fn the_settled_cursor_trails_the_writers_clocks() {
        let now = engine::model::now_millis();
        let settled = settled_cursor_at(now);
        let before = now - EVENT_SETTLE_MS - 1;
        assert!(seq(before, 0x3ff, 0xfff) < settled);
        assert!(seq(now - EVENT_SETTLE_MS, 0, 0) >= settled);
        assert!(Sequencer::default().next(now) >= settled, "drawn now");
    }
}
