//! Opening the database: settings, the connection pragmas (WAL, cache, checkpoints), the schema
//! check, the reader pool, and read-only opens of files other processes may be writing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::Notify;

use crate::SqliteBackend;
use crate::db::{Access, Db};
use crate::migration::{SCHEMA_VERSION, create_schema, readable, user_version};

/// Reader connections (threads) per process, beside the one writer.
const READERS: usize = 2;

/// Settings of the embedded backend.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// `synchronous=FULL` (fsync every commit) instead of `NORMAL`.
    pub durable_fsync: bool,
    /// How long a writer waits for another process's lock.
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            durable_fsync: false,
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// Page cache per connection, in KiB (negative `cache_size`): 16 MiB.
const CACHE_KIB: i64 = 16_384;

/// WAL bounds while running. SQLite checkpoints (PASSIVE) when a commit leaves the WAL at
/// `WAL_AUTOCHECKPOINT_PAGES` pages: 4 096 pages of 4 KiB, 16 MiB, four times SQLite's
/// default, so the hot pages of a large fan-out (queue, task indexes) are copied back a few
/// times per 10 000 tasks rather than every 4 MiB. A checkpoint cannot reset the WAL while
/// readers still use its start, so it may grow past that under load; after each reset it is
/// truncated back to `JOURNAL_SIZE_LIMIT` (64 MiB) instead of keeping its largest size on
/// disk. On a clean close the WAL is checkpointed and truncated to 0 bytes (`db.rs`).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4_096;
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("cannot open database {path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, this tessera uses version {expected}: \
         move the file away or choose another --db"
    )]
    SchemaVersion {
        path: PathBuf,
        found: i64,
        expected: i64,
    },
    /// The path names a directory, not a database file.
    #[error("database path {path} is a directory: name a file in it, e.g. {example}")]
    IsDirectory { path: PathBuf, example: PathBuf },
    /// The directory that would hold the database does not exist.
    #[error("database path {path}: directory {directory} does not exist")]
    NoDirectory { path: PathBuf, directory: PathBuf },
    /// A read-only open of a file that does not exist.
    #[error("database {path} does not exist")]
    NotFound { path: PathBuf },
}

impl OpenError {
    /// Whether the path given is the mistake (a directory, a missing directory or file), as
    /// opposed to a storage failure.
    pub fn is_bad_path(&self) -> bool {
        matches!(
            self,
            OpenError::IsDirectory { .. }
                | OpenError::NoDirectory { .. }
                | OpenError::NotFound { .. }
        )
    }
}

