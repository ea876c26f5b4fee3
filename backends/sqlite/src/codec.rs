//! Records <-> rows: JSON documents, revisions, and the events written beside a status change.

use engine::events::JobEvent;
use engine::model::{JobRecord, Revision, TaskRecord};
use engine::ports::{Cas, StoreError};
use rusqlite::Connection;

use crate::db::{Db, sql};

pub(crate) fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        message: format!("{what}: {e}"),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        message: format!("cannot serialize: {e}"),
    })
}

/// First revision of a new row: the current time in microseconds, so that a row deleted and
/// re-created (a forced re-run) never repeats a revision a stale writer may still hold.
/// Events as stored rows: (job ID, JSON).
pub(crate) fn event_rows(events: &[JobEvent]) -> Result<Vec<(String, String)>, StoreError> {
    events
        .iter()
        .map(|e| Ok((e.job_id.to_string(), to_json(e)?)))
        .collect()
}

pub(crate) fn insert_events(c: &Connection, rows: &[(String, String)]) -> Result<(), StoreError> {
    let mut stmt = c
        .prepare_cached("INSERT INTO events (job_id, doc) VALUES (?1, ?2)")
        .map_err(sql)?;
    for (job_id, doc) in rows {
        stmt.execute([job_id, doc]).map_err(sql)?;
    }
    Ok(())
}

/// A status change with its events: one savepoint, so both or neither are written.
/// Without events a single statement needs none.
pub(crate) async fn cas_with_events<F>(
    db: &Db,
    events: &[JobEvent],
    update: F,
) -> Result<Cas, StoreError>
where
    F: FnOnce(&Connection) -> Result<Cas, StoreError> + Send + 'static,
{
    if events.is_empty() {
        return db.call(update).await;
    }
    let rows = event_rows(events)?;
    db.call_atomic(move |c| {
        let cas = update(c)?;
        if cas.is_ok() {
            insert_events(c, &rows)?;
        }
        Ok(cas)
    })
    .await
}

pub(crate) fn initial_revision() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(1)
}

pub(crate) fn revision_of(rev: &Revision) -> i64 {
    rev.0.parse().unwrap_or(-1)
}

pub(crate) fn job_from_row(doc: &str, revision: i64) -> Result<JobRecord, StoreError> {
    let mut job: JobRecord = serde_json::from_str(doc).map_err(|e| corrupt("job", e))?;
    job.revision = Revision(revision.to_string());
    Ok(job)
}

pub(crate) fn task_from_row(
    doc: &str,
    revision: i64,
    progress: Option<String>,
) -> Result<TaskRecord, StoreError> {
    let mut task: TaskRecord = serde_json::from_str(doc).map_err(|e| corrupt("task", e))?;
    task.revision = Revision(revision.to_string());
    if let Some(p) = progress {
        task.progress = Some(serde_json::from_str(&p).map_err(|e| corrupt("progress", e))?);
    }
    Ok(task)
}

pub(crate) const TASK_COLUMNS: &str = "doc, revision, progress";

pub(crate) fn read_task(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, Option<String>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}
