//! The functions this binary serves, by name: the HTTP-triggered ones (one per API path of
//! [`ROUTES`], but the live stream), the queue-triggered ones and the timer. The function app
//! (`infra/functions/`) must have exactly one folder per entry (tested in `tests/it`).

use crate::http::openapi::ROUTES;

/// What a queue-triggered function consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueRole {
    /// `<prefix>-jobs`: expansions of accepted jobs, and `{job_type, params}` submissions.
    Jobs,
    /// `<prefix>-tasks`: task messages (and the engine's own expansion messages).
    Tasks,
    /// `<prefix>-tasks-poison`: messages the host gave up on.
    TasksPoison,
}

impl QueueRole {
    pub const ALL: &[QueueRole] = &[QueueRole::Jobs, QueueRole::Tasks, QueueRole::TasksPoison];

    /// The function's name (and folder).
    pub fn function_name(self) -> &'static str {
        match self {
            QueueRole::Jobs => "jobs",
            QueueRole::Tasks => "tasks",
            QueueRole::TasksPoison => "tasks-poison",
        }
    }

    /// The queue it consumes, for a name prefix.
    pub fn queue(self, prefix: &str) -> String {
        format!("{prefix}-{}", self.function_name())
    }
}

/// Where a parked (poison or refused) message goes: a queue of the engine's, distinct from
/// the host's `<queue>-poison` (which the `tasks-poison` function consumes). The poison API
/// lists it.
pub fn dead_letter_queue(prefix: &str) -> String {
    format!("{prefix}-tasks-dead")
}

/// The name of the queue output binding that parks a message.
pub const DEAD_LETTER_BINDING: &str = "dead";
/// The name of the queue trigger binding of every queue-triggered function.
pub const MESSAGE_BINDING: &str = "message";
/// The name of the HTTP trigger and output bindings.
pub const HTTP_REQUEST_BINDING: &str = "req";
pub const HTTP_RESPONSE_BINDING: &str = "res";
/// The timer function: the sweeper.
pub const SWEEP_FUNCTION: &str = "sweep";

/// Routes of the API the Functions host cannot carry, and why.
pub const NOT_SERVED: &[(&str, &str, &str)] = &[
    (
        "get",
        "/api/events",
        "a live Server-Sent Events stream cannot pass through the Functions host (poll GET /api/jobs?... or /api/jobs/{id}/events?after=N instead)",
    ),
    (
        "get",
        "/data/{container}/{path}",
        "the dashboard's data files: the dashboard is served by tessera serve, not by the function app",
    ),
];

/// An HTTP-triggered function: one API path and its methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFunction {
    pub name: String,
    /// The route as the host matches it (no leading slash; `routePrefix` is empty).
    pub route: String,
    pub methods: Vec<&'static str>,
}

/// What an invocation of a function name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Function {
    Http(HttpFunction),
    Queue(QueueRole),
    Sweep,
}

/// The function name of an API path: `/api/jobs/{id}/tasks` -> `api_jobs_id_tasks`.
pub fn function_name(path: &str) -> String {
    path.trim_start_matches('/')
        .chars()
        .filter(|c| !matches!(c, '{' | '}'))
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The HTTP-triggered functions: every path of [`ROUTES`] but [`NOT_SERVED`], in order.
pub fn http_functions() -> Vec<HttpFunction> {
    let mut out: Vec<HttpFunction> = Vec::new();
    for (method, path) in ROUTES {
        if NOT_SERVED.iter().any(|(m, p, _)| m == method && p == path) {
            continue;
        }
        let name = function_name(path);
        match out.iter_mut().find(|f| f.name == name) {
            Some(f) => f.methods.push(method),
            None => out.push(HttpFunction {
                name,
                route: path.trim_start_matches('/').to_owned(),
                methods: vec![method],
            }),
        }
    }
    out
}

/// Every function this binary serves.
pub fn functions() -> Vec<(String, Function)> {
    let mut out: Vec<(String, Function)> = http_functions()
        .into_iter()
        .map(|f| (f.name.clone(), Function::Http(f)))
        .collect();
    for role in QueueRole::ALL {
        out.push((role.function_name().to_owned(), Function::Queue(*role)));
    }
    out.push((SWEEP_FUNCTION.to_owned(), Function::Sweep));
    out
}

/// The function of an invocation's name (`POST /<name>`).
pub fn lookup(name: &str) -> Option<Function> {
    functions()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (path, name) in [
            ("/api/jobs", "api_jobs"),
            (
                "/api/jobs/{id}/tasks/{task_id}",
                "api_jobs_id_tasks_task_id",
            ),
            ("/api/job-types", "api_job_types"),
            ("/openapi.json", "openapi_json"),
            ("/healthz", "healthz"),
        ] {
            assert_eq!(function_name(path), name);
        }
    }

    #[test]
    fn every_route_is_a_function_or_explained_and_names_are_unique() {
        let functions = functions();
        for (method, path) in ROUTES {
            let served = http_functions()
                .iter()
                .any(|f| f.route == path.trim_start_matches('/') && f.methods.contains(method));
            let explained = NOT_SERVED.iter().any(|(m, p, _)| m == method && p == path);
            assert!(
                served != explained,
                "{method} {path}: served {served}, explained {explained}"
            );
        }
        let mut names: Vec<&String> = functions.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), functions.len());
        assert_eq!(lookup("tasks"), Some(Function::Queue(QueueRole::Tasks)));
        assert_eq!(
            lookup("tasks-poison"),
            Some(Function::Queue(QueueRole::TasksPoison))
        );
        assert_eq!(lookup("sweep"), Some(Function::Sweep));
        assert!(
            matches!(lookup("api_jobs_id"), Some(Function::Http(f)) if f.methods == ["get", "delete"])
        );
        assert_eq!(lookup("nope"), None);
    }

    #[test]
    fn queues() {
        assert_eq!(QueueRole::Tasks.queue("tessera"), "tessera-tasks");
        assert_eq!(QueueRole::TasksPoison.queue("p"), "p-tasks-poison");
        assert_eq!(QueueRole::Jobs.queue("p"), "p-jobs");
        assert_eq!(dead_letter_queue("p"), "p-tasks-dead");
    }
}
