//! One writer thread per process owns the connection and commits in groups: every operation
//! waiting when a transaction starts joins it (each inside its own savepoint, so one failing
//! operation never leaves half its writes). Callers get their result after the COMMIT, so
//! what they were told is durable is durable.
//!
//! Pure reads go to a small pool of reader threads, each with its own connection: in WAL mode
//! they read the last committed state without blocking the writer, so the writer thread spends
//! its time on writes. A read issued after a write's reply sees that write (the reply comes
//! after the COMMIT).

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use engine::ports::StoreError;
use rusqlite::Connection;
use tokio::sync::oneshot;

type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;
type Op = Box<dyn FnOnce(&Connection) -> Deliver + Send>;
type ReadOp = Box<dyn FnOnce(&Connection) + Send>;

/// Most operations one transaction takes.
const MAX_GROUP: usize = 512;

pub(crate) struct Db {
    sender: mpsc::Sender<Op>,
    /// `None` without reader connections: reads then run on the writer.
    reads: Option<mpsc::Sender<ReadOp>>,
}

impl Db {
    /// Start the writer thread on `conn` and one reader thread per connection in `readers`.
    pub fn start(conn: Connection, readers: Vec<Connection>) -> Self {
        let (sender, receiver) = mpsc::channel::<Op>();
        thread::Builder::new()
            .name("tessera-sqlite".into())
            .spawn(move || writer_loop(conn, receiver))
            .expect("spawning the sqlite writer thread");
        if readers.is_empty() {
            return Db {
                sender,
                reads: None,
            };
        }
        let (reads, read_receiver) = mpsc::channel::<ReadOp>();
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
        reads.send(op).map_err(|_| StoreError::Unavailable {
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
        self.sender.send(op).map_err(|_| StoreError::Unavailable {
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

fn reader_loop(conn: Connection, receiver: &Mutex<mpsc::Receiver<ReadOp>>) {
    loop {
        // The lock is held only while waiting for the next request, never while running one.
        let next = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match next {
            Ok(op) => op(&conn),
            Err(_) => return,
        }
    }
}

fn writer_loop(conn: Connection, receiver: mpsc::Receiver<Op>) {
    while let Ok(first) = receiver.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let in_transaction = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not begin a transaction; running operations one by one");
                false
            }
        };
        let deliveries: Vec<Deliver> = ops.into_iter().map(|op| op(&conn)).collect();
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
}

/// A SQLite error as a store error.
pub(crate) fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable("sqlite", e)
}
