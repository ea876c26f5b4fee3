//! `cargo xtask bench dashboard [--quick]`: the job page of a running 10 000-task job against
//! the same page for a 100-task job, in a real headless Chromium (WebDriver over chromedriver,
//! spoken with curl), on `tessera serve` (release, embedded backend, 8 in-process workers).
//!
//! Per run: the time from navigation to the DAG's first render (`window.__firstRender`, set
//! by the page), then, over 8 s of live updates, the main thread's long tasks (over 50 ms:
//! the Long Tasks API's `window.__longTasks`, and the gaps of a 20 ms heartbeat,
//! `window.__blocked`, which a 120 ms busy loop calibrates) and the number of re-renders. Medians of the
//! runs are reported.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::bench::median;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `curl` a JSON request; the answer's JSON.
fn call(method: &str, url: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-X",
        method,
        url,
        "-H",
        "content-type: application/json",
    ]);
    if let Some(body) = body {
        cmd.args(["-d", &body.to_string()]);
    }
    let out = cmd.output().context("running curl")?;
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{method} {url}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A WebDriver session on chromedriver.
struct Session {
    base: String,
    _driver: Proc,
}

impl Session {
    fn start(chromedriver: &Path) -> anyhow::Result<Session> {
        let port = free_port()?;
        let driver = Proc(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting chromedriver")?,
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }}}});
        loop {
            if let Ok(v) = call("POST", &format!("{url}/session"), Some(&caps)) {
                if let Some(id) = v["value"]["sessionId"].as_str() {
                    return Ok(Session {
                        base: format!("{url}/session/{id}"),
                        _driver: driver,
                    });
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver at {url} gave no session");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn goto(&self, url: &str) -> anyhow::Result<()> {
        call(
            "POST",
            &format!("{}/url", self.base),
            Some(&json!({ "url": url })),
        )?;
        Ok(())
    }

    fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let v = call(
            "POST",
            &format!("{}/execute/sync", self.base),
            Some(&json!({"script": format!("return ({expression});"), "args": []})),
        )?;
        Ok(v["value"].clone())
    }
}

struct Run {
    first_render_ms: f64,
    max_long_task_ms: f64,
    long_tasks: usize,
    renders: u64,
}

pub fn dashboard(root: &Path, quick: bool) -> anyhow::Result<()> {
    let chromedriver = crate::ensure_chromium()?;
    let tessera = crate::build_tessera(root)?;
    let dir = root.join("target/bench-dashboard");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut serve = Command::new(&tessera)
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "8", "--db"])
        .arg(dir.join("bench.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tessera serve")?;
    let mut line = String::new();
    BufReader::new(serve.stdout.take().context("serve's stdout")?).read_line(&mut line)?;
    let _serve = Proc(serve);
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .context("serve's first line")?
        .to_owned();
    let session = Session::start(&chromedriver)?;
    let runs = if quick { 1 } else { 3 };
    let mut rows = Vec::new();
    for size in [100u64, 10_000] {
        let mut measured = Vec::new();
        for run in 0..runs {
            // About 15 s of work on 8 workers: the page is watched while the job runs.
            let sleep_ms = 15_000 * 8 / size;
            let job = call(
                "POST",
                &format!("{base}/api/jobs"),
                Some(
                    &json!({"job_type": "synthetic", "params": {"n": size, "sleep_ms": sleep_ms, "label": format!("dash-{size}-{run}")}}),
                ),
            )?;
            let id = job["id"].as_str().context("a job ID")?.to_owned();
            // Expanded and running before the page opens (the page of a 10 000-task job).
            let deadline = Instant::now() + Duration::from_secs(60);
            while call("GET", &format!("{base}/api/jobs/{id}"), None)?["status"] != "RUNNING" {
                if Instant::now() > deadline {
                    bail!("job {id} not running after 60 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            session.goto(&format!("{base}/jobs/{id}"))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let first = loop {
                if let Some(t) = session.eval("window.__firstRender")?.as_f64() {
                    break t;
                }
                if Instant::now() > deadline {
                    bail!("no first render of job {id} within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            session.eval("(window.__renders = 0, new MutationObserver(() => window.__renders++).observe(document.getElementById('dag'), {childList: true}), true)")?;
            std::thread::sleep(Duration::from_secs(8));
            let long: Vec<f64> = session
                .eval("window.__longTasks.concat(window.__blocked).filter(t => t.start > window.__firstRender).map(t => t.duration)")?
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            let renders = session.eval("window.__renders")?.as_u64().unwrap_or(0);
            let r = Run {
                first_render_ms: first,
                max_long_task_ms: long.iter().copied().fold(0.0, f64::max),
                long_tasks: long.len(),
                renders,
            };
            println!(
                "  {size:>6} tasks, run {run}: first render {:.0} ms, {} re-renders in 8 s, {} long tasks, longest {:.0} ms",
                r.first_render_ms, r.renders, r.long_tasks, r.max_long_task_ms
            );
            measured.push(r);
            call("POST", &format!("{base}/api/jobs/{id}/cancel"), None)?;
        }
        rows.push((size, measured));
    }
    // The measure can see: a 120 ms task on the page's main thread is recorded.
    session.eval("(() => { const t = performance.now(); while (performance.now() - t < 120) {} return true; })()")?;
    std::thread::sleep(Duration::from_millis(300));
    let seen = session
        .eval("window.__longTasks.concat(window.__blocked).some(t => t.duration >= 90)")?
        .as_bool()
        .unwrap_or(false);
    println!("calibration: a 120 ms task on the main thread is seen: {seen}");
    if !seen {
        bail!("the page records no blocked main thread: the figures would mean nothing");
    }
    println!(
        "\n| job | first render (median) | longest main-thread task during live updates (median) | long tasks (median) | re-renders in 8 s (median) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (size, m) in &rows {
        let med = |f: &dyn Fn(&Run) -> f64| median(m.iter().map(f).collect());
        println!(
            "| {size} tasks | {:.0} ms | {:.0} ms | {:.0} | {:.0} |",
            med(&|r| r.first_render_ms),
            med(&|r| r.max_long_task_ms),
            med(&|r| r.long_tasks as f64),
            med(&|r| r.renders as f64)
        );
    }
    Ok(())
}
