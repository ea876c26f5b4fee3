//! `tessera serve`: the HTTP API over the application layer (axum). Cross-cutting concerns
//! are tower layers every route passes through, in this order from the outside: request ID
//! (taken from `X-Request-Id` or generated, echoed on the response), a tracing span carrying
//! it, compression (not of event streams), API-key auth, then for the plain routes a
//! concurrency limit that sheds load with 503 + `Retry-After`, a timeout, and the body limit.
//!
//! Invariant: only this module knows HTTP; the application layer and the engine do not.

mod auth;
mod dashboard;
mod metrics;
pub mod openapi;
pub mod problem;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{delete, get, post};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub use auth::{ApiKeys, KeyError, Role};
use problem::ApiError;

use crate::app::App;
use crate::app::error::{AppError, ErrorKind, codes};

/// Settings of the HTTP front door.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted (413 above).
    pub max_body: usize,
    /// Longest a plain request may take (503 after).
    pub request_timeout: Duration,
    /// Plain requests served at once; more are shed with 503 + `Retry-After`.
    pub concurrency: usize,
    /// Event streams open at once; more are shed the same way.
    pub max_streams: usize,
    pub keys: ApiKeys,
    /// Cancelled when the server shuts down: event streams end then.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            concurrency: 512,
            max_streams: 1024,
            keys: ApiKeys::none(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request IDs: 16 random hex digits.
#[derive(Clone, Copy, Default)]
struct RandomId;

impl MakeRequestId for RandomId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = format!("{:016x}", rand::random::<u64>());
        id.parse().ok().map(RequestId::new)
    }
}

/// A failure of the shedding / timeout layers as a problem document.
async fn layer_error(e: tower::BoxError) -> ApiError {
    if e.is::<tower::timeout::error::Elapsed>() {
        AppError::new(
            ErrorKind::Unavailable,
            codes::TIMEOUT,
            "the request took too long",
        )
        .into()
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        AppError::new(
            ErrorKind::Unavailable,
            codes::OVERLOADED,
            "too many requests at once: retry shortly",
        )
        .into()
    } else {
        AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()).into()
    }
}

/// The API's router over `app`.
pub fn router(app: Arc<App>, config: &HttpConfig) -> Router {
    let http_metrics = Arc::new(metrics::HttpMetrics::default());
    let document = Arc::new(openapi::document(
        &app.job_types(),
        config.max_body,
        routes::MAX_LIMIT,
    ));
    let exposition = Router::new()
        .route("/metrics", get(metrics::metrics))
        .with_state((app.clone(), http_metrics.clone()));
    let plain = Router::new()
        .route("/api/jobs", post(routes::submit).get(routes::list_jobs))
        .route(
            "/api/jobs/{id}",
            get(routes::get_job).delete(routes::delete_job),
        )
        .route("/api/jobs/{id}/tasks", get(routes::list_tasks))
        .route("/api/jobs/{id}/tasks/{task_id}", get(routes::get_task))
        .route("/api/jobs/{id}/result", get(routes::get_result))
        .route("/api/jobs/{id}/cancel", post(routes::cancel))
        .route("/api/job-types", get(routes::job_types))
        .route("/api/jobs/{id}/graph", get(routes::graph))
        .route("/data/{container}/{*path}", get(dashboard::data))
        .route("/api/poison", get(routes::list_poison))
        .route("/api/poison/{id}", delete(routes::discard_poison))
        .route("/api/poison/{id}/replay", post(routes::replay_poison))
        .route("/readyz", get(routes::readyz))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(layer_error))
                .load_shed()
                .concurrency_limit(config.concurrency)
                .timeout(config.request_timeout),
        )
        .layer(DefaultBodyLimit::max(config.max_body));
    let streams = Router::new()
        .route("/api/jobs/{id}/events", get(routes::events))
        .route("/api/events", get(routes::job_events))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(layer_error))
                .load_shed()
                .concurrency_limit(config.max_streams),
        );
    let compression = CompressionLayer::new()
        .compress_when(DefaultPredicate::new().and(NotForContentType::new("text/event-stream")));
    Router::new()
        .merge(plain)
        .merge(streams)
        .merge(exposition)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            metrics::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.keys.clone()),
            auth::require_key,
        ))
        .route("/healthz", get(routes::healthz))
        // The dashboard's page and assets hold no data: served without a key (the page asks
        // for one when the API wants it).
        .route("/", get(dashboard::jobs_page))
        .route("/jobs/{id}", get(dashboard::job_page))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/favicon.ico", get(dashboard::favicon))
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json((*document).clone()) }
            }),
        )
        .layer(compression)
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %id,
                )
            }),
        )
        .layer(axum::Extension(config.shutdown.clone()))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomId))
        .with_state(app)
}

/// Refuse to serve without keys on anything but loopback.
pub fn check_bind(bind: SocketAddr, keys: &ApiKeys) -> Result<(), AppError> {
    if keys.is_empty() && !bind.ip().is_loopback() {
        return Err(AppError::invalid(
            codes::BAD_CONFIG,
            format!(
                "--bind {bind}: without API keys (--api-key-file or TESSERA_API_KEYS) tessera serve binds loopback only (127.0.0.1 or ::1)"
            ),
        ));
    }
    Ok(())
}
