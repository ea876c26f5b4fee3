//! Jobs, tasks and maintenance on Table Storage.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use engine::events::JobEvent;
use engine::ids::{JobId, TaskId};
use engine::model::{
    ErrorInfo, JobRecord, JobStatus, Millis, Progress, StatusCounts, TaskRecord, TaskStatus,
    now_millis,
};
use engine::ports::{
    Cas, Conflict, Inserted, JobStore, Maintenance, Page, PageRequest, Removal, StoreError,
    TaskProgress, TaskQuery, TaskReads, TaskWrites,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::AzureBackend;
use crate::codec::{self, JOB_RK, RESULT_INLINE_MAX};
use crate::events::EVENT_RK;
use crate::tables::{self, BATCH, BatchOp, BatchOutcome, Entity, lit, str_prop};

/// Transactions in flight at once when inserting or changing many tasks.
const PARALLEL: usize = 8;
/// IDs per `RowKey eq ... or ...` filter (keeps the URL short).
const IDS_PER_QUERY: usize = 20;

fn job_status_lit(status: JobStatus) -> String {
    match serde_json::to_value(status) {
        Ok(Value::String(s)) => lit(&s),
        _ => lit(&status.to_string()),
    }
}

fn parse_status(entity: &Entity) -> Option<TaskStatus> {
    serde_json::from_value(entity.get("Status")?.clone()).ok()
}

fn encode_token(next: &(String, Option<String>)) -> String {
    serde_json::to_string(next).unwrap_or_default()
}

fn decode_token(token: &str) -> Result<(String, Option<String>), StoreError> {
    serde_json::from_str(token).map_err(|_| StoreError::InvalidCursor {
        cursor: token.to_owned(),
    })
}

/// Group operations by partition and cut them into transactions.
fn transactions(by_pk: BTreeMap<String, Vec<BatchOp>>) -> Vec<(String, Vec<BatchOp>)> {
    transactions_leaving(by_pk, 0)
}

/// Like [`transactions`], leaving room for `room` more operations in each.
fn transactions_leaving(
    by_pk: BTreeMap<String, Vec<BatchOp>>,
    room: usize,
) -> Vec<(String, Vec<BatchOp>)> {
    let size = BATCH - room;
    let mut out = Vec::new();
    for (pk, mut ops) in by_pk {
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(size));
            out.push((pk.clone(), std::mem::replace(&mut ops, rest)));
        }
    }
    out
}

fn is_big(value: &Option<Value>) -> bool {
    value
        .as_ref()
        .is_some_and(|v| serde_json::to_string(v).map_or(0, |s| s.len()) > RESULT_INLINE_MAX)
}

impl AzureBackend {
    /// The entity of a task, moving a big result to Blob storage first.
    async fn task_entity_for_write(&self, task: &TaskRecord) -> Result<Entity, StoreError> {
        if is_big(&task.result) {
            let name = format!("{}/{}.json", task.job_id, task.id);
            let result = task.result.as_ref().expect("is_big checked it");
            self.blobs.put(&self.ops, &name, result).await?;
            codec::task_entity(task, Some(&name))
        } else {
            codec::task_entity(task, None)
        }
    }

    async fn job_entity_for_write(&self, job: &JobRecord) -> Result<Entity, StoreError> {
        if is_big(&job.result) {
            let name = format!("{}/job.json", job.id);
            let result = job.result.as_ref().expect("is_big checked it");
            self.blobs.put(&self.ops, &name, result).await?;
            codec::job_entity(job, Some(&name))
        } else {
            codec::job_entity(job, None)
        }
    }

    async fn task_from_entity(&self, entity: &Entity) -> Result<TaskRecord, StoreError> {
        let mut task = codec::task_from(entity)?;
        if let Some(blob) = codec::result_blob(entity) {
            task.result = Some(self.blobs.get(&self.ops, blob).await?);
        }
        Ok(task)
    }

