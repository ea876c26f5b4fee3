//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, built from the code: the
//! routes from [`ROUTES`] (which `router` is checked against, test below), the enums'
//! spellings from the engine's enums (`ALL`), the job types from the registry, the limits
//! from the server's settings, and the error codes from `app::error::codes`.

use serde_json::{Value, json};

use engine::{JobStatus, OutcomePolicy, TaskKind, TaskStatus, TriggerRule};

use crate::app::JobTypeInfo;
use crate::app::error::codes;

/// Every documented route: (method, path). `router` serves exactly these (tested).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/jobs"),
    ("get", "/api/jobs"),
    ("get", "/api/jobs/{id}"),
    ("delete", "/api/jobs/{id}"),
    ("get", "/api/jobs/{id}/tasks"),
    ("get", "/api/jobs/{id}/tasks/{task_id}"),
    ("get", "/api/jobs/{id}/result"),
    ("post", "/api/jobs/{id}/cancel"),
    ("get", "/api/jobs/{id}/events"),
    ("get", "/api/jobs/{id}/graph"),
    ("get", "/api/events"),
    ("get", "/api/job-types"),
    ("get", "/api/poison"),
    ("delete", "/api/poison/{id}"),
    ("post", "/api/poison/{id}/replay"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/data/{container}/{path}"),
    ("get", "/openapi.json"),
];

/// Every route's `operationId`, by (method, path): tools name operations by it (links,
/// schemathesis' stateful phase, client generators).
pub const OPERATION_IDS: &[(&str, &str, &str)] = &[
    ("post", "/api/jobs", "submitJob"),
    ("get", "/api/jobs", "listJobs"),
    ("get", "/api/jobs/{id}", "getJob"),
    ("delete", "/api/jobs/{id}", "deleteJob"),
    ("get", "/api/jobs/{id}/tasks", "listTasks"),
    ("get", "/api/jobs/{id}/tasks/{task_id}", "getTask"),
    ("get", "/api/jobs/{id}/result", "getJobResult"),
    ("post", "/api/jobs/{id}/cancel", "cancelJob"),
    ("get", "/api/jobs/{id}/events", "getJobEvents"),
    ("get", "/api/jobs/{id}/graph", "getJobGraph"),
    ("get", "/api/events", "streamJobChanges"),
    ("get", "/api/job-types", "listJobTypes"),
    ("get", "/api/poison", "listPoisonMessages"),
    ("delete", "/api/poison/{id}", "discardPoisonMessage"),
    ("post", "/api/poison/{id}/replay", "replayPoisonMessage"),
    ("get", "/healthz", "healthz"),
    ("get", "/readyz", "readyz"),
    ("get", "/metrics", "getMetrics"),
    ("get", "/data/{container}/{path}", "getDataFile"),
    ("get", "/openapi.json", "getOpenApiDocument"),
];

/// A container name, as `services::blob::check_container` accepts it.
pub const CONTAINER_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}$";

/// What a job's answer leads to: the operations on that job, its ID taken from the answer
/// (`$response.body#/id`). The events link asks for a JSON page (`after=0`), not the stream.
fn job_links() -> Value {
    let id = json!({"id": "$response.body#/id"});
    let link = |operation: &str, description: &str, parameters: &Value| json!({"operationId": operation, "parameters": parameters, "description": description});
    json!({
        "GetJob": link("getJob", "the job", &id),
        "ListTasks": link("listTasks", "its tasks", &id),
        "GetJobEvents": link("getJobEvents", "its events as a JSON page", &json!({"id": "$response.body#/id", "after": "0"})),
        "GetJobResult": link("getJobResult", "its result", &id),
        "GetJobGraph": link("getJobGraph", "its task graph", &id),
        "CancelJob": link("cancelJob", "cancel it", &id),
        "DeleteJob": link("deleteJob", "delete it (once finished)", &id),
    })
}