impl SqliteBackend {
    /// Open (creating if needed) the database at `path` and its schema. Waits up to
    /// `config.busy_timeout` for other processes opening or writing the same file.
    pub fn open(path: impl AsRef<Path>, config: &SqliteConfig) -> Result<Arc<Self>, OpenError> {
        let path = path.as_ref().to_path_buf();
        check_path(&path)?;
        let err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let deadline = Instant::now() + config.busy_timeout;
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(config.busy_timeout).map_err(err)?;
        // Switching a new file to WAL upgrades a read lock to an exclusive one, and SQLite does
        // not call the busy handler for that upgrade: SQLITE_BUSY comes back at once while
        // another process holds the file. Wait for it here instead.
        retry_busy(deadline, || {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        })
        .map_err(err)?;
        conn.pragma_update(
            None,
            "synchronous",
            if config.durable_fsync {
                "FULL"
            } else {
                "NORMAL"
            },
        )
        .map_err(err)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", wal_autocheckpoint_pages())
            .map_err(err)?;
        conn.pragma_update_and_check(None, "journal_size_limit", JOURNAL_SIZE_LIMIT, |r| {
            r.get::<_, i64>(0)
        })
        .map_err(err)?;
        let found = retry_busy(deadline, || create_schema(&conn)).map_err(err)?;
        if found != 0 && found != SCHEMA_VERSION {
            return Err(OpenError::SchemaVersion {
                path,
                found,
                expected: SCHEMA_VERSION,
            });
        }
        let readers = (0..reader_count())
            .map(|_| {
                let reader = Connection::open(&path)?;
                reader.busy_timeout(config.busy_timeout)?;
                reader.pragma_update(None, "query_only", true)?;
                reader.pragma_update(None, "cache_size", -CACHE_KIB)?;
                Ok(reader)
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()
            .map_err(err)?;
        Ok(Arc::new(SqliteBackend {
            db: Db::start(conn, readers, Access::ReadWrite),
            notify: Notify::new(),
            path,
        }))
    }

    /// Open an existing database read-only: no schema creation, no journal mode switch, every
    /// write refused (SQLITE_READONLY). The file must have this tessera's schema version.
    ///
    /// Works on a read-only file in a read-only directory: SQLite reads a WAL database there
    /// when its `-shm` exists; when neither `-shm` nor a non-empty `-wal` exists (the state a
    /// clean close leaves), the file is opened `immutable=1`, which is exact because no
    /// process can be writing it (a writer would have a `-wal`).
    pub fn open_read_only(
        path: impl AsRef<Path>,
        config: &SqliteConfig,
    ) -> Result<Arc<Self>, OpenError> {
        let path = path.as_ref().to_path_buf();
        let (conn, uri) = connect_read_only(&path, config)?;
        let err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let found = user_version(&conn).map_err(err)?;
        if !readable(found) {
            return Err(OpenError::SchemaVersion {
                path,
                found,
                expected: SCHEMA_VERSION,
            });
        }
        let readers = (0..reader_count())
            .map(|_| open_uri_and_read(&uri, config))
            .collect::<Result<Vec<_>, rusqlite::Error>>()
            .map_err(err)?;
        Ok(Arc::new(SqliteBackend {
            db: Db::start(conn, readers, Access::ReadOnly),
            notify: Notify::new(),
            path,
        }))
    }
}

/// `WAL_AUTOCHECKPOINT_PAGES`, or `TESSERA_SQLITE_WAL_AUTOCHECKPOINT` (pages) for A/B
/// measurements.
fn wal_autocheckpoint_pages() -> i64 {
    std::env::var("TESSERA_SQLITE_WAL_AUTOCHECKPOINT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &i64| n > 0)
        .unwrap_or(WAL_AUTOCHECKPOINT_PAGES)
}

fn reader_count() -> usize {
    std::env::var("TESSERA_SQLITE_READERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(READERS)
}

/// The path is a file in an existing directory (or could be one).
fn check_path(path: &Path) -> Result<(), OpenError> {
    if path.is_dir() {
        return Err(OpenError::IsDirectory {
            path: path.to_path_buf(),
            example: path.join("tessera.db"),
        });
    }
    if let Some(directory) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !directory.is_dir() {
            return Err(OpenError::NoDirectory {
                path: path.to_path_buf(),
                directory: directory.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Run `f` again while it fails with SQLITE_BUSY, pausing 1 ms doubling up to 100 ms, until
/// `deadline`; for the steps where SQLite returns SQLITE_BUSY without calling the busy handler.
fn retry_busy<T>(
    deadline: Instant,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(e) if is_busy(&e) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// `file:` URI of `path` with `query`, percent-encoding what a URI path cannot hold.
fn file_uri(path: &Path, query: &str) -> String {
    let mut uri = String::from("file:");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(*byte as char)
            }
            _ => uri.push_str(&format!("%{byte:02X}")),
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

fn open_uri(uri: &str, config: &SqliteConfig) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(config.busy_timeout)?;
    Ok(conn)
}

/// A read-only connection to `uri` that has read the database once (SQLite opens the file,
/// and finds out whether it can use the WAL, on the first read).
fn open_uri_and_read(uri: &str, config: &SqliteConfig) -> rusqlite::Result<Connection> {
    let conn = open_uri(uri, config)?;
    user_version(&conn)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(conn)
}

/// A read-only connection to the existing file at `path`, and the URI it was opened with.
pub(crate) fn connect_read_only(
    path: &Path,
    config: &SqliteConfig,
) -> Result<(Connection, String), OpenError> {
    check_path(path)?;
    if !path.exists() {
        return Err(OpenError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let err = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let uri = file_uri(path, "mode=ro");
    match open_uri_and_read(&uri, config) {
        Ok(conn) => Ok((conn, uri)),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
            ) && wal_is_empty(path) =>
        {
            // No -shm and it cannot be created (read-only directory), nothing in a -wal: no
            // process is writing, the file alone is the database.
            let uri = file_uri(path, "immutable=1");
            let conn = open_uri_and_read(&uri, config).map_err(err)?;
            Ok((conn, uri))
        }
        Err(e) => Err(err(e)),
    }
}

/// The database's `-wal` is absent or empty.
fn wal_is_empty(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(&wal).map_or(true, |m| m.len() == 0)
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
