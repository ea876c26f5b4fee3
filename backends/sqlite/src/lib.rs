//! Tessera's embedded backend: jobs, tasks, the task queue and the event log in one SQLite file
//! in WAL mode. Several processes (e.g. `tessera worker` twice) may share the file: SQLite's
//! locking serializes writers, and the queue's leases hand each message to one worker at a time.
//!
//! Durability: `synchronous=NORMAL` in WAL mode survives any process crash (SIGKILL included);
//! only an OS crash or power loss may lose the last commits. `SqliteConfig::durable_fsync`
//! selects `synchronous=FULL` for that too.

mod backup;
mod codec;
mod db;
mod events;
mod jobs;
mod maintenance;
mod migration;
mod open;
mod queue;
mod tasks;

use std::path::{Path, PathBuf};

use tokio::sync::Notify;

pub use backup::{BackupError, backup};
use db::Db;
pub use open::{OpenError, SqliteConfig};

/// Every engine port on one SQLite file.
pub struct SqliteBackend {
    db: Db,
    notify: Notify,
    path: PathBuf,
}

impl SqliteBackend {
    /// Stop the backend's threads and close its connections, checkpointing the WAL into the
    /// database file first (read-write backends). Blocks the calling thread until done; call
    /// it once nothing uses the backend any more (later calls fail with
    /// `StoreError::Unavailable`). Dropping the backend does the same in the background.
    pub fn close(&self) {
        self.db.close();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use engine::ports::Backend;

    async fn make() -> (Backend, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let backend =
            super::SqliteBackend::open(dir.path().join("t.db"), &super::SqliteConfig::default())
                .unwrap();
        (Backend::from_all(backend), dir)
    }

    engine::conformance_tests!(make);

    #[allow(dead_code)]
    fn _assert_send_sync(b: Arc<super::SqliteBackend>) -> Backend {
        Backend::from_all(b)
    }
}
