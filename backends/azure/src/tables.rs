//! Thin, counted wrappers over Table Storage requests. Entities are JSON objects.

use azure_data_tables::IfMatchCondition;
use azure_data_tables::prelude::*;
use engine::ports::StoreError;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::ops::{Op, Ops};
use crate::{describe, status_of};

pub(crate) type Entity = Map<String, Value>;

/// Most operations of one entity-group transaction.
pub(crate) const BATCH: usize = 100;

pub(crate) fn unavailable(what: &str, e: azure_core::Error) -> StoreError {
    StoreError::Unavailable {
        message: format!("{what}: {}", describe(&e)),
        source: Some(Box::new(e)),
    }
}

pub(crate) async fn create_if_missing(table: &TableClient) -> azure_core::Result<()> {
    match table.create().await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The entity's ETag (its revision).
pub(crate) fn etag(entity: &Entity) -> String {
    entity
        .get("odata.etag")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn str_prop<'a>(entity: &'a Entity, name: &str) -> Option<&'a str> {
    entity.get(name).and_then(Value::as_str)
}

/// An `Edm.Int64` property (sent as a string with a type annotation).
pub(crate) fn set_i64(entity: &mut Entity, name: &str, value: i64) {
    entity.insert(name.into(), Value::String(value.to_string()));
    entity.insert(format!("{name}@odata.type"), "Edm.Int64".into());
}

/// OData string literal.
pub(crate) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A page of a query: the entities and the continuation, if any.
pub(crate) struct QueryPage {
    pub entities: Vec<Entity>,
    pub next: Option<(String, Option<String>)>,
}

/// One page of `filter` (at most `top`, at most 1 000), from `start`.
pub(crate) async fn query_page(
    ops: &Ops,
    table: &TableClient,
    filter: &str,
    select: Option<&str>,
    top: usize,
    start: Option<(String, Option<String>)>,
) -> Result<QueryPage, StoreError> {
    let mut query = table.query().filter(filter.to_owned());
    if let Some(select) = select {
        query = query.select(Select::new(select.to_owned()));
    }
    query = query.top(Top::new(top.clamp(1, 1000) as u32));
    if let Some((pk, rk)) = start {
        query = query.initial_partition_key(pk);
        if let Some(rk) = rk {
            query = query.initial_row_key(rk);
        }
    }
    ops.count(Op::TableRead);
    let mut stream = query.into_stream::<Entity>();
    match stream.next().await {
        None => Ok(QueryPage {
            entities: Vec::new(),
            next: None,
        }),
        Some(Ok(page)) => {
            use azure_core::Continuable;
            let next = page.continuation();
            Ok(QueryPage {
                entities: page.entities,
                next,
            })
        }
        Some(Err(e)) => Err(unavailable("table query", e)),
    }
}

/// Every entity matching `filter` (following continuations).
pub(crate) async fn query_all(
    ops: &Ops,
    table: &TableClient,
    filter: &str,
    select: Option<&str>,
) -> Result<Vec<Entity>, StoreError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = query_page(ops, table, filter, select, 1000, start).await?;
        out.extend(page.entities);
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(out),
        }
    }
}

/// Does anything match `filter`? Follows empty pages (a range query may return an empty page
/// with a continuation at a partition boundary).
pub(crate) async fn exists(
    ops: &Ops,
    table: &TableClient,
    filter: &str,
) -> Result<bool, StoreError> {
    let mut start = None;
    loop {
        let page = query_page(ops, table, filter, Some("RowKey"), 1, start).await?;
        if !page.entities.is_empty() {
            return Ok(true);
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(false),
        }
    }
}

pub(crate) async fn get(
    ops: &Ops,
    table: &TableClient,
    pk: &str,
    rk: &str,
) -> Result<Option<Entity>, StoreError> {
    ops.count(Op::TableRead);
    let client = table
        .partition_key_client(pk.to_owned())
        .entity_client(rk.to_owned());
    match client.get::<Entity>().await {
        Ok(response) => {
            let mut entity = response.entity;
            entity.insert(
                "odata.etag".into(),
                Value::String(response.etag.to_string()),
            );
            Ok(Some(entity))
        }
        Err(e) if status_of(&e) == Some(404) => Ok(None),
        Err(e) => Err(unavailable("table read", e)),
    }
}

