//! `tessera serve`: the HTTP API, in-process workers and the sweeper in one process, with a
//! bounded, orderly shutdown on SIGTERM / Ctrl-C.
//!
//! Connections are served by hyper's HTTP/1 connection builder from an accept loop of ours
//! (`axum::serve` cannot bound header reads): a client that does not finish its headers, or
//! leaves a keep-alive connection idle, within `HttpConfig::read_timeout` is disconnected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use engine::runtime::{WorkerConfig, run_sweeper, run_worker};
use function_host::app::App;
use function_host::app::error::EXIT_OK;
use function_host::http::{self, HttpConfig};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Bind every address of `bind` (a host name's addresses share the port the first one got).
/// An address that cannot be bound is skipped with a warning when another one could.
async fn bind_all(bind: &[SocketAddr]) -> Result<Vec<TcpListener>, String> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut errors = Vec::new();
    for addr in bind {
        let mut addr = *addr;
        let bound = listeners.first().and_then(|l| l.local_addr().ok());
        if let Some(first) = bound.filter(|_| addr.port() == 0) {
            addr.set_port(first.port());
        }
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    if listeners.is_empty() {
        return Err(errors.join("; "));
    }
    for e in errors {
        tracing::warn!("not listening on {e}");
    }
    Ok(listeners)
}

pub async fn serve(
    app: App,
    bind: &[SocketAddr],
    mut config: HttpConfig,
    workers: Option<usize>,
) -> anyhow::Result<u8> {
    // Registered before the address is printed: whoever reads it may signal at once.
    let signal = shutdown_signal();
    let listeners = match bind_all(bind).await {
        Ok(l) => l,
        Err(e) => {
            app.shutdown().await;
            return Err(function_host::app::AppError::invalid(
                function_host::app::error::codes::BAD_CONFIG,
                format!("cannot listen on {e}"),
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
    let locals: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for local in &locals {
        tracing::info!(address = %local, workers = ?workers, "serving the API");
    }
    // Tests and scripts read this line to find the port (`--bind 127.0.0.1:0`).
    if let Some(first) = locals.first() {
        println!("listening on http://{first}");
    }
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: no new connections; draining requests and tasks");
        stop.cancel();
    });
    // The accept loop returns only once shutdown started and every connection is closed
    // (within DRAIN): awaited once, nothing of the application is left in it afterwards.
    let server = tokio::spawn(accept_loop(
        listeners,
        router,
        config.read_timeout,
        shutdown.clone(),
    ));
    if let Err(e) = server.await {
        tracing::warn!(error = %e, "server task failed");
        shutdown.cancel();
    }
    for task in background {
        let _ = task.await;
    }
    close(app).await;
    Ok(EXIT_OK)
}

/// SIGTERM or SIGINT (Ctrl-C), the handlers installed now (not when first polled).
fn shutdown_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            return Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
        }
    }
    Box::pin(crate::wait_for_signal())
}

/// Close the application (the SQLite WAL is checkpointed) once nothing else holds it: a
/// connection task aborted at the end of the drain lets go of it as the runtime drops it.
async fn close(mut app: Arc<App>) {
    for _ in 0..100 {
        match Arc::try_unwrap(app) {
            Ok(app) => return app.shutdown().await,
            Err(still) => {
                app = still;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::warn!("the application is still referenced at exit; not closed");
}

/// Accept connections on every listener until `shutdown`, then let the open connections end
/// their requests (up to DRAIN; then they are dropped).
async fn accept_loop(
    listeners: Vec<TcpListener>,
    router: Router,
    read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    loop {
        let accept = futures::future::select_all(listeners.iter().map(|l| Box::pin(l.accept())));
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections as we go.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            (accepted, _, _) = accept => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, a connection reset before it was accepted:
                    // the listener itself is fine; wait a little and go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    // Finish the request in flight, if any, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    drop(listeners);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            n_connections = connections.len(),
            "requests still in flight after {DRAIN:?}: closing them"
        );
        connections.shutdown().await;
    }
}