    async fn job_from_entity(&self, entity: &Entity) -> Result<JobRecord, StoreError> {
        let mut job = codec::job_from(entity)?;
        if let Some(blob) = codec::result_blob(entity) {
            job.result = Some(self.blobs.get(&self.ops, blob).await?);
        }
        Ok(job)
    }

    /// Insert entities of one partition, skipping those that exist. Returns how many task
    /// rows were created.
    async fn insert_absent(&self, pk: &str, entities: Vec<Entity>) -> Result<u64, StoreError> {
        let count = |es: &[Entity]| es.iter().filter(|e| str_prop(e, "T") == Some("t")).count();
        let mut todo = entities;
        for _ in 0..5 {
            let ops = todo.iter().cloned().map(BatchOp::Insert).collect();
            match tables::batch(&self.ops, &self.tasks, pk, ops).await? {
                BatchOutcome::Done(_) => return Ok(count(&todo) as u64),
                BatchOutcome::Exists | BatchOutcome::Conflict => {
                    // Some exist (a resumed plan, a re-run orchestrator): insert the others.
                    let mut rks: Vec<&str> =
                        todo.iter().filter_map(|e| str_prop(e, "RowKey")).collect();
                    rks.sort_unstable();
                    let (first, last) = (rks[0], rks[rks.len() - 1]);
                    let filter = format!(
                        "PartitionKey eq {} and RowKey ge {} and RowKey le {}",
                        lit(pk),
                        lit(first),
                        lit(last)
                    );
                    let existing: std::collections::HashSet<String> =
                        tables::query_all(&self.ops, &self.tasks, &filter, Some("RowKey"))
                            .await?
                            .iter()
                            .filter_map(|e| str_prop(e, "RowKey").map(str::to_owned))
                            .collect();
                    todo.retain(|e| !str_prop(e, "RowKey").is_some_and(|rk| existing.contains(rk)));
                    if todo.is_empty() {
                        return Ok(0);
                    }
                }
            }
        }
        Err(StoreError::Unavailable {
            message: format!("inserting tasks into partition {pk} kept conflicting"),
            source: None,
        })
    }

    /// Replace a record if its ETag still matches, with `events` in the same entity-group
    /// transaction (both or neither); a plain replace when there are none.
    async fn replace_with_events(
        &self,
        table: &azure_data_tables::prelude::TableClient,
        pk: &str,
        rk: &str,
        entity: Entity,
        etag: &str,
        events: &[JobEvent],
    ) -> Result<Cas, StoreError> {
        if events.is_empty() {
            return Ok(tables::replace(&self.ops, table, pk, rk, &entity, etag)
                .await?
                .map(engine::model::Revision)
                .map_err(|()| Conflict));
        }
        let mut ops = vec![BatchOp::Replace(rk.to_owned(), entity, etag.to_owned())];
        for event in events {
            ops.push(self.event_op(pk, event)?);
        }
        match tables::batch(&self.ops, table, pk, ops).await? {
            BatchOutcome::Done(etags) => match etags.into_iter().next().flatten() {
                Some(etag) => Ok(Ok(engine::model::Revision(etag))),
                // No ETag in the response: read the record's new one.
                None => tables::get(&self.ops, table, pk, rk)
                    .await?
                    .map(|e| Ok(engine::model::Revision(tables::etag(&e))))
                    .ok_or(StoreError::Unavailable {
                        message: format!("record {pk}/{rk} vanished after its update"),
                        source: None,
                    }),
            },
            BatchOutcome::Conflict => Ok(Err(Conflict)),
            BatchOutcome::Exists => Err(StoreError::Unavailable {
                message: format!("an event row of {pk} already exists"),
                source: None,
            }),
        }
    }

    /// Task entities of a job matching `extra` (OData), every page.
    async fn query_tasks(
        &self,
        job: &JobId,
        extra: &str,
        select: Option<&str>,
    ) -> Result<Vec<Entity>, StoreError> {
        let filter = format!("{} and T eq 't'{extra}", codec::job_partitions(job));
        tables::query_all(&self.ops, &self.tasks, &filter, select).await
    }
}

