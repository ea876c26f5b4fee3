//! The API's handlers: thin translations between HTTP and the application layer's
//! operations. No handler repeats a cross-cutting concern (those are layers, `mod.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::events::JobEvent;
use engine::ports::{PageRequest, TaskQuery};
use engine::{JobStatus, OutcomePolicy, SubmitOptions, TaskStatus};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::problem::{ApiBody, ApiError, ApiQuery, json_body};
use crate::app::error::{AppError, ErrorKind, codes};
use crate::app::{App, JobsQuery, parse_job_id, parse_task_id};

type ApiResult<T> = Result<T, ApiError>;

/// The body of `POST /api/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    pub job_type: String,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub outcome_policy: Option<OutcomePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    #[serde(default)]
    pub force: bool,
}

/// Most items per page, and the default.
pub(crate) const MAX_LIMIT: usize = 1_000;
const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsParams {
    pub status: Option<String>,
    pub job_type: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksParams {
    pub status: Option<String>,
    pub name: Option<String>,
    pub group: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

/// A page of a listing: the items and the cursor of the next page (`null` on the last).
#[derive(Debug, Serialize)]
pub struct PageBody<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn page_request(limit: Option<usize>, cursor: Option<String>) -> Result<PageRequest, AppError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid_field(
            codes::INVALID_QUERY,
            "query",
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(PageRequest {
        after: cursor,
        limit,
    })
}

fn parse_status<S: std::str::FromStr>(
    field: &str,
    value: Option<String>,
) -> Result<Option<S>, AppError> {
    value
        .map(|v| {
            v.to_ascii_uppercase().parse::<S>().map_err(|_| {
                AppError::invalid_field(
                    codes::INVALID_QUERY,
                    "query",
                    field,
                    format!("unknown status {v:?}"),
                )
            })
        })
        .transpose()
}

fn location(id: &engine::JobId) -> String {
    format!("/api/jobs/{id}")
}

pub async fn submit(
    State(app): State<Arc<App>>,
    ApiQuery(query): ApiQuery<ForceQuery>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> ApiResult<Response> {
    let body: SubmitBody = json_body(&headers, &body)?;
    let options = SubmitOptions {
        force: query.force,
        outcome_policy: body.outcome_policy,
    };
    let (submission, view) = app
        .accept(&body.job_type, body.params, options)
        .await
        .map_err(|mut e| {
            // Over HTTP the params are a member of the body: name the fields from there.
            for f in &mut e.fields {
                f.field = format!("params.{}", f.field);
            }
            e
        })?;
    let status = if submission.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, location(&view.job.id))],
        Json(view),
    )
        .into_response())
}

pub async fn list_jobs(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<JobsParams>,
) -> ApiResult<Json<PageBody<engine::JobRecord>>> {
    let query = JobsQuery {
        status: parse_status::<JobStatus>("status", q.status)?,
        job_type: q.job_type,
        page: page_request(q.limit, q.cursor)?,
    };
    let page = app.list_jobs(&query).await?;
    Ok(Json(PageBody {
        items: page.items,
        next_cursor: page.next,
    }))
}

pub async fn get_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<Json<engine::runtime::JobView>> {
    Ok(Json(app.status(&parse_job_id(&id)?).await?))
}

pub async fn list_tasks(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TasksParams>,
) -> ApiResult<Json<PageBody<engine::TaskRecord>>> {
    let id = parse_job_id(&id)?;
    let query = TaskQuery {
        group: q.group,
        status: parse_status::<TaskStatus>("status", q.status)?,
    };
    let page = app
        .list_tasks(
            &id,
            &query,
            q.name.as_deref(),
            page_request(q.limit, q.cursor)?,
        )
        .await?;
    Ok(Json(PageBody {
        items: page.items,
        next_cursor: page.next,
    }))
}

pub async fn get_task(
    State(app): State<Arc<App>>,
    Path((id, task_id)): Path<(String, String)>,
) -> ApiResult<Json<engine::TaskRecord>> {
    let id = parse_job_id(&id)?;
    let task_id = parse_task_id(&task_id)?;
    Ok(Json(app.task(&id, &task_id).await?))
}

