//! Command-line interface (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Tessera: a job/task orchestration engine for batch geospatial pipelines.
///
/// A job (e.g. `tiled_raster`) is validated, expanded into tasks and run by workers, on the
/// embedded SQLite backend (`--db`, default ./tessera.db) or on Azure Storage (`--backend
/// azure`: Table Storage, Storage Queues, Blob). The same request is the same job: running it
/// again returns the existing job.
#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TESSERA_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// The end of `tessera --help`; the registered job types follow it (`main::parse_cli`).
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 job SUCCEEDED (or command done), 1 job FAILED / \
COMPLETED_WITH_ERRORS / CANCELLED, 2 invalid input (message on stderr names the field), 3 storage \
or internal error.";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where job and task state, the task queue and events live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The embedded SQLite file (`--db`).
    Sqlite,
    /// Azure Storage: Table Storage, Storage Queues and Blob (`--connection-string` or
    /// `--storage-account`).
    Azure,
}

#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Storage backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Sqlite, env = "TESSERA_BACKEND")]
    pub backend: BackendKind,
    /// SQLite database file (created if missing).
    #[arg(long, default_value = "tessera.db", env = "TESSERA_DB")]
    pub db: PathBuf,
    /// Azure: storage connection string (account key, SAS, or `UseDevelopmentStorage=true`).
    #[arg(
        long,
        env = "AZURE_STORAGE_CONNECTION_STRING",
        hide_env_values = true,
        value_name = "STRING"
    )]
    pub connection_string: Option<String>,
    /// Azure: storage account authenticated with Entra ID (managed identity, workload
    /// identity, environment or Azure CLI credentials); used when no connection string is set.
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT", value_name = "NAME")]
    pub storage_account: Option<String>,
    /// Azure: prefix of the table, queue and container names (lowercase letters and digits).
    #[arg(long, default_value = "tessera", env = "TESSERA_AZURE_PREFIX")]
    pub azure_prefix: String,
    /// Azure: the dead-letter queue (default `<prefix>-tasks-poison`). A Functions app parks
    /// its dead letters in `<prefix>-tasks-dead`: set that to list and replay them
    /// (`tessera poison`) from the command line.
    #[arg(long, env = "TESSERA_AZURE_DEAD_LETTER_QUEUE", value_name = "QUEUE")]
    pub dead_letter_queue: Option<String>,
    /// Queue lease (visibility timeout) in seconds; a crashed worker's tasks come back after it.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_secs: u64,
    /// Where the geospatial job types' containers live: `local` (sub-folders of --data-dir)
    /// or `azure` (Blob containers of the backend's storage account). Default: azure with
    /// `--backend azure`, local otherwise.
    #[arg(long, value_enum, env = "TESSERA_DATA_STORE")]
    pub data_store: Option<DataStoreKind>,
    /// Local data directory: the containers (`--data-store local`), or the cache of blobs
    /// downloaded for GDAL (`--data-store azure`).
    #[arg(
        long,
        default_value = "data",
        env = "TESSERA_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

/// Where the geospatial data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataStoreKind {
    /// Sub-folders of `--data-dir`.
    Local,
    /// Blob containers of the Azure storage account (`--connection-string` or
    /// `--storage-account`).
    Azure,
}

