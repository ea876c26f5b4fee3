//! The application layer every front door calls (the CLI today; `tessera serve` and the
//! Functions handler next): configuration independent of any argument parser, the one
//! composition root that wires the engine to its backend, data store and job types, typed
//! operations, and an explicit shutdown.
//!
//! Invariant: nothing here knows HTTP or the command line; errors are [`AppError`]s, whose
//! kind gives both the exit code and the HTTP status.

pub mod error;
pub mod graph;
mod map_assets;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::events::JobEvent;
use engine::ports::{Page, PageRequest, TaskQuery};
use engine::runtime::{JobView, PoisonEntry, Replayed, Submission};
use engine::{
    Engine, EngineConfig, JobId, JobRecord, JobStatus, SubmitOptions, TaskId, TaskRecord,
};
use engine_azure::{AzureBackend, AzureConfig, Credentials, DataAuth};
use engine_sqlite::{SqliteBackend, SqliteConfig};
use serde::Serialize;
use serde_json::Value;
use services::blob::{AzureBlobAccount, AzureBlobAuth, Blobs, CreateContainer};

use error::codes;
pub use error::{AppError, ErrorKind, FieldError};

/// Where job and task state, the queue and events live.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded SQLite file.
    Sqlite { path: PathBuf, access: Access },
    /// Azure Storage: Table Storage, Storage Queues, Blob.
    Azure {
        credentials: Credentials,
        prefix: String,
        /// The dead-letter queue; `None`: the backend's default (`<prefix>-tasks-poison`).
        dead_letter_queue: Option<String>,
    },
}

/// Whether the process writes to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// Inspection only (`status`, `jobs`, `events`): the SQLite file is opened read-only (it
    /// must exist), so a job can be inspected on a read-only file or a full disk.
    ReadOnly,
}

/// Where the geospatial job types' containers are.
#[derive(Debug, Clone)]
pub enum DataConfig {
    /// Sub-folders of a directory.
    Local { dir: PathBuf },
    /// Blob containers of an Azure account; GDAL reads downloads cached under `cache_dir`.
    Azure {
        credentials: Credentials,
        cache_dir: PathBuf,
    },
}

/// Everything a front door needs to build an [`App`].
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub store: StoreConfig,
    pub data: DataConfig,
    /// Queue lease of a received message (heartbeats renew it).
    pub lease: Duration,
}

/// A wired engine and the backend handles its shutdown needs.
pub struct App {
    engine: Engine,
    /// The geospatial job types' data store (the dashboard reads tiles and outputs from it).
    blobs: Blobs,
    azure: Option<Arc<AzureBackend>>,
    sqlite: Option<Arc<SqliteBackend>>,
}

/// A job type as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobTypeInfo {
    pub job_type: &'static str,
    pub version: u32,
    pub description: &'static str,
    /// The JSON Schema of its params, from the declarations that validate them.
    pub params_schema: Value,
}

/// The store's state at one moment, for gauges.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Jobs by status.
    pub jobs: std::collections::BTreeMap<JobStatus, u64>,
    /// Tasks by status, of the jobs not finished (those counted: see `active_jobs_counted`).
    pub active_tasks: engine::model::StatusCounts,
    /// Unfinished jobs whose tasks were counted (at most [`GAUGE_MAX_ACTIVE_JOBS`]).
    pub active_jobs_counted: u64,
    pub queue: engine::ports::QueueDepth,
}

/// Tasks of the largest job whose graph is drawn.
pub const GRAPH_MAX_TASKS: u64 = 200_000;

/// Unfinished jobs whose tasks one gauge reading counts at most.
pub const GAUGE_MAX_ACTIVE_JOBS: usize = 200;

/// A job listing's filter.
#[derive(Debug, Clone, Default)]
pub struct JobsQuery {
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    pub page: PageRequest,
}

