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

#[cfg(test)]
mod open_tests {
    use std::time::Duration;

    use engine::ports::TaskQueue;

    use super::{OpenError, SqliteBackend, SqliteConfig};

    fn wal_len(db: &std::path::Path) -> u64 {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(&wal).map_or(0, |m| m.len())
    }

    /// A backend with one message in its queue, closed.
    fn closed_db_with_a_message(db: &std::path::Path) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let backend = SqliteBackend::open(db, &SqliteConfig::default()).unwrap();
        rt.block_on(backend.send(&["m".into()], Duration::ZERO))
            .unwrap();
        assert!(
            wal_len(db) > 0,
            "the commit is in the -wal before the close"
        );
        backend.close();
    }

    /// A version-2 file (queue without `job_id`) is migrated when opened: its queued messages
    /// get their job, so deleting the job removes them.
    #[test]
    fn a_version_2_database_is_migrated_and_its_messages_name_their_job() {
        use engine::ports::{Maintenance, Removal};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let job: engine::JobId = "ab".repeat(32).parse().unwrap();
        let body = format!(
            r#"{{"job_id":"{job}","task_id":"{}","attempt":1}}"#,
            "cd".repeat(32)
        );
        SqliteBackend::open(&db, &SqliteConfig::default())
            .unwrap()
            .close();
        {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch(
                "DROP INDEX queue_by_job; ALTER TABLE queue DROP COLUMN job_id; PRAGMA user_version = 2;",
            )
            .unwrap();
            c.execute(
                "INSERT INTO queue (queue, body, visible_at, inserted_at) VALUES ('tasks', ?1, 0, 0)",
                [&body],
            )
            .unwrap();
        }
        let backend = SqliteBackend::open(&db, &SqliteConfig::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(backend.delete_job(&job, Removal::Everything))
            .unwrap();
        let got = rt
            .block_on(backend.receive(10, Duration::from_secs(1)))
            .unwrap();
        assert!(got.is_empty(), "the migrated message went with its job");
        backend.close();
        let version: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);
    }

    #[test]
    fn close_checkpoints_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        closed_db_with_a_message(&db);
        assert_eq!(wal_len(&db), 0);
        // The file alone holds the message.
        let other = tempfile::tempdir().unwrap();
        let copy = other.path().join("copy.db");
        std::fs::copy(&db, &copy).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let backend = SqliteBackend::open_read_only(&copy, &SqliteConfig::default()).unwrap();
        let got = rt
            .block_on(backend.receive(10, Duration::from_secs(1)))
            .map(|d| d.len());
        // `receive` writes (it hides what it hands out): refused, read-only.
        assert!(got.is_err(), "{got:?}");
        let n: i64 = rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_read_only_backend_reads_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        closed_db_with_a_message(&db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let backend = SqliteBackend::open_read_only(&db, &SqliteConfig::default()).unwrap();
        let depth = rt.block_on(backend.depth()).unwrap();
        assert_eq!((depth.messages, depth.poison), (1, 0));
        let sent = rt.block_on(backend.send(&["x".into()], Duration::ZERO));
        let message = format!("{:?}", sent.unwrap_err());
        assert!(message.contains("readonly"), "{message}");
        backend.close();
        drop(backend);
        let n: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "nothing written");
    }

    #[test]
    fn open_refuses_bad_paths_and_other_schema_versions() {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig::default();
        let is = |r: Result<_, OpenError>, what: fn(&OpenError) -> bool| match r {
            Err(e) => assert!(what(&e), "{e:?}"),
            Ok(_) => panic!("opened"),
        };
        is(SqliteBackend::open(dir.path(), &config), |e| {
            matches!(e, OpenError::IsDirectory { .. }) && e.is_bad_path()
        });
        is(
            SqliteBackend::open(dir.path().join("no/t.db"), &config),
            |e| matches!(e, OpenError::NoDirectory { .. }) && e.is_bad_path(),
        );
        let absent = dir.path().join("absent.db");
        is(SqliteBackend::open_read_only(&absent, &config), |e| {
            matches!(e, OpenError::NotFound { .. }) && e.is_bad_path()
        });
        assert!(!absent.exists());
        let other = dir.path().join("other.db");
        rusqlite::Connection::open(&other)
            .unwrap()
            .execute_batch("PRAGMA user_version = 7")
            .unwrap();
        let version = |e: &OpenError| {
            matches!(
                e,
                OpenError::SchemaVersion {
                    found: 7,
                    expected: 3,
                    ..
                }
            ) && !e.is_bad_path()
        };
        is(SqliteBackend::open(&other, &config), version);
        is(SqliteBackend::open_read_only(&other, &config), version);
        // A file that is not (yet) a tessera database is refused read-only too.
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        is(SqliteBackend::open_read_only(&empty, &config), |e| {
            matches!(e, OpenError::SchemaVersion { found: 0, .. })
        });
    }

    /// Many connections opening one new file at the same instant all wait for each other's
    /// locks (the WAL switch and the schema creation) instead of failing with SQLITE_BUSY.
    #[test]
    fn concurrent_opens_of_a_new_database_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let n = 24;
            let barrier = std::sync::Barrier::new(n);
            let errors: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            SqliteBackend::open(&path, &SqliteConfig::default())
                                .map(drop)
                                .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| h.join().unwrap().err())
                    .collect()
            });
            assert!(errors.is_empty(), "round {round}: {errors:?}");
        }
    }
}
