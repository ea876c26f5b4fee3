//! One writer thread per process owns the connection and commits in groups: every operation
//! waiting when a transaction starts joins it (each inside its own savepoint, so one failing
//! operation never leaves half its writes). Callers get their result after the COMMIT, so
//! what they were told is durable is durable.

use std::sync::mpsc;
use std::thread;

use engine::ports::StoreError;
use rusqlite::Connection;
use tokio::sync::oneshot;

type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;
type Op = Box<dyn FnOnce(&Connection) -> Deliver + Send>;

/// Most operations one transaction takes.
const MAX_GROUP: usize = 512;

pub(crate) struct Db {
    sender: mpsc::Sender<Op>,
}

impl Db {
    pub fn start(conn: Connection) -> Self {
        let (sender, receiver) = mpsc::channel::<Op>();
        thread::Builder::new()
            .name("tessera-sqlite".into())
            .spawn(move || writer_loop(conn, receiver))
            .expect("spawning the sqlite writer thread");
        Db { sender }
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
