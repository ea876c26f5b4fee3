//! `tessera`: the command-line host. Wires the engine to a backend (embedded SQLite or Azure
//! Storage) and the registered job types, and maps errors to documented exit codes.

mod cli;
mod front;
mod output;
mod run;
mod serve;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use engine::runtime::{WorkerConfig, run_sweeper, run_worker};
use engine::{OutcomePolicy, SubmitOptions};
use engine_azure::Credentials;
use engine_sqlite::SqliteConfig;
use function_host::app::error::{EXIT_INTERNAL, EXIT_OK, codes};
use function_host::app::{
    Access, App, AppConfig, AppError, DataConfig, StoreConfig, parse_job_id, parse_params,
};
use function_host::http::{ApiKeys, HttpConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use cli::{
    BackendKind, Cli, Command, DataStoreKind, DbArgs, LogFormat, ParamsArgs, PoisonAction,
    ServerArgs,
};
use front::{Client, Front};

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
        Command::Worker { .. } | Command::Functions { .. } | Command::Serve { .. } => "info",
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
    match runtime.block_on(dispatch(cli.command)) {
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
    // Colours only for a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

/// The exit code of the application error in the chain (its kind decides); 3 otherwise.
fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|cause| cause.downcast_ref::<AppError>())
        .map_or(EXIT_INTERNAL, AppError::exit_code)
}

/// The application configuration of the command line's storage arguments.
fn app_config(db: &DbArgs, access: Access) -> Result<AppConfig, AppError> {
    let store = match db.backend {
        BackendKind::Sqlite => StoreConfig::Sqlite {
            path: db.db.clone(),
            access,
        },
        BackendKind::Azure => StoreConfig::Azure {
            credentials: azure_credentials(db)?,
            prefix: db.azure_prefix.clone(),
            dead_letter_queue: db.dead_letter_queue.clone(),
        },
    };
    let data_store = db.data_store.unwrap_or(match db.backend {
        BackendKind::Azure => DataStoreKind::Azure,
        BackendKind::Sqlite => DataStoreKind::Local,
    });
    let data = match data_store {
        DataStoreKind::Local => DataConfig::Local {
            dir: db.data_dir.clone(),
        },
        DataStoreKind::Azure => DataConfig::Azure {
            credentials: azure_credentials(db)?,
            cache_dir: db.data_dir.clone(),
        },
    };
    Ok(AppConfig {
        store,
        data,
        lease: Duration::from_secs(db.lease_secs),
    })
}

fn azure_credentials(db: &DbArgs) -> Result<Credentials, AppError> {
    match (&db.connection_string, &db.storage_account) {
        (Some(s), _) => Ok(Credentials::ConnectionString(s.clone())),
        (None, Some(account)) => Ok(Credentials::EntraId {
            account: account.clone(),
            client_id: None,
        }),
        (None, None) => Err(AppError::invalid(
            codes::BAD_CONFIG,
            "Azure storage (--backend azure or --data-store azure) needs --connection-string \
             (AZURE_STORAGE_CONNECTION_STRING) or --storage-account (AZURE_STORAGE_ACCOUNT)",
        )),
    }
}

/// Open the application, run `f` on it, then shut it down (whatever `f` returned).
async fn with_app<T>(
    db: &DbArgs,
    access: Access,
    f: impl AsyncFnOnce(&App) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let app = App::open(&app_config(db, access)?).await?;
    let result = f(&app).await;
    app.shutdown().await;
    result
}

/// Like `with_app`, or against `tessera serve` with `--server`.
async fn with_front<T>(
    db: &DbArgs,
    server: &ServerArgs,
    access: Access,
    f: impl AsyncFnOnce(&Front) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let front = match &server.server {
        Some(url) => Front::Remote(Client::new(
            url,
            server.api_key.clone(),
            server.function_key.clone(),
        )?),
        None => Front::Local(App::open(&app_config(db, access)?).await?),
    };
    let result = f(&front).await;
    front.shutdown().await;
    result
}

fn read_params(args: &ParamsArgs) -> Result<Value, AppError> {
    match (&args.params, &args.params_file) {
        (Some(text), _) => parse_params(text, "--params"),
        (None, Some(path)) => {
            let text = read_file(path)?;
            parse_params(&text, &format!("params file {}", path.display()))
        }
        (None, None) => Ok(Value::Null),
    }
}

