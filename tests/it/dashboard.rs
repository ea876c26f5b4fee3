//! The dashboard in a real headless Chromium (WebDriver: chromedriver + fantoccini) against a
//! real `tessera serve`. A failed check saves a screenshot and the page's script errors to
//! `$TESSERA_ARTIFACTS/dashboard/` (`cargo xtask test`: target/test-artifacts, kept with the
//! CI log).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::support::{listening_on, tessera};

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
        let base = listening_on(&mut child);
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
        // The 500 greetings are a grid in a frame, not one long column: one edge from the
        // frame to the barrier instead of 500; the URL keeps the expansion.
        let size = b
            .eval("(() => { const f = document.querySelector('svg.dag .frame[data-group=greetings]').getBBox(); const s = document.querySelector('svg.dag'); return [f.width, f.height, Number(s.getAttribute('height')), document.querySelectorAll('svg.dag .edges path').length]; })()")
            .await;
        let [w, h, svg_h, edges] = [0, 1, 2, 3].map(|i| size[i].as_f64().unwrap_or(f64::NAN));
        assert!(h < 800.0 && w < 900.0 && svg_h < 900.0, "a compact grid: {size}");
        assert_eq!(edges, 1.0, "one edge from the frame to the barrier: {size}");
        assert_eq!(
            b.eval("location.search").await,
            json!("?expand=greetings")
        );
        b.snapshot("expanded").await;
        // Collapse from the frame's control (also above the DAG): one group node again.
        assert_eq!(
            b.eval("document.querySelector('#dag-tools [data-collapse=greetings]').textContent").await,
            json!("− Collapse greetings")
        );
        b.eval("document.querySelector('svg.dag .frame .collapse').dispatchEvent(new MouseEvent('click', {bubbles: true})) || true").await;
        b.wait_for(
            "the group collapsed",
            "document.querySelectorAll('svg.dag .node').length === 2 && location.search === ''",
            Duration::from_secs(10),
        )
        .await;
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

        // The standalone page beside the tiles works from file://, with no network.
        let page = data.path().join("tiles/RGB.byte/index.html");
        assert!(page.exists(), "{}", page.display());
        b.client
            .goto(&format!("file://{}", page.display()))
            .await
            .unwrap();
        let shown = b
            .wait_for(
                "the standalone page shows its tiles",
                "typeof L !== 'undefined' && [...document.images].filter(i => i.src.startsWith('file:') && i.complete && i.naturalWidth === 256).length",
                Duration::from_secs(30),
            )
            .await;
        assert!(shown.as_u64().unwrap() >= 1, "{shown}");
        b.snapshot("standalone").await;

        // A sync_container job: the footprint of each item it writes.
        let sync = s
            .post(
                "/api/jobs",
                json!({"job_type": "sync_container", "params": {"container": "in", "collection_id": "demo"}}),
            )
            .await;
        let sync_id = sync["id"].as_str().unwrap().to_owned();
        b.client.goto(&format!("{}/jobs/{sync_id}", s.base)).await.unwrap();
        let footprints = b
            .wait_for(
                "the item's footprint on the map",
                "Number(document.getElementById('map') && document.getElementById('map').dataset.footprints || 0)",
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(footprints, json!(1), "one raster, one item");
        // The embedded world basemap under it (Natural Earth land and borders), and nothing
        // requested from another origin: OpenStreetMap is a layer left off.
        b.wait_for(
            "the basemap drawn",
            "document.getElementById('map').dataset.basemap === 'shown' && document.querySelectorAll('#map path.basemap-land').length",
            Duration::from_secs(20),
        )
        .await;
        let layers = b
            .eval("[...document.querySelectorAll('#map .leaflet-control-layers label')].map(l => [l.textContent.trim(), l.querySelector('input').checked])")
            .await;
        assert_eq!(
            layers,
            json!([["World (Natural Earth, offline)", true], ["OpenStreetMap (online)", false]])
        );
        let elsewhere = b
            .eval("performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin + '/'))")
            .await;
        assert_eq!(elsewhere, json!([]), "requests to another origin");
        assert_eq!(b.eval("document.querySelectorAll('#map .osm').length").await, json!(0));
        // Rings that cross the antimeridian (Russia, Fiji) run on past 180 instead of jumping
        // to -180, which a flat map would draw as a line across the world.
        let jumps = b
            .eval("fetch('/assets/world-110m.json').then(r => r.json()).then(t => { \
                const jumps = c => typeof c[0][0] === 'number' \
                  ? c.slice(1).filter((p, i) => Math.abs(p[0] - c[i][0]) > 180 && Math.abs(p[1]) < 89.9 && Math.abs(c[i][1]) < 89.9).length \
                  : c.reduce((n, x) => n + jumps(x), 0); \
                const land = topojson.feature(t, t.objects.land); \
                const borders = topojson.mesh(t, t.objects.countries, (a, b) => a !== b); \
                const geoms = (land.features ? land.features.map(f => f.geometry) : [land.geometry]).concat([borders]); \
                return [geoms.reduce((n, g) => n + jumps(g.coordinates), 0), geoms.reduce((n, g) => n + jumps(Maps.unwrapped(g).coordinates), 0)]; })")
            .await;
        assert!(jumps[0].as_u64().unwrap() > 0, "the data crosses the antimeridian: {jumps}");
        assert_eq!(jumps[1], json!(0), "none left to draw across the map: {jumps}");
        b.snapshot("footprint").await;
        b.assert_no_script_errors().await;
        drop(data);
    });
}

