//! The backend conformance suite: the same checks run unchanged against every backend
//! (in-memory, SQLite, Azure). A backend crate instantiates it with
//! `engine::conformance_tests!(async || -> (Backend, Guard) { ... });`, one test per check.
//!
//! Leases and delays are whole seconds: Azure Storage Queues count visibility in seconds.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::events::{EventKind, JobEvent};
use crate::graph::{self, HandlerDefaults, PlanError, PlanScope};
use crate::handler::{
    CheckError, Controller, HandlerError, JobResults, Registry, TaskContext, TaskHandler,
    TaskOutput, ValidationError,
};
use crate::ids::{JobId, TaskId, job_id};
use crate::model::*;
use crate::ports::*;
use crate::retry::RetryPolicy;
use crate::runtime::{Engine, EngineConfig, SubmitOptions, WorkerConfig, run_worker};

/// One `#[tokio::test]` per check. `$make` is an async closure returning `(Backend, guard)`;
/// the guard (a temp dir, a server handle...) lives until the check ends.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            jobs_insert_get_and_compare_and_set,
            jobs_list_pages_newest_first,
            tasks_insert_is_idempotent_and_updates_compare_and_set,
            tasks_list_pages_and_filters,
            tasks_dependents_statuses_counts_and_unfinished,
            tasks_finish_unstarted_leaves_running_alone,
            progress_is_advisory,
            queue_lease_hides_and_redelivers,
            queue_delay_and_receipts,
            queue_dead_letter,
            events_are_ordered_per_job,
            maintenance_finds_stale_work_and_deletes_jobs,
            runtime_runs_a_job_with_two_workers,
            runtime_releases_a_barrier_once_under_concurrency,
            runtime_bundles_a_fan_out_and_splits_it_when_redelivered,
            events_are_written_with_their_status_change,
            runtime_cancel_and_forced_rerun_keep_the_story,
            runtime_deleted_job_leaves_no_work,
            runtime_accepted_jobs_are_expanded_whatever_happens,
            runtime_expands_each_job_once_whoever_does_it,
            runtime_poison_messages_are_listed_and_replayed
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (backend, _guard) = ($make)().await;
                $crate::conformance::$name(backend).await;
            }
        )*
    };
}

fn job(n: u64) -> JobRecord {
    let id = job_id("conformance", 1, &json!({ "n": n })).unwrap();
    JobRecord {
        id,
        job_type: "conformance".into(),
        job_version: 1,
        params: json!({ "n": n }),
        status: JobStatus::Pending,
        attempt: 1,
        outcome_policy: OutcomePolicy::FailFast,
        barriers: Default::default(),
        planned_tasks: 0,
        result: None,
        error: None,
        created_at: 1_000 + n as i64,
        updated_at: 1_000,
        started_at: None,
        finished_at: None,
        expansion: None,
        revision: Revision::default(),
    }
}

fn defaults(_: &str) -> Option<HandlerDefaults> {
    Some(HandlerDefaults {
        task_version: 1,
        retry: RetryPolicy::NO_RETRY,
        timeout: Duration::from_secs(10),
    })
}

/// `a[0..n]` in group "g", `b` after `a[0]`, barrier `z` over "g".
fn tasks(job: &JobId, n: i64) -> Vec<TaskRecord> {
    let mut specs: Vec<TaskSpec> = (0..n)
        .map(|i| TaskSpec::parallel("a", i).in_group("g"))
        .collect();
    specs.push(TaskSpec::sequential("b", 0).after("a", 0));
    specs.push(TaskSpec::barrier("z", 0, "g"));
    graph::plan(job, specs, PlanScope::Job, &defaults, 5)
        .unwrap()
        .into_records()
        .collect()
}

async fn insert_job(b: &Backend, j: &JobRecord) -> JobRecord {
    match b.jobs.insert_job(j).await.unwrap() {
        Inserted::Created(revision) => JobRecord {
            revision,
            ..j.clone()
        },
        Inserted::Existing(_) => panic!("job existed"),
    }
}

pub async fn jobs_insert_get_and_compare_and_set(b: Backend) {
    let j = job(1);
    let stored = insert_job(&b, &j).await;
    let Inserted::Existing(again) = b.jobs.insert_job(&j).await.unwrap() else {
        panic!("second insert created")
    };
    assert_eq!(again.id, j.id);
    let got = b.jobs.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!(got.params, j.params);
    assert_eq!(got.revision, stored.revision);

    let mut running = got.clone();
    running.status = JobStatus::Running;
    let rev = b
        .jobs
        .update_job(&running, &[])
        .await
        .unwrap()
        .expect("first CAS wins");
    // A writer holding the old revision loses.
    assert_eq!(
        b.jobs.update_job(&running, &[]).await.unwrap(),
        Err(Conflict)
    );
    let got = b.jobs.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.revision), (JobStatus::Running, rev));
    let other = job(2);
    assert!(b.jobs.get_job(&other.id).await.unwrap().is_none());
}

pub async fn jobs_list_pages_newest_first(b: Backend) {
    for n in 0..5 {
        insert_job(&b, &job(n)).await;
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = b.jobs.list_jobs(page.clone()).await.unwrap();
        assert!(p.items.len() <= 2);
        seen.extend(p.items.iter().map(|j| j.created_at));
        match p.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, vec![1004, 1003, 1002, 1001, 1000]);
    // A cursor the listing did not give out is the client's mistake, not a first page.
    for cursor in ["", "nonsense", "12:zz", "~"] {
        let bad = b
            .jobs
            .list_jobs(PageRequest {
                after: Some(cursor.to_owned()),
                limit: 2,
            })
            .await;
        assert!(
            matches!(bad, Err(StoreError::InvalidCursor { .. })),
            "{cursor:?}: {bad:?}"
        );
    }

    // Every job's status, for gauges: one of them now RUNNING.
    let stored = b.jobs.get_job(&job(3).id).await.unwrap().unwrap();
    let mut running = stored.clone();
    running.status = JobStatus::Running;
    b.jobs.update_job(&running, &[]).await.unwrap().unwrap();
    let mut statuses = b.jobs.job_statuses().await.unwrap();
    statuses.sort();
    let mut want: Vec<(JobId, JobStatus)> = (0..5)
        .map(|n| {
            let status = if n == 3 {
                JobStatus::Running
            } else {
                JobStatus::Pending
            };
            (job(n).id, status)
        })
        .collect();
    want.sort();
    assert_eq!(statuses, want);
}

