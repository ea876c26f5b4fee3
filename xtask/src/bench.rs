//! `cargo xtask bench engine [--quick]`: engine benchmarks on the embedded backend with no-op
//! tasks, through the release `tessera` binary (what a user runs):
//! - fan-out of 10 000 tasks + barrier: tasks/s end to end (submit to job closed);
//! - sequential chain of 40 tasks: ms per step;
//! - fan-out of 1 000 000 tasks: time to plan and persist, peak RSS, bytes per task.
//!
//! Each case runs several times on a fresh database; medians are reported (the machine is noisy).
//!
//! `--with-celery` then runs the same shapes on the peer, Celery 5.x with Redis, in the same run
//! (`xtask/peers/celery_bench.py`: 40-task chain, 1 000- and 10 000-task chords) and prints
//! the ratios. It starts a private `redis-server` on a free loopback port and a real
//! `celery worker` (prefork pool, one process per CPU), installing both if missing, and stops
//! them when done or on error. A 1 000-task Tessera fan-out is added to match the 1 000 chord.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let flag = |name: &str| args.iter().any(|a| a == name);
    match args.first().map(String::as_str) {
        Some("engine") => engine(root, flag("--quick"), flag("--with-celery")),
        Some("tiles") => crate::bench_geo::tiles(root, flag("--quick")),
        Some("cog") => crate::bench_geo::cog(root, flag("--quick")),
        Some("azure") => crate::bench_azure::azure(root, flag("--quick")),
        Some("http") => crate::bench_http::http(root, flag("--quick")),
        Some("dashboard") => crate::bench_dashboard::dashboard(root, flag("--quick")),
        Some("functions") => crate::bench_functions::functions(root, flag("--quick")),
        _ => bail!(
            "usage: cargo xtask bench <engine [--quick] [--with-celery] | tiles [--quick] | cog [--quick] | azure [--quick] | http [--quick] | dashboard [--quick] | functions [--quick]>"
        ),
    }
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

pub(crate) struct Measured {
    pub wall: Duration,
    pub peak_rss_kib: u64,
    pub stdout: String,
}

/// Run a command, sampling its peak RSS (VmHWM) from /proc while it runs.
pub(crate) fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
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

pub(crate) fn tessera(bin: &Path, db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg("--db").arg(db).env("RUST_LOG", "error");
    cmd
}

/// Tessera's medians that the peer comparison needs.
struct Figures {
    /// (tasks, whole `tessera run` wall seconds) per fan-out + barrier case.
    fan_outs: Vec<(u64, f64)>,
    chain_ms_per_step: f64,
}

fn engine(root: &Path, quick: bool, with_celery: bool) -> anyhow::Result<()> {
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

    // 1. Fan-out of 10 000 no-op tasks + barrier (and 1 000 to match the peer's smaller chord).
    let mut fan_outs = vec![(10_000, fan_out(&bin, &dir, 10_000, runs)?)];
    if with_celery {
        fan_outs.push((1_000, fan_out(&bin, &dir, 1_000, runs)?));
    }

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
    let chain_ms_per_step = median(per_step);
    println!("chain of {steps}: {chain_ms_per_step:.3} ms per step (job start to close / {steps})");

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

    if with_celery {
        let figures = Figures {
            fan_outs,
            chain_ms_per_step,
        };
        celery(root, &dir.join("celery"), runs, quick, cpus, &figures)?;
    }
    Ok(())
}

