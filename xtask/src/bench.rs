//! `cargo xtask bench engine [--quick]`: engine benchmarks on the embedded backend with no-op
//! tasks, through the release `tessera` binary (what a user runs):
//! - fan-out of 10 000 tasks + barrier: tasks/s end to end (submit to job closed);
//! - sequential chain of 40 tasks: ms per step;
//! - fan-out of 1 000 000 tasks: time to plan and persist, peak RSS, bytes per task.
//!
//! Each case runs several times on a fresh database; medians are reported (the machine is noisy).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("engine") => engine(root, args.iter().any(|a| a == "--quick")),
        _ => bail!("usage: cargo xtask bench engine [--quick]"),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

struct Measured {
    wall: Duration,
    peak_rss_kib: u64,
    stdout: String,
}

/// Run a command, sampling its peak RSS (VmHWM) from /proc while it runs.
fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting tessera")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let stdout_pipe = child.stdout.take().expect("piped");
    let reader =
        std::thread::spawn(move || std::io::read_to_string(stdout_pipe).unwrap_or_default());
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait()? {
            let wall = start.elapsed();
            let stdout = reader.join().unwrap_or_default();
            if !status.success() {
                bail!("{cmd:?} failed with {status}");
            }
            return Ok(Measured {
                wall,
                peak_rss_kib: peak,
                stdout,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tessera(bin: &Path, db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg("--db").arg(db).env("RUST_LOG", "error");
    cmd
}

fn engine(root: &Path, quick: bool) -> anyhow::Result<()> {
    let bin = crate::build_tessera(root)?;
    let dir = root.join("target/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let runs = if quick { 3 } else { 5 };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "engine benchmarks, embedded SQLite backend, release build, {cpus} CPUs, {runs} runs each (median)"
    );

    // 1. Fan-out of 10 000 no-op tasks + barrier.
    let n = 10_000;
    let (mut walls, mut engine_secs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let db = dir.join(format!("fanout-{run}.db"));
        let params = format!(r#"{{"shape":"fan_out","n":{n},"label":"bench-{run}"}}"#);
        let m = measure(&mut tessera(
            &bin,
            &db,
            &[
                "run",
                "synthetic",
                "--params",
                &params,
                "--workers",
                "64",
                "--json",
            ],
        ))?;
        let job: Value =
            serde_json::from_str(m.stdout.trim()).context("tessera run --json output")?;
        if job["status"] != "SUCCEEDED" || job["tasks"]["SUCCEEDED"] != n + 1 {
            bail!("fan-out job did not succeed: {job}");
        }
        let secs = (job["finished_at"].as_i64().unwrap_or(0)
            - job["created_at"].as_i64().unwrap_or(0)) as f64
            / 1000.0;
        walls.push(m.wall.as_secs_f64());
        engine_secs.push(secs);
    }
    let (wall, inside) = (median(walls), median(engine_secs));
    println!(
        "fan-out {n} + barrier: {wall:.3} s wall for the whole `tessera run` ({:.0} tasks/s); {inside:.3} s submit-to-close ({:.0} tasks/s)",
        n as f64 / wall,
        n as f64 / inside
    );

    // 2. Sequential chain of 40 tasks.
    let steps = 40;
    let mut per_step = Vec::new();
    for run in 0..runs {
        let db = dir.join(format!("chain-{run}.db"));
        let params = format!(r#"{{"shape":"chain","n":{steps},"label":"bench-{run}"}}"#);
        let m = measure(&mut tessera(
            &bin,
            &db,
            &["run", "synthetic", "--params", &params, "--json"],
        ))?;
        let job: Value = serde_json::from_str(m.stdout.trim())?;
        if job["status"] != "SUCCEEDED" {
            bail!("chain job did not succeed: {job}");
        }
        let ms = (job["finished_at"].as_i64().unwrap_or(0)
            - job["started_at"].as_i64().unwrap_or(0)) as f64;
        per_step.push(ms / steps as f64);
    }
    println!(
        "chain of {steps}: {:.3} ms per step (job start to close / {steps})",
        median(per_step)
    );

    // 3. Fan-out of 1 000 000 tasks: plan and persist.
    let big = if quick { 200_000 } else { 1_000_000 };
    let db = dir.join("big.db");
    let params = format!(r#"{{"shape":"fan_out","n":{big},"label":"bench-big"}}"#);
    let m = measure(&mut tessera(
        &bin,
        &db,
        &["submit", "synthetic", "--params", &params, "--json"],
    ))?;
    let job: Value = serde_json::from_str(m.stdout.trim())?;
    let stored = job["tasks"]["QUEUED"].as_u64().unwrap_or(0)
        + job["tasks"]["PENDING"].as_u64().unwrap_or(0);
    if stored != big + 1 {
        bail!(
            "expected {} stored tasks, got {stored}: {}",
            big + 1,
            job["tasks"]
        );
    }
    let rss = m.peak_rss_kib * 1024;
    println!(
        "fan-out {big}: planned and persisted in {:.2} s ({:.0} tasks/s), peak RSS {:.0} MiB, {:.0} bytes per task",
        m.wall.as_secs_f64(),
        big as f64 / m.wall.as_secs_f64(),
        rss as f64 / 1048576.0,
        rss as f64 / big as f64
    );
    let db_size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "  database file: {:.0} MiB ({:.0} bytes per task)",
        db_size as f64 / 1048576.0,
        db_size as f64 / big as f64
    );
    Ok(())
}
