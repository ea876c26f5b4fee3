//! Property test of the runtime over random DAGs with random failures, retries and duplicate
//! deliveries (in-memory backend, real workers). Checks: no task runs before what it waits
//! for, every task ends terminal, each successor is released once, the job is closed once,
//! and the outcome matches the policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use engine::graph::PlanError;
use engine::memory::MemoryBackend;
use engine::model::StatusCounts;
use engine::ports::Backend;
use engine::runtime::{WorkerConfig, run_worker};
use engine::schedule::job_outcome;
use engine::{
    Controller, Engine, EngineConfig, HandlerError, JobId, JobRecord, JobResults, JobStatus,
    OutcomePolicy, Registry, RetryPolicy, SubmitOptions, TaskContext, TaskHandler, TaskOutput,
    TaskSpec, TaskStatus, TriggerRule, ValidationError,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// How a task behaves: 0 succeeds, 1 fails transiently once then succeeds,
/// 2 fails transiently every time (exhausts its 2 attempts), 3 fails permanently.
type Mode = u8;

#[derive(Debug, Clone)]
struct Case {
    /// (mode, dependencies on earlier tasks, member of group "g")
    tasks: Vec<(Mode, Vec<usize>, bool)>,
    /// Modes of the children an orchestrator adds to "g" (None: no orchestrator).
    children: Option<Vec<Mode>>,
    /// A barrier over "g" with `all_done` (true) or `all_succeeded`.
    barrier: Option<bool>,
    policy: OutcomePolicy,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..8)
        .prop_flat_map(|n| {
            let tasks = (0..n)
                .map(|i| {
                    (
                        0u8..4,
                        proptest::collection::vec(0..i.max(1), 0..=i.min(2)),
                        any::<bool>(),
                    )
                })
                .collect::<Vec<_>>();
            (
                tasks,
                proptest::option::of(proptest::collection::vec(0u8..4, 0..4)),
                proptest::option::of(any::<bool>()),
                any::<bool>(),
                any::<u64>(),
            )
        })
        .prop_map(|(mut tasks, children, barrier, fail_fast, seed)| {
            for (i, (_, deps, _)) in tasks.iter_mut().enumerate() {
                deps.retain(|d| *d < i);
                deps.sort();
                deps.dedup();
            }
            let has_group = tasks.iter().any(|t| t.2) || children.is_some();
            Case {
                tasks,
                children,
                barrier: barrier.filter(|_| has_group),
                policy: if fail_fast {
                    OutcomePolicy::FailFast
                } else {
                    OutcomePolicy::Continue
                },
                seed,
            }
        })
}

fn spec(name: &str, i: usize, mode: Mode, deps: &[usize]) -> TaskSpec {
    let base = if deps.is_empty() {
        TaskSpec::parallel(name, i)
    } else {
        TaskSpec::sequential(name, i)
    };
    let spec = deps.iter().fold(base, |s, d| s.after(name, *d));
    spec.params(json!({ "mode": mode }))
        .retry(RetryPolicy::new(2, 1, 2))
}

struct Prop;

#[async_trait]
impl Controller for Prop {
    fn job_type(&self) -> &'static str {
        "prop"
    }
    fn description(&self) -> &'static str {
        "random DAG"
    }
    fn validate(&self, params: Value) -> Result<Value, ValidationError> {
        Ok(params)
    }
    fn plan(&self, _: &JobId, params: &Value) -> Result<Vec<TaskSpec>, PlanError> {
        let case: Vec<(Mode, Vec<usize>, bool)> =
            serde_json::from_value(params["tasks"].clone()).unwrap();
        let mut specs: Vec<TaskSpec> = case
            .iter()
            .enumerate()
            .map(|(i, (mode, deps, grouped))| {
                let s = spec("chaos", i, *mode, deps);
                if *grouped { s.in_group("g") } else { s }
            })
            .collect();
        if let Some(children) = params.get("children").filter(|c| !c.is_null()) {
            specs.push(
                TaskSpec::orchestrator("spawn", 0)
                    .children_in("g")
                    .params(json!({ "children": children })),
            );
        }
        if let Some(all_done) = params["barrier"].as_bool() {
            let rule = if all_done {
                TriggerRule::AllDone
            } else {
                TriggerRule::AllSucceeded
            };
            specs.push(TaskSpec::barrier("check_barrier", 0, "g").trigger(rule));
        }
        Ok(specs)
    }
    async fn aggregate(&self, _: &JobRecord, results: &JobResults) -> Result<Value, HandlerError> {
        Ok(json!({ "tasks": results.counts().await?.total() }))
    }
}

/// Shared observations of the handlers.
#[derive(Default)]
struct Seen {
    attempts: Mutex<HashMap<String, u32>>,
    violations: Mutex<Vec<String>>,
}

struct Chaos {
    backend: Arc<MemoryBackend>,
    seen: Arc<Seen>,
    name: &'static str,
}

