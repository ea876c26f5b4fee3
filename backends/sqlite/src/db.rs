//! One writer thread per process owns the connection and commits in groups: every operation
//! waiting when a transaction starts joins it. Multi-statement operations (`call_atomic`) run
//! inside their own savepoint, so one failing never leaves half its writes; single statements
//! (`call`) need none. Callers get their result after the COMMIT, so
//! what they were told is durable is durable.
//!
//! Pure reads go to a small pool of reader threads, each with its own connection: in WAL mode
//! they read the last committed state without blocking the writer, so the writer thread spends
//! its time on writes. A read issued after a write's reply sees that write (the reply comes
//! after the COMMIT).
//!
//! `Db::close` (or dropping the `Db`) stops the threads and closes their connections, the
//! writer's last after a `wal_checkpoint(TRUNCATE)`: a process that exits cleanly leaves its
//! commits in the database file, not in the `-wal`.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use engine::ports::StoreError;
use rusqlite::Connection;
use tokio::sync::oneshot;

type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;
type Op = Box<dyn FnOnce(&Connection) -> Deliver + Send>;
type ReadOp = Box<dyn FnOnce(&Connection) + Send>;

/// Most operations one transaction takes.
const MAX_GROUP: usize = 512;

/// How long the closing checkpoint waits for other processes' locks. A process that shares
/// the file with busy workers does not hold up its exit: it checkpoints what it can, and the
/// last process to close checkpoints the rest (SQLite does that when its last connection
/// closes).
const CLOSE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// What the writer thread receives.
enum Write {
    Op(Op),
    /// Checkpoint, close the connection, then answer.
    Close(mpsc::Sender<()>),
}

/// What a reader thread receives.
enum Read {
    Op(ReadOp),
    /// Close the connection, then answer.
    Stop(mpsc::Sender<()>),
}

/// Whether the writer thread may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadWrite,
    /// Operations run outside any transaction (a write fails with SQLITE_READONLY) and
    /// nothing is checkpointed at close.
    ReadOnly,
}

pub(crate) struct Db {
    sender: mpsc::Sender<Write>,
    /// `None` without reader connections: reads then run on the writer.
    reads: Option<mpsc::Sender<Read>>,
    n_readers: usize,
}

impl Db {
    /// Start the writer thread on `conn` and one reader thread per connection in `readers`.
    pub fn start(conn: Connection, readers: Vec<Connection>, access: Access) -> Self {
        let (sender, receiver) = mpsc::channel::<Write>();
        thread::Builder::new()
            .name("tessera-sqlite".into())
            .spawn(move || writer_loop(conn, receiver, access))
            .expect("spawning the sqlite writer thread");
        if readers.is_empty() {
            return Db {
                sender,
                reads: None,
                n_readers: 0,
            };
        }
        let n_readers = readers.len();
        let (reads, read_receiver) = mpsc::channel::<Read>();
        let read_receiver = Arc::new(Mutex::new(read_receiver));
        for reader in readers {
            let receiver = read_receiver.clone();
            thread::Builder::new()
                .name("tessera-sqlite-read".into())
                .spawn(move || reader_loop(reader, &receiver))
                .expect("spawning a sqlite reader thread");
        }
        Db {
            sender,
            reads: Some(reads),
            n_readers,
        }
    }

    /// Close the reader connections, then the writer's after a checkpoint (read-write only),
    /// blocking the calling thread until done. Operations already sent run first; later ones
    /// fail with `StoreError::Unavailable`.
    pub fn close(&self) {
        if let Some(reads) = &self.reads {
            let (ack, done) = mpsc::channel();
            for _ in 0..self.n_readers {
                let _ = reads.send(Read::Stop(ack.clone()));
            }
            drop(ack);
            // Err once every reader has answered or is gone.
            while done.recv().is_ok() {}
        }
        let (ack, done) = mpsc::channel();
        if self.sender.send(Write::Close(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Run the read-only `f` on a reader connection (the last committed state).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(reads) = &self.reads else {
            return self.call(f).await;
        };
        let (tx, rx) = oneshot::channel();
        let op: ReadOp = Box::new(move |conn: &Connection| {
            let _ = tx.send(f(conn));
        });
        reads
            .send(Read::Op(op))
            .map_err(|_| StoreError::Unavailable {
                message: "sqlite reader threads stopped".into(),
                source: None,
            })?;
        rx.await.map_err(|_| StoreError::Unavailable {
            message: "sqlite reader thread dropped a request".into(),
            source: None,
        })?
    }

    /// Run `f` (a single statement, or reads) inside the next group transaction and return
    /// its result once committed.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(false, f).await
    }

    /// Like `call`, for several writes that must apply all or none (a savepoint around them).
    pub async fn call_atomic<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(true, f).await
    }