pub async fn tasks_insert_is_idempotent_and_updates_compare_and_set(b: Backend) {
    let j = insert_job(&b, &job(1)).await;
    let ts = tasks(&j.id, 3);
    assert_eq!(b.tasks.insert_tasks(&j.id, &ts).await.unwrap(), 5);
    assert_eq!(
        b.tasks.insert_tasks(&j.id, &ts).await.unwrap(),
        0,
        "re-insert creates nothing"
    );
    let t = b.tasks.get_task(&j.id, &ts[0].id).await.unwrap().unwrap();
    assert_eq!(
        (t.status, t.task.as_str(), t.group.as_deref()),
        (TaskStatus::Queued, "a", Some("g"))
    );

    let mut running = t.clone();
    running.status = TaskStatus::Running;
    running.worker = Some("w1".into());
    let rev = b
        .tasks
        .update_task(&running, &[])
        .await
        .unwrap()
        .expect("CAS wins");
    assert_eq!(
        b.tasks.update_task(&running, &[]).await.unwrap(),
        Err(Conflict),
        "stale revision loses"
    );
    let got = b.tasks.get_task(&j.id, &t.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.worker.as_deref(), got.revision),
        (TaskStatus::Running, Some("w1"), rev)
    );
    // Re-inserting does not reset a task that moved on.
    b.tasks.insert_tasks(&j.id, &ts).await.unwrap();
    assert_eq!(
        b.tasks
            .get_task(&j.id, &t.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TaskStatus::Running
    );
}

