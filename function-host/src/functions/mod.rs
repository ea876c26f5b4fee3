//! `tessera functions`: the Azure Functions custom handler. The host starts this binary with
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, polls `GET /` until it answers, then posts every
//! invocation to `POST /<FunctionName>` as a `{Data, Metadata}` envelope and expects
//! `{Outputs, Logs, ReturnValue}` back ([`envelope`]). The functions ([`catalog`]):
//!
//! - one HTTP-triggered function per API path, answered by the API's own router
//!   ([`http_trigger`]): the same statuses and problem details as `tessera serve`;
//! - `tasks`, `jobs`, `tasks-poison` (queue triggers) and `sweep` (timer), in
//!   [`queue_trigger`]: the host owns the queue messages; the engine's push entry point
//!   processes them.
//!
//! Invariant: only this module knows the Functions envelope; the engine sees a
//! [`HostedMessage`](engine::runtime::HostedMessage) and answers a
//! [`HostedAnswer`](engine::runtime::HostedAnswer).

pub mod catalog;
pub mod envelope;
pub mod host_json;
pub mod http_trigger;
pub mod queue_trigger;
pub mod settings;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::WorkerConfig;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::error::codes;
use crate::app::{App, AppError};
use crate::http::{self, HttpConfig};
use catalog::Function;
use envelope::{Invocation, InvocationResponse};

/// Largest invocation envelope accepted.
const MAX_INVOCATION: usize = 16 * 1024 * 1024;

/// What every invocation needs.
struct Handler {
    app: Arc<App>,
    /// The API's router, for HTTP-triggered invocations.
    api: Router,
    worker: WorkerConfig,
}

/// The handler's own router: `GET /` (readiness) and `POST /{function}`.
pub fn router(app: Arc<App>, http: &HttpConfig, worker: WorkerConfig) -> Router {
    let api = http::router(app.clone(), http);
    let handler = Arc::new(Handler { app, api, worker });
    Router::new()
        .route("/", get(|| async { "ready" }))
        .route("/{function}", post(invoke))
        .layer(DefaultBodyLimit::max(MAX_INVOCATION))
        .with_state(handler)
}

async fn invoke(
    State(handler): State<Arc<Handler>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let invocation_id = headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!("invocation", function = %name, invocation_id = %invocation_id);
    async move {
        let Some(function) = catalog::lookup(&name) else {
            tracing::warn!("invocation of an unknown function");
            let response = InvocationResponse::default()
                .log(format!("no function named {name:?} in this handler"));
            return (StatusCode::NOT_FOUND, axum::Json(response)).into_response();
        };
        let invocation: Invocation = match serde_json::from_slice(&body) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "invocation body is not an envelope");
                let response = InvocationResponse::default().log(format!(
                    "invocation body is not a {{Data, Metadata}} envelope: {e}"
                ));
                return (StatusCode::BAD_REQUEST, axum::Json(response)).into_response();
            }
        };
        let (status, response) = match function {
            Function::Http(_) => {
                let req = invocation
                    .data
                    .get(catalog::HTTP_REQUEST_BINDING)
                    .cloned()
                    .unwrap_or_default();
                let res = http_trigger::invoke(&handler.api, &req).await;
                (
                    StatusCode::OK,
                    InvocationResponse::default().output(catalog::HTTP_RESPONSE_BINDING, res),
                )
            }
            Function::Queue(catalog::QueueRole::Tasks) => {
                queue_trigger::tasks(&handler.app, &invocation, &handler.worker).await
            }
            Function::Queue(catalog::QueueRole::Jobs) => {
                queue_trigger::jobs(&handler.app, &invocation, &handler.worker).await
            }
            Function::Queue(catalog::QueueRole::TasksPoison) => {
                queue_trigger::tasks_poison(&handler.app, &invocation).await
            }
            Function::Sweep => queue_trigger::sweep(&handler.app).await,
        };
        (status, axum::Json(response)).into_response()
    }
    .instrument(span)
    .await
}

/// Serve invocations on `127.0.0.1:port` until `shutdown`; in-flight invocations finish.
pub async fn serve(
    app: Arc<App>,
    port: u16,
    http: HttpConfig,
    worker: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            AppError::invalid(
                codes::BAD_CONFIG,
                format!("FUNCTIONS_CUSTOMHANDLER_PORT {port}: cannot listen: {e}"),
            )
        })?;
    if let Ok(text) = std::fs::read_to_string("host.json") {
        let config = app.engine().config();
        match serde_json::from_str(&text) {
            Ok(host) => {
                for problem in host_json::problems(&host, config.lease, config.max_dequeue) {
                    tracing::warn!(problem = %problem, "host.json does not match this handler");
                }
            }
            Err(e) => tracing::warn!(error = %e, "host.json is not JSON"),
        }
    }
    tracing::warn!(port, "custom handler ready");
    let router = router(app, &http, worker);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| {
            AppError::new(
                crate::app::ErrorKind::Internal,
                codes::INTERNAL,
                format!("custom handler server: {e}"),
            )
        })
}