#[async_trait]
impl JobStore for AzureBackend {
    async fn insert_job(&self, job: &JobRecord) -> Result<Inserted<JobRecord>, StoreError> {
        let entity = self.job_entity_for_write(job).await?;
        match tables::insert(&self.ops, &self.jobs, &entity).await? {
            Some(etag) => {
                let index = codec::index_entity(job);
                let rk = codec::index_rk(job);
                tables::upsert(&self.ops, &self.job_index, codec::INDEX_PK, &rk, &index).await?;
                Ok(Inserted::Created(engine::model::Revision(etag)))
            }
            None => match self.get_job(&job.id).await? {
                Some(existing) => Ok(Inserted::Existing(existing)),
                None => Err(StoreError::Unavailable {
                    message: format!("job {} exists and vanished", job.id),
                    source: None,
                }),
            },
        }
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        match tables::get(&self.ops, &self.jobs, id.as_str(), JOB_RK).await? {
            Some(entity) => Ok(Some(self.job_from_entity(&entity).await?)),
            None => Ok(None),
        }
    }

    async fn update_job(&self, job: &JobRecord, events: &[JobEvent]) -> Result<Cas, StoreError> {
        let entity = self.job_entity_for_write(job).await?;
        self.replace_with_events(
            &self.jobs,
            job.id.as_str(),
            JOB_RK,
            entity,
            &job.revision.0,
            events,
        )
        .await
    }

    async fn list_jobs(&self, page: PageRequest) -> Result<Page<JobRecord>, StoreError> {
        let mut filter = format!("PartitionKey eq {}", lit(codec::INDEX_PK));
        if let Some(after) = &page.after {
            if !codec::is_index_rk(after) {
                return Err(StoreError::InvalidCursor {
                    cursor: after.clone(),
                });
            }
            filter.push_str(&format!(" and RowKey gt {}", lit(after)));
        }
        let got =
            tables::query_page(&self.ops, &self.job_index, &filter, None, page.limit, None).await?;
        let ids: Vec<JobId> = got
            .entities
            .iter()
            .filter_map(|e| codec::id_prop(e, "Job"))
            .collect();
        let jobs: Vec<Option<JobRecord>> = futures::stream::iter(ids)
            .map(|id| async move { self.get_job(&id).await })
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        let next = got
            .next
            .and(got.entities.last())
            .and_then(|e| str_prop(e, "RowKey").map(str::to_owned));
        Ok(Page {
            items: jobs.into_iter().flatten().collect(),
            next,
        })
    }

    async fn job_statuses(&self) -> Result<Vec<(JobId, JobStatus)>, StoreError> {
        let filter = format!("RowKey eq {}", lit(codec::JOB_RK));
        let entities =
            tables::query_all(&self.ops, &self.jobs, &filter, Some("PartitionKey,Status")).await?;
        entities
            .iter()
            .map(|e| {
                let corrupt = |what: &str| StoreError::Corrupt {
                    message: format!("job entity {e:?}: {what}"),
                };
                let id = str_prop(e, "PartitionKey")
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| corrupt("no job ID"))?;
                let status = str_prop(e, "Status")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt("no known status"))?;
                Ok((id, status))
            })
            .collect()
    }
}

#[async_trait]
impl TaskReads for AzureBackend {
    async fn get_task(
        &self,
        job_id: &JobId,
        id: &TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        // The task and its progress row are adjacent: one range read.
        let filter = format!(
            "PartitionKey eq {} and RowKey ge {} and RowKey lt {}",
            lit(&codec::task_pk(job_id, id)),
            lit(id.as_str()),
            lit(&format!("{id}~b"))
        );
        let page = tables::query_page(&self.ops, &self.tasks, &filter, None, 2, None).await?;
        let mut task = None;
        let mut progress = None;
        for entity in &page.entities {
            match str_prop(entity, "T") {
                Some("t") => task = Some(self.task_from_entity(entity).await?),
                Some("p") => progress = codec::progress_from(entity),
                _ => {}
            }
        }
        Ok(task.map(|mut t| {
            t.progress = progress;
            t
        }))
    }