impl App {
    /// Connect to the store and wire the engine with every registered job type.
    pub async fn open(config: &AppConfig) -> Result<App, AppError> {
        let (backend, azure, sqlite) = match &config.store {
            StoreConfig::Sqlite { path, access } => {
                let sqlite = match access {
                    Access::ReadWrite => SqliteBackend::open(path, &SqliteConfig::default())?,
                    Access::ReadOnly => {
                        SqliteBackend::open_read_only(path, &SqliteConfig::default())?
                    }
                };
                (
                    engine::ports::Backend::from_all(sqlite.clone()),
                    None,
                    Some(sqlite),
                )
            }
            StoreConfig::Azure {
                credentials,
                prefix,
                dead_letter_queue,
            } => {
                let mut config = AzureConfig::new(credentials.clone()).with_prefix(prefix.clone());
                config.dead_letter_queue = dead_letter_queue.clone();
                let azure = AzureBackend::connect(&config).await?;
                (azure.backend(), Some(azure), None)
            }
        };
        let blobs = match &config.data {
            DataConfig::Local { dir } => Blobs::local(dir),
            DataConfig::Azure {
                credentials,
                cache_dir,
            } => azure_blobs(credentials, cache_dir, azure.clone())?,
        };
        let engine_config = EngineConfig {
            lease: config.lease,
            ..EngineConfig::default()
        };
        let engine = Engine::new(
            backend,
            controllers::registry(
                &services::Services::new(blobs.clone()).with_map_assets(map_assets::map_assets()),
            ),
            engine_config,
        );
        Ok(App {
            engine,
            blobs,
            azure,
            sqlite,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Release the store: log the Azure request count (benchmarks read it) and close the
    /// SQLite file, which checkpoints its WAL into the database file.
    pub async fn shutdown(self) {
        if let Some(azure) = &self.azure {
            let ops = azure.ops();
            tracing::info!(
                storage_ops = %serde_json::to_string(&ops).unwrap_or_default(),
                total = ops.total(),
                "storage operations of this process"
            );
        }
        if let Some(sqlite) = self.sqlite {
            let closed = tokio::task::spawn_blocking(move || sqlite.close()).await;
            if let Err(e) = closed {
                tracing::warn!(error = %e, "closing the database failed");
            }
        }
    }

    /// Accept a job (the first step of a submission: validated, checked, stored PENDING, its
    /// expansion queued for a worker): answers fast whatever the job's size. The same request
    /// returns the existing job (`created` false).
    pub async fn accept(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
    ) -> Result<(Submission, JobView), AppError> {
        let submission = self.engine.accept(job_type, params, options).await?;
        let view = self.engine.status(&submission.job.id).await?;
        Ok((submission, view))
    }

    /// Submit a job and expand it in this process (the command line's path); the same
    /// request returns the existing job (`created` false).
    pub async fn submit(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
    ) -> Result<(Submission, JobView), AppError> {
        let submission = self.engine.submit(job_type, params, options).await?;
        let view = self.engine.status(&submission.job.id).await?;
        Ok((submission, view))
    }

    /// A job with its task counts and progress.
    pub async fn status(&self, id: &JobId) -> Result<JobView, AppError> {
        Ok(self.engine.status(id).await?)
    }

    /// Jobs, newest first, filtered by status and job type.
    pub async fn list_jobs(&self, query: &JobsQuery) -> Result<Page<JobRecord>, AppError> {
        let limit = query.page.limit.clamp(1, 1_000);
        let wanted = |j: &JobRecord| {
            query.status.is_none_or(|s| j.status == s)
                && query.job_type.as_deref().is_none_or(|t| j.job_type == t)
        };
        // Unfiltered, this is one read of the listing.
        filled_page(
            limit,
            query.page.after.clone(),
            |page| self.engine.list_jobs(page),
            wanted,
        )
        .await
    }

    /// Tasks of a job in a stable order, filtered by status, group and name.
    pub async fn list_tasks(
        &self,
        id: &JobId,
        query: &TaskQuery,
        name: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<TaskRecord>, AppError> {
        self.status(id).await?;
        let limit = page.limit.clamp(1, 1_000);
        // Without a name filter, this is one read of the listing.
        filled_page(
            limit,
            page.after,
            |page| self.engine.list_tasks(id, query, page),
            |t: &TaskRecord| name.is_none_or(|name| t.task == name),
        )
        .await
    }

    /// One task of a job.
    pub async fn task(&self, id: &JobId, task_id: &TaskId) -> Result<TaskRecord, AppError> {
        self.status(id).await?;
        self.engine.task(id, task_id).await?.ok_or_else(|| {
            AppError::new(
                ErrorKind::NotFound,
                codes::TASK_NOT_FOUND,
                format!("job {id} has no task {task_id}"),
            )
        })
    }

    /// The job's result (its aggregate): a conflict while the job runs.
    pub async fn result(&self, id: &JobId) -> Result<JobView, AppError> {
        let view = self.status(id).await?;
        if !view.job.status.is_terminal() {
            return Err(AppError::new(
                ErrorKind::Conflict,
                codes::JOB_NOT_FINISHED,
                format!("job {id} is {}: no result yet", view.job.status),
            ));
        }
        Ok(view)
    }

    /// Cancel a job. `Ok((view, false))` when it had already finished (left unchanged).
    pub async fn cancel(&self, id: &JobId) -> Result<JobView, AppError> {
        let before = self.status(id).await?;
        if before.job.status.is_terminal() {
            return Err(AppError::new(
                ErrorKind::Conflict,
                codes::JOB_FINISHED,
                format!("job {id} is already {}", before.job.status),
            ));
        }
        self.engine.cancel(id).await?;
        self.status(id).await
    }

    /// Delete a finished job with its tasks, queued messages and events.
    pub async fn delete(&self, id: &JobId) -> Result<(), AppError> {
        let view = self.status(id).await?;
        if !view.job.status.is_terminal() {
            return Err(AppError::new(
                ErrorKind::Conflict,
                codes::JOB_NOT_FINISHED,
                format!(
                    "job {id} is {}: only a finished job can be deleted (cancel it first)",
                    view.job.status
                ),
            ));
        }
        self.engine.delete_job(id).await?;
        Ok(())
    }

    /// The job's events after cursor `after`, oldest first, up to where the log is settled
    /// (on Azure, 2 s behind the writers' clocks): a client following the cursor never steps
    /// past an event committed late, so it gets every event exactly once.
    pub async fn events_after(
        &self,
        id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, AppError> {
        Ok(self.engine.events_after(id, after, limit).await?)
    }

    /// Whether no event of the job can come any more: the job is finished and so is every
    /// task of it (a cancelled job's running handlers still report their end, and its
    /// unstarted tasks end in a `tasks_ended` after `job_completed`). `None`: no such job. A
    /// reader that sees this waits [`App::event_settle_delay`], reads once more, and has
    /// every event.
    pub async fn events_complete(&self, id: &JobId) -> Result<Option<bool>, AppError> {
        match self.status(id).await {
            Ok(view) => Ok(Some(
                view.job.status.is_terminal() && view.tasks.unfinished() == 0,
            )),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// See [`App::events_complete`].
    pub fn event_settle_delay(&self) -> std::time::Duration {
        self.engine.event_settle_delay()
    }

    /// The oldest poison messages (at most `limit`; Azure shows 32 at most), with what each
    /// carries.
    pub async fn poison(&self, limit: usize) -> Result<Vec<PoisonEntry>, AppError> {
        Ok(self.engine.poison_messages(limit).await?)
    }

    /// Replay a poison message: its finished job re-runs (attempt + 1; a worker expands it),
    /// a pending job's expansion is queued again, and a message with nothing left to do is
    /// removed. Refused while its job runs (409) and for an unreadable message (422).
    pub async fn replay_poison(&self, id: &str) -> Result<Replayed, AppError> {
        Ok(self.engine.replay_poison(parse_poison_id(id)?).await?)
    }

    /// Remove a poison message without replaying it.
    pub async fn discard_poison(&self, id: &str) -> Result<PoisonEntry, AppError> {
        Ok(self.engine.discard_poison(parse_poison_id(id)?).await?)
    }

    /// Jobs by status, tasks of unfinished jobs by status and the queue's depth. A scan of
    /// the job records and of the unfinished jobs' task statuses: read it seldom (`/metrics`
    /// caches it).
    pub async fn gauges(&self) -> Result<Gauges, AppError> {
        use futures::{StreamExt, TryStreamExt};
        let engine = &self.engine;
        let (statuses, queue) = futures::try_join!(
            async { Ok::<_, AppError>(engine.job_statuses().await?) },
            async { Ok(engine.queue_depth().await?) },
        )?;
        let mut gauges = Gauges {
            queue,
            ..Gauges::default()
        };
        let mut active = Vec::new();
        for (id, status) in statuses {
            *gauges.jobs.entry(status).or_default() += 1;
            if !status.is_terminal() {
                active.push(id);
            }
        }
        active.truncate(GAUGE_MAX_ACTIVE_JOBS);
        gauges.active_jobs_counted = active.len() as u64;
        let counts: Vec<engine::model::StatusCounts> = futures::stream::iter(active)
            .map(|id| async move { engine.task_counts(&id).await })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        for c in counts {
            for (status, n) in c.0 {
                gauges.active_tasks.add(status, n);
            }
        }
        Ok(gauges)
    }

    /// The job's task DAG as a client draws it (large fan-outs collapsed into group nodes
    /// unless named in `expand`), with the job.
    pub async fn graph(
        &self,
        id: &JobId,
        expand: &std::collections::BTreeSet<String>,
    ) -> Result<(JobView, graph::Graph), AppError> {
        let view = self.status(id).await?;
        let total = view.tasks.total();
        if total > GRAPH_MAX_TASKS {
            return Err(AppError::new(
                ErrorKind::Unprocessable,
                codes::GRAPH_TOO_LARGE,
                format!(
                    "job {id} has {total} tasks, more than the {GRAPH_MAX_TASKS} a graph is drawn for; list its tasks instead"
                ),
            ));
        }
        let mut all = Vec::with_capacity(total as usize);
        let mut page = PageRequest::first(1_000);
        loop {
            let got = self
                .engine
                .list_tasks(id, &TaskQuery::default(), page.clone())
                .await?;
            all.extend(got.items);
            match got.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        Ok((view, graph::graph(&all, expand)))
    }

    /// A file of the data store (a tile, a COG, a STAC item, a TileJSON document).
    pub async fn data(&self, container: &str, blob: &str) -> Result<bytes::Bytes, AppError> {
        use services::blob::BlobError;
        self.blobs.get(container, blob).await.map_err(|e| match e {
            BlobError::NotFound { .. } | BlobError::NoContainer { .. } => {
                AppError::new(ErrorKind::NotFound, codes::NOT_FOUND, e.to_string())
            }
            BlobError::InvalidName { .. } => {
                AppError::invalid(codes::INVALID_REQUEST, e.to_string())
            }
            e => AppError::new(
                ErrorKind::Unavailable,
                codes::STORAGE_UNAVAILABLE,
                format!("data store: {e}"),
            ),
        })
    }

    /// The registered job types, sorted by name.
    pub fn job_types(&self) -> Vec<JobTypeInfo> {
        let mut types: Vec<JobTypeInfo> = self
            .engine
            .registry()
            .job_types()
            .map(|c| JobTypeInfo {
                job_type: c.job_type(),
                version: c.job_version(),
                description: c.description(),
                params_schema: c.params_schema(),
            })
            .collect();
        types.sort_by_key(|t| t.job_type);
        types
    }
}

/// A job or task ID from a caller: 64 lowercase hex characters, as IDs are printed and
/// stored (an uppercase spelling is refused with `INVALID_ID`, not folded: an ID is compared
/// as text by every store and client).
pub fn parse_job_id(id: &str) -> Result<JobId, AppError> {
    parse_hex_id("job", id)
}

pub fn parse_task_id(id: &str) -> Result<TaskId, AppError> {
    parse_hex_id("task", id)
}

fn parse_hex_id<T: TryFrom<String>>(what: &str, id: &str) -> Result<T, AppError> {
    T::try_from(id.to_owned()).map_err(|_| {
        AppError::invalid(
            codes::INVALID_ID,
            format!("invalid {what} id {id:?}: expected 64 lowercase hexadecimal characters"),
        )
    })
}

/// A poison message ID from a caller: what the backends hand out (SQLite row numbers, Azure
/// GUIDs), 1 to 128 letters, digits and dashes.
pub fn parse_poison_id(id: &str) -> Result<&str, AppError> {
    let ok =
        (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(AppError::invalid(
            codes::INVALID_ID,
            format!("{id:?} is not a poison message ID (1 to 128 letters, digits and dashes)"),
        ))
    }
}

/// Params JSON from a caller: strict (a repeated key is refused, naming it).
pub fn parse_params(text: &str, source: &str) -> Result<Value, AppError> {
    engine::json::parse_strict(text, "params").map_err(|e| match e {
        engine::json::StrictJsonError::DuplicateKey { .. } => AppError::invalid(
            codes::INVALID_JSON,
            format!("{source}: {e}: a key may appear once (the job ID hashes the params)"),
        ),
        _ => AppError::invalid(
            codes::INVALID_JSON,
            format!("{source} is not valid JSON: {e}"),
        ),
    })
}

/// The data store on an Azure account: blobs read and written with `object_store`,
/// containers created through the backend's client (when the backend is Azure too).
fn azure_blobs(
    credentials: &Credentials,
    cache_dir: &std::path::Path,
    backend: Option<Arc<AzureBackend>>,
) -> Result<Blobs, AppError> {
    let account = engine_azure::data_account(credentials)
        .map_err(|e| AppError::invalid(codes::BAD_CONFIG, format!("--data-store azure: {e}")))?;
    let auth = match account.auth {
        DataAuth::AccessKey(key) => AzureBlobAuth::AccessKey(key),
        DataAuth::Sas(sas) => AzureBlobAuth::Sas(sas),
        DataAuth::EntraId(credential) => AzureBlobAuth::EntraId(Arc::new(EntraTokens(credential))),
    };
    let account = AzureBlobAccount {
        account: account.account,
        endpoint: account.blob_endpoint,
        auth,
    };
    let creator = backend.map(|b| Arc::new(AzureContainers(b)) as Arc<dyn CreateContainer>);
    Ok(Blobs::azure(account, cache_dir, creator))
}

struct AzureContainers(Arc<AzureBackend>);

/// The backend's Entra ID credential chain as the blob store's token source.
struct EntraTokens(engine_azure::EntraCredential);

#[async_trait::async_trait]
impl services::blob::StorageToken for EntraTokens {
    async fn token(&self) -> Result<String, String> {
        self.0
            .storage_token()
            .await
            .map(|t| t.token)
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl CreateContainer for AzureContainers {
    async fn create_container(&self, name: &str) -> Result<(), String> {
        self.0.create_container(name).await
    }
}

/// A page of up to `limit` items of a listing that pass `wanted`: full when enough match.
/// The listing is read in pages of at most the number still missing, so a page never holds
/// more matches than fit and its end is always a cursor the listing gave out.
async fn filled_page<T, F, Fut>(
    limit: usize,
    mut after: Option<String>,
    read: F,
    wanted: impl Fn(&T) -> bool,
) -> Result<Page<T>, AppError>
where
    F: Fn(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, engine::ports::StoreError>>,
{
    let mut items = Vec::new();
    loop {
        let got = read(PageRequest {
            after,
            limit: limit - items.len(),
        })
        .await?;
        items.extend(got.items.into_iter().filter(|t| wanted(t)));
        if items.len() >= limit || got.next.is_none() {
            return Ok(Page {
                items,
                next: got.next,
            });
        }
        after = got.next;
    }
}
