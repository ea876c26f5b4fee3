//! The task ports (`TaskReads`, `TaskWrites`, `TaskProgress`): one row per task (status, group, the JSON document, progress apart)
//! and one row per dependency edge, keyed by the job's integer key.

use async_trait::async_trait;
use engine::events::JobEvent;
use engine::ids::{JobId, TaskId};
use engine::model::{
    ErrorInfo, Progress, Revision, StatusCounts, TaskRecord, TaskStatus, now_millis,
};
use engine::ports::{
    Cas, Conflict, Page, PageRequest, StoreError, TaskProgress, TaskQuery, TaskReads, TaskWrites,
};
use rusqlite::{OptionalExtension, params};

use crate::SqliteBackend;
use crate::codec::{
    TASK_COLUMNS, cas_with_events, event_rows, initial_revision, insert_events, read_task,
    revision_of, task_from_row, to_json,
};
use crate::db::sql;

const TERMINAL: &str = "('SUCCEEDED','FAILED','SKIPPED','CANCELLED')";
const UNSTARTED: &str = "('PENDING','QUEUED','RETRY_WAIT')";

#[async_trait]
impl TaskReads for SqliteBackend {
    async fn get_task(
        &self,
        job_id: &JobId,
        id: &TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let (job_id, id) = (job_id.clone(), id.clone());
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND id = ?2"
                ))
                .map_err(sql)?
                .query_row([job_id.as_str(), id.as_str()], read_task)
                .optional()
                .map_err(sql)
            })
            .await?
            .map(|(doc, rev, progress)| task_from_row(&doc, rev, progress))
            .transpose()
    }

    async fn task_statuses(
        &self,
        job_id: &JobId,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskStatus)>, StoreError> {
        let (job_id, ids) = (job_id.clone(), ids.to_vec());
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT status FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND id = ?2")
                    .map_err(sql)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let status: Option<String> = stmt
                        .query_row([job_id.as_str(), id.as_str()], |r| r.get(0))
                        .optional()
                        .map_err(sql)?;
                    if let Some(status) = status {
                        let status = status.parse().map_err(|e| StoreError::Corrupt {
                            message: format!("{e}"),
                        })?;
                        out.push((id, status));
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn running_progress(&self, job_id: &JobId) -> Result<f64, StoreError> {
        let job_id = job_id.clone();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT coalesce(sum(json_extract(progress, '$.fraction')), 0.0) FROM tasks
                     WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND status = 'RUNNING' AND progress IS NOT NULL",
                )
                .map_err(sql)?
                .query_row([job_id.as_str()], |r| r.get::<_, f64>(0))
                .map_err(sql)
            })
            .await
    }

    async fn list_tasks(
        &self,
        job_id: &JobId,
        query: &TaskQuery,
        page: PageRequest,
    ) -> Result<Page<TaskRecord>, StoreError> {
        let (job_id, query) = (job_id.clone(), query.clone());
        self.db
            .read(move |c| {
                let limit = page.limit.max(1);
                let after = match page.after {
                    Some(cursor) => match TaskId::try_from(cursor.clone()) {
                        Ok(id) => id.to_string(),
                        Err(_) => return Err(StoreError::InvalidCursor { cursor }),
                    },
                    None => String::new(),
                };
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {TASK_COLUMNS} FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND id > ?2
                         AND (?3 IS NULL OR grp = ?3) AND (?4 IS NULL OR status = ?4) ORDER BY id LIMIT ?5"
                    ))
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(
                        params![job_id.as_str(), after, query.group, query.status.map(|s| s.as_str()), limit as i64 + 1],
                        read_task,
                    )
                    .map_err(sql)?;
                let mut items = Vec::new();
                for row in rows {
                    let (doc, rev, progress) = row.map_err(sql)?;
                    items.push(task_from_row(&doc, rev, progress)?);
                }
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|t| t.id.to_string())
                } else {
                    None
                };
                Ok(Page { items, next })
            })
            .await
    }

    async fn dependents(&self, job_id: &JobId, id: &TaskId) -> Result<Vec<TaskId>, StoreError> {
        let (job_id, id) = (job_id.clone(), id.clone());
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT task_id FROM task_edges WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND dep_id = ?2",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map([job_id.as_str(), id.as_str()], |r| r.get::<_, String>(0))
                    .map_err(sql)?;
                let mut out = Vec::new();
                for row in rows {
                    let text = row.map_err(sql)?;
                    out.push(TaskId::try_from(text).map_err(|e| StoreError::Corrupt {
                        message: e.to_string(),
                    })?);
                }
                Ok(out)
            })
            .await
    }

    async fn count_tasks(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<StatusCounts, StoreError> {
        let (job_id, group) = (job_id.clone(), group.map(str::to_owned));
        self.db
            .read(move |c| {
                let mut stmt = match &group {
                    Some(_) => c.prepare_cached("SELECT status, count(*) FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND grp = ?2 GROUP BY status"),
                    None => c.prepare_cached("SELECT status, count(*) FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND ?2 IS NULL GROUP BY status"),
                }
                .map_err(sql)?;
                let rows = stmt
                    .query_map(params![job_id.as_str(), group], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(sql)?;
                let mut counts = StatusCounts::default();
                for row in rows {
                    let (status, n) = row.map_err(sql)?;
                    let status: TaskStatus = status.parse().map_err(|e| StoreError::Corrupt { message: format!("{e}") })?;
                    counts.add(status, n as u64);
                }
                Ok(counts)
            })
            .await
    }

    async fn any_unfinished(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (job_id, group) = (job_id.clone(), group.map(str::to_owned));
        self.db
            .read(move |c| {
                let found = match &group {
                    None => c
                        .prepare_cached(&format!(
                            "SELECT EXISTS (SELECT 1 FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND status NOT IN {TERMINAL})"
                        ))
                        .map_err(sql)?
                        .query_row([job_id.as_str()], |r| r.get::<_, bool>(0)),
                    Some(g) => c
                        .prepare_cached(&format!(
                            "SELECT EXISTS (SELECT 1 FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND grp = ?2 AND status NOT IN {TERMINAL})
                                 OR EXISTS (SELECT 1 FROM tasks WHERE job = (SELECT key FROM jobs WHERE id = ?1) AND child_group = ?2 AND status NOT IN {TERMINAL})"
                        ))
                        .map_err(sql)?
                        .query_row([job_id.as_str(), g.as_str()], |r| r.get::<_, bool>(0)),
                };
                found.map_err(sql)
            })
            .await
    }
}

#[async_trait]
impl TaskWrites for SqliteBackend {
    async fn insert_tasks(&self, job_id: &JobId, tasks: &[TaskRecord]) -> Result<u64, StoreError> {
        let mut rows = Vec::with_capacity(tasks.len());
        for t in tasks {
            rows.push((
                t.id.clone(),
                t.status.as_str(),
                t.group.clone(),
                t.child_group.clone(),
                t.updated_at,
                to_json(t)?,
                t.depends_on.clone(),
            ));
        }
        let job_id = job_id.clone();
        let revision = initial_revision();
        self.db
            .call_atomic(move |c| {
                let mut insert = c
                    .prepare_cached(
                        "INSERT OR IGNORE INTO tasks (job, id, status, grp, child_group, updated_at, revision, doc)
                         VALUES ((SELECT key FROM jobs WHERE id = ?1), ?2, ?3, ?4, ?5, ?6, ?8, ?7)",
                    )
                    .map_err(sql)?;
                let mut edge = c
                    .prepare_cached("INSERT OR IGNORE INTO task_edges (job, dep_id, task_id) VALUES ((SELECT key FROM jobs WHERE id = ?1), ?2, ?3)")
                    .map_err(sql)?;
                let mut created = 0;
                for (id, status, group, child_group, updated_at, doc, deps) in rows {
                    let n = insert
                        .execute(params![job_id.as_str(), id.as_str(), status, group, child_group, updated_at, doc, revision])
                        .map_err(sql)?;
                    if n == 1 {
                        created += 1;
                        for dep in deps {
                            edge.execute(params![job_id.as_str(), dep.as_str(), id.as_str()]).map_err(sql)?;
                        }
                    }
                }
                Ok(created)
            })
            .await
    }

    async fn update_task(&self, task: &TaskRecord, events: &[JobEvent]) -> Result<Cas, StoreError> {
        let mut stored = task.clone();
        stored.progress = None;
        let doc = to_json(&stored)?;
        let (job_id, id, status, updated_at, expected) = (
            task.job_id.clone(),
            task.id.clone(),
            task.status.as_str(),
            task.updated_at,
            revision_of(&task.revision),
        );
        cas_with_events(&self.db, events, move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE tasks SET status = ?1, updated_at = ?2, doc = ?3, revision = revision + 1
                         WHERE job = (SELECT key FROM jobs WHERE id = ?4) AND id = ?5 AND revision = ?6",
                    )
                    .map_err(sql)?
                    .execute(params![status, updated_at, doc, job_id.as_str(), id.as_str(), expected])
                    .map_err(sql)?;
                Ok(if n == 1 { Ok(Revision((expected + 1).to_string())) } else { Err(Conflict) })
            })
            .await
    }

    async fn finish_unstarted(
        &self,
        job_id: &JobId,
        job_attempt: u32,
        to: TaskStatus,
        error: &ErrorInfo,
    ) -> Result<u64, StoreError> {
        let ended = |count| {
            JobEvent::now(
                job_id,
                job_attempt,
                engine::events::EventKind::TasksEnded {
                    status: to,
                    count,
                    error: error.clone(),
                },
            )
        };
        // The event's JSON with a placeholder count, filled in by the same transaction.
        let template = to_json(&ended(0))?;
        let (job_id, error) = (job_id.clone(), to_json(error)?);
        let now = now_millis();
        self.db
            .call_atomic(move |c| {
                let n = c
                    .execute(
                        &format!(
                            "UPDATE tasks SET status = ?1, updated_at = ?2, revision = revision + 1,
                               doc = json_set(doc, '$.status', ?1, '$.error', json(?3), '$.updated_at', ?2, '$.finished_at', ?2)
                             WHERE job = (SELECT key FROM jobs WHERE id = ?4) AND status IN {UNSTARTED}
                               AND COALESCE(json_extract(doc, '$.job_attempt'), 1) = ?5"
                        ),
                        params![to.as_str(), now, error, job_id.as_str(), job_attempt],
                    )
                    .map_err(sql)?;
                if n > 0 {
                    c.prepare_cached("INSERT INTO events (job_id, doc) VALUES (?1, json_set(?2, '$.count', ?3))")
                        .map_err(sql)?
                        .execute(params![job_id.as_str(), template, n as i64])
                        .map_err(sql)?;
                }
                Ok(n as u64)
            })
            .await
    }
}

#[async_trait]
impl TaskProgress for SqliteBackend {
    async fn set_progress(
        &self,
        job_id: &JobId,
        id: &TaskId,
        progress: &Progress,
        event: &JobEvent,
    ) -> Result<(), StoreError> {
        let (job_id, id, progress) = (job_id.clone(), id.clone(), to_json(progress)?);
        let rows = event_rows(std::slice::from_ref(event))?;
        self.db
            .call_atomic(move |c| {
                let n = c.prepare_cached("UPDATE tasks SET progress = ?1 WHERE job = (SELECT key FROM jobs WHERE id = ?2) AND id = ?3")
                    .map_err(sql)?
                    .execute(params![progress, job_id.as_str(), id.as_str()])
                    .map_err(sql)?;
                if n == 1 {
                    insert_events(c, &rows)?;
                }
                Ok(())
            })
            .await
    }
}