/// Add the operation IDs and the links to the document's paths.
fn add_operation_ids_and_links(paths: &mut Value) {
    for (method, path, id) in OPERATION_IDS {
        paths[*path][*method]["operationId"] = json!(id);
    }
    for status in ["200", "202"] {
        paths["/api/jobs"]["post"]["responses"][status]["links"] = job_links();
    }
    paths["/api/jobs/{id}/cancel"]["post"]["responses"]["202"]["links"] = job_links();
    paths["/api/jobs/{id}"]["get"]["responses"]["200"]["links"] = job_links();
    paths["/api/jobs/{id}/tasks"]["get"]["responses"]["200"]["links"] = json!({
        "GetTask": {
            "operationId": "getTask",
            "description": "the first task of the page",
            "parameters": {"id": "$response.body#/items/0/job_id", "task_id": "$response.body#/items/0/id"}
        }
    });
}

fn spellings<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| name(*v)).collect()
}

fn problem_ref() -> Value {
    json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}})
}

/// The error responses every route may give, plus `extra` statuses.
fn errors(extra: &[(&str, &str)]) -> Value {
    let mut out = serde_json::Map::new();
    for (status, description) in [
        (
            "400",
            "invalid request: a bad ID, query parameter or body (problem details)",
        ),
        ("401", "an API key is required or unknown"),
        ("403", "a read-only API key and a write"),
        ("500", "an internal error"),
        (
            "503",
            "storage unavailable, overloaded or timed out (with Retry-After)",
        ),
    ]
    .iter()
    .chain(extra)
    {
        out.insert(
            (*status).to_owned(),
            json!({"description": description, "content": problem_ref()}),
        );
    }
    Value::Object(out)
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": schema_ref(item)},
            "next_cursor": {"type": ["string", "null"]}
        }
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true, "description": description,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    })
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn limit_param(max: usize) -> Value {
    query(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": max}),
        "items per page (default 100)",
    )
}

