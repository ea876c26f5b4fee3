//! What the CLI prints: JSON records on stdout, human summaries, tables.

use std::time::Duration;

use crate::front::Front;
use engine::runtime::JobView;
use engine::{JobId, JobRecord, JobStatus, TaskRecord};
use serde::Serialize;
use serde_json::Value;

use function_host::app::error::{EXIT_JOB_UNSUCCESSFUL, EXIT_OK};

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// 0 for SUCCEEDED (and unfinished jobs), 1 for FAILED / COMPLETED_WITH_ERRORS / CANCELLED.
pub fn exit_code(status: JobStatus) -> u8 {
    match status {
        JobStatus::Failed | JobStatus::CompletedWithErrors | JobStatus::Cancelled => {
            EXIT_JOB_UNSUCCESSFUL
        }
        _ => EXIT_OK,
    }
}

fn counts_line(view: &JobView) -> String {
    view.tasks
        .0
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn print_summary(view: &JobView) {
    let job = &view.job;
    let mark = match job.status {
        JobStatus::Succeeded => "✔",
        JobStatus::Pending | JobStatus::Running => "…",
        _ => "✘",
    };
    let took = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => format!(" in {:.2} s", (f - s) as f64 / 1000.0),
        _ => String::new(),
    };
    println!(
        "{mark} job {} ({} v{}, attempt {}) {}{took}",
        job.id, job.job_type, job.job_version, job.attempt, job.status
    );
    println!(
        "  tasks:  {} ({} in all)",
        counts_line(view),
        view.tasks.total()
    );
    if let Some(error) = &job.error {
        println!("  error:  {}: {}", error.code, error.message);
    }
    if let Some(result) = &job.result {
        println!("  result: {result}");
    }
}

pub fn print_job_table(jobs: &[JobRecord]) {
    println!(
        "{:<64}  {:<14}  {:<22}  {:>7}  CREATED",
        "ID", "TYPE", "STATUS", "TASKS"
    );
    for job in jobs {
        let created = time_of(job.created_at);
        println!(
            "{:<64}  {:<14}  {:<22}  {:>7}  {created}",
            job.id,
            job.job_type,
            job.status.as_str(),
            job.planned_tasks
        );
    }
}

fn time_of(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Poison messages as the API shows them (`id`, `poisoned_at`, `kind`, `job_id`, `task_ids`).
pub fn print_poison_table(messages: &[Value]) {
    println!(
        "{:<36}  {:<19}  {:<10}  {:<64}  TASKS",
        "ID", "POISONED", "KIND", "JOB"
    );
    for m in messages {
        let tasks = m["task_ids"].as_array().map_or(String::new(), |t| {
            t.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        });
        println!(
            "{:<36}  {:<19}  {:<10}  {:<64}  {}",
            m["id"].as_str().unwrap_or_default(),
            time_of(m["poisoned_at"].as_i64().unwrap_or_default()),
            m["kind"].as_str().unwrap_or_default(),
            m["job_id"].as_str().unwrap_or("-"),
            if tasks.is_empty() {
                m["error"].as_str().unwrap_or_default().to_owned()
            } else {
                tasks
            }
        );
    }
}

/// What a replay did, in one line.
pub fn print_replayed(id: &str, replayed: &Value) {
    match replayed["action"].as_str().unwrap_or_default() {
        "rerun" => println!(
            "poison message {id} replayed: job {} re-runs (attempt {}, {}); a worker picks it up",
            replayed["job"]["id"].as_str().unwrap_or_default(),
            replayed["job"]["attempt"],
            replayed["job"]["status"].as_str().unwrap_or_default()
        ),
        "requeued" => println!(
            "poison message {id} replayed: the expansion of job {} is queued again",
            replayed["job_id"].as_str().unwrap_or_default()
        ),
        _ => println!(
            "poison message {id} removed, nothing left to do: {}",
            replayed["reason"].as_str().unwrap_or_default()
        ),
    }
}

pub fn print_task_table(tasks: &[TaskRecord]) {
    println!(
        "{:<64}  {:<18}  {:<14}  {:<10}  {:>7}  {:>6}  ERROR",
        "ID", "TASK", "KEY", "STATUS", "ATTEMPT", "STARTS"
    );
    for t in tasks {
        let key = t.key.to_string();
        println!(
            "{:<64}  {:<18}  {:<14}  {:<10}  {:>7}  {:>6}  {}",
            t.id,
            t.task,
            key,
            t.status.as_str(),
            t.attempt,
            t.starts,
            t.error
                .as_ref()
                .map_or(String::new(), |e| format!("{}: {}", e.code, e.message))
        );
    }
}

/// Print the job's events; with `follow`, until every event of the finished job is printed
/// (as the SSE stream: the job and all its tasks finished, then a last read once the log has
/// settled).
pub async fn print_events(front: &Front, id: &JobId, follow: bool) -> anyhow::Result<()> {
    let mut after = 0;
    let mut complete = false;
    loop {
        let events = front.events_after(id, after, 1_000).await?;
        for (seq, event) in &events {
            after = *seq;
            println!("{}", serde_json::to_string(event)?);
        }
        if events.is_empty() {
            if !follow || complete {
                return Ok(());
            }
            let view = front.status(id).await?;
            complete = view.job.status.is_terminal() && view.tasks.unfinished() == 0;
            tokio::time::sleep(if complete {
                front.event_settle_delay()
            } else {
                Duration::from_millis(200)
            })
            .await;
        }
    }
}
