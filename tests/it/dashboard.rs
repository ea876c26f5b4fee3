//! The dashboard in a real headless Chromium (WebDriver: chromedriver + fantoccini) against a
//! real `tessera serve`. A failed check saves a screenshot and the page's script errors to
//! `$TESSERA_ARTIFACTS/dashboard/` (`cargo xtask test`: target/test-artifacts, kept with the
//! CI log).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::support::tessera;

/// A `tessera serve` on a free loopback port; killed on drop.
pub struct Serve {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    pub fn start(dir: tempfile::TempDir, extra: &[&str]) -> Serve {
        let mut cmd = tessera(
            &dir.path().join("tessera.db"),
            &[&["serve", "--bind", "127.0.0.1:0"], extra].concat(),
        );
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("starting tessera serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Serve {
            child,
            base,
            _dir: dir,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A headless Chromium driven through chromedriver; both stopped on drop.
pub struct Browser {
    driver: Child,
    pub client: Client,
    name: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    pub async fn start(name: &str) -> Browser {
        let chromedriver = std::env::var("TESSERA_CHROMEDRIVER").expect(
            "TESSERA_CHROMEDRIVER is not set: run the tests with `cargo xtask test` (it installs Chromium and chromedriver)",
        );
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver at {url}: {e}"),
            }
        };
        Browser {
            driver,
            client,
            name: name.to_owned(),
        }
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return ({expression});"), vec![])
            .await
            .unwrap_or(Value::Null)
    }