pub async fn tasks_list_pages_and_filters(b: Backend) {
    let j = insert_job(&b, &job(1)).await;
    let ts = tasks(&j.id, 25);
    b.tasks.insert_tasks(&j.id, &ts).await.unwrap();
    let mut ids = Vec::new();
    let query = TaskQuery {
        group: Some("g".into()),
        status: None,
    };
    let mut page = PageRequest::first(10);
    loop {
        let p = b
            .tasks
            .list_tasks(&j.id, &query, page.clone())
            .await
            .unwrap();
        ids.extend(p.items.into_iter().map(|t| t.id));
        match p.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    assert_eq!(ids.len(), 25, "every group member exactly once");
    for cursor in ["", "nonsense"] {
        let bad = b
            .tasks
            .list_tasks(
                &j.id,
                &query,
                PageRequest {
                    after: Some(cursor.to_owned()),
                    limit: 10,
                },
            )
            .await;
        assert!(
            matches!(bad, Err(StoreError::InvalidCursor { .. })),
            "{cursor:?}: {bad:?}"
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 25);
    let pending = TaskQuery {
        group: None,
        status: Some(TaskStatus::Pending),
    };
    let p = b
        .tasks
        .list_tasks(&j.id, &pending, PageRequest::first(100))
        .await
        .unwrap();
    let mut names: Vec<_> = p.items.iter().map(|t| t.task.clone()).collect();
    names.sort();
    assert_eq!(names, ["b", "z"]);
}

pub async fn tasks_dependents_statuses_counts_and_unfinished(b: Backend) {
    let j = insert_job(&b, &job(1)).await;
    let ts = tasks(&j.id, 3);
    b.tasks.insert_tasks(&j.id, &ts).await.unwrap();
    let (a0, b0) = (&ts[0], &ts[3]);
    assert_eq!(
        b.tasks.dependents(&j.id, &a0.id).await.unwrap(),
        vec![b0.id.clone()]
    );
    assert!(
        b.tasks
            .dependents(&j.id, &ts[1].id)
            .await
            .unwrap()
            .is_empty()
    );
    let statuses = b
        .tasks
        .task_statuses(&j.id, &[a0.id.clone(), b0.id.clone()])
        .await
        .unwrap();
    assert_eq!(
        statuses,
        vec![
            (a0.id.clone(), TaskStatus::Queued),
            (b0.id.clone(), TaskStatus::Pending)
        ]
    );

    let counts = b.tasks.count_tasks(&j.id, None).await.unwrap();
    assert_eq!(
        (
            counts.get(TaskStatus::Queued),
            counts.get(TaskStatus::Pending)
        ),
        (3, 2)
    );
    assert_eq!(
        b.tasks.count_tasks(&j.id, Some("g")).await.unwrap().total(),
        3
    );
    assert!(b.tasks.any_unfinished(&j.id, Some("g")).await.unwrap());
    for t in &ts[..3] {
        let mut done = b.tasks.get_task(&j.id, &t.id).await.unwrap().unwrap();
        done.status = TaskStatus::Succeeded;
        b.tasks.update_task(&done, &[]).await.unwrap().unwrap();
    }
    assert!(
        !b.tasks.any_unfinished(&j.id, Some("g")).await.unwrap(),
        "group finished"
    );
    assert!(
        b.tasks.any_unfinished(&j.id, None).await.unwrap(),
        "b and z still pending"
    );
    assert_eq!(
        b.tasks
            .count_tasks(&j.id, Some("g"))
            .await
            .unwrap()
            .get(TaskStatus::Succeeded),
        3
    );
    assert!(!b.tasks.any_unfinished(&j.id, Some("nobody")).await.unwrap());
}

pub async fn tasks_finish_unstarted_leaves_running_alone(b: Backend) {
    let j = insert_job(&b, &job(1)).await;
    let ts = tasks(&j.id, 2);
    b.tasks.insert_tasks(&j.id, &ts).await.unwrap();
    // Another attempt's follow-up (a late one of a cancelled attempt) moves none of them.
    let late = ErrorInfo::new("JOB_CANCELLED", "attempt 2 is not theirs");
    assert_eq!(
        b.tasks
            .finish_unstarted(&j.id, 2, TaskStatus::Cancelled, &late)
            .await
            .unwrap(),
        0
    );
    let mut running = b.tasks.get_task(&j.id, &ts[0].id).await.unwrap().unwrap();
    running.status = TaskStatus::Running;
    b.tasks.update_task(&running, &[]).await.unwrap().unwrap();
    let stale = b.tasks.get_task(&j.id, &ts[1].id).await.unwrap().unwrap();
    let error = ErrorInfo::new("JOB_CANCELLED", "test");
    assert_eq!(
        b.tasks
            .finish_unstarted(&j.id, 1, TaskStatus::Cancelled, &error)
            .await
            .unwrap(),
        3
    );
    let counts = b.tasks.count_tasks(&j.id, None).await.unwrap();
    assert_eq!(
        (
            counts.get(TaskStatus::Running),
            counts.get(TaskStatus::Cancelled)
        ),
        (1, 3)
    );
    let cancelled = b.tasks.get_task(&j.id, &ts[1].id).await.unwrap().unwrap();
    assert_eq!(
        cancelled.error.as_ref().map(|e| e.code.as_str()),
        Some("JOB_CANCELLED")
    );
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(
        b.tasks.update_task(&stale, &[]).await.unwrap(),
        Err(Conflict),
        "bulk change bumps revisions"
    );
    let ended: u64 = b
        .events
        .events_after(&j.id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|(_, e)| match &e.kind {
            EventKind::TasksEnded { status, count, .. } => {
                assert_eq!(*status, TaskStatus::Cancelled);
                *count
            }
            other => panic!("unexpected event {other:?}"),
        })
        .sum();
    assert_eq!(ended, 3, "tasks_ended events count every task moved");
}

/// A status change and its event are one write: a winning compare-and-set stores its events,
/// a losing one stores none.
pub async fn events_are_written_with_their_status_change(b: Backend) {
    let j = insert_job(&b, &job(1)).await;
    let ts = tasks(&j.id, 1);
    b.tasks.insert_tasks(&j.id, &ts).await.unwrap();
    let queued = b.tasks.get_task(&j.id, &ts[0].id).await.unwrap().unwrap();
    let mut running = queued.clone();
    running.status = TaskStatus::Running;
    running.starts = 1;
    let started = crate::events::task_transition(&queued, &running).expect("a start event");
    b.tasks
        .update_task(&running, std::slice::from_ref(&started))
        .await
        .unwrap()
        .unwrap();
    let mut lost = queued.clone();
    lost.status = TaskStatus::Cancelled;
    let cancelled = crate::events::task_transition(&queued, &lost).expect("an end event");
    assert_eq!(
        b.tasks.update_task(&lost, &[cancelled]).await.unwrap(),
        Err(Conflict)
    );
    let mut running_job = j.clone();
    running_job.status = JobStatus::Running;
    let job_started = crate::events::job_transition(&j, &running_job).expect("job_started");
    b.jobs
        .update_job(&running_job, std::slice::from_ref(&job_started))
        .await
        .unwrap()
        .unwrap();
    let mut closed = j.clone();
    closed.status = JobStatus::Cancelled;
    let job_closed = crate::events::job_transition(&j, &closed).expect("job_completed");
    assert_eq!(
        b.jobs.update_job(&closed, &[job_closed]).await.unwrap(),
        Err(Conflict)
    );
    let stored: Vec<JobEvent> = b
        .events
        .events_after(&j.id, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        stored,
        vec![started, job_started],
        "only the winners' events"
    );
}

pub async fn progress_is_advisory(b: Backend) {
    let j = insert_job(&b, &job(1)).await;
    let ts = tasks(&j.id, 1);
    b.tasks.insert_tasks(&j.id, &ts).await.unwrap();
    let before = b.tasks.get_task(&j.id, &ts[0].id).await.unwrap().unwrap();
    let p = Progress {
        fraction: 0.5,
        text: "half".into(),
        at: 7,
    };
    let event = JobEvent::now(
        &j.id,
        1,
        EventKind::ProgressUpdate {
            task_id: ts[0].id.clone(),
            task: ts[0].task.clone(),
            fraction: 0.5,
            text: "half".into(),
        },
    );
    b.tasks
        .set_progress(&j.id, &ts[0].id, &p, &event)
        .await
        .unwrap();
    let after = b.tasks.get_task(&j.id, &ts[0].id).await.unwrap().unwrap();
    assert_eq!(after.progress, Some(p));
    assert_eq!(after.revision, before.revision);
    let stored = b.events.events_after(&j.id, 0, 10).await.unwrap();
    assert_eq!(
        stored.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        vec![event],
        "the progress event is stored with the progress"
    );
    assert_eq!(
        b.tasks.running_progress(&j.id).await.unwrap(),
        0.0,
        "only RUNNING tasks count"
    );
    let mut running = before.clone();
    running.status = TaskStatus::Running;
    b.tasks
        .update_task(&running, &[])
        .await
        .unwrap()
        .expect("progress did not break the CAS");
    assert_eq!(b.tasks.running_progress(&j.id).await.unwrap(), 0.5);
}

pub async fn queue_lease_hides_and_redelivers(b: Backend) {
    b.queue
        .send(&["m1".into(), "m2".into()], Duration::ZERO)
        .await
        .unwrap();
    let got = b.queue.receive(10, Duration::from_secs(1)).await.unwrap();
    let mut bodies: Vec<_> = got.iter().map(|d| d.body.as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, ["m1", "m2"]);
    assert!(got.iter().all(|d| d.dequeue_count == 1));
    assert!(
        b.queue
            .receive(10, Duration::from_secs(5))
            .await
            .unwrap()
            .is_empty(),
        "leased messages are hidden"
    );
    b.queue.delete(&got[0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let again = b.queue.receive(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "the undeleted message comes back after its lease"
    );
    assert_eq!(
        (again[0].body.as_str(), again[0].dequeue_count),
        (got[1].body.as_str(), 2)
    );
}

pub async fn queue_delay_and_receipts(b: Backend) {
    b.queue
        .send(&["later".into()], Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        b.queue
            .receive(1, Duration::from_secs(5))
            .await
            .unwrap()
            .is_empty(),
        "delayed message not visible yet"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut d = b
        .queue
        .receive(1, Duration::from_secs(1))
        .await
        .unwrap()
        .pop()
        .expect("visible after the delay");
    let old = d.clone();
    b.queue
        .extend_lease(&mut d, Duration::from_secs(5))
        .await
        .unwrap();
    assert_ne!(d.receipt, old.receipt, "extending changes the receipt");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        b.queue
            .receive(1, Duration::from_secs(5))
            .await
            .unwrap()
            .is_empty(),
        "extended lease still hides it"
    );
    assert!(
        matches!(
            b.queue.delete(&old).await,
            Err(QueueError::LeaseLost { .. })
        ),
        "old receipt is refused"
    );
    b.queue.delete(&d).await.unwrap();
}

pub async fn queue_dead_letter(b: Backend) {
    let before = crate::model::now_millis();
    for body in ["bad-1", "bad-2"] {
        b.queue.send(&[body.into()], Duration::ZERO).await.unwrap();
        let d = b
            .queue
            .receive(1, Duration::from_millis(100))
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(d.body, body);
        b.queue.dead_letter(&d).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        b.queue
            .receive(1, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "poisoned message gone from the queue"
    );
    let depth = b.queue.depth().await.unwrap();
    assert_eq!((depth.messages, depth.poison), (0, 2), "{depth:?}");

    let listed = b.poison.poison_messages(10).await.unwrap();
    let bodies: Vec<&str> = listed.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["bad-1", "bad-2"], "oldest first");
    for m in &listed {
        // Azure keeps insertion times in whole seconds.
        assert!(
            (before - 1_000..=crate::model::now_millis()).contains(&m.poisoned_at),
            "poisoned_at {} not now",
            m.poisoned_at
        );
    }
    assert_eq!(b.poison.poison_messages(1).await.unwrap().len(), 1);

    // Removing the second leaves the first listed (the scan shows it again at once).
    assert!(b.poison.remove_poison(&listed[1].id).await.unwrap());
    assert!(
        !b.poison.remove_poison(&listed[1].id).await.unwrap(),
        "gone"
    );
    assert!(!b.poison.remove_poison("no-such-message").await.unwrap());
    let left = b.poison.poison_messages(10).await.unwrap();
    assert_eq!(left, listed[..1], "the other poison message is untouched");
    assert!(b.poison.remove_poison(&listed[0].id).await.unwrap());
    assert!(b.poison.poison_messages(10).await.unwrap().is_empty());
}

pub async fn events_are_ordered_per_job(b: Backend) {
    // Events are written with the changes they report: here, with job updates.
    let (j1, j2) = (insert_job(&b, &job(1)).await, insert_job(&b, &job(2)).await);
    let e = |j: &JobId, status| JobEvent {
        job_id: j.clone(),
        job_attempt: 1,
        at: 1,
        kind: EventKind::JobCompleted { status },
    };
    let j1 = update_with(&b, &j1, &[e(&j1.id, JobStatus::Running)]).await;
    update_with(&b, &j2, &[e(&j2.id, JobStatus::Failed)]).await;
    update_with(&b, &j1, &[e(&j1.id, JobStatus::Succeeded)]).await;
    let got = b.events.events_after(&j1.id, 0, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].0 < got[1].0);
    assert_eq!(got[1].1, e(&j1.id, JobStatus::Succeeded));
    assert_eq!(
        b.events
            .events_after(&j1.id, got[0].0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Store `job` unchanged with `events` (its compare-and-set must win); the stored record.
async fn update_with(b: &Backend, job: &JobRecord, events: &[JobEvent]) -> JobRecord {
    let revision = b.jobs.update_job(job, events).await.unwrap().unwrap();
    JobRecord {
        revision,
        ..job.clone()
    }
}

pub async fn maintenance_finds_stale_work_and_deletes_jobs(b: Backend) {
    let j = insert_job(&b, &job(1)).await;
    let ts = tasks(&j.id, 2);
    b.tasks.insert_tasks(&j.id, &ts).await.unwrap();
    let stale = b
        .maintenance
        .stale_tasks(TaskStatus::Queued, 6, 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 2, "tasks updated at 5 are stale before 6");
    assert!(
        b.maintenance
            .stale_tasks(TaskStatus::Queued, 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.maintenance
            .stale_pending_jobs(1_002, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let mut done = j.clone();
    done.status = JobStatus::Cancelled;
    done.finished_at = Some(2_000);
    let completed = JobEvent {
        job_id: j.id.clone(),
        job_attempt: 1,
        at: 1,
        kind: EventKind::JobCompleted {
            status: JobStatus::Cancelled,
        },
    };
    b.jobs
        .update_job(&done, &[completed])
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.maintenance
            .jobs_finished_before(2_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.maintenance.jobs_finished_before(2_001, 10).await.unwrap(),
        vec![j.id.clone()]
    );
    b.maintenance
        .delete_job(&j.id, Removal::Everything)
        .await
        .unwrap();
    assert!(b.jobs.get_job(&j.id).await.unwrap().is_none());
    assert!(b.tasks.get_task(&j.id, &ts[0].id).await.unwrap().is_none());
    assert!(
        b.events
            .events_after(&j.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---- the runtime on this backend ----

#[derive(Default)]
struct Fan {
    /// Plans made per job: one expansion each, whoever does it.
    plans: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<JobId, u32>>>,
}

#[async_trait]
impl Controller for Fan {
    fn job_type(&self) -> &'static str {
        "fan"
    }
    fn description(&self) -> &'static str {
        "n parallel tasks, a chain after the first, a barrier over all"
    }
    fn validate(&self, params: Value) -> Result<Value, ValidationError> {
        let n = params
            .get("n")
            .and_then(Value::as_u64)
            .ok_or_else(|| ValidationError::new("n", "required integer"))?;
        Ok(json!({ "n": n }))
    }
    /// Multiples of 13 are refused, but only once the job is expanded (a check too costly
    /// for submission: it takes a while, which leaves concurrent expansions time to meet).
    async fn check_at_expansion(&self, params: &Value) -> Result<(), CheckError> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let n = params["n"].as_u64().unwrap_or(0);
        if n > 0 && n % 13 == 0 {
            return Err(ValidationError::new("n", format!("{n} is refused at expansion")).into());
        }
        Ok(())
    }
    fn plan(&self, job_id: &JobId, params: &Value) -> Result<Vec<TaskSpec>, PlanError> {
        *self
            .plans
            .lock()
            .unwrap()
            .entry(job_id.clone())
            .or_default() += 1;
        let n = params["n"].as_i64().unwrap_or(1);
        let mut specs: Vec<TaskSpec> = (0..n)
            .map(|i| TaskSpec::parallel("add", i).in_group("g"))
            .collect();
        specs.push(
            TaskSpec::sequential("add", "chain")
                .after("add", 0)
                .in_group("g"),
        );
        specs.push(TaskSpec::orchestrator("spawn", 0).children_in("g"));
        specs.push(TaskSpec::barrier("sum", 0, "g"));
        Ok(specs)
    }
    async fn aggregate(
        &self,
        _job: &JobRecord,
        results: &JobResults,
    ) -> Result<Value, HandlerError> {
        Ok(results
            .task("sum", 0)
            .await?
            .and_then(|m| m.result)
            .unwrap_or(Value::Null))
    }
}

struct Add;

#[async_trait]
impl TaskHandler for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        ctx.progress(1.0, "done").await;
        TaskOutput::value(1)
    }
}

struct Spawn;

#[async_trait]
impl TaskHandler for Spawn {
    fn name(&self) -> &'static str {
        "spawn"
    }
    async fn run(&self, _ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let kids = (0..3)
            .map(|i| TaskSpec::parallel("add", format!("child-{i}")))
            .collect();
        TaskOutput::with_children("spawned", kids)
    }
}

struct Sum;

#[async_trait]
impl TaskHandler for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let mut total = 0;
        let mut page = crate::ports::PageRequest::first(7);
        loop {
            let p = ctx.members(page.clone()).await?;
            total += p
                .items
                .iter()
                .filter_map(|m| m.result.as_ref().and_then(Value::as_i64))
                .sum::<i64>();
            match p.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        TaskOutput::value(json!({ "sum": total }))
    }
}

/// The check's job type and handlers.
fn registry() -> Registry {
    registry_with(Fan::default())
}

fn registry_with(fan: Fan) -> Registry {
    Registry::default()
        .with_controller(fan)
        .with_handler(Add)
        .with_handler(Spawn)
        .with_handler(Sum)
}

fn engine(b: Backend) -> Engine {
    let registry = registry();
    Engine::new(
        b,
        registry,
        EngineConfig {
            lease: Duration::from_secs(5),
            ..EngineConfig::default()
        },
    )
}

async fn wait_terminal(engine: &Engine, id: &JobId, limit: Duration) -> JobRecord {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let job = engine.backend().jobs.get_job(id).await.unwrap().unwrap();
        if job.status.is_terminal()
            && !engine
                .backend()
                .tasks
                .any_unfinished(id, None)
                .await
                .unwrap()
        {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} not finished in {limit:?}: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn runtime_runs_a_job_with_two_workers(b: Backend) {
    let engine = engine(b.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let config = WorkerConfig {
                concurrency: 4,
                worker_id: format!("w{i}"),
                ..WorkerConfig::default()
            };
            tokio::spawn(run_worker(engine.clone(), config, shutdown.clone()))
        })
        .collect();
    let sub = engine
        .submit("fan", json!({ "n": 40 }), SubmitOptions::default())
        .await
        .unwrap();
    assert!(sub.created);
    let done = wait_terminal(&engine, &sub.job.id, Duration::from_secs(60)).await;
    shutdown.cancel();
    for w in workers {
        w.await.unwrap();
    }
    // 40 parallel + chain + 3 children, each 1.
    assert_eq!(
        (done.status, done.result.clone()),
        (JobStatus::Succeeded, Some(json!({ "sum": 44 })))
    );
    let counts = b.tasks.count_tasks(&done.id, None).await.unwrap();
    assert_eq!(
        (counts.total(), counts.get(TaskStatus::Succeeded)),
        (46, 46)
    );
    let events = b.events.events_after(&done.id, 0, 10_000).await.unwrap();
    let closed = events
        .iter()
        .filter(|(_, e)| matches!(e.kind, EventKind::JobCompleted { .. }))
        .count();
    assert_eq!(closed, 1, "the job is closed exactly once");
    assert_story_complete(&b, &done.id, 1).await;
    // The same request is the same job, not run again.
    let again = engine
        .submit("fan", json!({ "n": 40 }), SubmitOptions::default())
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.job.id, done.id);
}

pub async fn runtime_releases_a_barrier_once_under_concurrency(b: Backend) {
    // Many group members finish at the same instant; the barrier is released exactly once.
    let engine = engine(b.clone());
    let sub = engine
        .submit("fan", json!({ "n": 30 }), SubmitOptions::default())
        .await
        .unwrap();
    let config = WorkerConfig::default();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let deliveries = b.queue.receive(32, Duration::from_secs(30)).await.unwrap();
        for d in deliveries {
            let (engine, config) = (engine.clone(), config.clone());
            handles.push(tokio::spawn(async move {
                engine.process_delivery(d, &config).await
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        engine.clone(),
        WorkerConfig::default(),
        shutdown.clone(),
    ));
    let done = wait_terminal(&engine, &sub.job.id, Duration::from_secs(60)).await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    let events = b.events.events_after(&done.id, 0, 10_000).await.unwrap();
    let sum_started = events
        .iter()
        .filter(|(_, e)| matches!(&e.kind, EventKind::TaskStarted { task, .. } if task == "sum"))
        .count();
    assert_eq!(sum_started, 1, "barrier released and run once");
}

pub async fn runtime_bundles_a_fan_out_and_splits_it_when_redelivered(b: Backend) {
    // 200 parallel tasks travel in bundles. A worker takes every message and dies: each bundle
    // comes back after its lease, is split into one message per task, and every task runs once.
    let engine = engine(b.clone());
    let sub = engine
        .submit("fan", json!({ "n": 200 }), SubmitOptions::default())
        .await
        .unwrap();
    let (mut messages, mut tasks) = (0, 0);
    loop {
        let deliveries = b.queue.receive(32, Duration::from_secs(2)).await.unwrap();
        if deliveries.is_empty() {
            break;
        }
        for d in deliveries {
            let message: QueueMessage = serde_json::from_str(&d.body).unwrap();
            messages += 1;
            tasks += message.into_tasks().len();
        }
    }
    // The 200 members and the orchestrator are released at once; the chain and the barrier wait.
    assert_eq!(tasks, 201);
    assert!(
        (crate::runtime::MESSAGE_SPREAD..tasks).contains(&messages),
        "{tasks} tasks in {messages} messages"
    );
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        engine.clone(),
        WorkerConfig {
            concurrency: 16,
            ..WorkerConfig::default()
        },
        shutdown.clone(),
    ));
    let done = wait_terminal(&engine, &sub.job.id, Duration::from_secs(120)).await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(
        (done.status, done.result.clone()),
        (JobStatus::Succeeded, Some(json!({ "sum": 204 })))
    );
    let events = b.events.events_after(&done.id, 0, 10_000).await.unwrap();
    let started = events
        .iter()
        .filter(|(_, e)| matches!(e.kind, EventKind::TaskStarted { .. }))
        .count();
    // 200 + chain + orchestrator + 3 children + barrier, each started once.
    assert_eq!(started, 206);
}

/// The event log of `job`'s attempt `attempt` tells every task's story: every task is
/// terminal and has exactly one end event (`tasks_ended` counting for many), one
/// `task_started` per start, one `job_completed`. Also used by the chaos tests.
pub async fn assert_story_complete(b: &Backend, job: &JobId, attempt: u32) {
    let events: Vec<JobEvent> = b
        .events
        .events_after(job, 0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.job_attempt == attempt)
        .collect();
    let mut ends: std::collections::HashMap<TaskId, u32> = Default::default();
    let mut bulk = 0;
    let mut started = 0u64;
    for e in &events {
        match &e.kind {
            EventKind::TasksEnded { count, .. } => bulk += count,
            EventKind::TaskStarted { .. } => started += 1,
            EventKind::TaskCompleted { task_id, .. }
            | EventKind::TaskCancelled { task_id, .. }
            | EventKind::TaskSkipped { task_id, .. }
            | EventKind::TaskFailed {
                task_id,
                will_retry: false,
                ..
            } => *ends.entry(task_id.clone()).or_default() += 1,
            _ => {}
        }
    }
    let mut terminal = 0u64;
    let mut starts = 0u64;
    let mut page = PageRequest::first(1_000);
    loop {
        let p = b
            .tasks
            .list_tasks(job, &TaskQuery::default(), page.clone())
            .await
            .unwrap();
        for t in &p.items {
            assert!(t.status.is_terminal(), "task {} is {}", t.id, t.status);
            terminal += 1;
            starts += u64::from(t.starts);
            assert!(
                ends.get(&t.id).copied().unwrap_or(0) <= 1,
                "task {} has {:?} end events",
                t.id,
                ends.get(&t.id)
            );
        }
        match p.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        ends.len() as u64 + bulk,
        terminal,
        "every terminal task has its end event"
    );
    assert_eq!(started, starts, "one task_started per start");
    let closed = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::JobCompleted { .. }))
        .count();
    assert_eq!(closed, 1, "one job_completed");
}

/// Cancelling a job that has not run ends every task in the stream (`tasks_ended`); a forced
/// re-run keeps the first attempt's events and tells the second attempt's story whole.
pub async fn runtime_cancel_and_forced_rerun_keep_the_story(b: Backend) {
    let engine = engine(b.clone());
    let sub = engine
        .submit("fan", json!({ "n": 12 }), SubmitOptions::default())
        .await
        .unwrap();
    let cancelled = engine.cancel(&sub.job.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_story_complete(&b, &sub.job.id, 1).await;
    let first = b.events.events_after(&sub.job.id, 0, 1_000).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        engine.clone(),
        WorkerConfig::default(),
        shutdown.clone(),
    ));
    let rerun = engine
        .submit(
            "fan",
            json!({ "n": 12 }),
            SubmitOptions {
                force: true,
                ..SubmitOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rerun.job.attempt, 2);
    let done = wait_terminal(&engine, &rerun.job.id, Duration::from_secs(60)).await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    let all = b.events.events_after(&done.id, 0, 1_000).await.unwrap();
    let kept: Vec<_> = all
        .iter()
        .filter(|(_, e)| e.job_attempt == 1)
        .cloned()
        .collect();
    assert_eq!(
        kept, first,
        "the first attempt's events are kept as they were"
    );
    assert_story_complete(&b, &done.id, 2).await;
}

/// Deleting a job removes the messages of its tasks: nothing of it runs afterwards, and the
/// queue drains (a backend that cannot pick messages out of its queue drops them when a
/// worker meets them).
pub async fn runtime_deleted_job_leaves_no_work(b: Backend) {
    let engine = engine(b.clone());
    let sub = engine
        .submit("fan", json!({ "n": 20 }), SubmitOptions::default())
        .await
        .unwrap();
    b.maintenance
        .delete_job(&sub.job.id, Removal::Everything)
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        engine.clone(),
        WorkerConfig::default(),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let left = b.queue.receive(32, Duration::from_millis(1)).await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages of a deleted job still queued: {:?}",
            left.iter().map(|d| &d.body).collect::<Vec<_>>()
        );
    }
    shutdown.cancel();
    worker.await.unwrap();
    assert!(b.jobs.get_job(&sub.job.id).await.unwrap().is_none());
    assert_eq!(
        b.tasks
            .count_tasks(&sub.job.id, None)
            .await
            .unwrap()
            .total(),
        0,
        "no task of the deleted job was recreated"
    );
    assert!(
        b.events
            .events_after(&sub.job.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Two-step submission: an accepted job is PENDING until a worker expands it from its
/// message; an expansion lost to a crash (the message gone) is done by the sweeper; a plan
/// that cannot be built fails the job at expansion instead of leaving it PENDING.
pub async fn runtime_accepted_jobs_are_expanded_whatever_happens(b: Backend) {
    let registry = registry();
    let engine = Engine::new(
        b.clone(),
        registry,
        EngineConfig {
            lease: Duration::from_secs(5),
            stale_after: Duration::ZERO,
            sweep_interval: Duration::from_millis(200),
            ..EngineConfig::default()
        },
    );
    let accepted = engine
        .accept("fan", json!({ "n": 5 }), SubmitOptions::default())
        .await
        .unwrap();
    assert!(accepted.created);
    assert_eq!(accepted.job.status, JobStatus::Pending);
    assert_eq!(
        b.tasks
            .count_tasks(&accepted.job.id, None)
            .await
            .unwrap()
            .total(),
        0
    );
    // A second job whose expansion message is lost (the accepting process died after
    // storing it): take every message off the queue before any worker runs.
    let lost = engine
        .accept("fan", json!({ "n": 6 }), SubmitOptions::default())
        .await
        .unwrap();
    let mut kept = Vec::new();
    for d in b.queue.receive(32, Duration::from_secs(60)).await.unwrap() {
        if d.body.contains(accepted.job.id.as_str()) {
            kept.push(d.body.clone());
        }
        b.queue.delete(&d).await.unwrap();
    }
    b.queue.send(&kept, Duration::ZERO).await.unwrap();
    let broken = engine
        .accept("fan", json!({ "n": 0 }), SubmitOptions::default())
        .await
        .unwrap();
    // Accepted (the cheap check passes), refused at expansion.
    let refused = engine
        .accept("fan", json!({ "n": 13 }), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(refused.job.status, JobStatus::Pending);
    // The command line's path runs the expansion's check first: refused, nothing stored.
    let inline = engine
        .submit("fan", json!({ "n": 26 }), SubmitOptions::default())
        .await;
    assert!(
        matches!(&inline, Err(crate::runtime::SubmitError::Invalid(e)) if e.field == "n"),
        "{inline:?}"
    );
    let id = crate::ids::job_id("fan", 1, &json!({ "n": 26 })).unwrap();
    assert!(b.jobs.get_job(&id).await.unwrap().is_none());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        engine.clone(),
        WorkerConfig::default(),
        shutdown.clone(),
    ));
    let sweeper = tokio::spawn(crate::runtime::run_sweeper(
        engine.clone(),
        shutdown.clone(),
    ));
    let first = wait_terminal(&engine, &accepted.job.id, Duration::from_secs(60)).await;
    let second = wait_terminal(&engine, &lost.job.id, Duration::from_secs(60)).await;
    let failed = wait_terminal(&engine, &broken.job.id, Duration::from_secs(60)).await;
    let refused = wait_terminal(&engine, &refused.job.id, Duration::from_secs(60)).await;
    shutdown.cancel();
    worker.await.unwrap();
    sweeper.await.unwrap();
    assert_eq!(first.status, JobStatus::Succeeded);
    assert_eq!(first.planned_tasks, 8, "the expansion sized the job");
    assert_eq!(
        second.status,
        JobStatus::Succeeded,
        "expanded by the sweeper"
    );
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.error.as_ref().map(|e| e.code.as_str()),
        Some(codes::INVALID_PLAN)
    );
    assert_eq!(refused.status, JobStatus::Failed);
    let error = refused.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        (codes::INVALID_PARAMS, "n: 13 is refused at expansion")
    );
    assert_story_complete(&b, &first.id, 1).await;
}