/// Talk to a `tessera serve` instead of opening the store.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// URL of a `tessera serve` (e.g. http://127.0.0.1:8080): the command goes through its
    /// API, with the same output and exit codes.
    #[arg(long, env = "TESSERA_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// API key for `--server` (a bearer token).
    #[arg(
        long,
        env = "TESSERA_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Function key for `--server` on an Azure Function App (sent as `x-functions-key`;
    /// with `--api-key` too when the app also sets TESSERA_API_KEYS).
    #[arg(
        long,
        env = "TESSERA_FUNCTION_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub function_key: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ParamsArgs {
    /// Job params as a JSON object, e.g. '{"n": 1000}'.
    #[arg(long, conflicts_with = "params_file")]
    pub params: Option<String>,
    /// Read the params from a JSON file.
    #[arg(long, value_name = "PATH")]
    pub params_file: Option<PathBuf>,
    /// Outcome policy override: fail_fast (first failure fails the job) or continue.
    #[arg(long, value_parser = ["fail_fast", "continue"])]
    pub outcome: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a job and run it with in-process workers until it finishes.
    Run {
        /// Job type, e.g. hello_world.
        job_type: String,
        #[command(flatten)]
        params: ParamsArgs,
        #[command(flatten)]
        db: DbArgs,
        /// Handlers running at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
        workers: u64,
        /// Re-run a FAILED or CANCELLED job (same ID, attempt + 1).
        #[arg(long)]
        force: bool,
        /// Print the final job record as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run a worker against the database until interrupted (SIGINT / SIGTERM).
    Worker {
        #[command(flatten)]
        db: DbArgs,
        /// Handlers running at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrency: u64,
    },
    /// Run as an Azure Functions custom handler (docs/azure-functions.md): the host starts it
    /// with FUNCTIONS_CUSTOMHANDLER_PORT and AzureWebJobsStorage (or the identity-based
    /// AzureWebJobsStorage__accountName); TESSERA_AZURE_PREFIX, TESSERA_LEASE_SECS,
    /// TESSERA_DATA_STORE and TESSERA_DATA_DIR as app settings. No arguments.
    Functions {
        /// Handlers running at once per invocation of a bundled message (the host's
        /// batchSize bounds the invocations at once).
        #[arg(long, default_value_t = 8, env = "TESSERA_CONCURRENCY")]
        concurrency: u32,
    },
    /// Serve the HTTP API (docs/http-api.md), with in-process workers and the sweeper.
    ///
    /// Without API keys it binds loopback only. SIGTERM / Ctrl-C stops accepting, ends event
    /// streams, drains in-flight requests and running tasks, and exits.
    Serve {
        #[command(flatten)]
        db: DbArgs,
        /// Address to listen on: IP:PORT, [IPv6]:PORT or HOST:PORT (every address the name
        /// resolves to, e.g. localhost:8080).
        #[arg(long, default_value = "127.0.0.1:8080", env = "TESSERA_BIND")]
        bind: String,
        /// Seconds a client may take to send a request's headers or body, or leave a
        /// keep-alive connection idle (then it is disconnected; a stalled body gets 408).
        #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = parse_read_timeout)]
        read_timeout: f64,
        /// Task handlers running at once in this process.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024), conflicts_with = "no_workers")]
        workers: u64,
        /// Serve the API only (workers run elsewhere: `tessera worker`).
        #[arg(long)]
        no_workers: bool,
        /// File of API keys, one per line: `KEY` (full access) or `ro:KEY` (GET only); a
        /// file with no key is an error. Without it, the keys of the environment variable
        /// `TESSERA_API_KEYS` (same format, comma-separated) are used; keys are never given
        /// on the command line, where `ps` would show them.
        #[arg(long, value_name = "PATH")]
        api_key_file: Option<PathBuf>,
        /// Largest request body in bytes (413 above).
        #[arg(long, default_value_t = 1024 * 1024)]
        max_body: usize,
    },
    /// Submit a job without running it (a worker picks it up).
    Submit {
        job_type: String,
        #[command(flatten)]
        params: ParamsArgs,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show a job with its task counts.
    Status {
        /// Job ID (64 hex characters).
        id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: tasks not yet running are cancelled at once, running ones are told to stop.
    Cancel {
        id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first.
    Jobs {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        server: ServerArgs,
        /// Most jobs to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Copy the SQLite database, while workers keep using it, to a new file: a consistent
    /// snapshot of the last commit (`VACUUM INTO`).
    Backup {
        #[command(flatten)]
        db: DbArgs,
        /// The copy to create (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// List a job's tasks (status, attempts, starts, error).
    Tasks {
        id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        server: ServerArgs,
        /// Only tasks in this status (e.g. failed).
        #[arg(long)]
        status: Option<String>,
        /// Most tasks to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Poison messages (delivered too often without an outcome, or unreadable): list them,
    /// replay one (its finished job re-runs), or discard one.
    Poison {
        #[command(subcommand)]
        action: PoisonAction,
    },
    /// Print a job's events as JSON lines (job_started, task_started, progress_update, ...).
    Events {
        id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        server: ServerArgs,
        /// Keep printing new events until the job finishes.
        #[arg(long)]
        follow: bool,
    },
}

/// Where a `tessera poison` command goes and how it prints.
#[derive(Debug, Args, Clone)]
pub struct PoisonTarget {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PoisonAction {
    /// The oldest poison messages, with the job and tasks each carries (Azure shows 32 at most).
    List {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        #[command(flatten)]
        target: PoisonTarget,
    },
    /// Put a poison message's work back: its finished job re-runs (attempt + 1), a pending
    /// job's expansion is queued again; a stale message is removed.
    Replay {
        /// Message ID (from `tessera poison list`).
        id: String,
        #[command(flatten)]
        target: PoisonTarget,
    },
    /// Remove a poison message without replaying it.
    Discard {
        id: String,
        #[command(flatten)]
        target: PoisonTarget,
    },
}

/// `--read-timeout`: more than 0 and below the 30 s request timeout (a stalled body must be
/// told from a slow request).
fn parse_read_timeout(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs < 30.0 {
        Ok(secs)
    } else {
        Err("must be more than 0 and less than 30 (the request timeout)".into())
    }
}
