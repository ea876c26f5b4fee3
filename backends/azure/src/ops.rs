//! Counts of storage operations (requests), to check the cost per task.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, one per kind of request.
#[derive(Debug, Default)]
pub struct Ops {
    queue_put: AtomicU64,
    queue_get: AtomicU64,
    queue_update: AtomicU64,
    queue_delete: AtomicU64,
    table_read: AtomicU64,
    table_write: AtomicU64,
    table_batch: AtomicU64,
    blob: AtomicU64,
}

/// A snapshot of [`Ops`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OpCounts {
    /// Messages sent (one request each).
    pub queue_put: u64,
    /// Receive requests (up to 32 messages each).
    pub queue_get: u64,
    /// Lease extensions.
    pub queue_update: u64,
    pub queue_delete: u64,
    /// Point reads and query pages.
    pub table_read: u64,
    /// Single-entity writes.
    pub table_write: u64,
    /// Entity-group transactions (up to 100 entities each).
    pub table_batch: u64,
    pub blob: u64,
}

impl OpCounts {
    pub fn total(&self) -> u64 {
        self.queue_put
            + self.queue_get
            + self.queue_update
            + self.queue_delete
            + self.table_read
            + self.table_write
            + self.table_batch
            + self.blob
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &OpCounts) -> OpCounts {
        OpCounts {
            queue_put: self.queue_put - earlier.queue_put,
            queue_get: self.queue_get - earlier.queue_get,
            queue_update: self.queue_update - earlier.queue_update,
            queue_delete: self.queue_delete - earlier.queue_delete,
            table_read: self.table_read - earlier.table_read,
            table_write: self.table_write - earlier.table_write,
            table_batch: self.table_batch - earlier.table_batch,
            blob: self.blob - earlier.blob,
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Op {
    QueuePut,
    QueueGet,
    QueueUpdate,
    QueueDelete,
    TableRead,
    TableWrite,
    TableBatch,
    Blob,
}

impl Ops {
    pub(crate) fn count(&self, op: Op) {
        let counter = match op {
            Op::QueuePut => &self.queue_put,
            Op::QueueGet => &self.queue_get,
            Op::QueueUpdate => &self.queue_update,
            Op::QueueDelete => &self.queue_delete,
            Op::TableRead => &self.table_read,
            Op::TableWrite => &self.table_write,
            Op::TableBatch => &self.table_batch,
            Op::Blob => &self.blob,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> OpCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        OpCounts {
            queue_put: get(&self.queue_put),
            queue_get: get(&self.queue_get),
            queue_update: get(&self.queue_update),
            queue_delete: get(&self.queue_delete),
            table_read: get(&self.table_read),
            table_write: get(&self.table_write),
            table_batch: get(&self.table_batch),
            blob: get(&self.blob),
        }
    }
}
