//! `tessera functions` under a protocol-level Functions host (`test_support::functions_host`) on Azurite:
//! the function app of `infra/functions/` with the debug binary, real queues, real HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engine::ports::{PageRequest, TaskQuery};
use engine::{JobId, JobStatus, TaskStatus};
use function_host::functions::catalog::{self, Function, QueueRole};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{Store, azurite_connection, tessera_bin};
use test_support::functions_host::{Fate, FunctionApp, Host};

/// Task leases of the handlers under test (short, so crashes are retried quickly).
const LEASE_SECS: u64 = 2;

fn app_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/functions")
}

/// The function app as `cargo xtask functions-app` assembles it, with the debug binary, and
/// `visibilityTimeout` shortened with the lease (it must exceed the lease: see host.json).
fn assemble() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(app_source()).unwrap() {
        let path = entry.unwrap().path();
        let target = dir.path().join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            std::fs::copy(path.join("function.json"), target.join("function.json")).unwrap();
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
    std::fs::copy(tessera_bin(), dir.path().join("tessera")).unwrap();
    let host_json = dir.path().join("host.json");
    let mut host: Value =
        serde_json::from_str(&std::fs::read_to_string(&host_json).unwrap()).unwrap();
    host["extensions"]["queues"]["visibilityTimeout"] =
        json!(format!("00:00:{:02}", LEASE_SECS + 1));
    std::fs::write(&host_json, serde_json::to_string_pretty(&host).unwrap()).unwrap();
    dir
}