/// One expansion per job, whoever does it: the command line's inline path while workers run,
/// accepted jobs whose expansion message is delivered several times at once, and a sweeper
/// resuming PENDING jobs all the while.
pub async fn runtime_expands_each_job_once_whoever_does_it(b: Backend) {
    let fan = Fan::default();
    let plans = fan.plans.clone();
    let engine = Engine::new(
        b.clone(),
        registry_with(fan),
        EngineConfig {
            lease: Duration::from_secs(5),
            stale_after: Duration::ZERO,
            sweep_interval: Duration::from_millis(100),
            ..EngineConfig::default()
        },
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(tokio::spawn(run_worker(
            engine.clone(),
            WorkerConfig {
                concurrency: 4,
                ..WorkerConfig::default()
            },
            shutdown.clone(),
        )));
    }
    running.push(tokio::spawn(crate::runtime::run_sweeper(
        engine.clone(),
        shutdown.clone(),
    )));
    let mut ids = Vec::new();
    for n in 1..=6 {
        let accepted = engine
            .accept("fan", json!({ "n": n }), SubmitOptions::default())
            .await
            .unwrap();
        // The same expansion message three more times (an at-least-once queue).
        let again = vec![crate::runtime::expand_message(&accepted.job.id); 3];
        b.queue.send(&again, Duration::ZERO).await.unwrap();
        ids.push(accepted.job.id);
    }
    let inline: Vec<_> = (1..=6)
        .map(|n| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .submit("fan", json!({ "n": 200 + n }), SubmitOptions::default())
                    .await
            })
        })
        .collect();
    for submitted in inline {
        ids.push(submitted.await.unwrap().unwrap().job.id);
    }
    for id in &ids {
        let job = wait_terminal(&engine, id, Duration::from_secs(120)).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{id}");
        assert_eq!(
            job.expansion, None,
            "the claim is released when the job starts"
        );
    }
    shutdown.cancel();
    for task in running {
        task.await.unwrap();
    }
    let plans = plans.lock().unwrap().clone();
    for id in &ids {
        assert_eq!(plans.get(id), Some(&1), "expansions of job {id}");
    }
}