/// The document, for the registered `job_types`, with a body limit of `max_body` bytes.
pub fn document(types: &[JobTypeInfo], max_body: usize, max_limit: usize) -> Value {
    let job_types: Vec<&str> = types.iter().map(|t| t.job_type).collect();
    let job_statuses = spellings(JobStatus::ALL, JobStatus::as_str);
    let task_statuses = spellings(TaskStatus::ALL, TaskStatus::as_str);
    let id = path_param("id", "job ID: 64 lowercase hex digits");
    let task_id = path_param("task_id", "task ID: 64 lowercase hex digits");
    let poison_id = json!({
        "name": "id", "in": "path", "required": true, "description": "poison message ID",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,128}$"}
    });
    let cursor = query(
        "cursor",
        json!({"type": "string"}),
        "the next_cursor of the previous page",
    );
    let sse = json!({"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": sse_event()}}});
    let mut paths = json!({
        "/api/jobs": {
            "post": {
                "summary": "Accept a job (202), or return the same request's job (200)",
                "parameters": [query("force", json!({"type": "boolean"}), "re-run a FAILED or CANCELLED job")],
                "requestBody": {
                    "required": true,
                    "description": format!("at most {max_body} bytes"),
                    "content": {"application/json": {"schema": schema_ref("SubmitRequest")}}
                },
                "responses": merge(json!({
                    "202": {
                        "description": "accepted: stored PENDING, its expansion queued",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": schema_ref("JobView")}}
                    },
                    "200": {
                        "description": "the same request's existing job",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": schema_ref("JobView")}}
                    }
                }), errors(&[("408", "the body did not arrive within the read timeout"), ("409", "the job exists and cannot be re-run"), ("413", "body over the limit"), ("415", "the body is not JSON")]))
            },
            "get": {
                "summary": "Jobs, newest first",
                "parameters": [
                    query("status", json!({"type": "string", "enum": job_statuses}), "only jobs in this status (any case)"),
                    query("job_type", json!({"type": "string"}), "only jobs of this type"),
                    limit_param(max_limit),
                    cursor.clone()
                ],
                "responses": merge(json!({"200": json_ok("a page of jobs", page_of("Job"))}), errors(&[]))
            }
        },
        "/api/jobs/{id}": {
            "get": {
                "summary": "A job with its task counts and progress",
                "parameters": [id.clone()],
                "responses": merge(json!({"200": json_ok("the job", schema_ref("JobView"))}), errors(&[("404", "no such job")]))
            },
            "delete": {
                "summary": "Delete a finished job with its tasks, messages and events",
                "parameters": [id.clone()],
                "responses": merge(json!({"204": {"description": "deleted"}}), errors(&[("404", "no such job"), ("409", "the job is not finished")]))
            }
        },
        "/api/jobs/{id}/tasks": {
            "get": {
                "summary": "A job's tasks, with their dependencies and groups",
                "parameters": [
                    id.clone(),
                    query("status", json!({"type": "string", "enum": task_statuses}), "only tasks in this status (any case)"),
                    query("name", json!({"type": "string"}), "only tasks of this handler"),
                    query("group", json!({"type": "string"}), "only members of this group"),
                    limit_param(max_limit),
                    cursor
                ],
                "responses": merge(json!({"200": json_ok("a page of tasks", page_of("Task"))}), errors(&[("404", "no such job")]))
            }
        },
        "/api/jobs/{id}/tasks/{task_id}": {
            "get": {
                "summary": "One task: params, attempts, starts, error, timings, result",
                "parameters": [id.clone(), task_id],
                "responses": merge(json!({"200": json_ok("the task", schema_ref("Task"))}), errors(&[("404", "no such job or task")]))
            }
        },
        "/api/jobs/{id}/result": {
            "get": {
                "summary": "A finished job's result",
                "parameters": [id.clone()],
                "responses": merge(json!({"200": json_ok("the result", json!({
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": spellings(JobStatus::ALL, JobStatus::as_str)},
                        "result": {},
                        "error": {"oneOf": [schema_ref("ErrorInfo"), {"type": "null"}]}
                    }
                }))}), errors(&[("404", "no such job"), ("409", "the job is still running")]))
            }
        },
        "/api/jobs/{id}/cancel": {
            "post": {
                "summary": "Cancel a job",
                "parameters": [id.clone()],
                "responses": merge(json!({"202": json_ok("cancelled", schema_ref("JobView"))}), errors(&[("404", "no such job"), ("409", "the job had already finished")]))
            }
        },
        "/api/jobs/{id}/events": {
            "get": {
                "summary": "The job's events: SSE (resumable with Last-Event-ID), or with ?after=N a JSON page",
                "parameters": [
                    id,
                    query("after", json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}), "return a JSON page of the events after this cursor"),
                    limit_param(max_limit),
                    {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"}, "description": "resume the stream after this cursor"}
                ],
                "responses": merge(json!({"200": {
                    "description": "SSE (without `after`) or a JSON page of events (with `after`)",
                    "content": {
                        "text/event-stream": {"schema": sse_event()},
                        "application/json": {"schema": {
                            "type": "object",
                            "required": ["items", "next_after"],
                            "properties": {
                                "items": {"type": "array", "items": {
                                    "type": "object",
                                    "required": ["cursor", "event"],
                                    "properties": {"cursor": {"type": "integer"}, "event": schema_ref("Event")}
                                }},
                                "next_after": {"type": "integer"}
                            }
                        }}
                    }
                }}), errors(&[("404", "no such job")]))
            }
        },
        "/api/jobs/{id}/graph": {
            "get": {
                "summary": "The job's task DAG as a client draws it: fan-outs of more than 12 members collapsed into group nodes with counts per status, each node with its layer",
                "parameters": [
                    id.clone(),
                    query("expand", json!({"type": "string"}), "groups to draw member by member, comma-separated")
                ],
                "responses": merge(json!({"200": json_ok("the graph", json!({
                    "type": "object",
                    "required": ["job", "nodes", "edges"],
                    "properties": {
                        "job": schema_ref("JobView"),
                        "nodes": {"type": "array", "items": {
                            "type": "object",
                            "required": ["id", "kind", "label", "size", "layer"],
                            "properties": {
                                "id": {"type": "string"},
                                "kind": {"type": "string", "enum": ["parallel", "sequential", "orchestrator", "barrier", "group"]},
                                "label": {"type": "string"},
                                "status": {"type": "string", "enum": task_statuses.clone()},
                                "group": {"type": "string"},
                                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                                "size": {"type": "integer"},
                                "layer": {"type": "integer"}
                            }
                        }},
                        "edges": {"type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}}
                    }
                }))}), errors(&[("404", "no such job"), ("422", "too many tasks to draw (GRAPH_TOO_LARGE)")]))
            }
        },
        "/data/{container}/{path}": {
            "get": {
                "summary": "A file of the data store (tiles, COGs, STAC items, TileJSON), for the dashboard's map",
                "parameters": [
                    {"name": "container", "in": "path", "required": true, "schema": {"type": "string", "pattern": CONTAINER_PATTERN}},
                    {"name": "path", "in": "path", "required": true, "schema": {"type": "string"}, "description": "the blob's name; may contain '/'"}
                ],
                "responses": merge(json!({"200": {"description": "the file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}), errors(&[("404", "no such container or blob")]))
            }
        },
        "/api/events": {
            "get": {
                "summary": "SSE of job-level changes (job_created, job_status, job_progress)",
                "responses": merge(json!({"200": sse}), errors(&[]))
            }
        },
        "/api/job-types": {
            "get": {
                "summary": "The registered job types",
                "responses": merge(json!({"200": json_ok("job types", json!({
                    "type": "object",
                    "required": ["items"],
                    "properties": {"items": {"type": "array", "items": {
                        "type": "object",
                        "required": ["job_type", "version", "description", "params_schema"],
                        "properties": {
                            "job_type": {"type": "string", "enum": job_types},
                            "version": {"type": "integer"},
                            "description": {"type": "string"},
                            "params_schema": {"type": "object", "description": "the JSON Schema of its params"}
                        }
                    }}}
                }))}), errors(&[]))
            }
        },
        "/api/poison": {
            "get": {
                "summary": "The oldest poison messages, with what each carries (Azure shows 32 at most)",
                "parameters": [limit_param(max_limit)],
                "responses": merge(json!({"200": json_ok("poison messages", json!({
                    "type": "object",
                    "required": ["items"],
                    "properties": {"items": {"type": "array", "items": schema_ref("PoisonMessage")}}
                }))}), errors(&[]))
            }
        },
        "/api/poison/{id}": {
            "delete": {
                "summary": "Discard a poison message",
                "parameters": [poison_id.clone()],
                "responses": merge(json!({"204": {"description": "discarded"}}), errors(&[("404", "no such poison message")]))
            }
        },
        "/api/poison/{id}/replay": {
            "post": {
                "summary": "Replay a poison message: its finished job re-runs, a pending job's expansion is queued again, a stale message is removed",
                "parameters": [poison_id],
                "responses": merge(json!({"200": json_ok("what the replay did", schema_ref("Replayed"))}), errors(&[
                    ("404", "no such poison message"),
                    ("409", "the message's job still runs"),
                    ("422", "the message cannot be read: discard it")
                ]))
            }
        },
        "/healthz": {"get": {"summary": "The process is up", "security": [], "responses": {"200": json_ok("up", json!({"type": "object"}))}}},
        "/readyz": {"get": {"summary": "Storage answers", "responses": merge(json!({"200": json_ok("ready", json!({"type": "object"}))}), errors(&[]))}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": merge(json!({"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}}), errors(&[]))}},
        "/openapi.json": {"get": {"summary": "This document", "responses": merge(json!({"200": json_ok("OpenAPI 3.1", json!({"type": "object"}))}), errors(&[]))}}
    });
    add_operation_ids_and_links(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tessera",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Job/task orchestration for batch geospatial pipelines (docs/http-api.md)."
        },
        "security": [{"bearer": []}, {}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(types)
        }
    })
}