#[async_trait]
impl TaskHandler for Chaos {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        use engine::ports::TaskReads;
        let me = self
            .backend
            .get_task(&ctx.job_id, &ctx.task_id)
            .await
            .unwrap()
            .unwrap();
        // Nothing runs before what it waits for.
        for dep in &me.depends_on {
            let d = self
                .backend
                .get_task(&ctx.job_id, dep)
                .await
                .unwrap()
                .unwrap();
            if d.status != TaskStatus::Succeeded {
                self.seen.violations.lock().unwrap().push(format!(
                    "{}[{}] ran while a dependency was {}",
                    me.task, me.key, d.status
                ));
            }
        }
        if let Some(group) = &me.waits_for {
            if self
                .backend
                .any_unfinished(&ctx.job_id, Some(group))
                .await
                .unwrap()
            {
                self.seen
                    .violations
                    .lock()
                    .unwrap()
                    .push("barrier ran before its group finished".into());
            }
        }
        let attempt = {
            let mut attempts = self.seen.attempts.lock().unwrap();
            let n = attempts.entry(ctx.task_id.to_string()).or_default();
            *n += 1;
            *n
        };
        if self.name == "spawn" {
            let modes: Vec<Mode> = serde_json::from_value(ctx.params["children"].clone()).unwrap();
            let kids = modes
                .iter()
                .enumerate()
                .map(|(i, m)| spec("chaos", 100 + i, *m, &[]))
                .collect();
            return TaskOutput::with_children("spawned", kids);
        }
        match ctx.params["mode"].as_u64().unwrap_or(0) {
            1 if attempt == 1 => Err(HandlerError::transient("FLAKY", "first attempt fails")),
            2 => Err(HandlerError::transient("FLAKY", "always fails")),
            3 => Err(HandlerError::permanent("BROKEN", "fails for good")),
            _ => TaskOutput::value(attempt),
        }
    }
}

/// Final statuses under the `continue` policy, computed independently of the engine.
fn expected_counts(case: &Case) -> StatusCounts {
    let ok = |m: Mode| m <= 1;
    let mut status: Vec<TaskStatus> = Vec::new();
    for (mode, deps, _) in &case.tasks {
        let upstream_ok = deps.iter().all(|d| status[*d] == TaskStatus::Succeeded);
        status.push(if !upstream_ok {
            TaskStatus::Skipped
        } else if ok(*mode) {
            TaskStatus::Succeeded
        } else {
            TaskStatus::Failed
        });
    }
    let mut members: Vec<TaskStatus> = case
        .tasks
        .iter()
        .zip(&status)
        .filter(|(t, _)| t.2)
        .map(|(_, s)| *s)
        .collect();
    if let Some(children) = &case.children {
        status.push(TaskStatus::Succeeded); // the orchestrator itself
        for m in children {
            let s = if ok(*m) {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Failed
            };
            status.push(s);
            members.push(s);
        }
    }
    if let Some(all_done) = case.barrier {
        let all_succeeded = members.iter().all(|s| *s == TaskStatus::Succeeded);
        status.push(if all_done || all_succeeded {
            TaskStatus::Succeeded
        } else {
            TaskStatus::Skipped
        });
    }
    let mut counts = StatusCounts::default();
    for s in status {
        counts.add(s, 1);
    }
    counts
}

fn check(case: Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let memory = Arc::new(MemoryBackend::new().with_duplicates(case.seed, 0.3));
        let seen = Arc::new(Seen::default());
        let handler = |name| Chaos { backend: memory.clone(), seen: seen.clone(), name };
        let registry = Registry::default()
            .with_controller(Prop)
            .with_handler(handler("chaos"))
            .with_handler(handler("spawn"))
            .with_handler(handler("check_barrier"));
        let config = EngineConfig { lease: Duration::from_secs(10), ..EngineConfig::default() };
        let engine = Engine::new(Backend::from_all(memory.clone()), registry, config);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let c = WorkerConfig { concurrency: 3, worker_id: format!("w{i}"), ..WorkerConfig::default() };
                tokio::spawn(run_worker(engine.clone(), c, shutdown.clone()))
            })
            .collect();
        let params = json!({ "tasks": case.tasks, "children": case.children, "barrier": case.barrier, "seed": case.seed });
        let options = SubmitOptions { outcome_policy: Some(case.policy), ..SubmitOptions::default() };
        let job = engine.submit("prop", params, options).await.unwrap().job;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let done = loop {
            let j = engine.backend().jobs.get_job(&job.id).await.unwrap().unwrap();
            if j.status.is_terminal() && !engine.backend().tasks.any_unfinished(&job.id, None).await.unwrap() {
                break j;
            }
            prop_assert!(tokio::time::Instant::now() < deadline, "job stuck: {:?}", j.status);
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        shutdown.cancel();
        for w in workers {
            w.await.unwrap();
        }

        let violations = seen.violations.lock().unwrap().clone();
        prop_assert!(violations.is_empty(), "{violations:?}");
        let counts = engine.backend().tasks.count_tasks(&done.id, None).await.unwrap();
        prop_assert_eq!(counts.unfinished(), 0);
        let log = memory.task_log();
        let mut releases: HashMap<&str, usize> = HashMap::new();
        for change in &log {
            if change.from == Some(TaskStatus::Pending) && change.to == TaskStatus::Queued {
                *releases.entry(change.id.as_str()).or_default() += 1;
            }
        }
        prop_assert!(releases.values().all(|n| *n == 1), "a task was released twice: {releases:?}");
        let closes = memory.job_log().iter().filter(|c| c.from.is_some() && c.to.is_terminal()).count();
        prop_assert_eq!(closes, 1, "job closed once");

        let expected = expected_counts(&case);
        let any_failure = expected.get(TaskStatus::Failed) > 0;
        match case.policy {
            OutcomePolicy::Continue => {
                prop_assert_eq!(&counts, &expected);
                prop_assert_eq!(Some(done.status), job_outcome(OutcomePolicy::Continue, &expected));
            }
            OutcomePolicy::FailFast => {
                let status = if any_failure { JobStatus::Failed } else { JobStatus::Succeeded };
                prop_assert_eq!(done.status, status);
                if !any_failure {
                    prop_assert_eq!(&counts, &expected);
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn random_dags_run_correctly(case in case()) {
        check(case)?;
    }
}
