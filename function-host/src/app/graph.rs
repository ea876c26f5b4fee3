//! A job's task DAG as a client draws it: fan-outs of more than [`COLLAPSE_ABOVE`] members
//! become one group node with counts per status (unless the caller expands them), edges are
//! deduplicated between drawn nodes, and every node has its layer (longest dependency path
//! from a root). A pure function of the task records, tested by a table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use engine::{TaskKind, TaskRecord, TaskStatus};
use serde::Serialize;

/// Groups with more members than this are drawn as one node unless expanded.
pub const COLLAPSE_ABOVE: usize = 12;

/// One drawn node: a task, or a collapsed group of tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The task ID, or `group:NAME`.
    pub id: String,
    /// `parallel`, `sequential`, `orchestrator`, `barrier`, or `group`.
    pub kind: &'static str,
    /// `task[key]`, or the group's name.
    pub label: String,
    /// A task's status (absent for a group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// The group a task belongs to, or the group a group node stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A group node's members by status, and their number.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<TaskStatus, u64>,
    pub size: u64,
    /// Longest path from a root, in edges.
    pub layer: u32,
}

/// The drawn DAG.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// (from, to) node IDs.
    pub edges: Vec<(String, String)>,
}

fn group_id(group: &str) -> String {
    format!("group:{group}")
}

