//! The `Maintenance` port: what the sweeper looks for (stale tasks and jobs, finished jobs) and
//! deleting a job with its tasks, edges, queued messages and (optionally) events.

use async_trait::async_trait;
use engine::ids::JobId;
use engine::model::{JobRecord, Millis, TaskRecord, TaskStatus};
use engine::ports::{Maintenance, Removal, StoreError};
use rusqlite::params;

use crate::SqliteBackend;
use crate::codec::{TASK_COLUMNS, job_from_row, read_task, task_from_row};
use crate::db::sql;

#[async_trait]
impl Maintenance for SqliteBackend {
    async fn stale_tasks(
        &self,
        status: TaskStatus,
        updated_before: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {TASK_COLUMNS} FROM tasks WHERE status = ?1 AND updated_at < ?2 ORDER BY updated_at LIMIT ?3"
                    ))
                    .map_err(sql)?;
                let rows = stmt.query_map(params![status.as_str(), updated_before, limit as i64], read_task).map_err(sql)?;
                let mut out = Vec::new();
                for row in rows {
                    let (doc, rev, progress) = row.map_err(sql)?;
                    out.push(task_from_row(&doc, rev, progress)?);
                }
                Ok(out)
            })
            .await
    }

    async fn stale_pending_jobs(
        &self,
        created_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT doc, revision FROM jobs WHERE status = 'PENDING' AND created_at < ?1 LIMIT ?2")
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![created_before, limit as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(sql)?;
                let mut out = Vec::new();
                for row in rows {
                    let (doc, rev) = row.map_err(sql)?;
                    out.push(job_from_row(&doc, rev)?);
                }
                Ok(out)
            })
            .await
    }

    async fn jobs_finished_before(
        &self,
        finished_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobId>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id FROM jobs WHERE status IN ('SUCCEEDED','COMPLETED_WITH_ERRORS','FAILED','CANCELLED')
                         AND finished_at < ?1 LIMIT ?2",
                    )
                    .map_err(sql)?;
                let rows = stmt.query_map(params![finished_before, limit as i64], |r| r.get::<_, String>(0)).map_err(sql)?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(JobId::try_from(row.map_err(sql)?).map_err(|e| StoreError::Corrupt { message: e.to_string() })?);
                }
                Ok(out)
            })
            .await
    }

    async fn delete_job(&self, id: &JobId, removal: Removal) -> Result<(), StoreError> {
        let id = id.clone();
        self.db
            .call_atomic(move |c| {
                for table in ["tasks", "task_edges"] {
                    c.execute(
                        &format!(
                            "DELETE FROM {table} WHERE job = (SELECT key FROM jobs WHERE id = ?1)"
                        ),
                        [id.as_str()],
                    )
                    .map_err(sql)?;
                }
                if removal == Removal::Everything {
                    c.execute("DELETE FROM events WHERE job_id = ?1", [id.as_str()])
                        .map_err(sql)?;
                }
                c.execute("DELETE FROM queue WHERE job_id = ?1", [id.as_str()])
                    .map_err(sql)?;
                c.execute("DELETE FROM jobs WHERE id = ?1", [id.as_str()])
                    .map_err(sql)?;
                Ok(())
            })
            .await
    }
}
