//! The commands that work on a local store or against a `tessera serve` (`--server URL`):
//! the same operations, output and exit codes either way. Remote errors are the server's
//! problem documents turned back into `AppError`s of the same kind.

use std::time::Duration;

use engine::events::JobEvent;
use engine::runtime::JobView;
use engine::{JobId, JobRecord, SubmitOptions, TaskRecord, TaskStatus};
use function_host::app::error::{AppError, ErrorKind, codes};
use function_host::app::{App, JobsQuery};
use serde_json::{Value, json};

/// Where the commands go.
pub enum Front {
    Local(App),
    Remote(Client),
}

/// An HTTP client of `tessera serve` or of the Function App's HTTP functions.
pub struct Client {
    base: String,
    /// The API's own key, sent as `Authorization: Bearer`.
    key: Option<String>,
    /// An Azure Functions function key, sent as `x-functions-key` (the host checks it before
    /// the request reaches the handler).
    function_key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(
        server: &str,
        key: Option<String>,
        function_key: Option<String>,
    ) -> Result<Self, AppError> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AppError::invalid(
                codes::BAD_CONFIG,
                format!("--server {server:?}: expected an http:// or https:// URL"),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()))?;
        Ok(Client {
            base,
            key,
            function_key,
            http,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), AppError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(key) = &self.function_key {
            request = request.header("x-functions-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            AppError::new(
                ErrorKind::Unavailable,
                codes::STORAGE_UNAVAILABLE,
                format!("cannot reach the server {}: {e}", self.base),
            )
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 400 {
            return Err(problem_error(status, &body));
        }
        Ok((status, body))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, AppError> {
        let (_, body) = self.call(reqwest::Method::GET, path, None).await?;
        decode(body)
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, AppError> {
    serde_json::from_value(body).map_err(|e| {
        AppError::new(
            ErrorKind::Internal,
            codes::INTERNAL,
            format!("unexpected answer from the server: {e}"),
        )
    })
}

/// The kind of an HTTP error status (the inverse of `ErrorKind::http_status`).
fn kind_of(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        405 => ErrorKind::MethodNotAllowed,
        408 => ErrorKind::RequestTimeout,
        409 => ErrorKind::Conflict,
        413 => ErrorKind::TooLarge,
        415 => ErrorKind::UnsupportedMediaType,
        422 => ErrorKind::Unprocessable,
        400..=499 => ErrorKind::InvalidInput,
        503 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// A problem document as an application error of the same kind, code and fields.
fn problem_error(status: u16, body: &Value) -> AppError {
    let code = body["code"].as_str().unwrap_or_default();
    let mut e = AppError::new(
        kind_of(status),
        codes::known(code).unwrap_or(codes::REMOTE),
        body["detail"]
            .as_str()
            .map_or_else(|| format!("HTTP {status}: {body}"), str::to_owned),
    );
    if let Ok(fields) = serde_json::from_value(body["errors"].clone()) {
        e.fields = fields;
    }
    e
}

impl Front {
    pub async fn submit(
        &self,
        job_type: &str,
        params: Value,
        options: SubmitOptions,
    ) -> Result<(bool, JobView), AppError> {
        match self {
            Front::Local(app) => {
                let (submission, view) = app.submit(job_type, params, options).await?;
                Ok((submission.created, view))
            }
            Front::Remote(c) => {
                let path = if options.force {
                    "/api/jobs?force=true"
                } else {
                    "/api/jobs"
                };
                let mut body = json!({ "job_type": job_type, "params": params });
                if let Some(policy) = options.outcome_policy {
                    body["outcome_policy"] = json!(policy);
                }
                let (status, view) = c.call(reqwest::Method::POST, path, Some(body)).await?;
                Ok((status == 202, decode(view)?))
            }
        }
    }

    pub async fn status(&self, id: &JobId) -> Result<JobView, AppError> {
        match self {
            Front::Local(app) => app.status(id).await,
            Front::Remote(c) => c.get(&format!("/api/jobs/{id}")).await,
        }
    }

    /// Cancel; a finished job is the conflict `JOB_FINISHED` (HTTP 409, exit 2).
    pub async fn cancel(&self, id: &JobId) -> Result<JobView, AppError> {
        match self {
            Front::Local(app) => app.cancel(id).await,
            Front::Remote(c) => {
                let (_, view) = c
                    .call(
                        reqwest::Method::POST,
                        &format!("/api/jobs/{id}/cancel"),
                        None,
                    )
                    .await?;
                decode(view)
            }
        }
    }

    pub async fn list_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, AppError> {
        match self {
            Front::Local(app) => {
                let query = JobsQuery {
                    page: engine::ports::PageRequest::first(limit.max(1)),
                    ..JobsQuery::default()
                };
                Ok(app.list_jobs(&query).await?.items)
            }
            Front::Remote(c) => {
                let page: Value = c
                    .get(&format!("/api/jobs?limit={}", limit.clamp(1, 1_000)))
                    .await?;
                decode(page["items"].clone())
            }
        }
    }

    pub async fn list_tasks(
        &self,
        id: &JobId,
        status: Option<TaskStatus>,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, AppError> {
        let limit = limit.clamp(1, 1_000);
        match self {
            Front::Local(app) => {
                let query = engine::ports::TaskQuery {
                    group: None,
                    status,
                };
                let page = engine::ports::PageRequest::first(limit);
                Ok(app.list_tasks(id, &query, None, page).await?.items)
            }
            Front::Remote(c) => {
                let mut path = format!("/api/jobs/{id}/tasks?limit={limit}");
                if let Some(status) = status {
                    path.push_str(&format!("&status={}", status.as_str()));
                }
                let page: Value = c.get(&path).await?;
                decode(page["items"].clone())
            }
        }
    }

    /// How long the event log may lag behind its commits ([`App::event_settle_delay`]; a
    /// server's pages are settled by the server, which may lag as much as an Azure log).
    pub fn event_settle_delay(&self) -> std::time::Duration {
        match self {
            Front::Local(app) => app.event_settle_delay(),
            Front::Remote(_) => std::time::Duration::from_millis(2_100),
        }
    }

    pub async fn events_after(
        &self,
        id: &JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, JobEvent)>, AppError> {
        match self {
            Front::Local(app) => app.events_after(id, after, limit).await,
            Front::Remote(c) => {
                let page: Value = c
                    .get(&format!(
                        "/api/jobs/{id}/events?after={after}&limit={}",
                        limit.clamp(1, 1_000)
                    ))
                    .await?;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                items
                    .into_iter()
                    .map(|item| {
                        let cursor = item["cursor"].as_u64().unwrap_or(0);
                        Ok((cursor, decode(item["event"].clone())?))
                    })
                    .collect()
            }
        }
    }

    /// The oldest poison messages, as the API shows them.
    pub async fn poison(&self, limit: usize) -> Result<Vec<Value>, AppError> {
        match self {
            Front::Local(app) => to_values(&app.poison(limit).await?),
            Front::Remote(c) => {
                let page: Value = c.get(&format!("/api/poison?limit={limit}")).await?;
                decode(page["items"].clone())
            }
        }
    }

    /// Replay a poison message: what it did, as the API shows it.
    pub async fn replay_poison(&self, id: &str) -> Result<Value, AppError> {
        match self {
            Front::Local(app) => to_value(&app.replay_poison(id).await?),
            Front::Remote(c) => {
                let path = format!("/api/poison/{}/replay", path_segment(id)?);
                Ok(c.call(reqwest::Method::POST, &path, None).await?.1)
            }
        }
    }

    pub async fn discard_poison(&self, id: &str) -> Result<(), AppError> {
        match self {
            Front::Local(app) => app.discard_poison(id).await.map(drop),
            Front::Remote(c) => {
                let path = format!("/api/poison/{}", path_segment(id)?);
                c.call(reqwest::Method::DELETE, &path, None).await.map(drop)
            }
        }
    }

    /// Release a local store (a remote one needs nothing).
    pub async fn shutdown(self) {
        if let Front::Local(app) = self {
            app.shutdown().await;
        }
    }
}

/// A poison message ID checked before it goes into a URL path.
fn path_segment(id: &str) -> Result<&str, AppError> {
    function_host::app::parse_poison_id(id)
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, AppError> {
    serde_json::to_value(value)
        .map_err(|e| AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()))
}

fn to_values<T: serde::Serialize>(values: &[T]) -> Result<Vec<Value>, AppError> {
    values.iter().map(to_value).collect()
}
