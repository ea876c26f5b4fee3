//! `tessera`: the command-line host. Wires the engine to a backend (embedded SQLite or Azure
//! Storage) and the registered job types, and maps errors to documented exit codes.

mod cli;
mod output;
mod run;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use engine::ports::{Backend, PageRequest};
use engine::runtime::{JobQueryError, SubmitError, WorkerConfig, run_sweeper, run_worker};
use engine::{Engine, EngineConfig, JobId, OutcomePolicy, SubmitOptions};
use engine_azure::{AzureBackend, AzureConfig, ConnectError, Credentials, DataAuth};
use engine_sqlite::{BackupError, OpenError, SqliteBackend, SqliteConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use cli::{BackendKind, Cli, Command, DataStoreKind, DbArgs, LogFormat, ParamsArgs};
use services::blob::{AzureBlobAccount, AzureBlobAuth, Blobs, CreateContainer};

/// Exit codes (docs/errors.md).
pub const EXIT_OK: u8 = 0;
pub const EXIT_JOB_UNSUCCESSFUL: u8 = 1;
pub const EXIT_INVALID_INPUT: u8 = 2;
pub const EXIT_INTERNAL: u8 = 3;

/// The Azure backend of this process, when `--backend azure`: its operation counts are
/// logged at exit.
static AZURE: std::sync::OnceLock<std::sync::Arc<AzureBackend>> = std::sync::OnceLock::new();

/// The SQLite backend of this process: closed at exit, which checkpoints its WAL into the
/// database file.
static SQLITE: std::sync::OnceLock<Arc<SqliteBackend>> = std::sync::OnceLock::new();

/// Bad input from the command line (params text, file, ID).
#[derive(Debug)]
struct InputError(String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InputError {}

/// The command line, with `--help` listing the job types this binary registers (from the
/// registry: each controller's type, version and description).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let registry = controllers::registry(&services::Services::local("."));
    let mut types: Vec<_> = registry
        .job_types()
        .map(|c| {
            format!(
                "  {} v{}\n      {}",
                c.job_type(),
                c.job_version(),
                c.description()
            )
        })
        .collect();
    types.sort();
    let help = format!(
        "{}\n\nJob types (tessera run TYPE --params JSON; docs/geospatial.md):\n{}",
        cli::EXIT_CODES_HELP,
        types.join("\n")
    );
    let matches = Cli::command().after_help(help).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse_cli();
    let default_level = match cli.command {
        Command::Worker { .. } => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    if let Some(azure) = AZURE.get() {
        // Azure bills per request: what this process cost (benchmarks read this line).
        let ops = azure.ops();
        tracing::info!(
            storage_ops = %serde_json::to_string(&ops).unwrap_or_default(),
            total = ops.total(),
            "storage operations of this process"
        );
    }
    if let Some(sqlite) = SQLITE.get() {
        sqlite.close();
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code_of(&e))
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// Invalid input -> 2, anything else -> 3.
fn exit_code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<InputError>() || cause.is::<engine::ids::InvalidId>() {
            return EXIT_INVALID_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<SubmitError>() {
            return match e {
                SubmitError::Runtime(_) | SubmitError::CheckUnavailable(_) => EXIT_INTERNAL,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if let Some(JobQueryError::NotFound(_)) = cause.downcast_ref::<JobQueryError>() {
            return EXIT_INVALID_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<OpenError>() {
            return if e.is_bad_path() {
                EXIT_INVALID_INPUT
            } else {
                EXIT_INTERNAL
            };
        }
        if let Some(e) = cause.downcast_ref::<BackupError>() {
            return match e {
                BackupError::TargetExists { .. } | BackupError::TargetDirectory { .. } => {
                    EXIT_INVALID_INPUT
                }
                BackupError::Open(e) if e.is_bad_path() => EXIT_INVALID_INPUT,
                _ => EXIT_INTERNAL,
            };
        }
    }
    EXIT_INTERNAL
}

/// Whether a command writes to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    ReadWrite,
    /// `status`, `jobs`, `events`: the SQLite file is opened read-only (it must exist), so they
    /// work on a read-only file or a full disk.
    ReadOnly,
}

async fn open_engine(db: &DbArgs, access: Access) -> anyhow::Result<Engine> {
    let (backend, azure) = match db.backend {
        BackendKind::Sqlite => (open_sqlite(db, access)?, None),
        BackendKind::Azure => {
            let azure = open_azure(db).await?;
            (azure.backend(), Some(azure))
        }
    };
    let config = EngineConfig {
        lease: Duration::from_secs(db.lease_secs),
        ..EngineConfig::default()
    };
    let data_store = db.data_store.unwrap_or(match db.backend {
        BackendKind::Azure => DataStoreKind::Azure,
        BackendKind::Sqlite => DataStoreKind::Local,
    });
    let blobs = match data_store {
        DataStoreKind::Local => Blobs::local(&db.data_dir),
        DataStoreKind::Azure => azure_blobs(db, azure)?,
    };
    Ok(Engine::new(
        backend,
        controllers::registry(&services::Services::new(blobs)),
        config,
    ))
}

/// The data store on the Azure account: blobs read and written with `object_store`, containers
/// created through the backend's client (when the backend is Azure too).
fn azure_blobs(db: &DbArgs, backend: Option<Arc<AzureBackend>>) -> anyhow::Result<Blobs> {
    let account = engine_azure::data_account(&azure_credentials(db)?)
        .map_err(|e| InputError(format!("--data-store azure: {e}")))?;
    let auth = match account.auth {
        DataAuth::AccessKey(key) => AzureBlobAuth::AccessKey(key),
        DataAuth::Sas(sas) => AzureBlobAuth::Sas(sas),
        DataAuth::EntraId => AzureBlobAuth::EntraId,
    };
    let account = AzureBlobAccount {
        account: account.account,
        endpoint: account.blob_endpoint,
        auth,
    };
    let creator = backend.map(|b| Arc::new(AzureContainers(b)) as Arc<dyn CreateContainer>);
    Ok(Blobs::azure(account, &db.data_dir, creator))
}

struct AzureContainers(Arc<AzureBackend>);

#[async_trait::async_trait]
impl CreateContainer for AzureContainers {
    async fn create_container(&self, name: &str) -> Result<(), String> {
        self.0.create_container(name).await
    }
}

fn open_sqlite(db: &DbArgs, access: Access) -> anyhow::Result<Backend> {
    let config = SqliteConfig::default();
    let backend = match access {
        Access::ReadWrite => SqliteBackend::open(&db.db, &config)?,
        Access::ReadOnly => SqliteBackend::open_read_only(&db.db, &config)?,
    };
    let _ = SQLITE.set(backend.clone());
    Ok(Backend::from_all(backend))
}

fn azure_credentials(db: &DbArgs) -> anyhow::Result<Credentials> {
    match (&db.connection_string, &db.storage_account) {
        (Some(s), _) => Ok(Credentials::ConnectionString(s.clone())),
        (None, Some(account)) => Ok(Credentials::EntraId {
            account: account.clone(),
        }),
        (None, None) => Err(InputError(
            "Azure storage (--backend azure or --data-store azure) needs --connection-string \
             (AZURE_STORAGE_CONNECTION_STRING) or --storage-account (AZURE_STORAGE_ACCOUNT)"
                .into(),
        )
        .into()),
    }
}

async fn open_azure(db: &DbArgs) -> anyhow::Result<Arc<AzureBackend>> {
    let config = AzureConfig::new(azure_credentials(db)?).with_prefix(db.azure_prefix.clone());
    match AzureBackend::connect(&config).await {
        Ok(backend) => {
            let _ = AZURE.set(backend.clone());
            Ok(backend)
        }
        Err(ConnectError::Config(e)) => Err(InputError(format!("azure backend: {e}")).into()),
        Err(e) => Err(anyhow::Error::new(e)
            .context("azure backend: connecting to the storage account failed")),
    }
}

fn read_params(args: &ParamsArgs) -> anyhow::Result<Value> {
    let (text, source) = match (&args.params, &args.params_file) {
        (Some(text), _) => (text.clone(), "--params".to_owned()),
        (None, Some(path)) => (read_file(path)?, format!("params file {}", path.display())),
        (None, None) => return Ok(Value::Null),
    };
    engine::json::parse_strict(&text, "params").map_err(|e| {
        let message = match e {
            engine::json::StrictJsonError::DuplicateKey { .. } => {
                format!("{source}: {e}: a key may appear once (the job ID hashes the params)")
            }
            _ => format!("{source} is not valid JSON: {e}"),
        };
        InputError(message).into()
    })
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| InputError(format!("cannot read params file {}: {e}", path.display())).into())
}

fn submit_options(args: &ParamsArgs, force: bool) -> SubmitOptions {
    SubmitOptions {
        force,
        outcome_policy: args
            .outcome
            .as_deref()
            .and_then(|o| o.parse::<OutcomePolicy>().ok()),
    }
}

fn parse_id(id: &str) -> anyhow::Result<JobId> {
    Ok(id.parse::<JobId>()?)
}

pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{host}-{}", std::process::id())
}

async fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run {
            job_type,
            params,
            db,
            workers,
            force,
            json,
        } => {
            let engine = open_engine(&db, Access::ReadWrite).await?;
            let options = submit_options(&params, force);
            let params = read_params(&params)?;
            run::run(&engine, &job_type, params, options, workers as usize, json).await
        }
        Command::Worker { db, concurrency } => {
            let engine = open_engine(&db, Access::ReadWrite).await?;
            let shutdown = CancellationToken::new();
            let config = WorkerConfig {
                concurrency: concurrency as usize,
                worker_id: worker_id(),
                ..WorkerConfig::default()
            };
            let worker = tokio::spawn(run_worker(engine.clone(), config, shutdown.clone()));
            let sweeper = tokio::spawn(run_sweeper(engine.clone(), shutdown.clone()));
            wait_for_signal().await;
            tracing::info!("shutting down: finishing running tasks");
            shutdown.cancel();
            worker.await.context("worker task")?;
            sweeper.await.context("sweeper task")?;
            Ok(EXIT_OK)
        }
        Command::Submit {
            job_type,
            params,
            db,
            force,
            json,
        } => {
            let engine = open_engine(&db, Access::ReadWrite).await?;
            let options = submit_options(&params, force);
            let params = read_params(&params)?;
            let submission = engine.submit(&job_type, params, options).await?;
            let view = engine.status(&submission.job.id).await?;
            if json {
                output::print_json(&view)?;
            } else {
                let verb = if submission.created {
                    "submitted"
                } else {
                    "exists:"
                };
                println!(
                    "{verb} job {} ({}) {}",
                    view.job.id, view.job.job_type, view.job.status
                );
            }
            Ok(EXIT_OK)
        }
        Command::Status { id, db, json } => {
            let engine = open_engine(&db, Access::ReadOnly).await?;
            let view = engine.status(&parse_id(&id)?).await?;
            if json {
                output::print_json(&view)?;
            } else {
                output::print_summary(&view);
            }
            Ok(output::exit_code(view.job.status))
        }
        Command::Cancel { id, db, json } => {
            let engine = open_engine(&db, Access::ReadWrite).await?;
            let id = parse_id(&id)?;
            engine.cancel(&id).await?;
            let view = engine.status(&id).await?;
            if json {
                output::print_json(&view)?;
            } else {
                println!("job {} is {}", view.job.id, view.job.status);
            }
            Ok(EXIT_OK)
        }
        Command::Jobs { db, limit, json } => {
            let engine = open_engine(&db, Access::ReadOnly).await?;
            let page = engine
                .backend()
                .jobs
                .list_jobs(PageRequest::first(limit.max(1)))
                .await?;
            if json {
                let mut views = Vec::with_capacity(page.items.len());
                for job in &page.items {
                    views.push(engine.status(&job.id).await?);
                }
                output::print_json(&views)?;
            } else {
                output::print_job_table(&page.items);
            }
            Ok(EXIT_OK)
        }
        Command::Backup { db, to } => {
            if db.backend != BackendKind::Sqlite {
                return Err(InputError(
                    "backup copies the SQLite database (--backend sqlite); Azure Storage has its own \
                     replication and point-in-time restore"
                        .into(),
                )
                .into());
            }
            let (from, to_path) = (db.db.clone(), to.clone());
            tokio::task::spawn_blocking(move || {
                engine_sqlite::backup(&from, &to_path, &SqliteConfig::default())
            })
            .await
            .context("backup task")??;
            println!("backed up {} to {}", db.db.display(), to.display());
            Ok(EXIT_OK)
        }
        Command::Events { id, db, follow } => {
            let engine = open_engine(&db, Access::ReadOnly).await?;
            let id = parse_id(&id)?;
            engine.status(&id).await?;
            output::print_events(&engine, &id, follow).await?;
            Ok(EXIT_OK)
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