    /// Wait until `expression` is truthy; fail with `what` (and a screenshot) after `limit`.
    pub async fn wait_for(&self, what: &str, expression: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(expression).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("{what}: `{expression}` still {v} after {limit:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save a screenshot named `what` under `$TESSERA_ARTIFACTS/dashboard/` (a picture of
    /// the page as a user saw it, kept with the CI log).
    pub async fn snapshot(&self, what: &str) {
        if let Some(dir) = std::env::var_os("TESSERA_ARTIFACTS") {
            let dir = std::path::Path::new(&dir).join("dashboard");
            let _ = std::fs::create_dir_all(&dir);
            if let Ok(png) = self.client.screenshot().await {
                let _ = std::fs::write(dir.join(format!("{}-{what}.png", self.name)), png);
            }
        }
    }

    /// Save a screenshot and the page's script errors, then panic with `message`.
    pub async fn fail(&self, message: &str) -> ! {
        let errors = self.eval("window.__errors").await;
        if let Some(dir) = std::env::var_os("TESSERA_ARTIFACTS") {
            let dir = std::path::Path::new(&dir).join("dashboard");
            let _ = std::fs::create_dir_all(&dir);
            if let Ok(png) = self.client.screenshot().await {
                let _ = std::fs::write(dir.join(format!("{}.png", self.name)), png);
            }
            let _ = std::fs::write(
                dir.join(format!("{}.txt", self.name)),
                format!("{message}\nscript errors: {errors}\n"),
            );
        }
        panic!("{message} (script errors: {errors})");
    }

    /// No script error so far.
    pub async fn assert_no_script_errors(&self) {
        let errors = self.eval("window.__errors").await;
        if errors != json!([]) {
            self.fail(&format!("script errors: {errors}")).await;
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A `hello_world` of 500 greetings with a failing subset under `continue`: the DAG shows
/// the group node with its counts per status, matching the API, and updates live; another
/// job is cancelled from its page; the submit form shows the field error.
#[test]
fn the_job_page_draws_the_dag_live_and_acts_on_the_job() {
    let rt = rt();
    rt.block_on(async {
        let s = Serve::start(tempfile::tempdir().unwrap(), &["--workers", "2"]);
        let b = Browser::start("job_page").await;
        let job = s
            .post(
                "/api/jobs",
                json!({"job_type": "hello_world", "params": {"n": 500, "fail_every": 7}, "outcome_policy": "continue"}),
            )
            .await;
        let id = job["id"].as_str().unwrap().to_owned();
        b.client.goto(&format!("{}/jobs/{id}", s.base)).await.unwrap();
        // The page follows the job to its end without a reload.
        b.eval("window.__loaded = true").await;
        b.wait_for(
            "the job ends on the page",
            "document.querySelector('h1 .badge') && document.querySelector('h1 .badge').dataset.status === 'COMPLETED_WITH_ERRORS'",
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(b.eval("window.__loaded").await, json!(true), "no reload");
        let api = s.get(&format!("/api/jobs/{id}")).await;
        let counts = b
            .wait_for(
                "the group node counts every greeting",
                "(() => { const g = document.querySelector('svg.dag .node[data-kind=group]'); if (!g) return null; const c = JSON.parse(g.dataset.counts); return (c.SUCCEEDED||0)+(c.FAILED||0) === 500 ? c : null; })()",
                Duration::from_secs(10),
            )
            .await;
        // Every 7th greeting fails: about 71 of 500. The page agrees with the API's counts
        // (the barrier, all_done, succeeds).
        let failed = api["tasks"]["FAILED"].as_u64().unwrap();
        assert!((70..=72).contains(&failed), "{api}");
        assert_eq!(counts["FAILED"], json!(failed), "{counts}");
        assert_eq!(counts["SUCCEEDED"], json!(500 - failed), "{counts}");
        b.snapshot("finished").await;
        let nodes = b.eval("document.querySelectorAll('svg.dag .node').length").await;
        assert_eq!(nodes, json!(2), "one group node and the barrier");
        let barrier = b
            .eval("document.querySelector('svg.dag .node[data-kind=barrier]').dataset.status")
            .await;
        assert_eq!(barrier, json!("SUCCEEDED"));
        // The group expands on a click: every greeting drawn, a failed one's details shown.
        b.eval("document.querySelector('svg.dag .node[data-kind=group]').dispatchEvent(new MouseEvent('click', {bubbles: true})) || true").await;
        b.wait_for(
            "the group expanded",
            "document.querySelectorAll('svg.dag .node[data-kind=parallel]').length === 500",
            Duration::from_secs(10),
        )
        .await;
        b.eval("document.querySelector('svg.dag .node[data-status=FAILED]').dispatchEvent(new MouseEvent('click', {bubbles: true})) || true").await;
        let error = b
            .wait_for(
                "a failed task's details",
                "document.querySelector('#details dd.error') && document.querySelector('#details dd.error').textContent",
                Duration::from_secs(10),
            )
            .await;
        assert!(error.as_str().unwrap().starts_with("GREET_FAILED (permanent)"), "{error}");
        b.snapshot("expanded").await;
        b.assert_no_script_errors().await;

        // Cancel a running job from its page (confirmed).
        let slow = s
            .post(
                "/api/jobs",
                json!({"job_type": "synthetic", "params": {"n": 40, "sleep_ms": 500, "label": "cancel-me"}}),
            )
            .await;
        let slow_id = slow["id"].as_str().unwrap().to_owned();
        b.client.goto(&format!("{}/jobs/{slow_id}", s.base)).await.unwrap();
        b.wait_for(
            "the cancel button is enabled while the job runs",
            "document.getElementById('cancel') && !document.getElementById('cancel').disabled",
            Duration::from_secs(20),
        )
        .await;
        b.eval("document.getElementById('cancel').click() || true").await;
        b.client.accept_alert().await.unwrap();
        b.wait_for(
            "the job is cancelled",
            "document.querySelector('h1 .badge').dataset.status === 'CANCELLED'",
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(s.get(&format!("/api/jobs/{slow_id}")).await["status"], "CANCELLED");

        // The submit form, from the job type's schema, shows the API's field error.
        b.client.goto(&format!("{}/", s.base)).await.unwrap();
        b.wait_for("the form", "document.getElementById('submit-type')", Duration::from_secs(10))
            .await;
        b.eval("(() => { const s = document.getElementById('submit-type'); s.value = 'hello_world'; s.dispatchEvent(new Event('change')); return true; })()").await;
        b.wait_for("hello_world's fields", "document.getElementById('param-n')", Duration::from_secs(10))
            .await;
        b.eval("(() => { document.getElementById('param-n').value = '0'; document.querySelector('#submit-form button[type=submit]').click(); return true; })()").await;
        let message = b
            .wait_for(
                "the field error beside n",
                "document.querySelector('[data-error-for=n]').textContent",
                Duration::from_secs(10),
            )
            .await;
        assert!(message.as_str().unwrap().contains("between 1 and"), "{message}");
        b.assert_no_script_errors().await;
    });
}

/// The jobs list shows new jobs and their end without a reload, filters by status.
#[test]
fn the_jobs_list_updates_live_and_filters() {
    let rt = rt();
    rt.block_on(async {
        let s = Serve::start(tempfile::tempdir().unwrap(), &["--workers", "2"]);
        let b = Browser::start("jobs_list").await;
        b.client.goto(&format!("{}/", s.base)).await.unwrap();
        b.wait_for("the table", "document.getElementById('jobs')", Duration::from_secs(10))
            .await;
        b.eval("window.__loaded = true").await;
        let job = s
            .post("/api/jobs", json!({"job_type": "hello_world", "params": {"n": 5}}))
            .await;
        let id = job["id"].as_str().unwrap();
        b.wait_for(
            "the new job appears and ends",
            &format!("(() => {{ const r = document.querySelector('#jobs tr[data-id=\"{id}\"] .badge'); return r && r.dataset.status === 'SUCCEEDED'; }})()"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(b.eval("window.__loaded").await, json!(true), "no reload");
        b.eval("(() => { const s = document.getElementById('filter-status'); s.value = 'FAILED'; s.dispatchEvent(new Event('change')); return true; })()").await;
        b.wait_for(
            "no FAILED job",
            "document.querySelectorAll('#jobs tbody tr').length === 0",
            Duration::from_secs(10),
        )
        .await;
        b.assert_no_script_errors().await;
    });
}

/// A `tiled_raster` job on the map: its render blocks, coloured by status, then its tiles
/// (requests answered 200) over the source's footprint, with links to the outputs.
#[test]
fn a_tiled_raster_job_fills_the_map() {
    let rt = rt();
    rt.block_on(async {
        let data = crate::support::data_dir_with("in", &["RGB.byte.tif"]);
        let data_dir = data.path().to_str().unwrap().to_owned();
        let s = Serve::start(
            tempfile::tempdir().unwrap(),
            &["--workers", "2", "--data-dir", &data_dir],
        );
        let b = Browser::start("map").await;
        let job = s
            .post(
                "/api/jobs",
                json!({"job_type": "tiled_raster", "params": {"container": "in", "blob": "RGB.byte.tif", "output_container": "tiles", "min_zoom": 8, "max_zoom": 11}}),
            )
            .await;
        let id = job["id"].as_str().unwrap().to_owned();
        b.client.goto(&format!("{}/jobs/{id}", s.base)).await.unwrap();
        let blocks = b
            .wait_for(
                "the render blocks on the map",
                "Number(document.getElementById('map').dataset.blocks || 0)",
                Duration::from_secs(60),
            )
            .await;
        let drawn = b.eval("document.querySelectorAll('#map path.block').length").await;
        assert_eq!(drawn, blocks, "one rectangle per render task");
        b.wait_for(
            "the tiles on the map",
            "document.getElementById('map').dataset.tiles === 'shown'",
            Duration::from_secs(120),
        )
        .await;
        let statuses = b.eval("JSON.parse(document.getElementById('map').dataset.blockStatuses)").await;
        assert_eq!(statuses, json!({"SUCCEEDED": blocks}), "every block ended");
        // Tile images load from the data store (answered 200: an image with pixels).
        let loaded = b
            .wait_for(
                "tile images loaded",
                "(() => { const imgs = [...document.querySelectorAll('#map .tiles img')]; const ok = imgs.filter(i => i.complete && i.naturalWidth === 256); return ok.length ? ok.length : null; })()",
                Duration::from_secs(30),
            )
            .await;
        assert!(loaded.as_u64().unwrap() >= 1);
        let tile_url = b.eval("document.querySelector('#map .tiles img').src").await;
        let r = reqwest::get(tile_url.as_str().unwrap()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
        let links = b.eval("[...document.querySelectorAll('#links a')].map(a => a.textContent)").await;
        assert_eq!(
            links,
            json!(["Cloud Optimized GeoTIFF", "TileJSON", "STAC item", "Standalone map"])
        );
        let footprint = b.eval("document.querySelectorAll('#map path.footprint').length").await;
        assert_eq!(footprint, json!(1), "the source's footprint from its STAC item");
        b.snapshot("tiles").await;
        b.assert_no_script_errors().await;
        drop(data);
    });
}
