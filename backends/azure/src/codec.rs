//! Records <-> Table Storage entities, and the key scheme.
//!
//! Tasks: PartitionKey `{job_id}~{s}` where `s` is the first hex digit of the task ID (16
//! partitions per job), RowKey the task ID. Beside each task in its partition: its progress
//! (`{task_id}~a`) and one row per dependent (`{task_id}~d~{dependent_id}`), so a task's
//! record, progress and dependents are one range read. Jobs: PartitionKey the job ID, RowKey
//! `job`; a listing index orders jobs newest first.

use engine::ids::{JobId, TaskId};
use engine::model::{JobRecord, Progress, Revision, TaskRecord, TaskStatus};
use engine::ports::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::tables::{Entity, etag, set_i64, str_prop};

/// A string property holds 64 KiB of UTF-16; JSON is cut into parts of at most this many
/// bytes (each byte at most one UTF-16 unit).
const PART: usize = 30_000;
/// At most this many parts (`Rec`, `Rec1`, ...): 900 kB, under the 1 MiB entity limit.
const MAX_PARTS: usize = 30;
/// Results bigger than this go to Blob storage.
pub(crate) const RESULT_INLINE_MAX: usize = 16 * 1024;

pub(crate) const SHARDS: &[char] = &[
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
];

pub(crate) fn task_pk(job: &JobId, task: &TaskId) -> String {
    let shard = task.as_str().chars().next().unwrap_or('0');
    format!("{job}~{shard}")
}

/// Filter on the job's task partitions.
pub(crate) fn job_partitions(job: &JobId) -> String {
    format!("PartitionKey ge '{job}~0' and PartitionKey le '{job}~f'")
}

pub(crate) fn progress_rk(task: &TaskId) -> String {
    format!("{task}~a")
}

pub(crate) fn edge_rk(dep: &TaskId, dependent: &TaskId) -> String {
    format!("{dep}~d~{dependent}")
}

pub(crate) const JOB_RK: &str = "job";
pub(crate) const INDEX_PK: &str = "jobs";

pub(crate) fn index_rk(job: &JobRecord) -> String {
    format!("{:019}~{}", i64::MAX - job.created_at, job.id)
}

/// Whether `rk` is an [`index_rk`] (a job listing's cursor).
pub(crate) fn is_index_rk(rk: &str) -> bool {
    rk.split_once('~').is_some_and(|(time, id)| {
        time.len() == 19
            && time.bytes().all(|b| b.is_ascii_digit())
            && JobId::try_from(id.to_owned()).is_ok()
    })
}

pub(crate) fn status_str(status: TaskStatus) -> String {
    match serde_json::to_value(status) {
        Ok(Value::String(s)) => s,
        _ => status.to_string(),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        message: format!("{what}: {e}"),
    }
}

fn put_parts(entity: &mut Entity, json: &str) -> Result<(), StoreError> {
    let mut rest = json;
    let mut n = 0;
    while n == 0 || !rest.is_empty() {
        if n == MAX_PARTS {
            return Err(StoreError::Corrupt {
                message: format!(
                    "record of {} bytes does not fit in a table entity",
                    json.len()
                ),
            });
        }
        let mut cut = rest.len().min(PART);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let name = if n == 0 {
            "Rec".to_owned()
        } else {
            format!("Rec{n}")
        };
        entity.insert(name, Value::String(rest[..cut].to_owned()));
        rest = &rest[cut..];
        n += 1;
    }
    Ok(())
}

fn get_parts<T: DeserializeOwned>(entity: &Entity, what: &str) -> Result<T, StoreError> {
    let mut json = str_prop(entity, "Rec")
        .ok_or_else(|| corrupt(what, "no Rec property"))?
        .to_owned();
    for n in 1..MAX_PARTS {
        match str_prop(entity, &format!("Rec{n}")) {
            Some(part) => json.push_str(part),
            None => break,
        }
    }
    serde_json::from_str(&json).map_err(|e| corrupt(what, e))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt("serializing a record", e))
}

/// A task entity. `result_blob` names the blob holding the result when it was moved out.
pub(crate) fn task_entity(
    task: &TaskRecord,
    result_blob: Option<&str>,
) -> Result<Entity, StoreError> {
    let mut e = Entity::new();
    e.insert(
        "PartitionKey".into(),
        task_pk(&task.job_id, &task.id).into(),
    );
    e.insert("RowKey".into(), task.id.as_str().into());
    e.insert("T".into(), "t".into());
    e.insert("Status".into(), status_str(task.status).into());
    e.insert("Fin".into(), task.status.is_terminal().into());
    if let Some(g) = &task.group {
        e.insert("Group".into(), g.as_str().into());
    }
    if let Some(g) = &task.child_group {
        e.insert("ChildGroup".into(), g.as_str().into());
    }
    set_i64(&mut e, "Updated", task.updated_at);
    let stored;
    let record = if let Some(blob) = result_blob {
        e.insert("ResultBlob".into(), blob.into());
        let mut without = task.clone();
        without.result = None;
        without.progress = None;
        stored = without;
        &stored
    } else if task.progress.is_some() {
        let mut without = task.clone();
        without.progress = None;
        stored = without;
        &stored
    } else {
        task
    };
    put_parts(&mut e, &to_json(record)?)?;
    Ok(e)
}

