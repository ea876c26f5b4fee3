//! The `JobStore` port: one row per job (status, times and the JSON document), a revision for
//! compare-and-set.

use async_trait::async_trait;
use engine::events::JobEvent;
use engine::ids::JobId;
use engine::model::{JobRecord, JobStatus, Revision};
use engine::ports::{Cas, Conflict, Inserted, JobStore, Page, PageRequest, StoreError};
use rusqlite::{OptionalExtension, params};

use crate::SqliteBackend;
use crate::codec::{cas_with_events, initial_revision, job_from_row, revision_of, to_json};
use crate::db::sql;

#[async_trait]
impl JobStore for SqliteBackend {
    async fn insert_job(&self, job: &JobRecord) -> Result<Inserted<JobRecord>, StoreError> {
        let job = job.clone();
        let doc = to_json(&job)?;
        let revision = initial_revision();
        self.db
            .call_atomic(move |c| {
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO jobs (id, status, created_at, finished_at, revision, doc) VALUES (?1, ?2, ?3, ?4, ?6, ?5)",
                        params![job.id.as_str(), job.status.as_str(), job.created_at, job.finished_at, doc, revision],
                    )
                    .map_err(sql)?;
                if n == 1 {
                    return Ok(Inserted::Created(Revision(revision.to_string())));
                }
                let (doc, rev): (String, i64) = c
                    .query_row("SELECT doc, revision FROM jobs WHERE id = ?1", [job.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql)?;
                Ok(Inserted::Existing(job_from_row(&doc, rev)?))
            })
            .await
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let id = id.clone();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT doc, revision FROM jobs WHERE id = ?1")
                    .map_err(sql)?
                    .query_row([id.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
                    .map_err(sql)
            })
            .await?
            .map(|(doc, rev)| job_from_row(&doc, rev))
            .transpose()
    }

    async fn update_job(&self, job: &JobRecord, events: &[JobEvent]) -> Result<Cas, StoreError> {
        let doc = to_json(job)?;
        let (id, status, finished_at, expected) = (
            job.id.clone(),
            job.status.as_str(),
            job.finished_at,
            revision_of(&job.revision),
        );
        cas_with_events(&self.db, events, move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE jobs SET status = ?1, finished_at = ?2, doc = ?3, revision = revision + 1 WHERE id = ?4 AND revision = ?5",
                    )
                    .map_err(sql)?
                    .execute(params![status, finished_at, doc, id.as_str(), expected])
                    .map_err(sql)?;
                Ok(if n == 1 { Ok(Revision((expected + 1).to_string())) } else { Err(Conflict) })
            })
            .await
    }

    async fn list_jobs(&self, page: PageRequest) -> Result<Page<JobRecord>, StoreError> {
        self.db
            .read(move |c| {
                let limit = page.limit.max(1);
                // Token: "<created_at>:<id>" of the last row of the previous page.
                let (created, id) = match &page.after {
                    Some(token) => token
                        .split_once(':')
                        .and_then(|(t, id)| {
                            let id = JobId::try_from(id.to_owned()).ok()?;
                            Some((t.parse::<i64>().ok()?, id.to_string()))
                        })
                        .ok_or_else(|| StoreError::InvalidCursor {
                            cursor: token.clone(),
                        })?,
                    None => (i64::MAX, String::new()),
                };
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc, revision FROM jobs WHERE (created_at < ?1 OR (created_at = ?1 AND id > ?2))
                         ORDER BY created_at DESC, id LIMIT ?3",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![created, id, limit as i64 + 1], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(sql)?;
                let mut items = Vec::new();
                for row in rows {
                    let (doc, rev) = row.map_err(sql)?;
                    items.push(job_from_row(&doc, rev)?);
                }
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|j| format!("{}:{}", j.created_at, j.id))
                } else {
                    None
                };
                Ok(Page { items, next })
            })
            .await
    }

    async fn job_statuses(&self) -> Result<Vec<(JobId, JobStatus)>, StoreError> {
        self.db
            .read(|c| {
                let mut stmt = c
                    .prepare_cached("SELECT id, status FROM jobs")
                    .map_err(sql)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(sql)?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, status) = row.map_err(sql)?;
                    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt {
                        message: format!("job {id}: {e}"),
                    };
                    out.push((
                        id.parse().map_err(|e| corrupt(&e))?,
                        status.parse().map_err(|e| corrupt(&e))?,
                    ));
                }
                Ok(out)
            })
            .await
    }
}