/// Insert; `Ok(None)` when the entity exists (409).
pub(crate) async fn insert(
    ops: &Ops,
    table: &TableClient,
    entity: &Entity,
) -> Result<Option<String>, StoreError> {
    ops.count(Op::TableWrite);
    let builder = table
        .insert::<_, Value>(entity)
        .map_err(|e| unavailable("table insert", e))?;
    match builder.await {
        Ok(response) => Ok(Some(response.etag.to_string())),
        Err(e) if status_of(&e) == Some(409) => Ok(None),
        Err(e) => Err(unavailable("table insert", e)),
    }
}

/// Replace if the ETag still matches: `Ok(Err(()))` when it does not (412) or the entity is
/// gone (404).
pub(crate) async fn replace(
    ops: &Ops,
    table: &TableClient,
    pk: &str,
    rk: &str,
    entity: &Entity,
    etag: &str,
) -> Result<Result<String, ()>, StoreError> {
    ops.count(Op::TableWrite);
    let client = table
        .partition_key_client(pk.to_owned())
        .entity_client(rk.to_owned());
    let condition = IfMatchCondition::Etag(etag.to_owned().into());
    let builder = client
        .update(entity, condition)
        .map_err(|e| unavailable("table update", e))?;
    match builder.await {
        Ok(response) => Ok(Ok(response.etag.to_string())),
        Err(e) if matches!(status_of(&e), Some(412 | 404)) => Ok(Err(())),
        Err(e) => Err(unavailable("table update", e)),
    }
}

/// Insert or replace, unconditionally.
pub(crate) async fn upsert(
    ops: &Ops,
    table: &TableClient,
    pk: &str,
    rk: &str,
    entity: &Entity,
) -> Result<(), StoreError> {
    ops.count(Op::TableWrite);
    let client = table
        .partition_key_client(pk.to_owned())
        .entity_client(rk.to_owned());
    let builder = client
        .insert_or_replace(entity)
        .map_err(|e| unavailable("table upsert", e))?;
    builder
        .await
        .map(|_| ())
        .map_err(|e| unavailable("table upsert", e))
}

pub(crate) async fn delete(
    ops: &Ops,
    table: &TableClient,
    pk: &str,
    rk: &str,
) -> Result<(), StoreError> {
    ops.count(Op::TableWrite);
    let client = table
        .partition_key_client(pk.to_owned())
        .entity_client(rk.to_owned());
    match client.delete().await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(unavailable("table delete", e)),
    }
}

/// One operation of an entity-group transaction.
pub(crate) enum BatchOp {
    Insert(Entity),
    Upsert(String, Entity),
    /// Replace if the ETag matches.
    Replace(String, Entity, String),
    Delete(String),
}

/// How a transaction ended.
pub(crate) enum BatchOutcome {
    /// Every operation applied; the new ETag of each, in order (when the service sent one).
    Done(Vec<Option<String>>),
    /// An insert met an existing entity (409).
    Exists,
    /// A conditional operation lost (412 / 404).
    Conflict,
}

/// Run up to [`BATCH`] operations on one partition, all or nothing.
pub(crate) async fn batch(
    ops: &Ops,
    table: &TableClient,
    pk: &str,
    operations: Vec<BatchOp>,
) -> Result<BatchOutcome, StoreError> {
    debug_assert!(operations.len() <= BATCH);
    if operations.is_empty() {
        return Ok(BatchOutcome::Done(Vec::new()));
    }
    let failed = |e| unavailable("table transaction", e);
    let mut tx = table.partition_key_client(pk.to_owned()).transaction();
    for op in operations {
        tx = match op {
            BatchOp::Insert(entity) => tx.insert(entity),
            BatchOp::Upsert(rk, entity) => tx.insert_or_replace(rk, entity),
            BatchOp::Replace(rk, entity, etag) => {
                tx.update(rk, entity, Some(IfMatchCondition::Etag(etag.into())))
            }
            BatchOp::Delete(rk) => tx.delete(rk, None),
        }
        .map_err(failed)?;
    }
    ops.count(Op::TableBatch);
    let response = tx.await.map_err(failed)?;
    let mut etags = Vec::with_capacity(response.operation_responses.len());
    for r in &response.operation_responses {
        match u16::from(r.status_code) {
            s if s < 300 => etags.push(r.etag.as_ref().map(|e| e.to_string())),
            409 => return Ok(BatchOutcome::Exists),
            412 | 404 => return Ok(BatchOutcome::Conflict),
            s => {
                return Err(StoreError::Unavailable {
                    message: format!("table transaction: HTTP {s}"),
                    source: None,
                });
            }
        }
    }
    Ok(BatchOutcome::Done(etags))
}
