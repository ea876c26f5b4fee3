//! `cargo xtask bench http [--quick]`: the HTTP API under load on loopback (wrk, 64
//! connections), against the embedded backend with in-process workers, and in the same run
//! the peer users would otherwise build: FastAPI under uvicorn (2 workers) whose endpoint calls
//! Celery's `apply_async` on Redis (`xtask/peers/http_peer.py`), the same job shape
//! (`hello_world` n=3).
//!
//! Cases: distinct submissions (each request a different job), `GET /api/jobs/{id}`, the
//! delay from an event's store time (`at`) to its arrival at an SSE client, and the peak RSS
//! of `tessera serve` under that load. Medians of the runs are reported.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::bench::median;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_http(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{url} did not answer within 60 s")
}

fn ensure_tools(root: &Path) -> anyhow::Result<PathBuf> {
    for (tool, package) in [
        ("wrk", "wrk"),
        ("redis-server", "redis-server"),
        ("curl", "curl"),
    ] {
        if Command::new("which")
            .arg(tool)
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            println!("{tool} missing: apt-get install {package}");
            crate::run(Command::new("apt-get").args(["install", "-y", "-q", package]))?;
        }
    }
    let venv = root.join("target/bench-py");
    let bin = venv.join("bin");
    if !bin.join("uvicorn").exists() || !bin.join("celery").exists() {
        println!(
            "Installing the peer (fastapi, uvicorn, celery, redis) into {}",
            venv.display()
        );
        crate::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        crate::run(
            Command::new(bin.join("pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .args(["fastapi", "uvicorn", "celery[redis]>=5,<6"]),
        )?;
    }
    Ok(bin)
}

/// What wrk measured.
#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_ms(text: &str) -> Option<f64> {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))?;
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn wrk(url: &str, script: Option<&Path>, secs: u64) -> anyhow::Result<Load> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c64", &format!("-d{secs}s"), "--latency"]);
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_ms(v.trim()))
        .with_context(|| format!("no 99% latency in wrk output:\n{text}"))?;
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Load {
        rps,
        p99_ms,
        errors,
    })
}

/// A wrk script whose every request submits a different job (thread id and counter in the
/// message), so each is a new job, not the same request again.
fn submit_script(dir: &Path, run: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("submit-{run}.lua"));
    std::fs::write(
        &path,
        format!(
            r#"local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  counter = 0
end
request = function()
  counter = counter + 1
  local body = string.format('{{"job_type":"hello_world","params":{{"n":3,"message":"bench {run} %s %d"}}}}', tid, counter)
  return wrk.format("POST", "/api/jobs", {{["Content-Type"] = "application/json"}}, body)
end
"#
        ),
    )?;
    Ok(path)
}

/// `POST /api/jobs` with `body` (curl); the job ID of the answer.
fn submit(base: &str, body: &str) -> anyhow::Result<String> {
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(body)
        .arg(format!("{base}/api/jobs"))
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout).context("submit answer")?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .context("no id in the submit answer")
}

