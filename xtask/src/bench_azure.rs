//! `cargo xtask bench azure [--quick]`: the Azure backend on Azurite (in memory, started here),
//! through the release `tessera` binary:
//! - dispatch of a 1 000-task fan-out (`hello_world` n=1000): submit until every task entity
//!   is written and every message enqueued (the job's `started_at - created_at`);
//! - the whole job with 2 `tessera worker` processes (`finished_at - created_at`);
//! - storage operations per task: every process logs its request counts at exit
//!   (submitter + both workers, idle polls included).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use test_support::azurite::Azurite;

use crate::bench::median;

pub(crate) struct Run {
    pub dispatch_s: f64,
    pub total_s: f64,
    pub ops: Value,
    pub ops_total: u64,
}

pub fn azure(root: &Path, quick: bool) -> anyhow::Result<()> {
    let bin = crate::build_tessera(root)?;
    let azurite_bin = crate::ensure_azurite(root)?;
    let azurite = Azurite::start(&azurite_bin, None).context("starting Azurite")?;
    let runs = if quick { 3 } else { 5 };
    let tasks = 1_000u64;
    println!(
        "azure backend benchmarks on Azurite (in memory), release build, {tasks}-task fan-out + barrier, \
         2 worker processes (concurrency 16 each), {runs} runs (median)"
    );
    let mut results = Vec::new();
    for run in 0..runs {
        let r = one_run(&bin, &azurite.connection_string(), run, tasks)?;
        println!(
            "  run {run}: dispatch {:.2} s, job {:.2} s, {} storage ops = {:.2} per task {}",
            r.dispatch_s,
            r.total_s,
            r.ops_total,
            r.ops_total as f64 / (tasks + 1) as f64,
            r.ops
        );
        results.push(r);
    }
    let dispatch = median(results.iter().map(|r| r.dispatch_s).collect());
    let total = median(results.iter().map(|r| r.total_s).collect());
    let per_task = median(
        results
            .iter()
            .map(|r| r.ops_total as f64 / (tasks + 1) as f64)
            .collect(),
    );
    println!();
    println!(
        "1 000-task fan-out dispatched in {dispatch:.2} s (target < 2 s; the Python Functions system: 100 s)"
    );
    println!("1 000 no-op task job done in {total:.2} s with 2 worker processes (target < 10 s)");
    println!("storage operations per task: {per_task:.2} (target <= 5)");
    Ok(())
}

fn tessera(bin: &Path, connection: &str, prefix: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("TESSERA_BACKEND", "azure")
        .env("AZURE_STORAGE_CONNECTION_STRING", connection)
        .env("TESSERA_AZURE_PREFIX", prefix)
        .env("TESSERA_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,tessera=info,function_host=info");
    cmd
}

/// The `storage operations of this process` log line in a process's stderr.
pub(crate) fn ops_of(stderr: &str) -> anyhow::Result<(Value, u64)> {
    for line in stderr.lines().rev() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &v["fields"];
        if let (Some(ops), Some(total)) = (fields["storage_ops"].as_str(), fields["total"].as_u64())
        {
            return Ok((serde_json::from_str(ops)?, total));
        }
    }
    bail!("no storage operations line in:\n{stderr}")
}

pub(crate) fn add(a: &mut Value, b: &Value) {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            let sum = a.get(k).and_then(Value::as_u64).unwrap_or(0) + v.as_u64().unwrap_or(0);
            a.insert(k.clone(), sum.into());
        }
    }
}

fn stop(child: Child) -> anyhow::Result<String> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

pub(crate) fn one_run(bin: &Path, connection: &str, run: usize, tasks: u64) -> anyhow::Result<Run> {
    let prefix = format!("bench{run}x{}", std::process::id());
    let workers: Vec<Child> = (0..2)
        .map(|i| {
            tessera(bin, connection, &prefix, &["worker", "--concurrency", "16"])
                .env("HOSTNAME", format!("bench{i}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting a worker")
        })
        .collect::<anyhow::Result<_>>()?;
    // Let the workers connect (create-if-missing of tables and queues) before the clock starts.
    std::thread::sleep(Duration::from_millis(500));
    let params = format!(r#"{{"n": {tasks}, "message": "bench {run}"}}"#);
    let out = tessera(
        bin,
        connection,
        &prefix,
        &["submit", "hello_world", "--params", &params, "--json"],
    )
    .output()?;
    if !out.status.success() {
        bail!("submit failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (mut ops, mut ops_total) = ops_of(&String::from_utf8_lossy(&out.stderr))?;
    let job: Value = serde_json::from_slice(&out.stdout)?;
    let id = job["id"].as_str().context("job id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(300);
    let job = loop {
        let out = tessera(bin, connection, &prefix, &["status", &id, "--json"]).output()?;
        let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if matches!(
            job["status"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELLED" | "COMPLETED_WITH_ERRORS")
        ) {
            break job;
        }
        if Instant::now() > deadline {
            bail!("job {id} not done after 300 s: {job}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for w in workers {
        let (o, t) = ops_of(&stop(w)?)?;
        add(&mut ops, &o);
        ops_total += t;
    }
    if job["status"] != "SUCCEEDED" {
        bail!("job did not succeed: {job}");
    }
    let at = |k: &str| job[k].as_i64().unwrap_or(0) as f64 / 1000.0;
    Ok(Run {
        dispatch_s: at("started_at") - at("created_at"),
        total_s: at("finished_at") - at("created_at"),
        ops,
        ops_total,
    })
}
