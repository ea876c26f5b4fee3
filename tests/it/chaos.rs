//! Chaos: three `tessera worker` processes share a store (SQLite file, or Azure Storage on
//! Azurite) while a `hello_world` job of thousands of tasks runs; workers are SIGKILLed at
//! random moments and restarted, again and again. Afterwards the job is closed exactly once
//! and the event log tells every task's story: each terminal task has exactly one end event,
//! each start its `task_started` (checked by the conformance suite's
//! `assert_story_complete`).

use std::time::{Duration, Instant};

use engine::JobId;
use engine::conformance::assert_story_complete;

use crate::crash::{Worker, worker};
use crate::support::{Store, azurite_connection, wait_for};

#[test]
fn sqlite_workers_killed_again_and_again_lose_no_event() {
    let dir = tempfile::tempdir().unwrap();
    chaos(&Store::Sqlite(dir.path().join("tessera.db")), 20_000, 10);
}

#[test]
fn azure_workers_killed_again_and_again_lose_no_event() {
    chaos(&Store::azure(azurite_connection()), 1_500, 6);
}

/// A small xorshift: the kill schedule differs per run and is printed for a re-run.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn chaos(store: &Store, n: u64, kills: usize) {
    let params = format!(r#"{{"n": {n}, "fail_every": 7}}"#);
    let (code, job) = store.run_json(&[
        "submit",
        "hello_world",
        "--params",
        &params,
        "--outcome",
        "continue",
    ]);
    assert_eq!(code, 0, "{job}");
    let id: JobId = job["id"].as_str().unwrap().parse().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let schedule_seed = seed;
    let mut workers: Vec<Worker> = (0..3).map(|i| worker(store, &format!("w{i}"))).collect();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(store.backend());
    let finished = |backend: &engine::ports::Backend| {
        rt.block_on(backend.jobs.get_job(&id))
            .ok()
            .flatten()
            .is_some_and(|j| j.status.is_terminal())
    };
    let mut done_kills = 0;
    let start = Instant::now();
    while done_kills < kills && !finished(&backend) {
        std::thread::sleep(Duration::from_millis(200 + next(&mut seed) % 600));
        let victim = (next(&mut seed) % 3) as usize;
        let w = &mut workers[victim];
        w.0.kill().expect("SIGKILL");
        w.0.wait().unwrap();
        workers[victim] = worker(store, &format!("w{victim}r{done_kills}"));
        done_kills += 1;
    }
    assert!(
        done_kills >= kills / 2,
        "the job finished after {done_kills} kills in {:?}: too small to test anything (seed {schedule_seed})",
        start.elapsed()
    );
    wait_for("the job to finish", Duration::from_secs(300), || {
        let job = rt.block_on(backend.jobs.get_job(&id)).ok()??;
        let unfinished = rt.block_on(backend.tasks.any_unfinished(&id, None)).ok()?;
        (job.status.is_terminal() && !unfinished).then_some(job)
    });
    drop(workers);
    let job = rt.block_on(backend.jobs.get_job(&id)).unwrap().unwrap();
    assert_eq!(
        job.status,
        engine::JobStatus::CompletedWithErrors,
        "{:?} (seed {schedule_seed})",
        job.error
    );
    rt.block_on(assert_story_complete(&backend, &id, 1));
}
