//! Plan validation: a petgraph DAG per job (or per orchestrator fan-out), checked before
//! anything is stored, and turned into task records.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::ids::{JobId, TaskId, TaskKey, task_id};
use crate::model::{Millis, TaskKind, TaskRecord, TaskRef, TaskSpec, TaskStatus};
use crate::retry::RetryPolicy;

/// A plan that cannot run. Every variant names the tasks involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("the plan has no tasks")]
    Empty,
    #[error("task {task} appears more than once in the plan")]
    DuplicateTask { task: TaskRef },
    #[error("task {task} depends on {missing}, which is not in the plan")]
    UnknownDependency { task: TaskRef, missing: TaskRef },
    #[error("dependency cycle between tasks {}", list(.tasks))]
    Cycle { tasks: Vec<TaskRef> },
    #[error(
        "barrier {barrier} waits for group {group:?}, which is unknown or empty (no task joins it and no orchestrator feeds it)"
    )]
    UnknownGroup { barrier: TaskRef, group: String },
    #[error("task {task}: {reason}")]
    InvalidKind { task: TaskRef, reason: &'static str },
    #[error("task {task}: no handler is registered for {:?}", .task.task)]
    NoHandler { task: TaskRef },
}

fn list(tasks: &[TaskRef]) -> String {
    tasks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the plan needs to know about a handler.
#[derive(Clone, Copy, Debug)]
pub struct HandlerDefaults {
    pub task_version: u32,
    pub retry: RetryPolicy,
    pub timeout: Duration,
}

/// Where a set of specs comes from.
#[derive(Clone, Copy, Debug)]
pub enum PlanScope<'a> {
    /// The controller's plan at submission: the whole initial DAG.
    Job,
    /// An orchestrator's children: they join `group`, may depend only on each other, and may
    /// not be barriers (barriers are planned at submission so groups are known up front).
    Children { group: Option<&'a str> },
}

/// A validated plan. Records are built lazily (`into_records`), so a million-task plan never
/// holds every record in memory at once.
#[derive(Debug)]
pub struct Plan {
    /// Barrier IDs per group they wait for.
    pub barriers: BTreeMap<String, Vec<TaskId>>,
    job_id: JobId,
    now: Millis,
    specs: Vec<TaskSpec>,
    ids: Vec<TaskId>,
    deps: Vec<Vec<u32>>,
    n_dependents: Vec<u32>,
    defaults: HashMap<String, HandlerDefaults>,
}

impl Plan {
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The task records, in plan order. Tasks without dependencies (not barriers) start QUEUED.
    pub fn into_records(self) -> impl Iterator<Item = TaskRecord> {
        let Plan {
            job_id,
            now,
            specs,
            ids,
            deps,
            n_dependents,
            defaults,
            ..
        } = self;
        specs
            .into_iter()
            .zip(deps)
            .zip(n_dependents)
            .enumerate()
            .map(move |(i, ((spec, deps), n_dependents))| {
                let defaults = defaults[&spec.task];
                let depends_on: Vec<TaskId> =
                    deps.iter().map(|d| ids[*d as usize].clone()).collect();
                let is_root = depends_on.is_empty() && spec.kind != TaskKind::Barrier;
                let child_group = match spec.kind {
                    TaskKind::Orchestrator => spec.child_group.or_else(|| spec.group.clone()),
                    _ => None,
                };
                TaskRecord {
                    job_id: job_id.clone(),
                    id: ids[i].clone(),
                    task: spec.task,
                    key: spec.key,
                    kind: spec.kind,
                    task_version: defaults.task_version,
                    status: if is_root {
                        TaskStatus::Queued
                    } else {
                        TaskStatus::Pending
                    },
                    attempt: 1,
                    job_attempt: 1,
                    starts: 0,
                    dequeue_count: 0,
                    params: spec.params,
                    depends_on,
                    n_dependents,
                    group: spec.group,
                    child_group,
                    waits_for: spec.waits_for,
                    trigger_rule: spec.trigger_rule,
                    retry: spec.retry.unwrap_or(defaults.retry),
                    timeout_ms: u64::try_from(spec.timeout.unwrap_or(defaults.timeout).as_millis())
                        .unwrap_or(u64::MAX),
                    result: None,
                    error: None,
                    progress: None,
                    not_before: None,
                    lease_until: None,
                    worker: None,
                    created_at: now,
                    updated_at: now,
                    started_at: None,
                    finished_at: None,
                    revision: Default::default(),
                }
            })
    }
}

/// Validate `specs` and build the records. `handler` answers the defaults of a handler name.
pub fn plan(
    job_id: &JobId,
    mut specs: Vec<TaskSpec>,
    scope: PlanScope<'_>,
    handler: &dyn Fn(&str) -> Option<HandlerDefaults>,
    now: Millis,
) -> Result<Plan, PlanError> {
    if specs.is_empty() {
        return Err(PlanError::Empty);
    }
    if let PlanScope::Children { group } = scope {
        for spec in &mut specs {
            if spec.kind == TaskKind::Barrier {
                return Err(PlanError::InvalidKind {
                    task: spec.reference(),
                    reason: "an orchestrator cannot create barriers (plan them at submission)",
                });
            }
            spec.group = group.map(str::to_owned);
        }
    }

    let (deps, n_dependents) = {
        // Borrowed keys: no copy of a million names.
        let mut index: HashMap<(&str, &TaskKey), usize> = HashMap::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            check_kind(spec)?;
            if index.insert((spec.task.as_str(), &spec.key), i).is_some() {
                return Err(PlanError::DuplicateTask {
                    task: spec.reference(),
                });
            }
        }

        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            if let Some(g) = &spec.group {
                members.entry(g.as_str()).or_default().push(i);
            }
            if spec.kind == TaskKind::Orchestrator {
                if let Some(g) = spec.child_group.as_ref().or(spec.group.as_ref()) {
                    if spec.group.as_deref() != Some(g.as_str()) {
                        members.entry(g.as_str()).or_default().push(i);
                    }
                }
            }
        }

        let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(specs.len(), specs.len());
        for _ in &specs {
            graph.add_node(());
        }
        let mut n_dependents = vec![0u32; specs.len()];
        let mut deps: Vec<Vec<u32>> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let mut own = Vec::with_capacity(spec.depends_on.len());
            for dep in &spec.depends_on {
                let Some(&d) = index.get(&(dep.task.as_str(), &dep.key)) else {
                    return Err(PlanError::UnknownDependency {
                        task: spec.reference(),
                        missing: dep.clone(),
                    });
                };
                graph.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
                n_dependents[d] += 1;
                own.push(d as u32);
            }
            deps.push(own);
            if let Some(group) = &spec.waits_for {
                let Some(group_members) = members.get(group.as_str()) else {
                    return Err(PlanError::UnknownGroup {
                        barrier: spec.reference(),
                        group: group.clone(),
                    });
                };
                for &m in group_members {
                    graph.add_edge(NodeIndex::new(m), NodeIndex::new(i), ());
                }
            }
        }
        if toposort(&graph, None).is_err() {
            let mut tasks: Vec<TaskRef> = tarjan_scc(&graph)
                .into_iter()
                .filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
                .flatten()
                .map(|n| specs[n.index()].reference())
                .collect();
            tasks.sort();
            return Err(PlanError::Cycle { tasks });
        }
        (deps, n_dependents)
    };

    let ids: Vec<TaskId> = specs
        .iter()
        .map(|s| task_id(job_id, &s.task, &s.key))
        .collect();
    let mut defaults = HashMap::new();
    let mut barriers: BTreeMap<String, Vec<TaskId>> = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        if !defaults.contains_key(&spec.task) {
            let Some(d) = handler(&spec.task) else {
                return Err(PlanError::NoHandler {
                    task: spec.reference(),
                });
            };
            defaults.insert(spec.task.clone(), d);
        }
        if let Some(group) = &spec.waits_for {
            barriers
                .entry(group.clone())
                .or_default()
                .push(ids[i].clone());
        }
    }
    Ok(Plan {
        barriers,
        job_id: job_id.clone(),
        now,
        specs,
        ids,
        deps,
        n_dependents,
        defaults,
    })
}