/// The progress the list and the job page show for a job's view, as the page computes it: a
/// succeeded job is complete; a finished one, its tasks that ran to an end (succeeded, failed
/// or skipped) out of all; a running one, the API's progress.
fn shown_progress(view: &Value) -> u64 {
    let status = view["status"].as_str().unwrap();
    if status == "SUCCEEDED" {
        return 100;
    }
    let counts = view["tasks"].as_object().unwrap();
    let count = |s: &str| counts.get(s).and_then(Value::as_u64).unwrap_or(0);
    let total: u64 = counts.values().filter_map(Value::as_u64).sum();
    let p = if ["COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"].contains(&status) {
        if total == 0 {
            0.0
        } else {
            (count("SUCCEEDED") + count("FAILED") + count("SKIPPED")) as f64 / total as f64
        }
    } else {
        view["progress"].as_f64().unwrap()
    };
    (p * 100.0 + 1e-9).floor() as u64
}

/// Poll the API until every job is finished.
async fn all_finished(s: &Serve, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in ids {
        loop {
            let v = s.get(&format!("/api/jobs/{id}")).await;
            if ["SUCCEEDED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"]
                .contains(&v["status"].as_str().unwrap_or_default())
            {
                break;
            }
            assert!(Instant::now() < deadline, "job {id} not finished: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A small `hello_world` job (its ID).
async fn simple(s: &Serve, i: usize) -> String {
    let body = json!({"job_type": "hello_world", "params": {"n": 1 + i % 4, "message": format!("job {i}")}});
    s.post("/api/jobs", body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

const ROW_IDS: &str = "[...document.querySelectorAll('#jobs tbody tr')].map(r => r.dataset.id)";

/// 30 jobs (succeeded, cancelled half-way, failed, completed with errors): the list shows
/// the API's first page of 20, newest first, also after the event stream has replayed every
/// job at connect; each row's progress follows its task counts (a cancelled job is not at
/// 100 %); the next page holds the other 10; a new job goes on top of a full page; the
/// filters are in the URL, restored on a reload.
#[test]
fn the_jobs_list_keeps_the_apis_order_page_size_and_progress() {
    let rt = rt();
    rt.block_on(async {
        let s = Serve::start(tempfile::tempdir().unwrap(), &["--workers", "2"]);
        let mut ids = Vec::new();
        for i in 0..15 {
            ids.push(simple(&s, i).await);
        }
        // Among the newest 20: a job cancelled half-way, one failed, one completed with errors.
        let cancelled = s
            .post(
                "/api/jobs",
                json!({"job_type": "synthetic", "params": {"n": 40, "sleep_ms": 300, "label": "cancelled-half-way"}}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        ids.push(cancelled.clone());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = reqwest::Client::new()
            .post(format!("{}/api/jobs/{cancelled}/cancel", s.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        // fail_fast: the first failure ends the job, the greetings not yet run are cancelled.
        for params in [
            json!({"job_type": "hello_world", "params": {"n": 60, "fail_every": 30}}),
            json!({"job_type": "hello_world", "params": {"n": 20, "fail_every": 3}, "outcome_policy": "continue"}),
        ] {
            ids.push(s.post("/api/jobs", params).await["id"].as_str().unwrap().to_owned());
        }
        for i in 15..27 {
            ids.push(simple(&s, i).await);
        }
        assert_eq!(ids.len(), 30);
        all_finished(&s, &ids).await;
        let first = s.get("/api/jobs?limit=20").await;
        let want: Vec<Value> = first["items"].as_array().unwrap().iter().map(|j| j["id"].clone()).collect();
        assert_eq!(want.len(), 20);

        let b = Browser::start("jobs_order").await;
        b.client.goto(&format!("{}/", s.base)).await.unwrap();
        b.wait_for("the stream connected", "document.getElementById('live').classList.contains('on') && document.querySelectorAll('#jobs tbody tr').length", Duration::from_secs(10))
            .await;
        // Every job is replayed by the stream at connect: give it time to arrive.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let rows = b.eval(ROW_IDS).await;
        if rows != json!(want) {
            b.fail(&format!("rows {rows}, want the API's first page {want:?}")).await;
        }
        assert_eq!(b.eval("document.getElementById('next').disabled").await, json!(false));
        // Progress of every row, from the job's task counts.
        let bars = b
            .wait_for(
                "every row's progress known",
                "(() => { const bars = [...document.querySelectorAll('#jobs tbody tr')].map(r => [r.dataset.id, r.querySelector('.progress').getAttribute('aria-valuenow')]); return bars.every(([, p]) => p !== null) ? bars : null; })()",
                Duration::from_secs(10),
            )
            .await;
        let mut seen_partial = false;
        for bar in bars.as_array().unwrap() {
            let id = bar[0].as_str().unwrap();
            let view = s.get(&format!("/api/jobs/{id}")).await;
            let want = shown_progress(&view);
            assert_eq!(bar[1], json!(want.to_string()), "job {id}: {view}");
            if view["status"] == "CANCELLED" {
                assert!(want < 100, "cancelled half-way: {view}");
                seen_partial = true;
            }
        }
        assert!(seen_partial, "the cancelled job is on the first page");
        b.snapshot("first_page").await;

        // The next page: the 10 others, in the API's order.
        b.eval("document.getElementById('next').click() || true").await;
        let second = s
            .get(&format!("/api/jobs?limit=20&cursor={}", first["next_cursor"].as_str().unwrap()))
            .await;
        let want2: Vec<Value> = second["items"].as_array().unwrap().iter().map(|j| j["id"].clone()).collect();
        assert_eq!(want2.len(), 10);
        b.wait_for(
            "the second page",
            &format!("JSON.stringify({ROW_IDS}) === {:?}", serde_json::to_string(&want2).unwrap()),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(b.eval("document.getElementById('next').disabled").await, json!(true));

        // Back on the first page, a new job goes on top; the page stays at 20.
        b.eval("document.getElementById('prev').click() || true").await;
        b.wait_for(
            "the first page again",
            &format!("{ROW_IDS}[0] === {:?}", want[0].as_str().unwrap()),
            Duration::from_secs(10),
        )
        .await;
        let new = s
            .post("/api/jobs", json!({"job_type": "hello_world", "params": {"n": 2, "message": "the newest"}}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        b.wait_for(
            "the new job on top of a full page",
            &format!("(() => {{ const r = {ROW_IDS}; return r[0] === {new:?} && r.length === 20 && r[19] === {:?}; }})()", want[18].as_str().unwrap()),
            Duration::from_secs(10),
        )
        .await;

        // Filters in the URL: a link opens the filtered view; a change updates the URL.
        b.client.goto(&format!("{}/?status=CANCELLED", s.base)).await.unwrap();
        b.wait_for(
            "the cancelled job alone",
            &format!("(() => {{ const r = {ROW_IDS}; return document.getElementById('filter-status').value === 'CANCELLED' && r.length === 1 && r[0] === {cancelled:?}; }})()"),
            Duration::from_secs(10),
        )
        .await;
        b.eval("(() => { const s = document.getElementById('filter-type'); s.value = 'hello_world'; s.dispatchEvent(new Event('change')); return true; })()").await;
        b.wait_for(
            "the URL names both filters",
            "location.search === '?status=CANCELLED&job_type=hello_world' && document.querySelectorAll('#jobs tbody tr').length === 0",
            Duration::from_secs(10),
        )
        .await;
        b.client.refresh().await.unwrap();
        b.wait_for(
            "both filters restored on a reload",
            "document.getElementById('filter-status') && document.getElementById('filter-status').value === 'CANCELLED' && document.getElementById('filter-type').value === 'hello_world'",
            Duration::from_secs(10),
        )
        .await;
        b.client.goto(&format!("{}/?status=NOPE", s.base)).await.unwrap();
        let notice = b
            .wait_for("an unknown filter named", "document.getElementById('filter-notice') && document.getElementById('filter-notice').textContent", Duration::from_secs(10))
            .await;
        assert!(notice.as_str().unwrap().contains("\"NOPE\""), "{notice}");
        b.assert_no_script_errors().await;
    });
}

/// `/jobs/notanid` says it is not a job ID (a 404 page), an unknown well-formed ID says the
/// job was not found; `/favicon.ico` is served, without a key too.
#[test]
fn unknown_jobs_say_so_and_the_favicon_is_served() {
    let rt = rt();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keys"), "full-access-key-0001\n").unwrap();
        let keys = dir.path().join("keys").to_str().unwrap().to_owned();
        let s = Serve::start(dir, &["--api-key-file", &keys]);
        let r = reqwest::get(format!("{}/jobs/notanid", s.base)).await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let r = reqwest::get(format!("{}/favicon.ico", s.base)).await.unwrap();
        assert_eq!(r.status(), 200, "no key needed");
        assert_eq!(r.headers()["content-type"], "image/x-icon");
        assert_eq!(&r.bytes().await.unwrap()[..4], &[0, 0, 1, 0]);
        let r = reqwest::get(format!("{}/assets/favicon.svg", s.base)).await.unwrap();
        assert_eq!(r.headers()["content-type"], "image/svg+xml");

        let b = Browser::start("not_found").await;
        b.client.goto(&format!("{}/", s.base)).await.unwrap();
        b.eval("localStorage.setItem('tessera.key', 'full-access-key-0001') || true").await;
        b.client.goto(&format!("{}/jobs/notanid", s.base)).await.unwrap();
        let text = b
            .wait_for("the not-found page", "document.getElementById('not-found') && document.getElementById('not-found').textContent", Duration::from_secs(10))
            .await;
        assert!(text.as_str().unwrap().contains("“notanid” is not a job ID"), "{text}");
        assert_eq!(b.eval("document.getElementById('jobs')").await, Value::Null, "not the list");
        let zeros = "0".repeat(64);
        b.client.goto(&format!("{}/jobs/{zeros}", s.base)).await.unwrap();
        let text = b
            .wait_for("the job-not-found page", "document.getElementById('not-found') && document.getElementById('not-found').textContent", Duration::from_secs(10))
            .await;
        assert!(text.as_str().unwrap().contains(&format!("No job {zeros}")), "{text}");
        b.snapshot("not_found").await;
        b.assert_no_script_errors().await;
    });
}

/// With a read-only key, Cancel, Re-run, Delete and Submit are disabled (the API names the
/// key's role in `Tessera-Key-Role`); with a full key, the same job's Re-run and Delete are not.
#[test]
fn a_read_only_key_sees_the_actions_disabled() {
    let rt = rt();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("keys"),
            "full-access-key-0001\nro:read-only-key-00001\n",
        )
        .unwrap();
        let keys = dir.path().join("keys").to_str().unwrap().to_owned();
        let s = Serve::start(dir, &["--api-key-file", &keys, "--workers", "2"]);
        let http = reqwest::Client::new();
        let job: Value = http
            .post(format!("{}/api/jobs", s.base))
            .bearer_auth("full-access-key-0001")
            .json(&json!({"job_type": "synthetic", "params": {"n": 20, "sleep_ms": 300, "label": "read-only"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        let r = http
            .post(format!("{}/api/jobs/{id}/cancel", s.base))
            .bearer_auth("full-access-key-0001")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        assert_eq!(r.headers()["tessera-key-role"], "full");
        let r = http
            .get(format!("{}/api/jobs/{id}", s.base))
            .bearer_auth("read-only-key-00001")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["tessera-key-role"], "read-only");

        let b = Browser::start("read_only").await;
        let buttons = "['cancel', 'rerun', 'delete'].map(b => document.getElementById(b) && document.getElementById(b).disabled)";
        for (key, want) in [
            ("full-access-key-0001", json!([true, false, false])),
            ("read-only-key-00001", json!([true, true, true])),
        ] {
            b.client.goto(&format!("{}/", s.base)).await.unwrap();
            b.eval(&format!("localStorage.setItem('tessera.key', {key:?}) || true")).await;
            b.client.goto(&format!("{}/jobs/{id}", s.base)).await.unwrap();
            b.wait_for("the cancelled job", "document.querySelector('h1 .badge') && document.querySelector('h1 .badge').dataset.status === 'CANCELLED'", Duration::from_secs(20))
                .await;
            let got = b.eval(buttons).await;
            if got != want {
                b.fail(&format!("with {key}: disabled {got}, want {want}")).await;
            }
        }
        assert!(b.eval("document.getElementById('read-only').textContent").await.as_str().unwrap().contains("read-only"));
        assert_eq!(b.eval("document.getElementById('rerun').title").await, json!("this API key is read-only"));
        b.snapshot("read_only").await;
        b.client.goto(&format!("{}/", s.base)).await.unwrap();
        b.wait_for("the submit button disabled", "document.getElementById('submit-button') && document.getElementById('submit-button').disabled", Duration::from_secs(10))
            .await;
        b.assert_no_script_errors().await;
    });
}

/// Node labels too long for their boxes are cut with an ellipsis, the whole text in the
/// node's tooltip and `data-full` (a graph drawn by the page's own `Dag.render`).
#[test]
fn long_labels_are_cut_to_their_boxes() {
    let rt = rt();
    rt.block_on(async {
        let s = Serve::start(tempfile::tempdir().unwrap(), &[]);
        let b = Browser::start("labels").await;
        b.client.goto(&format!("{}/", s.base)).await.unwrap();
        b.wait_for("the page", "typeof Dag !== 'undefined' && document.getElementById('jobs')", Duration::from_secs(10))
            .await;
        let long = "render_tiles_for_a_very_long_task_name[zoom-14-block-000123-000456]";
        let graph = json!({
            "nodes": [
                {"id": "a", "kind": "parallel", "label": long, "status": "SUCCEEDED", "size": 1, "layer": 0},
                {"id": "o", "kind": "orchestrator", "label": "short[0]", "status": "RUNNING", "size": 1, "layer": 0},
                {"id": "group:g", "kind": "group", "label": "a_group_with_a_rather_long_name_indeed", "group": "g", "size": 1234567,
                 "counts": {"SUCCEEDED": 1000000, "FAILED": 200000, "CANCELLED": 30000, "RUNNING": 4567, "QUEUED": 1000}, "layer": 1},
                {"id": "z", "kind": "barrier", "label": format!("{long}-barrier"), "status": "PENDING", "size": 1, "layer": 2}
            ],
            "edges": [["a", "group:g"], ["o", "group:g"], ["group:g", "z"]]
        });
        let check = format!(
            "(() => {{ const box = document.createElement('div'); document.body.append(box); Dag.render(box, {graph}, () => {{}}); \
             const out = []; for (const t of box.querySelectorAll('.node text')) {{ const n = t.closest('.node'); \
             const w = n.querySelector('.shape').getBBox().width; \
             out.push({{ full: t.dataset.full, shown: t.textContent, right: t.getBBox().x + t.getComputedTextLength(), width: w, title: n.querySelector('title').textContent }}); }} return out; }})()"
        );
        let texts = b.eval(&check).await;
        let texts = texts.as_array().expect("texts measured");
        assert_eq!(texts.len(), 8, "a title and a line under it per node: {texts:?}");
        let mut cut = 0;
        for t in texts {
            let (right, width) = (t["right"].as_f64().unwrap(), t["width"].as_f64().unwrap());
            assert!(right <= width - 4.0, "text overflows its box: {t}");
            let (full, shown) = (t["full"].as_str().unwrap(), t["shown"].as_str().unwrap());
            if full != shown {
                cut += 1;
                assert!(shown.ends_with('…'), "{t}");
                assert!(full.starts_with(shown.trim_end_matches('…')), "{t}");
            }
        }
        assert!(cut >= 4, "the long label, group name, counts and barrier are cut: {texts:?}");
        let titles: Vec<&str> = texts.iter().map(|t| t["title"].as_str().unwrap()).collect();
        assert!(titles.iter().any(|t| t.contains(long)), "{titles:?}");
        assert!(titles.iter().any(|t| t.contains("queued 1000")), "{titles:?}");
        b.assert_no_script_errors().await;
    });
}