/// The task of an entity, with its revision; the result is still in the blob if
/// `ResultBlob` is set.
pub(crate) fn task_from(entity: &Entity) -> Result<TaskRecord, StoreError> {
    let mut task: TaskRecord = get_parts(entity, "task entity")?;
    task.revision = Revision(etag(entity));
    Ok(task)
}

pub(crate) fn result_blob(entity: &Entity) -> Option<&str> {
    str_prop(entity, "ResultBlob")
}

pub(crate) fn progress_entity(
    job: &JobId,
    task: &TaskId,
    progress: &Progress,
) -> Result<Entity, StoreError> {
    let mut e = Entity::new();
    e.insert("PartitionKey".into(), task_pk(job, task).into());
    e.insert("RowKey".into(), progress_rk(task).into());
    e.insert("T".into(), "p".into());
    e.insert("P".into(), to_json(progress)?.into());
    Ok(e)
}

pub(crate) fn progress_from(entity: &Entity) -> Option<Progress> {
    serde_json::from_str(str_prop(entity, "P")?).ok()
}

pub(crate) fn edge_entity(job: &JobId, dep: &TaskId, dependent: &TaskId) -> Entity {
    let mut e = Entity::new();
    e.insert("PartitionKey".into(), task_pk(job, dep).into());
    e.insert("RowKey".into(), edge_rk(dep, dependent).into());
    e.insert("T".into(), "e".into());
    e.insert("To".into(), dependent.as_str().into());
    e
}

pub(crate) fn job_entity(job: &JobRecord, result_blob: Option<&str>) -> Result<Entity, StoreError> {
    let mut e = Entity::new();
    e.insert("PartitionKey".into(), job.id.as_str().into());
    e.insert("RowKey".into(), JOB_RK.into());
    e.insert("Status".into(), job_status_str(job).into());
    set_i64(&mut e, "Created", job.created_at);
    if let Some(f) = job.finished_at {
        set_i64(&mut e, "Finished", f);
    }
    let stored;
    let record = if let Some(blob) = result_blob {
        e.insert("ResultBlob".into(), blob.into());
        let mut without = job.clone();
        without.result = None;
        stored = without;
        &stored
    } else {
        job
    };
    put_parts(&mut e, &to_json(record)?)?;
    Ok(e)
}

pub(crate) fn job_status_str(job: &JobRecord) -> String {
    match serde_json::to_value(job.status) {
        Ok(Value::String(s)) => s,
        _ => job.status.to_string(),
    }
}

pub(crate) fn job_from(entity: &Entity) -> Result<JobRecord, StoreError> {
    let mut job: JobRecord = get_parts(entity, "job entity")?;
    job.revision = Revision(etag(entity));
    Ok(job)
}

pub(crate) fn index_entity(job: &JobRecord) -> Entity {
    let mut e = Entity::new();
    e.insert("PartitionKey".into(), INDEX_PK.into());
    e.insert("RowKey".into(), index_rk(job).into());
    e.insert("Job".into(), job.id.as_str().into());
    e
}

/// Parse an ID stored in a property.
pub(crate) fn id_prop<T: std::str::FromStr>(entity: &Entity, name: &str) -> Option<T> {
    str_prop(entity, name)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_records_are_cut_into_parts_and_joined() {
        let value: Vec<String> = (0..20_000).map(|i| format!("é{i}")).collect();
        let json = serde_json::to_string(&value).unwrap();
        let mut e = Entity::new();
        put_parts(&mut e, &json).unwrap();
        assert!(e.len() > 2);
        assert!(
            e.values()
                .all(|v| v.as_str().unwrap().encode_utf16().count() <= PART)
        );
        let back: Vec<String> = get_parts(&e, "test").unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn shards_follow_the_first_hex_digit() {
        let job: JobId = "ab".repeat(32).parse().unwrap();
        let task: TaskId = format!("c{}", "0".repeat(63)).parse().unwrap();
        assert!(task_pk(&job, &task).ends_with("~c"));
        assert!(SHARDS.contains(&'c'));
    }
}