fn settings(store: &Store) -> HashMap<String, String> {
    let Store::Azure { connection, prefix } = store else {
        panic!("the Functions host runs on Azure Storage");
    };
    [
        ("FUNCTIONS_WORKER_RUNTIME", "Custom"),
        ("AzureWebJobsStorage", connection.as_str()),
        ("TESSERA_AZURE_PREFIX", prefix.as_str()),
        ("TESSERA_LEASE_SECS", &LEASE_SECS.to_string()),
        ("TESSERA_DATA_STORE", "azure"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn prefix(store: &Store) -> &str {
    match store {
        Store::Azure { prefix, .. } => prefix,
        Store::Sqlite(_) => unreachable!(),
    }
}

/// A host whose pump stopped.
struct Stopped {
    host: Arc<Host>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Stopped {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.host
    }
}

/// A running host and its queue pump.
struct Running {
    host: Arc<Host>,
    stop: CancellationToken,
    pump: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(store: &Store, instances: usize) -> Running {
        let dir = assemble();
        let data = dir.path().join("data");
        let mut settings = settings(store);
        settings.insert("TESSERA_DATA_DIR".into(), data.display().to_string());
        let host = Arc::new(Host::start(dir.path(), settings, instances).await);
        let stop = CancellationToken::new();
        let pump = {
            let (host, stop) = (host.clone(), stop.clone());
            tokio::spawn(async move { host.pump(stop).await })
        };
        Running {
            host,
            stop,
            pump: Some(pump),
            _dir: dir,
        }
    }

    /// Stop the pump; the host (its processes, its logs) lives while the result does.
    async fn stop(mut self) -> Stopped {
        self.stop.cancel();
        if let Some(pump) = self.pump.take() {
            pump.await.unwrap();
        }
        Stopped {
            host: self.host.clone(),
            _dir: std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap()),
        }
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, headers, text) = self.host.request(method, path, body.as_ref()).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{method} {path}: {status} {headers:?} body is not JSON ({e}): {text}")
        });
        (status, value)
    }

    async fn submit(&self, job_type: &str, params: Value) -> JobId {
        let (status, job) = self
            .json(
                "post",
                "/api/jobs",
                Some(json!({"job_type": job_type, "params": params})),
            )
            .await;
        assert_eq!(status, 202, "{job}");
        job["id"].as_str().unwrap().parse().unwrap()
    }

    /// Poll the job through the HTTP trigger until it is terminal.
    async fn wait_terminal(&self, id: &JobId, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, job) = self.json("get", &format!("/api/jobs/{id}"), None).await;
            assert_eq!(status, 200, "{job}");
            let terminal = ["SUCCEEDED", "FAILED", "COMPLETED_WITH_ERRORS", "CANCELLED"];
            if terminal.contains(&job["status"].as_str().unwrap_or_default()) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} not finished in {limit:?}: {job}\nhandler log:\n{}",
                self.host.log(0)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every event of a finished job, through the polling form of the events route, once
    /// its `job_completed` is readable (pages stay behind the log's settled point).
    async fn events(&self, id: &JobId) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.events_now(id).await;
            if count_of(&events, "job_completed") > 0 || Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn events_now(&self, id: &JobId) -> Vec<Value> {
        let mut after = 0;
        let mut all = Vec::new();
        loop {
            let (status, page) = self
                .json(
                    "get",
                    &format!("/api/jobs/{id}/events?after={after}&limit=1000"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            let items = page["items"].as_array().unwrap().clone();
            if items.is_empty() {
                return all;
            }
            after = page["next_after"].as_u64().unwrap();
            all.extend(items.into_iter().map(|i| i["event"].clone()));
        }
    }
}

fn count_of(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

async fn tasks_of(store: &Store, id: &JobId) -> Vec<engine::TaskRecord> {
    let backend = store.backend().await;
    let mut out = Vec::new();
    let mut page = PageRequest::first(1000);
    loop {
        let p = backend
            .tasks
            .list_tasks(id, &TaskQuery::default(), page.clone())
            .await
            .unwrap();
        out.extend(p.items);
        match p.next {
            Some(next) => page.after = Some(next),
            None => return out,
        }
    }
}

/// Every function folder names routes and queues the binary serves (with the configured
/// prefix), every function the binary serves has a folder, and host.json agrees with the
/// engine.
#[test]
fn the_function_app_matches_what_the_binary_serves() {
    // Folders of routes not (yet) in ROUTES: none today (the poison API's were, until it
    // landed).
    const AWAITING_ROUTES: &[&str] = &[];
    let prefix = "pfx1";
    let settings: HashMap<String, String> =
        [("TESSERA_AZURE_PREFIX".to_owned(), prefix.to_owned())].into();
    let app = FunctionApp::read(&app_source(), &settings);
    let served = catalog::functions();
    for f in &app.functions {
        let trigger = f.trigger();
        let Some((_, function)) = served.iter().find(|(n, _)| *n == f.name) else {
            assert!(
                AWAITING_ROUTES.contains(&f.name.as_str()),
                "folder {} is no function of the binary",
                f.name
            );
            assert_eq!(trigger.kind, "httpTrigger");
            continue;
        };
        match function {
            Function::Http(h) => {
                assert_eq!(trigger.kind, "httpTrigger", "{}", f.name);
                assert_eq!(trigger.name, catalog::HTTP_REQUEST_BINDING);
                assert_eq!(
                    trigger.route.as_deref(),
                    Some(h.route.as_str()),
                    "{}",
                    f.name
                );
                let mut methods = trigger.methods.clone();
                methods.sort();
                let mut expected: Vec<String> = h.methods.iter().map(|m| (*m).to_owned()).collect();
                expected.sort();
                assert_eq!(methods, expected, "{}", f.name);
                assert!(f.bindings.iter().any(|b| b.kind == "http"
                    && b.direction == "out"
                    && b.name == catalog::HTTP_RESPONSE_BINDING));
            }
            Function::Queue(role) => {
                assert_eq!(trigger.kind, "queueTrigger", "{}", f.name);
                assert_eq!(trigger.name, catalog::MESSAGE_BINDING);
                assert_eq!(trigger.queue.as_deref(), Some(role.queue(prefix).as_str()));
                let dead = f
                    .bindings
                    .iter()
                    .find(|b| b.name == catalog::DEAD_LETTER_BINDING)
                    .expect("a dead output");
                assert_eq!(
                    (dead.kind.as_str(), dead.direction.as_str()),
                    ("queue", "out")
                );
                assert_eq!(
                    dead.queue.as_deref(),
                    Some(catalog::dead_letter_queue(prefix).as_str())
                );
            }
            Function::Sweep => assert_eq!(trigger.kind, "timerTrigger"),
        }
    }
    for (name, _) in &served {
        assert!(
            app.functions.iter().any(|f| &f.name == name),
            "function {name} has no folder in infra/functions"
        );
    }
    // The queues: the tasks queue is the engine's, its poison queue the host's.
    let tasks = app.functions.iter().find(|f| f.name == "tasks").unwrap();
    assert_eq!(tasks.trigger().queue.as_deref(), Some("pfx1-tasks"));
    assert_eq!(
        QueueRole::TasksPoison.queue(prefix),
        format!("{}-poison", QueueRole::Tasks.queue(prefix))
    );
    // host.json: the engine's limits and the handler.
    let engine_config = engine::EngineConfig::default();
    assert_eq!(app.queues.max_dequeue, engine_config.max_dequeue);
    assert!(
        !app.queues.base64,
        "messageEncoding none: the engine writes JSON text"
    );
    assert!(
        app.queues.visibility_timeout > engine_config.lease,
        "a crashed invocation comes back after the task lease"
    );
    assert_eq!(app.arguments, ["functions"]);
    assert_eq!(
        app.host["customHandler"]["enableForwardingHttpRequest"],
        false
    );
    assert_eq!(app.host["extensions"]["http"]["routePrefix"], "");
    assert_eq!(
        app.host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(app_source().join("local.settings.json.example")).unwrap(),
    )
    .unwrap();
    assert_eq!(example["Values"]["FUNCTIONS_WORKER_RUNTIME"], "Custom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_submission_runs_hello_world_and_errors_are_the_apis() {
    let store = Store::azure(azurite_connection());
    let running = Running::start(&store, 1).await;
    // Invalid params: 400 problem details naming the field, as tessera serve answers.
    let (status, headers, body) = running
        .host
        .request(
            "post",
            "/api/jobs",
            Some(&json!({"job_type": "hello_world", "params": {"n": 0}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "INVALID_PARAMS");
    assert_eq!(problem["errors"][0]["field"], "params.n");
    let (status, problem) = running
        .json("get", &format!("/api/jobs/{}", "0".repeat(64)), None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("JOB_NOT_FOUND"))
    );
    let (status, problem) = running.json("get", "/api/jobs/nope", None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("INVALID_ID"))
    );

    let id = running.submit("hello_world", json!({"n": 200})).await;
    let job = running.wait_terminal(&id, Duration::from_secs(180)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let events = running.events(&id).await;
    assert_eq!(count_of(&events, "job_completed"), 1);
    assert_eq!(count_of(&events, "task_completed"), 201);
    // The same request again: 200, the same job.
    let (status, again) = running
        .json(
            "post",
            "/api/jobs",
            Some(json!({"job_type": "hello_world", "params": {"n": 200}})),
        )
        .await;
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())));
    // An event stream cannot pass through the host: 400 pointing at ?after=N.
    let (status, problem) = running
        .json("get", &format!("/api/jobs/{id}/events"), None)
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "after");
    let (status, types) = running.json("get", "/api/job-types", None).await;
    assert_eq!(status, 200);
    assert!(types.to_string().contains("hello_world"));
    let host = running.stop().await;
    assert_eq!(host.counters.restarts.load(Ordering::Relaxed), 0);
}

/// Tasks that fail transiently, then succeed: each retry is a delayed message the engine
/// sends before answering 200 (the host never sees a failed invocation), and the job ends
/// SUCCEEDED with every task on its second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_failing_transiently_are_retried_and_the_job_succeeds() {
    let store = Store::azure(azurite_connection());
    let running = Running::start(&store, 2).await;
    let id = running
        .submit(
            "synthetic",
            json!({"n": 10, "transient_failures": 1, "label": "transient"}),
        )
        .await;
    let job = running.wait_terminal(&id, Duration::from_secs(180)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let events = running.events(&id).await;
    assert_eq!(count_of(&events, "job_completed"), 1, "closed once");
    let host = running.stop().await;
    let tasks = tasks_of(&store, &id).await;
    let noops: Vec<_> = tasks.iter().filter(|t| t.task == "noop").collect();
    assert_eq!(noops.len(), 10);
    for t in &noops {
        assert_eq!(
            (t.status, t.attempt),
            (TaskStatus::Succeeded, 2),
            "{}",
            t.key
        );
    }
    // The handler's transient failures were retried by the engine (attempt 2 above), not by
    // the host: nothing was given up on. (An invocation may still fail on a storage error
    // under load; the host retries those.)
    assert_eq!(host.counters.poisoned.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_and_duplicate_deliveries_run_every_task_once() {
    let store = Store::azure(azurite_connection());
    let running = Running::start(&store, 2).await;
    let tasks_queue = QueueRole::Tasks.queue(prefix(&store));
    // Every message is delivered twice (a copy is put back before the first invocation).
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    running.host.set_hook(Arc::new(move |queue, message| {
        if queue == tasks_queue && seen.lock().unwrap().insert(message.text.clone()) {
            Fate::Duplicate
        } else {
            Fate::Invoke
        }
    }));
    let id = running
        .submit("hello_world", json!({"n": 40, "message": "dup"}))
        .await;
    let job = running.wait_terminal(&id, Duration::from_secs(180)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    // The timer fires on both instances at once: both sweeps succeed.
    assert_eq!(running.host.fire_timer().await, [200, 200]);
    let events = running.events(&id).await;
    assert_eq!(count_of(&events, "job_completed"), 1, "closed once");
    let host = running.stop().await;
    let tasks = tasks_of(&store, &id).await;
    assert_eq!(tasks.len(), 41);
    for t in &tasks {
        assert_eq!(
            (t.status, t.starts),
            (TaskStatus::Succeeded, 1),
            "task {} {}",
            t.task,
            t.key
        );
    }
    let workers: std::collections::HashSet<_> =
        tasks.iter().filter_map(|t| t.worker.clone()).collect();
    assert_eq!(workers.len(), 2, "both instances ran tasks: {workers:?}");
    // An invocation may fail on a transient storage error under load (Azurite on a busy
    // machine): the host retries it, and what must hold holds all the same: every task ran
    // once, the job closed once, nothing was given up on.
    assert_eq!(host.counters.poisoned.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_killed_mid_invocation_is_restarted_and_the_job_completes() {
    let store = Store::azure(azurite_connection());
    let running = Running::start(&store, 1).await;
    let crashed = Arc::new(AtomicBool::new(false));
    let once = crashed.clone();
    running.host.set_hook(Arc::new(move |_, message| {
        if message.text.contains("task_id") && !once.swap(true, Ordering::SeqCst) {
            Fate::Crash {
                after: Duration::from_millis(700),
            }
        } else {
            Fate::Invoke
        }
    }));
    let id = running
        .submit(
            "synthetic",
            json!({"n": 3, "sleep_ms": 1500, "label": "killed"}),
        )
        .await;
    let job = running.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let host = running.stop().await;
    assert!(crashed.load(Ordering::SeqCst));
    assert_eq!(host.counters.restarts.load(Ordering::Relaxed), 1);
    let tasks = tasks_of(&store, &id).await;
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Succeeded));
    assert_eq!(
        tasks.iter().map(|t| t.starts).max(),
        Some(2),
        "the killed task ran again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_crashes_every_delivery_is_poisoned_and_the_job_ends() {
    let store = Store::azure(azurite_connection());
    let running = Running::start(&store, 1).await;
    // The first task message seen crashes the process on every delivery.
    let victim: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let chosen = victim.clone();
    running.host.set_hook(Arc::new(move |_, message| {
        let mut chosen = chosen.lock().unwrap();
        let Ok(body) = serde_json::from_str::<Value>(&message.text) else {
            return Fate::Invoke;
        };
        let Some(task_id) = body["task_id"].as_str() else {
            return Fate::Invoke;
        };
        if chosen.is_none() {
            *chosen = Some(task_id.to_owned());
        }
        if chosen.as_deref() == Some(task_id) {
            Fate::Crash {
                after: Duration::from_millis(400),
            }
        } else {
            Fate::Invoke
        }
    }));
    let id = running
        .submit(
            "synthetic",
            json!({"n": 1, "sleep_ms": 3000, "label": "poison"}),
        )
        .await;
    let job = running.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    let host = running.stop().await;
    let victim = victim.lock().unwrap().clone().unwrap();
    let tasks = tasks_of(&store, &id).await;
    let poisoned = tasks.iter().find(|t| t.id.as_str() == victim).unwrap();
    assert_eq!(poisoned.status, TaskStatus::Failed);
    assert_eq!(poisoned.error.as_ref().unwrap().code, "POISONED");
    assert!(
        tasks.iter().all(|t| t.status.is_terminal()),
        "nothing left RUNNING"
    );
    // Five crashed deliveries, then the host's poison queue, then the dead-letter queue.
    assert_eq!(host.counters.restarts.load(Ordering::Relaxed), 5);
    assert_eq!(host.counters.poisoned.load(Ordering::Relaxed), 1);
    let p = prefix(&store);
    let dead = host
        .queues
        .peek(&catalog::dead_letter_queue(p))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains(&victim));
    // The poison API (an HTTP function) lists the engine's dead-letter queue.
    let (status, _, body) = host.request("get", "/api/poison", None).await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert!(body.contains(&victim), "{listed}");
    assert_eq!(
        host.queues
            .count(&QueueRole::TasksPoison.queue(p))
            .await
            .unwrap(),
        0
    );
    let backend = store.backend().await;
    assert_eq!(
        backend.jobs.get_job(&id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_refused_once_and_queued_submissions_run() {
    let store = Store::azure(azurite_connection());
    let running = Running::start(&store, 1).await;
    let p = prefix(&store).to_owned();
    let queues = &running.host.queues;
    let junk = [
        "not json",
        "{}",
        "bm90IGpzb24=",
        r#"{"job_id":"x","task_id":"y","attempt":1}"#,
    ];
    for text in junk {
        queues
            .put(&QueueRole::Tasks.queue(&p), text, Duration::ZERO)
            .await
            .unwrap();
    }
    let jobs = QueueRole::Jobs.queue(&p);
    queues
        .put(
            &jobs,
            r#"{"job_type": "hello_world", "params": {"n": 0}}"#,
            Duration::ZERO,
        )
        .await
        .unwrap();
    queues
        .put(&jobs, r#"{"job_type": "no_such_type"}"#, Duration::ZERO)
        .await
        .unwrap();
    queues
        .put(
            &jobs,
            r#"{"job_type": "hello_world", "params": {"n": 3, "message": "queued"}}"#,
            Duration::ZERO,
        )
        .await
        .unwrap();
    let id = engine::ids::job_id(
        "hello_world",
        1,
        &json!({"n": 3, "message": "queued", "fail_every": 0}),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, job) = running.json("get", &format!("/api/jobs/{id}"), None).await;
        if status == 200 && job["status"] == "SUCCEEDED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queued submission not run: {status} {job}\n{}",
            running.host.log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let host = running.stop().await;
    // Refused once: parked in the dead-letter queue, never retried, no crash.
    let dead = host
        .queues
        .peek(&catalog::dead_letter_queue(&p))
        .await
        .unwrap();
    assert_eq!(dead.len(), junk.len() + 2, "{dead:?}");
    assert!(dead.iter().any(|d| d.contains("no_such_type")));
    assert_eq!(host.counters.failures.load(Ordering::Relaxed), 0);
    assert_eq!(host.counters.restarts.load(Ordering::Relaxed), 0);
    assert!(
        host.log(0).contains("submission refused"),
        "the refusals are logged"
    );
    for q in [
        QueueRole::Tasks.queue(&p),
        jobs.clone(),
        QueueRole::TasksPoison.queue(&p),
    ] {
        assert_eq!(host.queues.count(&q).await.unwrap(), 0, "{q} is empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiled_raster_on_azure_blob_end_to_end() {
    let store = Store::azure(azurite_connection());
    let p = prefix(&store).to_owned();
    let (input, output) = (format!("{p}-in"), format!("{p}-tiles"));
    let ours = tempfile::tempdir().unwrap();
    let blobs = store.azure_blobs(ours.path()).await;
    blobs
        .put_file(
            &input,
            "RGB.byte.tif",
            &crate::support::fixture("RGB.byte.tif"),
        )
        .await
        .unwrap();
    // The output container does not exist yet: `plan_pyramid`'s clean-up of stale tiles
    // (Blobs::delete_prefix) finds nothing to delete, and the tiles create it.
    let running = Running::start(&store, 2).await;
    let params = json!({"container": input, "blob": "RGB.byte.tif", "output_container": output, "min_zoom": 7, "max_zoom": 10});
    let id = running.submit("tiled_raster", params).await;
    let job = running.wait_terminal(&id, Duration::from_secs(300)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let (status, result) = running
        .json("get", &format!("/api/jobs/{id}/result"), None)
        .await;
    assert_eq!(status, 200, "{result}");
    let tiles = result["result"]["tiles"].as_u64().expect("a tile count");
    assert!(tiles > 0, "{result}");
    let _stopped = running.stop().await;
    let written = blobs.list(&output, "").await.unwrap();
    let pngs = written.iter().filter(|b| b.name.ends_with(".png")).count() as u64;
    assert_eq!(pngs, tiles, "every tile is a PNG blob in {output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_failing_in_a_storage_outage_are_retried_and_the_job_completes() {
    // Azurite of our own, restarted on the same ports with its data.
    let data = tempfile::tempdir().unwrap();
    let mut azurite =
        test_support::azurite::Azurite::start(&crate::support::azurite_bin(), Some(data.path()))
            .expect("starting Azurite");
    let store = Store::azure(azurite.connection_string());
    let running = Running::start(&store, 1).await;
    let id = running
        .submit(
            "synthetic",
            json!({"shape": "chain", "n": 6, "sleep_ms": 1500, "label": "outage"}),
        )
        .await;
    let backend = store.backend().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = backend.tasks.count_tasks(&id, None).await.unwrap();
        // A task is running: its invocation is in flight when the storage goes away.
        if counts.get(TaskStatus::Succeeded) >= 2 && counts.get(TaskStatus::Running) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the chain does not progress: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Longer than the clients' bounded retries: the running invocation fails (503).
    azurite.stop();
    tokio::time::sleep(Duration::from_secs(14)).await;
    azurite.restart().expect("restarting Azurite");
    let job = running.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let events = running.events(&id).await;
    assert_eq!(count_of(&events, "job_completed"), 1);
    let host = running.stop().await;
    assert!(
        host.counters.failures.load(Ordering::Relaxed) >= 1,
        "some invocation failed in the outage"
    );
    assert_eq!(
        host.counters.restarts.load(Ordering::Relaxed),
        0,
        "the handler survived the outage"
    );
    let tasks = tasks_of(&store, &id).await;
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Succeeded));
}