    async fn task_statuses(
        &self,
        job_id: &JobId,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskStatus)>, StoreError> {
        let mut by_pk: BTreeMap<String, Vec<&TaskId>> = BTreeMap::new();
        for id in ids {
            by_pk
                .entry(codec::task_pk(job_id, id))
                .or_default()
                .push(id);
        }
        let mut queries = Vec::new();
        for (pk, ids) in &by_pk {
            for chunk in ids.chunks(IDS_PER_QUERY) {
                let rks: Vec<String> = chunk
                    .iter()
                    .map(|id| format!("RowKey eq {}", lit(id.as_str())))
                    .collect();
                queries.push(format!(
                    "PartitionKey eq {} and ({})",
                    lit(pk),
                    rks.join(" or ")
                ));
            }
        }
        let pages: Vec<Vec<Entity>> = futures::stream::iter(queries)
            .map(|filter| async move {
                tables::query_all(&self.ops, &self.tasks, &filter, Some("RowKey,Status")).await
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        let found: HashMap<String, TaskStatus> = pages
            .iter()
            .flatten()
            .filter_map(|e| Some((str_prop(e, "RowKey")?.to_owned(), parse_status(e)?)))
            .collect();
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id.as_str()).map(|s| (id.clone(), *s)))
            .collect())
    }

    async fn running_progress(&self, job_id: &JobId) -> Result<f64, StoreError> {
        let running = self
            .query_tasks(job_id, " and Status eq 'RUNNING'", Some("RowKey"))
            .await?;
        if running.is_empty() {
            return Ok(0.0);
        }
        let running: std::collections::HashSet<&str> = running
            .iter()
            .filter_map(|e| str_prop(e, "RowKey"))
            .collect();
        let filter = format!("{} and T eq 'p'", codec::job_partitions(job_id));
        let rows = tables::query_all(&self.ops, &self.tasks, &filter, None).await?;
        Ok(rows
            .iter()
            .filter(|e| {
                str_prop(e, "RowKey")
                    .and_then(|rk| rk.strip_suffix("~a"))
                    .is_some_and(|id| running.contains(id))
            })
            .filter_map(codec::progress_from)
            .map(|p| p.fraction)
            .sum())
    }

    async fn list_tasks(
        &self,
        job_id: &JobId,
        query: &TaskQuery,
        page: PageRequest,
    ) -> Result<Page<TaskRecord>, StoreError> {
        let mut filter = format!("{} and T eq 't'", codec::job_partitions(job_id));
        if let Some(group) = &query.group {
            filter.push_str(&format!(" and Group eq {}", lit(group)));
        }
        if let Some(status) = query.status {
            filter.push_str(&format!(" and Status eq {}", lit(status.as_str())));
        }
        let start = page.after.as_deref().map(decode_token).transpose()?;
        let got =
            tables::query_page(&self.ops, &self.tasks, &filter, None, page.limit, start).await?;
        let items =
            futures::future::try_join_all(got.entities.iter().map(|e| self.task_from_entity(e)))
                .await?;
        Ok(Page {
            items,
            next: got.next.as_ref().map(encode_token),
        })
    }

    async fn dependents(&self, job_id: &JobId, id: &TaskId) -> Result<Vec<TaskId>, StoreError> {
        let filter = format!(
            "PartitionKey eq {} and RowKey gt {} and RowKey lt {}",
            lit(&codec::task_pk(job_id, id)),
            lit(&format!("{id}~d~")),
            lit(&format!("{id}~d~~"))
        );
        let edges = tables::query_all(&self.ops, &self.tasks, &filter, Some("To")).await?;
        Ok(edges
            .iter()
            .filter_map(|e| codec::id_prop(e, "To"))
            .collect())
    }

    async fn count_tasks(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<StatusCounts, StoreError> {
        let extra = group.map_or(String::new(), |g| format!(" and Group eq {}", lit(g)));
        let mut counts = StatusCounts::default();
        for entity in self.query_tasks(job_id, &extra, Some("Status")).await? {
            if let Some(status) = parse_status(&entity) {
                counts.add(status, 1);
            }
        }
        Ok(counts)
    }

    async fn any_unfinished(
        &self,
        job_id: &JobId,
        group: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut filter = format!(
            "{} and T eq 't' and Fin eq false",
            codec::job_partitions(job_id)
        );
        if let Some(g) = group {
            filter.push_str(&format!(
                " and (Group eq {} or ChildGroup eq {})",
                lit(g),
                lit(g)
            ));
        }
        tables::exists(&self.ops, &self.tasks, &filter).await
    }
}