/// One Server-Sent Event (before OpenAPI 3.2's `itemSchema`, the schema of an event stream
/// describes each event): `id` its cursor, `event` its type, `data` its JSON.
fn sse_event() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": {"type": "string"},
            "data": {"type": "string"},
            "retry": {"type": "integer"}
        }
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.entry(k).or_insert(v);
        }
    }
    a
}

fn schemas(types: &[JobTypeInfo]) -> Value {
    let job_statuses = spellings(JobStatus::ALL, JobStatus::as_str);
    let task_statuses = spellings(TaskStatus::ALL, TaskStatus::as_str);
    let policies = spellings(OutcomePolicy::ALL, OutcomePolicy::as_str);
    let kinds = spellings(TaskKind::ALL, TaskKind::as_str);
    let rules = spellings(TriggerRule::ALL, TriggerRule::as_str);
    let id = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let millis = json!({"type": "integer"});
    let opt_millis = json!({"type": ["integer", "null"]});
    json!({
        "SubmitRequest": {
            "description": "a job type and its params (null params count as {}); cross-field rules and what the params name (blobs that must exist) are checked by the server",
            "oneOf": types.iter().map(|t| {
                // Params with required fields must be given; otherwise they may be left out or
                // null (both count as {}).
                let needs_params = t.params_schema["required"].as_array().is_some_and(|r| !r.is_empty());
                let (required, params) = if needs_params {
                    (json!(["job_type", "params"]), t.params_schema.clone())
                } else {
                    (json!(["job_type"]), json!({"anyOf": [t.params_schema, {"type": "null"}]}))
                };
                json!({
                    "type": "object",
                    "required": required,
                    "additionalProperties": false,
                    "properties": {
                        "job_type": {"const": t.job_type},
                        "params": params,
                        "outcome_policy": {"type": ["string", "null"], "enum": [policies[0], policies[1], null]}
                    }
                })
            }).collect::<Vec<_>>()
        },
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string", "description": format!("one of {}", codes::ALL.join(", "))},
                "errors": {"type": "array", "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}}
                }}
            }
        },
        "ErrorInfo": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "class": {"type": ["string", "null"]}
            }
        },
        "Job": {
            "type": "object",
            "required": ["id", "job_type", "job_version", "params", "status", "attempt", "outcome_policy", "planned_tasks", "created_at", "updated_at"],
            "properties": {
                "id": id.clone(),
                "job_type": {"type": "string"},
                "job_version": {"type": "integer"},
                "params": {},
                "status": {"type": "string", "enum": job_statuses},
                "attempt": {"type": "integer", "minimum": 1},
                "outcome_policy": {"type": "string", "enum": policies},
                "barriers": {"type": "object", "additionalProperties": {"type": "array", "items": id.clone()}},
                "planned_tasks": {"type": "integer", "minimum": 0},
                "result": {},
                "error": schema_ref("ErrorInfo"),
                "created_at": millis.clone(),
                "updated_at": millis.clone(),
                "started_at": opt_millis.clone(),
                "finished_at": opt_millis.clone(),
                "expansion": {
                    "type": "object",
                    "description": "while a PENDING job is being expanded: who expands it and until when",
                    "required": ["owner", "until"],
                    "properties": {"owner": {"type": "string"}, "until": millis.clone()}
                }
            }
        },
        "JobView": {
            "allOf": [schema_ref("Job"), {
                "type": "object",
                "required": ["tasks", "progress"],
                "properties": {
                    "tasks": {"type": "object", "description": "task counts by status", "additionalProperties": {"type": "integer"}},
                    "progress": {"type": "number", "minimum": 0, "maximum": 1}
                }
            }]
        },
        "Task": {
            "type": "object",
            "required": ["job_id", "id", "task", "key", "kind", "status", "attempt", "created_at", "updated_at"],
            "properties": {
                "job_id": id.clone(),
                "id": id.clone(),
                "task": {"type": "string"},
                "key": {"type": ["integer", "string"]},
                "kind": {"type": "string", "enum": kinds},
                "task_version": {"type": "integer"},
                "status": {"type": "string", "enum": task_statuses},
                "attempt": {"type": "integer"},
                "job_attempt": {"type": "integer"},
                "starts": {"type": "integer"},
                "dequeue_count": {"type": "integer"},
                "params": {},
                "depends_on": {"type": "array", "items": id},
                "n_dependents": {"type": "integer"},
                "group": {"type": ["string", "null"]},
                "child_group": {"type": ["string", "null"]},
                "waits_for": {"type": ["string", "null"]},
                "trigger_rule": {"type": "string", "enum": rules},
                "retry": {},
                "timeout_ms": {"type": "integer"},
                "result": {},
                "error": schema_ref("ErrorInfo"),
                "progress": {"type": ["object", "null"]},
                "not_before": opt_millis.clone(),
                "lease_until": opt_millis.clone(),
                "worker": {"type": ["string", "null"]},
                "created_at": millis.clone(),
                "updated_at": millis,
                "started_at": opt_millis.clone(),
                "finished_at": opt_millis
            }
        },
        "PoisonMessage": {
            "type": "object",
            "required": ["id", "poisoned_at", "kind", "body"],
            "properties": {
                "id": {"type": "string"},
                "poisoned_at": {"type": "integer"},
                "kind": {"type": "string", "enum": ["tasks", "expand", "unreadable"]},
                "job_id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "task_ids": {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                "error": {"type": "string", "description": "why an unreadable message cannot be read"},
                "body": {"type": "string", "description": "the message as it was queued"}
            }
        },
        "Replayed": {
            "type": "object",
            "required": ["action"],
            "properties": {
                "action": {"type": "string", "enum": ["rerun", "requeued", "stale"]},
                "job": schema_ref("Job"),
                "job_id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "reason": {"type": "string"}
            }
        },
        "Event": {
            "type": "object",
            "required": ["job_id", "job_attempt", "at", "type"],
            "properties": {
                "job_id": {"type": "string"},
                "job_attempt": {"type": "integer"},
                "at": {"type": "integer"},
                "type": {"type": "string", "enum": engine::events::EventKind::NAMES}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented operation has one unique `operationId`, and every link names one.
    #[test]
    fn operations_have_unique_ids_and_links_name_them() {
        let doc = document(&[], 1024, 1000);
        let mut ids = std::collections::BTreeSet::new();
        for (method, path) in ROUTES {
            let id = doc["paths"][*path][*method]["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id), "{id} twice");
        }
        assert_eq!(OPERATION_IDS.len(), ROUTES.len());
        let mut n_links = 0;
        for (_, path_item) in doc["paths"].as_object().unwrap() {
            for (_, operation) in path_item.as_object().unwrap() {
                for (_, response) in operation["responses"].as_object().unwrap() {
                    for (_, link) in response["links"].as_object().into_iter().flatten() {
                        let target = link["operationId"].as_str().unwrap();
                        assert!(ids.contains(target), "link to {target}");
                        n_links += 1;
                    }
                }
            }
        }
        assert!(n_links > 7 * 4, "{n_links} links");
        let submit = &doc["paths"]["/api/jobs"]["post"]["responses"]["202"]["links"];
        for target in [
            "getJob",
            "listTasks",
            "getJobEvents",
            "cancelJob",
            "deleteJob",
        ] {
            assert!(
                submit
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|l| l["operationId"] == target),
                "submitJob does not link to {target}"
            );
        }
    }

    #[test]
    fn the_container_pattern_is_what_the_blob_store_accepts() {
        let re = |name: &str| {
            // The pattern's three parts, checked by hand (no regex engine here).
            let first = name.chars().next();
            (1..=63).contains(&name.len())
                && first.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        assert_eq!(CONTAINER_PATTERN, "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}$");
        for name in [
            "rasters",
            "a",
            "a.b",
            "_x",
            "-x",
            ".x",
            "",
            "a/b",
            "é",
            &"x".repeat(64),
        ] {
            assert_eq!(
                re(name),
                services::blob::check_container(name).is_ok(),
                "{name:?}"
            );
        }
    }
}