fn submit_one(base: &str) -> anyhow::Result<String> {
    submit(
        base,
        r#"{"job_type":"hello_world","params":{"n":3,"message":"probe"}}"#,
    )
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Delay from each event's `at` to its arrival at an SSE client, for a 200-task job.
fn sse_delays(base: &str) -> anyhow::Result<Vec<f64>> {
    let id = submit(
        base,
        r#"{"job_type":"synthetic","params":{"n":200,"sleep_ms":20,"label":"sse"}}"#,
    )?;
    let mut child = Command::new("curl")
        .args(["-sN", &format!("{base}/api/jobs/{id}/events")])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("curl stdout")?;
    let mut delays = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let arrived = now_ms();
        let event: Value = serde_json::from_str(data)?;
        if let Some(at) = event["at"].as_f64() {
            delays.push(arrived - at);
        }
    }
    let _ = child.wait();
    if delays.len() < 400 {
        bail!("only {} events arrived", delays.len());
    }
    Ok(delays)
}

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[i.min(xs.len() - 1)]
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub fn http(root: &Path, quick: bool) -> anyhow::Result<()> {
    let bin = crate::build_tessera(root)?;
    let py = ensure_tools(root)?;
    let dir = root.join("target/bench-http");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (runs, secs) = if quick { (1, 5) } else { (3, 10) };
    println!(
        "http benchmarks on loopback: wrk -t2 -c64 -d{secs}s, {runs} runs each (median); tessera serve (SQLite, 8 in-process workers) vs FastAPI/uvicorn (2 workers) + Celery (prefork 2) + Redis"
    );

    let mut tessera_submit = Vec::new();
    let mut tessera_get = Vec::new();
    let mut rss = Vec::new();
    let mut delays = Vec::new();
    for run in 0..runs {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--workers",
                "8",
                "--db",
            ])
            .arg(dir.join(format!("serve-{run}.db")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        let _guard = Proc(child);
        wait_http(&format!("{base}/healthz"))?;
        // SSE first: after the submission load the in-process workers have a backlog of tens
        // of thousands of jobs to run before a probe job.
        delays.extend(sse_delays(&base)?);
        let id = submit_one(&base)?;
        let get = wrk(&format!("{base}/api/jobs/{id}"), None, secs)?;
        let submit = wrk(
            &format!("{base}/api/jobs"),
            Some(&submit_script(&dir, run)?),
            secs,
        )?;
        rss.push(peak_rss_mib(pid));
        println!(
            "  tessera run {run}: submit {:.0}/s p99 {:.1} ms ({} non-2xx); GET {:.0}/s p99 {:.1} ms ({} non-2xx); peak RSS {:.0} MiB",
            submit.rps, submit.p99_ms, submit.errors, get.rps, get.p99_ms, get.errors, rss[run]
        );
        tessera_submit.push(submit);
        tessera_get.push(get);
    }

    // The peer.
    let redis_port = free_port()?;
    let redis = format!("redis://127.0.0.1:{redis_port}/0");
    let _redis = Proc(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server")?,
    );
    let peers = root.join("xtask/peers");
    let _worker = Proc(
        Command::new(py.join("celery"))
            .args(["-A", "http_peer", "--workdir"])
            .arg(&peers)
            .args([
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                "--loglevel=WARNING",
            ])
            .env("PEER_REDIS", &redis)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the celery worker")?,
    );
    let peer_port = free_port()?;
    let peer_base = format!("http://127.0.0.1:{peer_port}");
    let _uvicorn = Proc(
        Command::new(py.join("uvicorn"))
            .arg("--app-dir")
            .arg(&peers)
            .args(["http_peer:app", "--workers", "2", "--log-level", "warning"])
            .args(["--port", &peer_port.to_string()])
            .env("PEER_REDIS", &redis)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting uvicorn")?,
    );
    wait_http(&format!("{peer_base}/api/jobs/none"))?;
    let mut peer_submit = Vec::new();
    let mut peer_get = Vec::new();
    for run in 0..runs {
        let submit = wrk(
            &format!("{peer_base}/api/jobs"),
            Some(&submit_script(&dir, 100 + run)?),
            secs,
        )?;
        let id = submit_one(&peer_base)?;
        let get = wrk(&format!("{peer_base}/api/jobs/{id}"), None, secs)?;
        println!(
            "  peer run {run}: submit {:.0}/s p99 {:.1} ms ({} non-2xx); GET {:.0}/s p99 {:.1} ms ({} non-2xx)",
            submit.rps, submit.p99_ms, submit.errors, get.rps, get.p99_ms, get.errors
        );
        peer_submit.push(submit);
        peer_get.push(get);
    }

    let med = |xs: &[Load], f: fn(&Load) -> f64| median(xs.iter().map(f).collect());
    let (ts, tg) = (
        med(&tessera_submit, |l| l.rps),
        med(&tessera_get, |l| l.rps),
    );
    let (ps, pg) = (med(&peer_submit, |l| l.rps), med(&peer_get, |l| l.rps));
    println!(
        "accepted distinct submissions: tessera {ts:.0}/s (p99 {:.1} ms), peer {ps:.0}/s (p99 {:.1} ms): {:.1}x",
        med(&tessera_submit, |l| l.p99_ms),
        med(&peer_submit, |l| l.p99_ms),
        ts / ps
    );
    println!(
        "GET /api/jobs/{{id}}: tessera {tg:.0}/s (p99 {:.1} ms), peer {pg:.0}/s (p99 {:.1} ms): {:.1}x",
        med(&tessera_get, |l| l.p99_ms),
        med(&peer_get, |l| l.p99_ms),
        tg / pg
    );
    println!(
        "SSE: event stored -> arrived at the client: p50 {:.1} ms, p99 {:.1} ms ({} events)",
        percentile(delays.clone(), 0.5),
        percentile(delays.clone(), 0.99),
        delays.len()
    );
    println!(
        "tessera serve peak RSS under that load: {:.0} MiB (median)",
        median(rss)
    );
    Ok(())
}
