//! `tessera serve`: the HTTP API over the application layer (axum). Cross-cutting concerns
//! are tower layers every route passes through, in this order from the outside: request ID
//! (taken from `X-Request-Id` when it is short and of a safe charset, otherwise generated;
//! echoed on the response, and known to a 500's problem document), a tracing span carrying
//! it, compression (not of event streams), 405s as problem documents, API-key auth, then for
//! the plain routes a concurrency limit that sheds load with 503 + `Retry-After`, a timeout,
//! and the body limit (and the body's read timeout, in `problem::ApiBody`).
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
    /// Longest a client may take to send a request's headers, to send its body, or to start
    /// its next request on an idle keep-alive connection (the connection is closed after it;
    /// a stalled body is answered 408 `BODY_TIMEOUT`).
    pub read_timeout: Duration,
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
            read_timeout: DEFAULT_READ_TIMEOUT,
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// The default of [`HttpConfig::read_timeout`] (`tessera serve --read-timeout`).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `X-Request-Id` taken from a client.
const MAX_REQUEST_ID: usize = 128;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The request ID of the request being handled (for the problem document of a 500).
    static CURRENT_REQUEST_ID: String;
}

/// The ID of the request this task is handling, if any.
pub(crate) fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's `X-Request-Id` is kept when it is one value of 1 to 128 characters among
/// `[A-Za-z0-9._-]`; otherwise it is dropped here and one is generated, so no client can
/// put arbitrary text in the server's logs or responses.
fn valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn sanitize_request_id(mut request: Request<axum::body::Body>) -> Request<axum::body::Body> {
    let values = request.headers().get_all(REQUEST_ID);
    let mut iter = values.iter();
    let keep = match (iter.next(), iter.next()) {
        (Some(one), None) => valid_request_id(one.as_bytes()),
        (None, _) => true,
        _ => false,
    };
    if !keep {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Run the request with its ID in [`current_request_id`].
async fn scope_request_id(
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    CURRENT_REQUEST_ID.scope(id, next.run(request)).await
}

/// A 405 as a problem document, keeping the router's `Allow` header.
async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
    response: axum::response::Response,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let allowed = allow
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut problem = ApiError::from(AppError::new(
        ErrorKind::MethodNotAllowed,
        codes::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; allowed: {allowed}",
            uri.path()
        ),
    ))
    .into_response();
    if let Some(allow) = allow {
        problem
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    problem
}

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
        .layer(axum::middleware::map_response(method_not_allowed))
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
        .layer(axum::Extension(problem::ReadTimeout(config.read_timeout)))
        .layer(axum::middleware::from_fn(scope_request_id))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomId))
        .layer(axum::middleware::map_request(sanitize_request_id))
        .with_state(app)
}

/// The addresses of `--bind`: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (every address the host
/// name resolves to); without API keys, each of them must be a loopback address.
pub async fn check_bind(bind: &str, keys: &ApiKeys) -> Result<Vec<SocketAddr>, AppError> {
    let bad =
        |reason: String| AppError::invalid(codes::BAD_CONFIG, format!("--bind {bind}: {reason}"));
    let addrs: Vec<SocketAddr> = match bind.parse::<SocketAddr>() {
        Ok(addr) => vec![addr],
        Err(_) => {
            if bind
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(bad(
                    "expected IP:PORT or HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080".into(),
                ));
            }
            let mut addrs = Vec::new();
            for addr in tokio::net::lookup_host(bind)
                .await
                .map_err(|e| bad(format!("cannot resolve the host name: {e}")))?
            {
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            addrs
        }
    };
    if addrs.is_empty() {
        return Err(bad("the host name resolves to no address".into()));
    }
    let open = addrs
        .iter()
        .find(|a| keys.is_empty() && !a.ip().is_loopback());
    if let Some(open) = open {
        return Err(bad(format!(
            "{} is not a loopback address: without API keys (--api-key-file or TESSERA_API_KEYS) tessera serve binds loopback only (127.0.0.1, ::1 or a name resolving to them)",
            open.ip()
        )));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_of_a_safe_charset_and_length_are_kept() {
        for (id, ok) in [
            ("abc-123_X.y", true),
            ("0123456789abcdef", true),
            ("", false),
            ("a b", false),
            ("a\u{7f}", false),
            ("<script>", false),
            ("é", false),
        ] {
            assert_eq!(valid_request_id(id.as_bytes()), ok, "{id:?}");
        }
        assert!(valid_request_id("x".repeat(MAX_REQUEST_ID).as_bytes()));
        assert!(!valid_request_id("x".repeat(MAX_REQUEST_ID + 1).as_bytes()));
    }

    #[tokio::test]
    async fn bind_takes_addresses_and_host_names_and_keeps_keyless_serving_on_loopback() {
        let none = ApiKeys::none();
        let keys = ApiKeys::parse("0123456789abcdef0123").unwrap();
        assert_eq!(
            check_bind("127.0.0.1:8080", &none).await.unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            check_bind("[::1]:0", &none).await.unwrap(),
            vec!["[::1]:0".parse().unwrap()]
        );
        let local = check_bind("localhost:8080", &none).await.unwrap();
        assert!(!local.is_empty());
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{local:?}"
        );
        for (bind, needle) in [
            ("0.0.0.0:8080", "not a loopback address"),
            ("localhost", "expected IP:PORT or HOST:PORT"),
            ("localhost:http", "expected IP:PORT or HOST:PORT"),
            (":8080", "expected IP:PORT or HOST:PORT"),
        ] {
            let e = check_bind(bind, &none).await.unwrap_err();
            assert_eq!(e.code, codes::BAD_CONFIG, "{bind}");
            assert!(e.message.contains(needle), "{bind}: {}", e.message);
            assert!(e.message.contains(bind), "{bind}: {}", e.message);
        }
        assert_eq!(
            check_bind("0.0.0.0:8080", &keys).await.unwrap(),
            vec!["0.0.0.0:8080".parse().unwrap()]
        );
    }
}
