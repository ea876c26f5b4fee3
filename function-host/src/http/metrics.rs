//! `GET /metrics`: Prometheus text exposition of the engine's counters and of the HTTP
//! requests (count and latency by route, method and status), recorded by a layer.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use engine::{JobStatus, TaskStatus};

use crate::app::{App, GAUGE_MAX_ACTIVE_JOBS, Gauges};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Series {
    /// Per bucket (same order as `BUCKETS`), then the +Inf count.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// HTTP request metrics, shared by the recording layer and the exposition, and the last
/// reading of the store's gauges.
#[derive(Default)]
pub struct HttpMetrics {
    /// (route, method, status) -> latency series.
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
    gauges: tokio::sync::Mutex<Option<(Instant, Gauges)>>,
}

/// The store's gauges are read at most this often (a scan of the job records and of the
/// unfinished jobs' tasks; Prometheus scrapes every 15 to 60 s).
const GAUGES_MAX_AGE: Duration = Duration::from_secs(5);

impl HttpMetrics {
    /// The gauges, read again when older than [`GAUGES_MAX_AGE`]; `None` when the store
    /// cannot be read (the counters are still exposed, with `tessera_gauges_up 0`).
    async fn gauges(&self, app: &App) -> Option<Gauges> {
        let mut cached = self.gauges.lock().await;
        if let Some((at, gauges)) = cached.as_ref() {
            if at.elapsed() < GAUGES_MAX_AGE {
                return Some(gauges.clone());
            }
        }
        match app.gauges().await {
            Ok(gauges) => {
                *cached = Some((Instant::now(), gauges.clone()));
                Some(gauges)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the store's gauges cannot be read");
                None
            }
        }
    }
}

impl HttpMetrics {
    fn observe(&self, route: String, method: String, status: u16, seconds: f64) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series.entry((route, method, status)).or_default();
        if s.counts.is_empty() {
            s.counts = vec![0; BUCKETS.len()];
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                s.counts[i] += 1;
            }
        }
        s.sum += seconds;
        s.count += 1;
    }
}

/// The recording layer: every request's route (its pattern, not the raw path, so IDs do not
/// explode the label set), method, status and duration.
pub async fn record(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn counter(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
    for (labels, value) in samples {
        if labels.is_empty() {
            out.push_str(&format!("{name} {value}\n"));
        } else {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    for (labels, value) in samples {
        if labels.is_empty() {
            out.push_str(&format!("{name} {value}\n"));
        } else {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    }
}

/// The store's gauges; every status appears, with 0 when none is in it.
fn render_gauges(out: &mut String, gauges: Option<&Gauges>) {
    gauge(
        out,
        "tessera_gauges_up",
        "1 when the store's gauges below could be read.",
        &[(String::new(), u64::from(gauges.is_some()))],
    );
    let Some(g) = gauges else {
        return;
    };
    let jobs: Vec<(String, u64)> = JobStatus::ALL
        .iter()
        .map(|s| {
            (
                format!("status=\"{s}\""),
                g.jobs.get(s).copied().unwrap_or(0),
            )
        })
        .collect();
    gauge(out, "tessera_jobs", "Jobs by status.", &jobs);
    let tasks: Vec<(String, u64)> = TaskStatus::ALL
        .iter()
        .map(|s| (format!("status=\"{s}\""), g.active_tasks.get(*s)))
        .collect();
    gauge(
        out,
        "tessera_active_tasks",
        "Tasks of unfinished jobs by status (see tessera_active_jobs_counted).",
        &tasks,
    );
    gauge(
        out,
        "tessera_active_jobs_counted",
        &format!(
            "Unfinished jobs whose tasks tessera_active_tasks counts (at most {GAUGE_MAX_ACTIVE_JOBS})."
        ),
        &[(String::new(), g.active_jobs_counted)],
    );
    gauge(
        out,
        "tessera_queue_messages",
        "Messages in the task queue (visible or leased) and in its poison queue; approximate on Azure.",
        &[
            ("queue=\"tasks\"".to_owned(), g.queue.messages),
            ("queue=\"poison\"".to_owned(), g.queue.poison),
        ],
    );
}

/// The exposition text.
pub fn render(app: &App, http: &HttpMetrics, gauges: Option<&Gauges>) -> String {
    let m = app.engine().metrics();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    counter(
        &mut out,
        "tessera_task_outcomes_total",
        "Task outcomes recorded by this process's workers.",
        &[
            ("outcome=\"succeeded\"", get(&m.tasks_succeeded)),
            ("outcome=\"failed\"", get(&m.tasks_failed)),
            ("outcome=\"retried\"", get(&m.tasks_retried)),
            ("outcome=\"cancelled\"", get(&m.tasks_cancelled)),
            ("outcome=\"skipped\"", get(&m.tasks_skipped)),
            ("outcome=\"poisoned\"", get(&m.tasks_poisoned)),
        ],
    );
    for (name, help, value) in [
        (
            "tessera_duplicate_deliveries_total",
            "Deliveries of tasks already finished or of stale attempts.",
            get(&m.duplicate_deliveries),
        ),
        (
            "tessera_lost_races_total",
            "Compare-and-set writes that lost to another writer.",
            get(&m.lost_races),
        ),
        (
            "tessera_invalid_transitions_total",
            "Status transitions refused by the status machines.",
            get(&m.invalid_transitions),
        ),
        (
            "tessera_jobs_closed_total",
            "Jobs this process closed.",
            get(&m.jobs_closed),
        ),
        (
            "tessera_messages_resent_total",
            "Messages of stranded tasks re-sent by the sweeper.",
            get(&m.messages_resent),
        ),
    ] {
        counter(&mut out, name, help, &[("", value)]);
    }
    render_gauges(&mut out, gauges);
    let series = http.series.lock().unwrap_or_else(|e| e.into_inner());
    out.push_str("# HELP tessera_http_requests_total HTTP requests by route, method and status.\n# TYPE tessera_http_requests_total counter\n");
    for ((route, method, status), s) in series.iter() {
        out.push_str(&format!(
            "tessera_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}\n",
            s.count
        ));
    }
    out.push_str("# HELP tessera_http_request_duration_seconds HTTP request latency by route, method and status.\n# TYPE tessera_http_request_duration_seconds histogram\n");
    for ((route, method, status), s) in series.iter() {
        let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
        for (bound, n) in BUCKETS.iter().zip(&s.counts) {
            out.push_str(&format!(
                "tessera_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "tessera_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
            s.count
        ));
        out.push_str(&format!(
            "tessera_http_request_duration_seconds_sum{{{labels}}} {}\n",
            s.sum
        ));
        out.push_str(&format!(
            "tessera_http_request_duration_seconds_count{{{labels}}} {}\n",
            s.count
        ));
    }
    out
}

/// `GET /metrics`.
pub async fn metrics(State((app, http)): State<(Arc<App>, Arc<HttpMetrics>)>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        render(&app, &http, http.gauges(&app).await.as_ref()),
    )
}