fn read_file(path: &Path) -> Result<String, AppError> {
    std::fs::read_to_string(path).map_err(|e| {
        AppError::invalid(
            codes::BAD_PATH,
            format!("cannot read params file {}: {e}", path.display()),
        )
    })
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
            with_app(&db, Access::ReadWrite, async move |app| {
                let options = submit_options(&params, force);
                let params = read_params(&params)?;
                run::run(app, &job_type, params, options, workers as usize, json).await
            })
            .await
        }
        Command::Worker { db, concurrency } => {
            with_app(&db, Access::ReadWrite, async move |app| {
                let engine = app.engine();
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
            })
            .await
        }
        Command::Serve {
            db,
            bind,
            read_timeout,
            workers,
            no_workers,
            api_key_file,
            max_body,
        } => {
            let keys = match &api_key_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        AppError::invalid(
                            codes::BAD_PATH,
                            format!("cannot read --api-key-file {}: {e}", path.display()),
                        )
                    })?;
                    ApiKeys::parse_from(&format!("--api-key-file {}", path.display()), &text)
                }
                None => match std::env::var("TESSERA_API_KEYS") {
                    Ok(text) => ApiKeys::parse_from("TESSERA_API_KEYS", &text),
                    Err(_) => Ok(ApiKeys::none()),
                },
            }
            .map_err(|e| AppError::invalid(codes::BAD_CONFIG, e.to_string()))?;
            let bind = function_host::http::check_bind(&bind, &keys).await?;
            let config = HttpConfig {
                keys,
                max_body,
                read_timeout: std::time::Duration::from_secs_f64(read_timeout),
                ..HttpConfig::default()
            };
            let workers = (!no_workers).then_some(workers as usize);
            let app = App::open(&app_config(&db, Access::ReadWrite)?).await?;
            serve::serve(app, &bind, config, workers).await
        }
        Command::Functions { concurrency } => {
            let settings =
                function_host::functions::settings::from_settings(|name| std::env::var(name).ok())?;
            let keys = match std::env::var("TESSERA_API_KEYS") {
                Ok(text) => ApiKeys::parse(&text)
                    .map_err(|e| AppError::invalid(codes::BAD_CONFIG, e.to_string()))?,
                Err(_) => ApiKeys::none(),
            };
            let app = std::sync::Arc::new(App::open(&settings.app).await?);
            let shutdown = CancellationToken::new();
            let http = HttpConfig {
                keys,
                shutdown: shutdown.clone(),
                ..HttpConfig::default()
            };
            let worker = WorkerConfig {
                concurrency: concurrency as usize,
                worker_id: std::env::var("WEBSITE_INSTANCE_ID").unwrap_or_else(|_| worker_id()),
                ..WorkerConfig::default()
            };
            let stop = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::warn!("shutting down: finishing in-flight invocations");
                stop.cancel();
            });
            let served =
                function_host::functions::serve(app.clone(), settings.port, http, worker, shutdown)
                    .await;
            // The router holds the last other reference; it is dropped once serving ends.
            match std::sync::Arc::try_unwrap(app) {
                Ok(app) => app.shutdown().await,
                Err(_) => tracing::warn!("the application is still referenced at exit; not closed"),
            }
            served?;
            Ok(EXIT_OK)
        }
        Command::Submit {
            job_type,
            params,
            db,
            server,
            force,
            json,
        } => {
            let options = submit_options(&params, force);
            let params = read_params(&params)?;
            with_front(&db, &server, Access::ReadWrite, async move |front| {
                let (created, view) = front.submit(&job_type, params, options).await?;
                if json {
                    output::print_json(&view)?;
                } else {
                    let verb = if created { "submitted" } else { "exists:" };
                    println!(
                        "{verb} job {} ({}) {}",
                        view.job.id, view.job.job_type, view.job.status
                    );
                }
                Ok(EXIT_OK)
            })
            .await
        }
        Command::Status {
            id,
            db,
            server,
            json,
        } => {
            let id = parse_job_id(&id)?;
            with_front(&db, &server, Access::ReadOnly, async move |front| {
                let view = front.status(&id).await?;
                if json {
                    output::print_json(&view)?;
                } else {
                    output::print_summary(&view);
                }
                Ok(output::exit_code(view.job.status))
            })
            .await
        }
        Command::Cancel {
            id,
            db,
            server,
            json,
        } => {
            let id = parse_job_id(&id)?;
            with_front(&db, &server, Access::ReadWrite, async move |front| {
                let view = front.cancel(&id).await?;
                if json {
                    output::print_json(&view)?;
                } else {
                    println!("job {} is {}", view.job.id, view.job.status);
                }
                Ok(EXIT_OK)
            })
            .await
        }
        Command::Jobs {
            db,
            server,
            limit,
            json,
        } => {
            with_front(&db, &server, Access::ReadOnly, async move |front| {
                let jobs = front.list_jobs(limit).await?;
                if json {
                    let mut views = Vec::with_capacity(jobs.len());
                    for job in &jobs {
                        views.push(front.status(&job.id).await?);
                    }
                    output::print_json(&views)?;
                } else {
                    output::print_job_table(&jobs);
                }
                Ok(EXIT_OK)
            })
            .await
        }
        Command::Tasks {
            id,
            db,
            server,
            status,
            limit,
            json,
        } => {
            let id = parse_job_id(&id)?;
            let status = status
                .map(|s| {
                    s.to_ascii_uppercase()
                        .parse::<engine::TaskStatus>()
                        .map_err(|_| {
                            AppError::invalid(
                                codes::INVALID_QUERY,
                                format!("--status: unknown task status {s:?}"),
                            )
                        })
                })
                .transpose()?;
            with_front(&db, &server, Access::ReadOnly, async move |front| {
                front.status(&id).await?;
                let tasks = front.list_tasks(&id, status, limit).await?;
                if json {
                    output::print_json(&tasks)?;
                } else {
                    output::print_task_table(&tasks);
                }
                Ok(EXIT_OK)
            })
            .await
        }
        Command::Backup { db, to } => {
            if db.backend != BackendKind::Sqlite {
                return Err(AppError::invalid(
                    codes::BAD_CONFIG,
                    "backup copies the SQLite database (--backend sqlite); Azure Storage has its own \
                     replication and point-in-time restore",
                )
                .into());
            }
            let (from, to_path) = (db.db.clone(), to.clone());
            tokio::task::spawn_blocking(move || {
                engine_sqlite::backup(&from, &to_path, &SqliteConfig::default())
                    .map_err(AppError::from)
            })
            .await
            .context("backup task")??;
            println!("backed up {} to {}", db.db.display(), to.display());
            Ok(EXIT_OK)
        }
        Command::Poison { action } => poison(action).await,
        Command::Events {
            id,
            db,
            server,
            follow,
        } => {
            let id = parse_job_id(&id)?;
            with_front(&db, &server, Access::ReadOnly, async move |front| {
                front.status(&id).await?;
                output::print_events(front, &id, follow).await?;
                Ok(EXIT_OK)
            })
            .await
        }
    }
}