/// A task delivered too often without an outcome fails its job POISONED with its message in
/// the poison queue; replaying the message re-runs the job (attempt 2) to success, the
/// job's other poison messages are then stale, and every one is gone in the end.
pub async fn runtime_poison_messages_are_listed_and_replayed(b: Backend) {
    use crate::runtime::{PoisonContent, ReplayError, Replayed};
    let registry = registry();
    let engine = Engine::new(
        b.clone(),
        registry,
        EngineConfig {
            lease: Duration::from_secs(5),
            max_dequeue: 1,
            ..EngineConfig::default()
        },
    );
    let sub = engine
        .submit("fan", json!({ "n": 2 }), SubmitOptions::default())
        .await
        .unwrap();
    // Each first delivery "crashes": received, never answered (Azure leases last 1 s at least).
    let taken = b.queue.receive(32, Duration::from_millis(1)).await.unwrap();
    assert!(!taken.is_empty());
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        engine.clone(),
        WorkerConfig::default(),
        shutdown.clone(),
    ));
    let failed = wait_terminal(&engine, &sub.job.id, Duration::from_secs(60)).await;
    assert_eq!(failed.status, JobStatus::Failed);

    let poison = engine.poison_messages(100).await.unwrap();
    // The submission's expansion message, taken too, may be there (stale: the job expanded).
    let (tasks, others): (Vec<_>, Vec<_>) = poison
        .iter()
        .partition(|e| matches!(e.content, PoisonContent::Tasks { .. }));
    assert!(!tasks.is_empty(), "the poisoned task messages are listed");
    for entry in &tasks {
        let PoisonContent::Tasks { job_id, task_ids } = &entry.content else {
            unreachable!()
        };
        assert_eq!(job_id, &sub.job.id);
        assert!(!task_ids.is_empty());
    }
    assert!(matches!(
        engine.replay_poison("no-such-message").await,
        Err(ReplayError::NotFound(_))
    ));

    let first = engine.replay_poison(&tasks[0].id).await.unwrap();
    let Replayed::Rerun { job } = first else {
        panic!("the first replay re-runs the job: {first:?}")
    };
    assert_eq!((job.id.clone(), job.attempt), (sub.job.id.clone(), 2));
    let done = wait_terminal(&engine, &sub.job.id, Duration::from_secs(60)).await;
    assert_eq!((done.status, done.attempt), (JobStatus::Succeeded, 2));
    for entry in tasks[1..].iter().chain(&others) {
        // Stale, or gone already: a backend may drop a re-run job's messages, poison too.
        let again = engine.replay_poison(&entry.id).await;
        assert!(
            matches!(
                again,
                Ok(Replayed::Stale { .. }) | Err(ReplayError::NotFound(_))
            ),
            "the job re-ran: {again:?}"
        );
    }
    // A message of the first attempt may have been dead-lettered after the listing above
    // (the workers poison each task's message on its own): it is stale too.
    for late in engine.poison_messages(100).await.unwrap() {
        let again = engine.replay_poison(&late.id).await;
        assert!(
            matches!(
                again,
                Ok(Replayed::Stale { .. }) | Err(ReplayError::NotFound(_))
            ),
            "a late poison message of the first attempt: {again:?}"
        );
    }
    assert!(
        engine.poison_messages(100).await.unwrap().is_empty(),
        "replayed messages leave the poison queue"
    );
    shutdown.cancel();
    worker.await.unwrap();
    assert_story_complete(&b, &sub.job.id, 2).await;
}
