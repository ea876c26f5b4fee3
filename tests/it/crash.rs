//! Two `tessera worker` processes share a store (SQLite file, or Azure Storage on Azurite); one
//! is SIGKILLed mid-task. Its tasks come back after their lease, the other worker finishes
//! them, and the job closes exactly once.

use std::process::{Child, Stdio};
use std::time::Duration;

use engine::ports::{Backend, PageRequest, TaskQuery};
use engine::{JobId, JobStatus, TaskStatus};

use crate::support::{Store, azurite_connection, wait_for};

pub struct Worker(pub Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn worker(store: &Store, name: &str) -> Worker {
    let child = store
        .tessera(&["worker", "--concurrency", "4", "--lease-secs", "2"])
        .env("HOSTNAME", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a worker");
    Worker(child)
}

#[test]
fn sigkill_of_a_worker_mid_task_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    sigkill_case(&Store::Sqlite(dir.path().join("tessera.db")));
}

#[test]
fn azure_sigkill_of_a_worker_mid_task_loses_nothing() {
    sigkill_case(&Store::azure(azurite_connection()));
}

fn sigkill_case(store: &Store) {
    let (code, job) = store.run_json(&[
        "submit",
        "synthetic",
        "--params",
        r#"{"n": 24, "sleep_ms": 700, "label": "crash"}"#,
    ]);
    assert_eq!(code, 0, "{job}");
    let id: JobId = job["id"].as_str().unwrap().parse().unwrap();

    let mut a = worker(store, "victim");
    let _b = worker(store, "survivor");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(store.backend());
    let running_on_victim = |backend: &Backend| {
        let query = TaskQuery {
            group: None,
            status: Some(TaskStatus::Running),
        };
        let page = rt
            .block_on(
                backend
                    .tasks
                    .list_tasks(&id, &query, PageRequest::first(100)),
            )
            .unwrap();
        page.items
            .into_iter()
            .filter(|t| {
                t.worker
                    .as_deref()
                    .is_some_and(|w| w.starts_with("victim-"))
            })
            .map(|t| t.id)
            .collect::<Vec<_>>()
    };
    let held = wait_for("the victim to run tasks", Duration::from_secs(30), || {
        let held = running_on_victim(&backend);
        (!held.is_empty()).then_some(held)
    });
    a.0.kill().expect("SIGKILL");
    a.0.wait().unwrap();

    let done = wait_succeeded(&rt, &backend, &id, 25, Duration::from_secs(90));
    for task_id in &held {
        let task = rt
            .block_on(backend.tasks.get_task(&id, task_id))
            .unwrap()
            .unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded);
        assert!(
            task.worker
                .as_deref()
                .is_some_and(|w| w.starts_with("survivor-")),
            "re-run by the survivor: {:?}",
            task.worker
        );
    }
    assert_closed_once(&rt, &backend, &id);
    assert_eq!(
        done.result.as_ref().and_then(|r| r["succeeded"].as_u64()),
        Some(25)
    );
}

/// Wait until the job is terminal with no task left unfinished; check it SUCCEEDED with
/// `tasks` tasks, all SUCCEEDED. Storage errors while waiting (an outage) are retried.
pub fn wait_succeeded(
    rt: &tokio::runtime::Runtime,
    backend: &Backend,
    id: &JobId,
    tasks: u64,
    limit: Duration,
) -> engine::JobRecord {
    let done = wait_for("the job to finish", limit, || {
        let job = rt.block_on(backend.jobs.get_job(id)).ok()??;
        let unfinished = rt.block_on(backend.tasks.any_unfinished(id, None)).ok()?;
        (job.status.is_terminal() && !unfinished).then_some(job)
    });
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    let counts = rt.block_on(backend.tasks.count_tasks(id, None)).unwrap();
    assert_eq!(
        (counts.total(), counts.get(TaskStatus::Succeeded)),
        (tasks, tasks)
    );
    done
}

/// Exactly one `job_completed` event.
pub fn assert_closed_once(rt: &tokio::runtime::Runtime, backend: &Backend, id: &JobId) {
    let events = rt
        .block_on(backend.events.events_after(id, 0, 100_000))
        .unwrap();
    let closes = events
        .iter()
        .filter(|(_, e)| e.kind.name() == "job_completed")
        .count();
    assert_eq!(closes, 1, "closed exactly once");
}