#[async_trait]
impl TaskWrites for AzureBackend {
    async fn insert_tasks(&self, job_id: &JobId, tasks: &[TaskRecord]) -> Result<u64, StoreError> {
        let mut by_pk: BTreeMap<String, Vec<BatchOp>> = BTreeMap::new();
        for task in tasks {
            let entity = self.task_entity_for_write(task).await?;
            by_pk
                .entry(codec::task_pk(job_id, &task.id))
                .or_default()
                .push(BatchOp::Insert(entity));
            for dep in &task.depends_on {
                let edge = codec::edge_entity(job_id, dep, &task.id);
                by_pk
                    .entry(codec::task_pk(job_id, dep))
                    .or_default()
                    .push(BatchOp::Insert(edge));
            }
        }
        let created: Vec<u64> = futures::stream::iter(transactions(by_pk))
            .map(|(pk, ops)| async move {
                let entities = ops
                    .into_iter()
                    .filter_map(|op| match op {
                        BatchOp::Insert(e) => Some(e),
                        _ => None,
                    })
                    .collect();
                self.insert_absent(&pk, entities).await
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        Ok(created.into_iter().sum())
    }

    async fn update_task(&self, task: &TaskRecord, events: &[JobEvent]) -> Result<Cas, StoreError> {
        let entity = self.task_entity_for_write(task).await?;
        let pk = codec::task_pk(&task.job_id, &task.id);
        self.replace_with_events(
            &self.tasks,
            &pk,
            task.id.as_str(),
            entity,
            &task.revision.0,
            events,
        )
        .await
    }

    async fn finish_unstarted(
        &self,
        job_id: &JobId,
        job_attempt: u32,
        to: TaskStatus,
        error: &ErrorInfo,
    ) -> Result<u64, StoreError> {
        let unstarted = [
            TaskStatus::Pending,
            TaskStatus::Queued,
            TaskStatus::RetryWait,
        ]
        .iter()
        .map(|s| format!("Status eq {}", lit(s.as_str())))
        .collect::<Vec<_>>()
        .join(" or ");
        let mut moved = 0;
        // Each round changes what it read, by ETag; a task that changed meanwhile is read
        // again in the next round (or has started, and is left alone).
        for _ in 0..10 {
            let entities = self
                .query_tasks(job_id, &format!(" and ({unstarted})"), None)
                .await?;
            if entities.is_empty() {
                return Ok(moved);
            }
            let now = now_millis();
            let mut by_pk: BTreeMap<String, Vec<BatchOp>> = BTreeMap::new();
            for entity in &entities {
                let mut task = self.task_from_entity(entity).await?;
                if task.job_attempt != job_attempt {
                    // Another attempt's task (the job was re-run since the caller read it).
                    continue;
                }
                task.status = to;
                task.error = Some(error.clone());
                task.updated_at = now;
                task.finished_at = Some(now);
                let etag = task.revision.0.clone();
                let pk = codec::task_pk(job_id, &task.id);
                let rk = task.id.as_str().to_owned();
                let entity = self.task_entity_for_write(&task).await?;
                by_pk
                    .entry(pk)
                    .or_default()
                    .push(BatchOp::Replace(rk, entity, etag));
            }
            // Each transaction carries the `tasks_ended` event of the tasks it closes.
            let outcomes: Vec<(usize, bool)> =
                futures::stream::iter(transactions_leaving(by_pk, 1))
                    .map(|(pk, mut ops)| async move {
                        let n = ops.len();
                        let ended = JobEvent::now(
                            job_id,
                            job_attempt,
                            engine::events::EventKind::TasksEnded {
                                status: to,
                                count: n as u64,
                                error: error.clone(),
                            },
                        );
                        ops.push(self.event_op(&pk, &ended)?);
                        let done = matches!(
                            tables::batch(&self.ops, &self.tasks, &pk, ops).await?,
                            BatchOutcome::Done(_)
                        );
                        Ok::<_, StoreError>((n, done))
                    })
                    .buffer_unordered(PARALLEL)
                    .try_collect()
                    .await?;
            moved += outcomes
                .iter()
                .filter(|(_, done)| *done)
                .map(|(n, _)| *n as u64)
                .sum::<u64>();
            if outcomes.iter().all(|(_, done)| *done) {
                return Ok(moved);
            }
        }
        Err(StoreError::Unavailable {
            message: format!("cancelling the tasks of job {job_id} kept conflicting"),
            source: None,
        })
    }
}

#[async_trait]
impl TaskProgress for AzureBackend {
    async fn set_progress(
        &self,
        job_id: &JobId,
        id: &TaskId,
        progress: &Progress,
        event: &JobEvent,
    ) -> Result<(), StoreError> {
        let entity = codec::progress_entity(job_id, id, progress)?;
        let pk = codec::task_pk(job_id, id);
        let ops = vec![
            BatchOp::Upsert(codec::progress_rk(id), entity),
            self.event_op(&pk, event)?,
        ];
        match tables::batch(&self.ops, &self.tasks, &pk, ops).await? {
            BatchOutcome::Done(_) => Ok(()),
            _ => Err(StoreError::Unavailable {
                message: format!("progress of task {id} refused"),
                source: None,
            }),
        }
    }
}

#[async_trait]
impl Maintenance for AzureBackend {
    async fn stale_tasks(
        &self,
        status: TaskStatus,
        updated_before: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let filter = format!(
            "T eq 't' and Status eq {} and Updated lt {updated_before}L",
            lit(status.as_str())
        );
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < limit {
            let page = tables::query_page(
                &self.ops,
                &self.tasks,
                &filter,
                None,
                limit - out.len(),
                start,
            )
            .await?;
            for entity in &page.entities {
                out.push(self.task_from_entity(entity).await?);
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    async fn stale_pending_jobs(
        &self,
        created_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let filter = format!(
            "RowKey eq '{JOB_RK}' and Status eq {} and Created lt {created_before}L",
            job_status_lit(JobStatus::Pending)
        );
        let mut out = Vec::new();
        for entity in query_at_most(self, &self.jobs, &filter, None, limit).await? {
            out.push(self.job_from_entity(&entity).await?);
        }
        Ok(out)
    }

    async fn jobs_finished_before(
        &self,
        finished_before: Millis,
        limit: usize,
    ) -> Result<Vec<JobId>, StoreError> {
        let filter = format!(
            "RowKey eq '{JOB_RK}' and Finished lt {finished_before}L and Status ne {} and Status ne {}",
            job_status_lit(JobStatus::Pending),
            job_status_lit(JobStatus::Running)
        );
        let found = query_at_most(self, &self.jobs, &filter, Some("PartitionKey"), limit).await?;
        Ok(found
            .iter()
            .filter_map(|e| codec::id_prop(e, "PartitionKey"))
            .collect())
    }

    async fn delete_job(&self, id: &JobId, removal: Removal) -> Result<(), StoreError> {
        let job = self.get_job(id).await?;
        // Messages still queued for the job cannot be picked out of a Storage Queue; a worker
        // that receives one finds no task and deletes it (the conformance suite checks that
        // nothing of the job runs and the queue drains).
        let job_rows = format!(
            "PartitionKey eq {} and RowKey ne '{JOB_RK}'",
            lit(id.as_str())
        );
        for (table, filter) in [
            (&self.tasks, codec::job_partitions(id)),
            (&self.jobs, job_rows),
        ] {
            let rows =
                tables::query_all(&self.ops, table, &filter, Some("PartitionKey,RowKey")).await?;
            let mut by_pk: BTreeMap<String, Vec<BatchOp>> = BTreeMap::new();
            for row in &rows {
                if let (Some(pk), Some(rk)) =
                    (str_prop(row, "PartitionKey"), str_prop(row, "RowKey"))
                {
                    if removal == Removal::KeepEvents && rk.starts_with(EVENT_RK) {
                        continue;
                    }
                    by_pk
                        .entry(pk.to_owned())
                        .or_default()
                        .push(BatchOp::Delete(rk.to_owned()));
                }
            }
            futures::stream::iter(transactions(by_pk))
                .map(|(pk, ops)| async move {
                    tables::batch(&self.ops, table, &pk, ops).await.map(|_| ())
                })
                .buffer_unordered(PARALLEL)
                .try_collect::<()>()
                .await?;
        }
        self.blobs
            .delete_prefix(&self.ops, &format!("{id}/"))
            .await?;
        if let Some(job) = job {
            let rk = codec::index_rk(&job);
            tables::delete(&self.ops, &self.job_index, codec::INDEX_PK, &rk).await?;
        }
        tables::delete(&self.ops, &self.jobs, id.as_str(), JOB_RK).await
    }
}

/// The first `limit` entities matching `filter`: pages are asked for no more than are still
/// wanted, and reading stops there (never every match, then a truncation).
async fn query_at_most(
    backend: &AzureBackend,
    table: &azure_data_tables::prelude::TableClient,
    filter: &str,
    select: Option<&str>,
    limit: usize,
) -> Result<Vec<Entity>, StoreError> {
    take_pages(limit, |top, start| async move {
        let page = tables::query_page(&backend.ops, table, filter, select, top, start).await?;
        Ok((page.entities, page.next))
    })
    .await
}

/// Up to `limit` items from a paged source: `fetch(top, start)` gives a page of at most `top`
/// and the continuation; each page asks only for what is still wanted.
async fn take_pages<T, C, F, Fut>(limit: usize, mut fetch: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(usize, Option<C>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<C>), StoreError>>,
{
    let mut out = Vec::new();
    let mut start = None;
    while out.len() < limit {
        let (items, next) = fetch(limit - out.len(), start).await?;
        out.extend(items);
        match next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::take_pages;

    /// A source of `total` items served at most 1 000 per page, recording each page asked.
    async fn take(total: usize, limit: usize) -> (Vec<usize>, Vec<usize>) {
        let asked = RefCell::new(Vec::new());
        let items = take_pages(limit, |top, start: Option<usize>| {
            asked.borrow_mut().push(top);
            let from = start.unwrap_or(0);
            let to = (from + top.min(1_000)).min(total);
            async move { Ok(((from..to).collect(), (to < total).then_some(to))) }
        })
        .await
        .unwrap();
        (items, asked.into_inner())
    }

    #[tokio::test]
    async fn paging_stops_at_the_limit() {
        for (total, limit, pages) in [
            (10_000, 2, vec![2]),
            (10_000, 500, vec![500]),
            (10_000, 2_500, vec![2_500, 1_500, 500]),
            (3, 500, vec![500]),
            (0, 10, vec![10]),
            (10, 0, vec![]),
        ] {
            let (items, asked) = take(total, limit).await;
            assert_eq!(
                items,
                (0..total.min(limit)).collect::<Vec<_>>(),
                "{total} {limit}"
            );
            assert_eq!(asked, pages, "pages asked for {total} items, limit {limit}");
        }
    }
}