/// Fan-out of `n` no-op tasks + barrier; prints the medians and returns the wall seconds.
fn fan_out(bin: &Path, dir: &Path, n: u64, runs: usize) -> anyhow::Result<f64> {
    let (mut walls, mut engine_secs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let db = dir.join(format!("fanout-{n}-{run}.db"));
        let params = format!(r#"{{"shape":"fan_out","n":{n},"label":"bench-{run}"}}"#);
        let m = measure(&mut tessera(
            bin,
            &db,
            &[
                "run",
                "synthetic",
                "--params",
                &params,
                "--workers",
                "128",
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
    Ok(wall)
}

/// The peer: Celery 5.x + Redis on the same machine, same shapes, then the ratios to Tessera.
fn celery(
    root: &Path,
    dir: &Path,
    runs: usize,
    quick: bool,
    cpus: usize,
    tessera: &Figures,
) -> anyhow::Result<()> {
    ensure_celery_installed()?;
    std::fs::create_dir_all(dir)?;
    let peers = root.join("xtask/peers");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free loopback port for redis-server")?
        .port();
    let url = format!("redis://127.0.0.1:{port}/0");

    // Dropped in reverse order: the worker stops before its broker.
    let redis_log = dir.join("redis.log");
    let mut redis = Daemon::start(
        "redis-server",
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .arg("--logfile")
            .arg(&redis_log),
    )?;
    wait_for_redis(&mut redis, port).with_context(|| format!("see {}", redis_log.display()))?;
    let worker_log = dir.join("worker.log");
    let log = File::create(&worker_log)?;
    let _worker = Daemon::start(
        "celery worker",
        Command::new("python3")
            .args(["-m", "celery", "-A", "celery_bench", "--workdir"])
            .arg(&peers)
            .args([
                "-b",
                &url,
                "--result-backend",
                &url,
                "worker",
                "--pool=prefork",
            ])
            .arg(format!("--concurrency={cpus}"))
            .args(["--loglevel=WARNING", "--hostname=bench@%h"])
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;

    let redis_version = version_of("redis-server")?;
    println!(
        "peer, same machine and run: Celery with Redis {} as broker and result backend, \
         `celery worker --pool=prefork --concurrency={cpus}`, timed from submit to result received",
        redis_version
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .unwrap_or(&redis_version),
    );
    let mut client = Command::new("python3");
    client
        .arg(peers.join("celery_bench.py"))
        .args(["--redis", &url, "--runs", &runs.to_string()]);
    if quick {
        client.arg("--quick");
    }
    let out = client
        .stderr(Stdio::inherit())
        .output()
        .context("starting python3 xtask/peers/celery_bench.py")?;
    if !out.status.success() {
        bail!(
            "celery_bench.py failed with {} (worker log: {})",
            out.status,
            worker_log.display()
        );
    }
    for line in String::from_utf8(out.stdout)?.lines() {
        let rec: Value = serde_json::from_str(line)
            .with_context(|| format!("celery_bench.py output line {line:?}"))?;
        let field = |key: &str| {
            rec[key]
                .as_f64()
                .with_context(|| format!("celery_bench.py output {line}: no {key}"))
        };
        let n = rec["n"].as_u64().unwrap_or(0);
        let (case, unit, celery, tessera, note) = match rec["case"].as_str() {
            Some("versions") => {
                let v = |key: &str| rec[key].as_str().unwrap_or("?").to_string();
                println!(
                    "  celery {}, kombu {}, redis-py {}",
                    v("celery"),
                    v("kombu"),
                    v("redis_py")
                );
                continue;
            }
            Some("chain") => (
                format!("chain of {n}"),
                "ms per step",
                field("median_ms_per_step")?,
                tessera.chain_ms_per_step,
                String::new(),
            ),
            Some("chord") => {
                let wall = tessera
                    .fan_outs
                    .iter()
                    .find_map(|&(tasks, wall)| (tasks == n).then_some(wall))
                    .with_context(|| format!("no Tessera fan-out of {n} to compare with"))?;
                let done = field("median_callback_done_s")?;
                (
                    format!(
                        "chord of {n} + callback vs fan-out {n} + barrier (whole `tessera run`)"
                    ),
                    "s",
                    field("median_s")?,
                    wall,
                    format!(
                        "; the callback itself was done after {done:.3} s ({:.1}x)",
                        done / wall
                    ),
                )
            }
            _ => bail!("unexpected celery_bench.py output: {line}"),
        };
        println!(
            "  {case}: Celery {celery:.3} {unit} (median of {}), Tessera {tessera:.3} {unit}: Tessera faster by {:.1}x{note}",
            field("runs")?,
            celery / tessera
        );
    }
    Ok(())
}

/// Install the peer's pieces when missing: Debian's redis-server, celery[redis] from PyPI.
fn ensure_celery_installed() -> anyhow::Result<()> {
    if version_of("redis-server").is_err() {
        println!("redis-server missing: apt-get install redis-server");
        crate::run(Command::new("apt-get").args(["update", "-q"]))
            .and_then(|()| {
                crate::run(Command::new("apt-get").args(["install", "-y", "-q", "redis-server"]))
            })
            .context("installing redis-server (Debian package redis-server) failed")?;
    }
    let check = || {
        Command::new("python3")
            .args([
                "-c",
                "import celery, redis; assert celery.VERSION.major == 5",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !check() {
        println!("celery 5 with redis missing for python3: pip install 'celery[redis]>=5,<6'");
        crate::run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "-q",
            "celery[redis]>=5,<6",
        ]))
        .context("installing celery[redis] with python3 -m pip failed")?;
    }
    Ok(())
}

/// `PROGRAM --version`, first line.
fn version_of(program: &str) -> anyhow::Result<String> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .with_context(|| format!("{program} not found"))?;
    if !out.status.success() {
        bail!("{program} --version failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

fn wait_for_redis(redis: &mut Daemon, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = redis.child.try_wait()? {
            bail!("redis-server exited at start with {status}");
        }
        let pong = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.write_all(b"PING\r\n")?;
            let mut buf = [0; 7];
            s.read_exact(&mut buf)?;
            Ok(buf)
        });
        if pong.is_ok_and(|b| &b == b"+PONG\r\n") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("redis-server did not answer PING on port {port} within 10 s")
}

/// A background process stopped on drop (also on error): SIGTERM, then SIGKILL after 15 s.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn start(name: &'static str, cmd: &mut Command) -> anyhow::Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Self { name, child })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A celery worker's SIGTERM is its warm shutdown: it stops its pool processes itself.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
