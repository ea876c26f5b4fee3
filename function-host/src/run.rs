//! `tessera run`: submit, run in-process workers until the job is terminal, with a progress bar.

use std::time::Duration;

use engine::runtime::{WorkerConfig, run_sweeper, run_worker};
use engine::{SubmitOptions, TaskStatus};
use function_host::app::App;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::output;

/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

pub async fn run(
    app: &App,
    job_type: &str,
    params: Value,
    options: SubmitOptions,
    concurrency: usize,
    json: bool,
) -> anyhow::Result<u8> {
    let engine = app.engine();
    let (submission, _) = app.submit(job_type, params, options).await?;
    let id = submission.job.id.clone();
    if !submission.created && submission.job.status.is_terminal() {
        eprintln!(
            "job {} is already {} (same request: not run again; --force re-runs a FAILED or CANCELLED job)",
            id, submission.job.status
        );
        return finish(app, &id, json).await;
    }
    if !submission.created {
        eprintln!(
            "job {id} exists and is {}: resuming it",
            submission.job.status
        );
    }

    let shutdown = CancellationToken::new();
    let config = WorkerConfig {
        concurrency,
        worker_id: crate::worker_id(),
        ..WorkerConfig::default()
    };
    let worker = tokio::spawn(run_worker(engine.clone(), config, shutdown.clone()));
    let sweeper = tokio::spawn(run_sweeper(engine.clone(), shutdown.clone()));

    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:.bold} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} tasks {msg}",
        )
        .expect("valid template")
        .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    bar.set_prefix(format!("{job_type} {}", id.short()));
    let mut interrupted = false;
    loop {
        let view = app.status(&id).await?;
        bar.set_length(view.tasks.total());
        bar.set_position(view.tasks.terminal());
        bar.set_message(format!(
            "· {} ok · {} failed · {} running · {}",
            view.tasks.get(TaskStatus::Succeeded),
            view.tasks.get(TaskStatus::Failed),
            view.tasks.get(TaskStatus::Running),
            view.job.status
        ));
        if view.job.status.is_terminal() && view.tasks.unfinished() == 0 {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    bar.finish_and_clear();
    shutdown.cancel();
    let _ = worker.await;
    let _ = sweeper.await;
    if interrupted {
        eprintln!(
            "interrupted: job {id} keeps its state; run the same command (or `tessera worker`) to resume it, `tessera cancel {id}` to cancel it"
        );
        return Ok(EXIT_INTERRUPTED);
    }
    finish(app, &id, json).await
}

async fn finish(app: &App, id: &engine::JobId, json: bool) -> anyhow::Result<u8> {
    let view = app.status(id).await?;
    if json {
        output::print_json(&view)?;
    } else {
        output::print_summary(&view);
    }
    Ok(output::exit_code(view.job.status))
}