fn check_kind(spec: &TaskSpec) -> Result<(), PlanError> {
    let reason = match spec.kind {
        TaskKind::Parallel if !spec.depends_on.is_empty() => {
            Some("parallel tasks have no dependencies (use kind sequential)")
        }
        TaskKind::Sequential if spec.depends_on.is_empty() => {
            Some("sequential tasks need depends_on")
        }
        TaskKind::Barrier if spec.waits_for.is_none() => {
            Some("barrier tasks need waits_for (a group)")
        }
        kind if kind != TaskKind::Barrier && spec.waits_for.is_some() => {
            Some("only barrier tasks may wait for a group")
        }
        kind if kind != TaskKind::Orchestrator && spec.child_group.is_some() => {
            Some("only orchestrator tasks have a child_group")
        }
        _ => None,
    };
    match reason {
        Some(reason) => Err(PlanError::InvalidKind {
            task: spec.reference(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::job_id;
    use serde_json::json;

    fn defaults(name: &str) -> Option<HandlerDefaults> {
        (name != "nobody").then_some(HandlerDefaults {
            task_version: 2,
            retry: RetryPolicy::STANDARD,
            timeout: Duration::from_secs(5),
        })
    }

    fn check(specs: Vec<TaskSpec>, expected: Result<&str, &str>) {
        let job = job_id("t", 1, &json!({})).unwrap();
        let got = plan(&job, specs, PlanScope::Job, &defaults, 0);
        match (got, expected) {
            (Ok(p), Ok(shape)) => {
                let actual: Vec<String> = p
                    .into_records()
                    .map(|t| format!("{}[{}]:{}:{}", t.task, t.key, t.status, t.n_dependents))
                    .collect();
                assert_eq!(actual.join(" "), shape);
            }
            (Err(e), Err(message)) => assert_eq!(e.to_string(), message),
            (got, expected) => panic!("expected {expected:?}, got {got:?}"),
        }
    }

    #[test]
    fn valid_plans() {
        check(
            vec![
                TaskSpec::parallel("a", 0),
                TaskSpec::parallel("a", 1).in_group("g"),
                TaskSpec::sequential("b", "x").after("a", 0),
                TaskSpec::barrier("c", 0, "g").after("b", "x"),
            ],
            Ok("a[0]:QUEUED:1 a[1]:QUEUED:0 b[x]:PENDING:1 c[0]:PENDING:0"),
        );
        // A group fed only by an orchestrator is not empty.
        check(
            vec![
                TaskSpec::orchestrator("o", 0).children_in("kids"),
                TaskSpec::barrier("z", 0, "kids"),
            ],
            Ok("o[0]:QUEUED:0 z[0]:PENDING:0"),
        );
    }

    #[test]
    fn invalid_plans_name_the_tasks() {
        check(vec![], Err("the plan has no tasks"));
        check(
            vec![TaskSpec::parallel("a", 0), TaskSpec::parallel("a", 0)],
            Err("task a[0] appears more than once in the plan"),
        );
        check(
            vec![
                TaskSpec::parallel("a", 0),
                TaskSpec::sequential("b", 0).after("a", 7),
            ],
            Err("task b[0] depends on a[7], which is not in the plan"),
        );
        check(
            vec![
                TaskSpec::parallel("root", 0),
                TaskSpec::sequential("x", 0).after("root", 0).after("y", 0),
                TaskSpec::sequential("y", 0).after("x", 0),
            ],
            Err("dependency cycle between tasks x[0], y[0]"),
        );
        check(
            vec![
                TaskSpec::parallel("a", 0).in_group("g"),
                TaskSpec::barrier("s", 0, "h"),
            ],
            Err(
                "barrier s[0] waits for group \"h\", which is unknown or empty (no task joins it and no orchestrator feeds it)",
            ),
        );
        // A barrier inside the group it waits for waits for itself.
        check(
            vec![
                TaskSpec::parallel("a", 0).in_group("g"),
                TaskSpec::barrier("s", 0, "g").in_group("g"),
            ],
            Err("dependency cycle between tasks s[0]"),
        );
        check(
            vec![
                TaskSpec::parallel("a", 0),
                TaskSpec::parallel("b", 0).after("a", 0),
            ],
            Err("task b[0]: parallel tasks have no dependencies (use kind sequential)"),
        );
        check(
            vec![TaskSpec::sequential("b", 0)],
            Err("task b[0]: sequential tasks need depends_on"),
        );
        check(
            vec![TaskSpec::parallel("nobody", 0)],
            Err("task nobody[0]: no handler is registered for \"nobody\""),
        );
    }

    #[test]
    fn children_join_the_group_and_cannot_be_barriers() {
        let job = job_id("t", 1, &json!({})).unwrap();
        let kids = vec![
            TaskSpec::parallel("k", 0),
            TaskSpec::sequential("k", 1).after("k", 0),
        ];
        let p = plan(
            &job,
            kids,
            PlanScope::Children { group: Some("g") },
            &defaults,
            0,
        )
        .unwrap();
        let records: Vec<TaskRecord> = p.into_records().collect();
        assert!(records.iter().all(|t| t.group.as_deref() == Some("g")));
        assert_eq!(
            records
                .iter()
                .filter(|t| t.status == TaskStatus::Queued)
                .count(),
            1
        );
        let err = plan(
            &job,
            vec![TaskSpec::barrier("b", 0, "g")],
            PlanScope::Children { group: None },
            &defaults,
            0,
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::InvalidKind { .. }));
    }
}