/// Build the drawn DAG of `tasks`, with the groups in `expand` drawn member by member.
pub fn graph(tasks: &[TaskRecord], expand: &BTreeSet<String>) -> Graph {
    let mut members: BTreeMap<&str, Vec<&TaskRecord>> = BTreeMap::new();
    for t in tasks {
        if let Some(g) = t.group.as_deref() {
            members.entry(g).or_default().push(t);
        }
    }
    // Groups that something waits for or fills are drawn even while they have no member.
    let mut referenced: BTreeSet<&str> = BTreeSet::new();
    for t in tasks {
        referenced.extend(t.waits_for.as_deref());
        referenced.extend(t.child_group.as_deref());
    }
    let collapsed: BTreeSet<&str> = members
        .iter()
        .filter(|(g, m)| m.len() > COLLAPSE_ABOVE && !expand.contains(**g))
        .map(|(g, _)| *g)
        .chain(
            referenced
                .iter()
                .copied()
                .filter(|g| !members.contains_key(g)),
        )
        .collect();
    let node_of = |t: &TaskRecord| -> String {
        match t.group.as_deref() {
            Some(g) if collapsed.contains(g) => group_id(g),
            _ => t.id.to_string(),
        }
    };
    let by_id: HashMap<String, &TaskRecord> = tasks.iter().map(|t| (t.id.to_string(), t)).collect();

    let mut nodes: Vec<Node> = Vec::new();
    for g in &collapsed {
        let mut counts = BTreeMap::new();
        let group = members.get(g).map(Vec::as_slice).unwrap_or_default();
        for t in group {
            *counts.entry(t.status).or_default() += 1;
        }
        nodes.push(Node {
            id: group_id(g),
            kind: "group",
            label: (*g).to_owned(),
            status: None,
            group: Some((*g).to_owned()),
            counts,
            size: group.len() as u64,
            layer: 0,
        });
    }
    for t in tasks {
        if t.group.as_deref().is_some_and(|g| collapsed.contains(g)) {
            continue;
        }
        nodes.push(Node {
            id: t.id.to_string(),
            kind: t.kind.as_str(),
            label: format!("{}[{}]", t.task, t.key),
            status: Some(t.status),
            group: t.group.clone(),
            counts: BTreeMap::new(),
            size: 1,
            layer: 0,
        });
    }

    // Edges: dependencies, barriers after the group they wait for, orchestrators before the
    // group they fill.
    let targets_of_group = |g: &str| -> Vec<String> {
        if collapsed.contains(g) {
            vec![group_id(g)]
        } else {
            members
                .get(g)
                .map(|m| m.iter().map(|t| t.id.to_string()).collect())
                .unwrap_or_default()
        }
    };
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    for t in tasks {
        let to = node_of(t);
        for d in &t.depends_on {
            if let Some(dep) = by_id.get(&d.to_string()) {
                edges.insert((node_of(dep), to.clone()));
            }
        }
        if let Some(g) = t.waits_for.as_deref() {
            for from in targets_of_group(g) {
                edges.insert((from, to.clone()));
            }
        }
        if t.kind == TaskKind::Orchestrator {
            if let Some(g) = t.child_group.as_deref() {
                for member in targets_of_group(g) {
                    edges.insert((to.clone(), member));
                }
            }
        }
    }
    edges.retain(|(a, b)| a != b);

    // Layers: longest path from a root (Bellman-style relaxation, bounded for safety).
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let pairs: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|(a, b)| Some((*index.get(a.as_str())?, *index.get(b.as_str())?)))
        .collect();
    let mut layer = vec![0u32; nodes.len()];
    for _ in 0..nodes.len().max(1) {
        let mut changed = false;
        for &(a, b) in &pairs {
            if layer[b] < layer[a] + 1 {
                layer[b] = layer[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (node, l) in nodes.iter_mut().zip(layer) {
        node.layer = l;
    }
    nodes.sort_by_cached_key(|n| (n.layer, natural(&n.label)));
    Graph {
        nodes,
        edges: edges.into_iter().collect(),
    }
}

/// A sort key that orders the numbers in a label by value: `greet[9]` before `greet[10]`.
fn natural(label: &str) -> String {
    let mut out = String::with_capacity(label.len() + 8);
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if !digits.is_empty() {
            out.push_str(&format!("{:0>20}", digits));
            digits.clear();
        }
    };
    for c in label.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use engine::graph::{HandlerDefaults, PlanScope, plan};
    use engine::{TaskSpec, retry::RetryPolicy};

    use super::*;

    fn tasks(specs: Vec<TaskSpec>) -> Vec<TaskRecord> {
        let job = engine::ids::job_id("t", 1, &serde_json::json!({})).unwrap();
        let defaults = |_: &str| {
            Some(HandlerDefaults {
                task_version: 1,
                retry: RetryPolicy::NO_RETRY,
                timeout: std::time::Duration::from_secs(1),
            })
        };
        plan(&job, specs, PlanScope::Job, &defaults, 0)
            .unwrap()
            .into_records()
            .collect()
    }

    fn fan(n: i64) -> Vec<TaskRecord> {
        let mut specs: Vec<TaskSpec> = (0..n)
            .map(|i| TaskSpec::parallel("greet", i).in_group("g"))
            .collect();
        specs.push(TaskSpec::barrier("summarize", 0, "g"));
        tasks(specs)
    }

    /// (name, drawn graph as "label@layer" nodes and "from>to" edges by label)
    fn shape(g: &Graph) -> (Vec<String>, Vec<String>) {
        let label: HashMap<&str, &str> = g
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.label.as_str()))
            .collect();
        (
            g.nodes
                .iter()
                .map(|n| format!("{}:{}@{}", n.kind, n.label, n.layer))
                .collect(),
            g.edges
                .iter()
                .map(|(a, b)| format!("{}>{}", label[a.as_str()], label[b.as_str()]))
                .collect(),
        )
    }

    #[test]
    fn drawn_graphs() {
        let none = BTreeSet::new();
        let g_expanded: BTreeSet<String> = ["g".to_owned()].into();
        let mut orchestrated = tasks(vec![
            TaskSpec::orchestrator("plan", 0).children_in("render"),
            TaskSpec::barrier("overviews", 0, "render"),
            TaskSpec::sequential("publish", 0).after("overviews", 0),
        ]);
        orchestrated.sort_by(|a, b| a.task.cmp(&b.task));
        let cases: Vec<(
            &str,
            Vec<TaskRecord>,
            &BTreeSet<String>,
            Vec<&str>,
            Vec<&str>,
        )> = vec![
            (
                "a small fan-out is drawn member by member",
                fan(2),
                &none,
                vec![
                    "parallel:greet[0]@0",
                    "parallel:greet[1]@0",
                    "barrier:summarize[0]@1",
                ],
                vec!["greet[0]>summarize[0]", "greet[1]>summarize[0]"],
            ),
            (
                "a large one is one group node",
                fan(20),
                &none,
                vec!["group:g@0", "barrier:summarize[0]@1"],
                vec!["g>summarize[0]"],
            ),
            (
                "unless expanded",
                fan(13),
                &g_expanded,
                vec!["parallel:greet[0]@0"],
                vec!["greet[0]>summarize[0]"],
            ),
            (
                "an orchestrator's group is drawn before it has members",
                orchestrated,
                &none,
                vec![
                    "orchestrator:plan[0]@0",
                    "group:render@1",
                    "barrier:overviews[0]@2",
                    "sequential:publish[0]@3",
                ],
                vec![
                    "overviews[0]>publish[0]",
                    "plan[0]>render",
                    "render>overviews[0]",
                ],
            ),
        ];
        for (name, tasks, expand, nodes, edges) in cases {
            let g = graph(&tasks, expand);
            let (got_nodes, got_edges) = shape(&g);
            for n in &nodes {
                assert!(
                    got_nodes.contains(&n.to_string()),
                    "{name}: {n} in {got_nodes:?}"
                );
            }
            for e in &edges {
                assert!(
                    got_edges.contains(&e.to_string()),
                    "{name}: {e} in {got_edges:?}"
                );
            }
            if expand.is_empty() {
                assert_eq!(got_nodes.len(), nodes.len(), "{name}: {got_nodes:?}");
                assert_eq!(got_edges.len(), edges.len(), "{name}: {got_edges:?}");
            }
        }
    }

    #[test]
    fn members_are_drawn_in_the_order_of_their_keys() {
        let g = graph(&fan(12), &BTreeSet::new());
        let labels: Vec<&str> = g.nodes.iter().map(|n| n.label.as_str()).take(3).collect();
        assert_eq!(labels, ["greet[0]", "greet[1]", "greet[2]"]);
        assert!(natural("greet[9]") < natural("greet[10]"));
    }

    #[test]
    fn a_group_node_counts_its_members_by_status() {
        let mut t = fan(20);
        for (i, task) in t.iter_mut().filter(|t| t.task == "greet").enumerate() {
            task.status = match i % 4 {
                0 => TaskStatus::Succeeded,
                1 => TaskStatus::Failed,
                _ => TaskStatus::Running,
            };
        }
        let g = graph(&t, &BTreeSet::new());
        let group = g.nodes.iter().find(|n| n.kind == "group").unwrap();
        assert_eq!(group.size, 20);
        assert_eq!(group.counts[&TaskStatus::Succeeded], 5);
        assert_eq!(group.counts[&TaskStatus::Failed], 5);
        assert_eq!(group.counts[&TaskStatus::Running], 10);
    }
}
