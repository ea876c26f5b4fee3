//! `cargo xtask bench functions [--quick]`: a 1 000-task `hello_world` job through the
//! protocol-level Functions host (`test_support::functions_host`) on Azurite, two handler
//! instances of the release binary, side by side in the same run with two `tessera worker`
//! processes (`bench azure`'s run). Storage operations per task count the handlers' requests
//! (each logs them at exit) and the host's (its polls, deletes and releases of the trigger
//! queues, idle polls included); the job is watched through a separate connection.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine_azure::{AzureBackend, AzureConfig, Credentials};
use serde_json::{Value, json};
use test_support::azurite::Azurite;
use test_support::functions_host::Host;

use crate::bench::median;
use crate::bench_azure::{Run, add, ops_of};

const TASKS: u64 = 1_000;

pub fn functions(root: &Path, quick: bool) -> anyhow::Result<()> {
    let bin = crate::build_tessera(root)?;
    let app = tempfile::tempdir()?;
    crate::functions_app::assemble(&root.join("infra/functions"), &bin, app.path())?;
    let azurite_bin = crate::ensure_azurite(root)?;
    let azurite = Azurite::start(&azurite_bin, None).context("starting Azurite")?;
    let connection = azurite.connection_string();
    let runs = if quick { 3 } else { 5 };
    println!(
        "functions benchmark on Azurite (in memory), release build, {TASKS}-task hello_world: \
         2 handler instances under the simulated Functions host (host.json batchSize + \
         newBatchThreshold in flight each) vs 2 `tessera worker` processes (concurrency 16 \
         each), {runs} runs (median)"
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let (mut functions, mut workers) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let f = runtime.block_on(one_run(app.path(), &connection, run))?;
        println!(
            "  run {run} functions: job {:.2} s, {} storage ops = {:.2} per task {}",
            f.total_s,
            f.ops_total,
            f.ops_total as f64 / (TASKS + 1) as f64,
            f.ops
        );
        let w = crate::bench_azure::one_run(&bin, &connection, 100 + run, TASKS)?;
        println!(
            "  run {run} workers:   job {:.2} s, {} storage ops = {:.2} per task {}",
            w.total_s,
            w.ops_total,
            w.ops_total as f64 / (TASKS + 1) as f64,
            w.ops
        );
        functions.push(f);
        workers.push(w);
    }
    let summary = |rs: &[Run]| {
        (
            median(rs.iter().map(|r| r.total_s).collect()),
            median(
                rs.iter()
                    .map(|r| r.ops_total as f64 / (TASKS + 1) as f64)
                    .collect(),
            ),
        )
    };
    let (f_total, f_ops) = summary(&functions);
    let (w_total, w_ops) = summary(&workers);
    println!();
    println!(
        "1 000-task hello_world, Functions host (2 instances): {f_total:.2} s, {f_ops:.2} storage operations per task (target <= 5)"
    );
    println!(
        "1 000-task hello_world, 2 tessera worker processes:  {w_total:.2} s, {w_ops:.2} storage operations per task"
    );
    Ok(())
}

async fn one_run(app: &Path, connection: &str, run: usize) -> anyhow::Result<Run> {
    let prefix = format!("fbench{run}x{}", std::process::id());
    let settings: HashMap<String, String> = [
        ("FUNCTIONS_WORKER_RUNTIME", "Custom"),
        ("AzureWebJobsStorage", connection),
        ("TESSERA_AZURE_PREFIX", prefix.as_str()),
        ("TESSERA_LOG_FORMAT", "json"),
        ("RUST_LOG", "warn,function_host=info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let host = Arc::new(Host::start(app, settings, 2).await);
    let stop = tokio_util::sync::CancellationToken::new();
    let pump = {
        let (host, stop) = (host.clone(), stop.clone());
        tokio::spawn(async move { host.pump(stop).await })
    };
    let body = json!({"job_type": "hello_world", "params": {"n": TASKS, "message": format!("fbench {run}")}});
    let (status, _, text) = host.request("post", "/api/jobs", Some(&body)).await;
    if status != 202 {
        bail!("submission answered {status}: {text}");
    }
    let job: Value = serde_json::from_str(&text)?;
    let id: engine::JobId = job["id"].as_str().context("job id")?.parse()?;
    // Watch through a connection of our own: its requests are not the run's.
    let watcher = AzureBackend::connect(
        &AzureConfig::new(Credentials::ConnectionString(connection.to_owned()))
            .with_prefix(prefix.clone()),
    )
    .await?
    .backend();
    let deadline = Instant::now() + Duration::from_secs(300);
    let job = loop {
        if let Some(job) = watcher.jobs.get_job(&id).await?
            && job.status.is_terminal()
        {
            break job;
        }
        if Instant::now() > deadline {
            bail!("job {id} not done after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.cancel();
    pump.await?;
    let host_requests = host.queues.requests();
    let mut ops = json!({ "host_queue_requests": host_requests });
    let mut ops_total = host_requests;
    for log in host.shutdown() {
        let (o, t) = ops_of(&log)?;
        add(&mut ops, &o);
        ops_total += t;
    }
    if job.status != engine::JobStatus::Succeeded {
        bail!("job did not succeed: {}", job.status);
    }
    let at = |t: Option<i64>| t.unwrap_or(0) as f64 / 1000.0;
    Ok(Run {
        dispatch_s: at(job.started_at) - at(Some(job.created_at)),
        total_s: at(job.finished_at) - at(Some(job.created_at)),
        ops,
        ops_total,
    })
}
