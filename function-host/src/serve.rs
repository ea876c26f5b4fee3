//! `tessera serve`: the HTTP API, in-process workers and the sweeper in one process, with a
//! bounded, orderly shutdown on SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use engine::runtime::{WorkerConfig, run_sweeper, run_worker};
use function_host::app::App;
use function_host::app::error::EXIT_OK;
use function_host::http::{self, HttpConfig};
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn serve(
    app: App,
    bind: SocketAddr,
    mut config: HttpConfig,
    workers: Option<usize>,
) -> anyhow::Result<u8> {
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            app.shutdown().await;
            return Err(function_host::app::AppError::invalid(
                function_host::app::error::codes::BAD_CONFIG,
                format!("cannot listen on {bind}: {e}"),
            )
            .into());
        }
    };
    let app = Arc::new(app);
    let shutdown = CancellationToken::new();
    config.shutdown = shutdown.clone();
    let mut background = Vec::new();
    if let Some(concurrency) = workers {
        let config = WorkerConfig {
            concurrency,
            worker_id: crate::worker_id(),
            ..WorkerConfig::default()
        };
        background.push(tokio::spawn(run_worker(
            app.engine().clone(),
            config,
            shutdown.clone(),
        )));
    }
    background.push(tokio::spawn(run_sweeper(
        app.engine().clone(),
        shutdown.clone(),
    )));
    let router = http::router(app.clone(), &config);
    let local = listener.local_addr()?;
    tracing::warn!(address = %local, workers = ?workers, "serving the API");
    // Tests and scripts read this line to find the port (`--bind 127.0.0.1:0`).
    println!("listening on http://{local}");
    let stop = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        crate::wait_for_signal().await;
        tracing::warn!("shutting down: no new connections; draining requests and tasks");
        stop.cancel();
    });
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        _ = shutdown.cancelled() => {}
        // The server stopped on its own (an accept error): shut the rest down too.
        _ = &mut server => shutdown.cancel(),
    }
    // Requests in flight get DRAIN; event streams end at once (they watch the token).
    match tokio::time::timeout(DRAIN, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("requests still in flight after {DRAIN:?}: closing them"),
    }
    for task in background {
        let _ = task.await;
    }
    match Arc::try_unwrap(app) {
        Ok(app) => app.shutdown().await,
        Err(_) => tracing::warn!("the application is still referenced at exit; not closed"),
    }
    Ok(EXIT_OK)
}