pub async fn get_result(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let view = app.result(&parse_job_id(&id)?).await?;
    Ok(Json(json!({
        "id": view.job.id,
        "status": view.job.status,
        "result": view.job.result,
        "error": view.job.error,
    })))
}

pub async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_job_id(&id)?;
    let view = app.cancel(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

pub async fn delete_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.delete(&parse_job_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphParams {
    /// Groups to draw member by member, comma-separated.
    pub expand: Option<String>,
}

pub async fn graph(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<GraphParams>,
) -> ApiResult<Json<Value>> {
    let expand = query
        .expand
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    let (view, graph) = app.graph(&parse_job_id(&id)?, &expand).await?;
    Ok(Json(
        json!({ "job": view, "nodes": graph.nodes, "edges": graph.edges }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonParams {
    pub limit: Option<usize>,
}

pub async fn list_poison(
    State(app): State<Arc<App>>,
    ApiQuery(query): ApiQuery<PoisonParams>,
) -> ApiResult<Json<Value>> {
    let limit = page_request(query.limit, None)?.limit;
    Ok(Json(json!({ "items": app.poison(limit).await? })))
}

pub async fn replay_poison(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<Json<engine::runtime::Replayed>> {
    Ok(Json(app.replay_poison(&id).await?))
}

pub async fn discard_poison(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.discard_poison(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn job_types(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({ "items": app.job_types() }))
}

/// How often the stream looks for new events, and the keep-alive comment interval.
const POLL: Duration = Duration::from_millis(25);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/jobs/{id}/events`: with `?after=N` a JSON page of events after cursor N;
/// otherwise a Server-Sent Events stream (resumable with `Last-Event-ID`), closed once every
/// event of the finished job has been sent.
pub async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsParams>,
    axum::Extension(shutdown): axum::Extension<tokio_util::sync::CancellationToken>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_job_id(&id)?;
    app.status(&id).await?;
    let limit = page_request(q.limit, None)?.limit;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    AppError::invalid_field(
                        codes::INVALID_REQUEST,
                        "header",
                        "Last-Event-ID",
                        "must be an event cursor (an integer)",
                    )
                })?,
        ),
        None => None,
    };
    if let Some(after) = q.after {
        let events = app.events_after(&id, after, limit).await?;
        let next = events.last().map_or(after, |(seq, _)| *seq);
        let items: Vec<Value> = events
            .into_iter()
            .map(|(seq, e)| json!({ "cursor": seq, "event": e }))
            .collect();
        return Ok(Json(json!({ "items": items, "next_after": next })).into_response());
    }
    let after = resume.unwrap_or(0);
    let stream = event_stream(app, id, after, shutdown);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn sse_event(seq: u64, event: &JobEvent) -> Event {
    Event::default()
        .id(seq.to_string())
        .event(event.kind.name())
        .data(serde_json::to_string(event).unwrap_or_else(|_| "{}".into()))
}

/// Events after `after`, as they are stored, until every event of the job has been sent:
/// the stream ends once the job and all its tasks are finished (not at `job_completed`: a
/// cancel's `tasks_ended` and its running tasks' `task_completed` come after it) and a last
/// read, the log's settle delay later, finds nothing new.
fn event_stream(
    app: Arc<App>,
    id: engine::JobId,
    after: u64,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct State {
        app: Arc<App>,
        id: engine::JobId,
        after: u64,
        pending: std::collections::VecDeque<(u64, JobEvent)>,
        /// When the job was first seen complete (no event can come any more).
        complete_at: Option<tokio::time::Instant>,
        shutdown: tokio_util::sync::CancellationToken,
    }
    let state = State {
        app,
        id,
        after,
        pending: Default::default(),
        complete_at: None,
        shutdown,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some((seq, event)) = s.pending.pop_front() {
                s.after = seq;
                return Some((Ok(sse_event(seq, &event)), s));
            }
            if s.shutdown.is_cancelled() {
                return None;
            }
            let read_at = tokio::time::Instant::now();
            match s.app.events_after(&s.id, s.after, 500).await {
                Ok(events) if !events.is_empty() => s.pending.extend(events),
                Ok(_) => {
                    if let Some(at) = s.complete_at {
                        if read_at >= at + s.app.event_settle_delay() {
                            return None; // complete, and read once more after it settled
                        }
                    } else {
                        match s.app.events_complete(&s.id).await {
                            Ok(None) => return None, // the job was removed
                            Ok(Some(true)) => {
                                s.complete_at = Some(tokio::time::Instant::now());
                                continue; // read once more: an event may precede the check
                            }
                            Ok(Some(false)) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "event stream status read failed; retrying")
                            }
                        }
                    }
                    tokio::select! {
                        _ = s.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed; retrying");
                    tokio::time::sleep(POLL * 20).await;
                }
            }
        }
    })
}

/// How often the jobs stream looks at the newest jobs, and how many it watches.
const JOBS_POLL: Duration = Duration::from_millis(250);
const JOBS_WATCHED: usize = 200;

/// `GET /api/events`: a live stream of job-level changes for a jobs list, among the newest
/// 200 jobs: `job_created`, `job_status` (started, finished, ...), `job_progress` (running
/// jobs, when their progress moved). Each event's data is the job's view (record, task
/// counts, progress). Event IDs count this connection's events; a reconnect starts with the
/// current state (every watched job as `job_created`).
pub async fn job_events(
    State(app): State<Arc<App>>,
    axum::Extension(shutdown): axum::Extension<tokio_util::sync::CancellationToken>,
) -> Response {
    struct Watch {
        app: Arc<App>,
        shutdown: tokio_util::sync::CancellationToken,
        /// Job ID -> (status, progress) last sent.
        seen: std::collections::HashMap<engine::JobId, (JobStatus, f64)>,
        pending: std::collections::VecDeque<(&'static str, engine::runtime::JobView)>,
        next_id: u64,
        first: bool,
    }
    let watch = Watch {
        app,
        shutdown,
        seen: Default::default(),
        pending: Default::default(),
        next_id: 0,
        first: true,
    };
    let stream = futures::stream::unfold(watch, |mut w| async move {
        loop {
            if let Some((name, view)) = w.pending.pop_front() {
                w.next_id += 1;
                let event = Event::default()
                    .id(w.next_id.to_string())
                    .event(name)
                    .data(serde_json::to_string(&view).unwrap_or_else(|_| "{}".into()));
                return Some((Ok::<_, Infallible>(event), w));
            }
            if w.shutdown.is_cancelled() {
                return None;
            }
            if !w.first {
                tokio::select! {
                    _ = w.shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(JOBS_POLL) => {}
                }
            }
            w.first = false;
            let query = JobsQuery {
                page: PageRequest::first(JOBS_WATCHED),
                ..JobsQuery::default()
            };
            let Ok(page) = w.app.list_jobs(&query).await else {
                continue;
            };
            for job in page.items.into_iter().rev() {
                let before = w.seen.get(&job.id).copied();
                // Only running jobs' progress can move; others need no task count.
                let unchanged = before.is_some_and(|(status, _)| {
                    status == job.status && job.status != JobStatus::Running
                });
                if unchanged {
                    continue;
                }
                let Ok(view) = w.app.status(&job.id).await else {
                    continue;
                };
                let now = (view.job.status, view.progress);
                let name = match before {
                    None => "job_created",
                    Some((status, _)) if status != now.0 => "job_status",
                    Some((_, progress)) if (progress - now.1).abs() > f64::EPSILON => {
                        "job_progress"
                    }
                    Some(_) => continue,
                };
                w.seen.insert(view.job.id.clone(), now);
                w.pending.push_back((name, view));
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Storage reachable: one read of the job listing.
pub async fn readyz(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    app.engine().probe().await.map_err(AppError::from)?;
    Ok(Json(json!({ "status": "ready" })))
}

/// Any path the API does not serve.
pub async fn not_found() -> ApiError {
    AppError::new(
        ErrorKind::NotFound,
        codes::NOT_FOUND,
        "no such route: the API is under /api (docs/http-api.md)",
    )
    .into()
}