    async fn submit<T, F>(&self, atomic: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn: &Connection| {
            let result = if atomic {
                in_savepoint(conn, f)
            } else {
                f(conn)
            };
            Box::new(move |commit_error: Option<&str>| {
                let result = match (result, commit_error) {
                    (Ok(_), Some(e)) => Err(StoreError::Unavailable {
                        message: format!("sqlite commit failed: {e}"),
                        source: None,
                    }),
                    (result, _) => result,
                };
                let _ = tx.send(result);
            })
        });
        self.sender
            .send(Write::Op(op))
            .map_err(|_| StoreError::Unavailable {
                message: "sqlite writer thread stopped".into(),
                source: None,
            })?;
        rx.await.map_err(|_| StoreError::Unavailable {
            message: "sqlite writer thread dropped a request".into(),
            source: None,
        })?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.prepare_cached("SAVEPOINT op")
        .and_then(|mut s| s.execute([]))
        .map_err(sql)?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE op")
                .and_then(|mut s| s.execute([]))
                .map_err(sql)?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(e)
        }
    }
}

fn reader_loop(conn: Connection, receiver: &Mutex<mpsc::Receiver<Read>>) {
    loop {
        // The lock is held only while waiting for the next request, never while running one.
        let next = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match next {
            Ok(Read::Op(op)) => op(&conn),
            Ok(Read::Stop(ack)) => {
                drop(conn);
                let _ = ack.send(());
                return;
            }
            Err(_) => return,
        }
    }
}

fn writer_loop(conn: Connection, receiver: mpsc::Receiver<Write>, access: Access) {
    let mut closing = None;
    while closing.is_none() {
        let mut ops = match receiver.recv() {
            Ok(Write::Op(op)) => vec![op],
            Ok(Write::Close(ack)) => {
                closing = Some(ack);
                break;
            }
            Err(_) => break,
        };
        while ops.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(Write::Op(op)) => ops.push(op),
                Ok(Write::Close(ack)) => {
                    closing = Some(ack);
                    break;
                }
                Err(_) => break,
            }
        }
        run_group(&conn, ops, access);
    }
    if access == Access::ReadWrite {
        checkpoint(&conn);
    }
    drop(conn);
    if let Some(ack) = closing {
        let _ = ack.send(());
    }
}

/// Run `ops` in one transaction (read-write) and answer their callers after the COMMIT.
fn run_group(conn: &Connection, ops: Vec<Op>, access: Access) {
    let in_transaction = access == Access::ReadWrite
        && match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not begin a transaction; running operations one by one");
                false
            }
        };
    let deliveries: Vec<Deliver> = ops.into_iter().map(|op| op(conn)).collect();
    let commit_error = if in_transaction {
        conn.execute_batch("COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        })
    } else {
        None
    };
    for deliver in deliveries {
        deliver(commit_error.as_deref());
    }
}

/// Copy the WAL into the database file and truncate it, waiting at most `CLOSE_BUSY_TIMEOUT`
/// for other processes.
fn checkpoint(conn: &Connection) {
    let _ = conn.busy_timeout(CLOSE_BUSY_TIMEOUT);
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match result {
        Ok((0, _, _)) => tracing::debug!("wal checkpointed and truncated"),
        Ok((_, wal_pages, checkpointed)) => tracing::debug!(
            wal_pages,
            checkpointed,
            "wal not fully checkpointed: other processes use the database"
        ),
        Err(e) => tracing::debug!(error = %e, "wal checkpoint at close failed"),
    }
}

/// A SQLite error as a store error.
pub(crate) fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable("sqlite", e)
}