async fn poison(action: PoisonAction) -> anyhow::Result<u8> {
    match action {
        PoisonAction::List { limit, target } => {
            let access = Access::ReadOnly;
            with_front(&target.db, &target.server, access, async move |front| {
                let messages = front.poison(limit as usize).await?;
                if target.json {
                    output::print_json(&messages)?;
                } else {
                    output::print_poison_table(&messages);
                }
                Ok(EXIT_OK)
            })
            .await
        }
        PoisonAction::Replay { id, target } => {
            let access = Access::ReadWrite;
            with_front(&target.db, &target.server, access, async move |front| {
                let replayed = front.replay_poison(&id).await?;
                if target.json {
                    output::print_json(&replayed)?;
                } else {
                    output::print_replayed(&id, &replayed);
                }
                Ok(EXIT_OK)
            })
            .await
        }
        PoisonAction::Discard { id, target } => {
            let access = Access::ReadWrite;
            with_front(&target.db, &target.server, access, async move |front| {
                front.discard_poison(&id).await?;
                if target.json {
                    output::print_json(&serde_json::json!({ "discarded": id }))?;
                } else {
                    println!("poison message {id} discarded");
                }
                Ok(EXIT_OK)
            })
            .await
        }
    }
}

pub async fn wait_for_signal() {
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
