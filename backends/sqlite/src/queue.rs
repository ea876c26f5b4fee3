//! The `TaskQueue` port: messages in the `queue` table, the task queue and its poison queue told
//! apart by a column; a lease hides a message until `visible_at` and a receipt proves who holds it.

use std::time::Duration;

use async_trait::async_trait;
use engine::model::{Millis, now_millis};
use engine::ports::{
    Delivery, PoisonMessage, PoisonQueue, QueueDepth, QueueError, StoreError, TaskQueue,
};
use rand::Rng;
use rusqlite::params;

use crate::SqliteBackend;
use crate::db::sql;

const TASKS_QUEUE: &str = "tasks";
/// The poison queue (also spelled out in `dead_letter`'s statement).
const POISON_QUEUE: &str = "tasks-poison";

#[async_trait]
impl TaskQueue for SqliteBackend {
    async fn send(&self, bodies: &[String], delay: Duration) -> Result<(), QueueError> {
        let bodies = bodies.to_vec();
        let now = now_millis();
        let visible_at = now + delay.as_millis() as Millis;
        self.db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached("INSERT INTO queue (queue, body, visible_at, inserted_at, job_id) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .map_err(sql)?;
                for body in bodies {
                    // The job a message belongs to, so that deleting the job finds it.
                    let job_id = serde_json::from_str::<engine::model::QueueMessage>(&body)
                        .ok()
                        .map(|m| m.job_id().to_string());
                    stmt.execute(params![TASKS_QUEUE, body, visible_at, now, job_id]).map_err(sql)?;
                }
                Ok(())
            })
            .await
            .map_err(queue_error)?;
        self.notify.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        let now = now_millis();
        let hidden_until = now + lease.as_millis() as Millis;
        let receipt_base: i64 = rand::rng().random_range(1..i64::MAX / 2);
        self.db
            .call(move |c| {
                let mut select = c
                    .prepare_cached(
                        "SELECT id, body, dequeue_count FROM queue WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
                    )
                    .map_err(sql)?;
                let rows: Vec<(i64, String, i64)> = select
                    .query_map(params![TASKS_QUEUE, now, max as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(sql)?
                    .collect::<Result<_, _>>()
                    .map_err(sql)?;
                let mut update = c
                    .prepare_cached("UPDATE queue SET visible_at = ?1, dequeue_count = dequeue_count + 1, receipt = ?2 WHERE id = ?3")
                    .map_err(sql)?;
                let mut out = Vec::with_capacity(rows.len());
                for (i, (id, body, dequeue_count)) in rows.into_iter().enumerate() {
                    let receipt = receipt_base + i as i64;
                    update.execute(params![hidden_until, receipt, id]).map_err(sql)?;
                    out.push(Delivery {
                        message_id: id.to_string(),
                        receipt: receipt.to_string(),
                        dequeue_count: (dequeue_count + 1) as u32,
                        body,
                    });
                }
                Ok(out)
            })
            .await
            .map_err(queue_error)
    }

    async fn extend_lease(
        &self,
        delivery: &mut Delivery,
        lease: Duration,
    ) -> Result<(), QueueError> {
        let hidden_until = now_millis() + lease.as_millis() as Millis;
        let receipt: i64 = rand::rng().random_range(1..i64::MAX / 2);
        let (id, old) = (delivery.message_id.clone(), delivery.receipt.clone());
        let n = self
            .db
            .call(move |c| {
                c.prepare_cached(
                    "UPDATE queue SET visible_at = ?1, receipt = ?2 WHERE id = ?3 AND receipt = ?4",
                )
                .map_err(sql)?
                .execute(params![hidden_until, receipt, id, old])
                .map_err(sql)
            })
            .await
            .map_err(queue_error)?;
        if n == 1 {
            delivery.receipt = receipt.to_string();
            Ok(())
        } else {
            Err(QueueError::LeaseLost {
                message_id: delivery.message_id.clone(),
            })
        }
    }

    async fn delete(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.with_receipt(delivery, "DELETE FROM queue WHERE id = ?1 AND receipt = ?2")
            .await
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), QueueError> {
        // `inserted_at` becomes the time it entered the poison queue (as a put there on Azure).
        self.with_receipt(
            delivery,
            "UPDATE queue SET queue = 'tasks-poison', inserted_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = ?1 AND receipt = ?2",
        )
        .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.db
            .read(|c| {
                let count = |queue: &str| {
                    c.prepare_cached("SELECT count(*) FROM queue WHERE queue = ?1")
                        .map_err(sql)?
                        .query_row([queue], |r| r.get::<_, i64>(0))
                        .map(|n| n as u64)
                        .map_err(sql)
                };
                Ok(QueueDepth {
                    messages: count(TASKS_QUEUE)?,
                    poison: count(POISON_QUEUE)?,
                })
            })
            .await
            .map_err(queue_error)
    }

    async fn wait_for_messages(&self, max_wait: Duration) {
        // Sends from this process wake us at once; other processes' sends are seen by polling.
        let _ = tokio::time::timeout(max_wait, self.notify.notified()).await;
    }
}

#[async_trait]
impl PoisonQueue for SqliteBackend {
    async fn poison_messages(&self, limit: usize) -> Result<Vec<PoisonMessage>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, body, inserted_at FROM queue WHERE queue = ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(sql)?
                .query_map(params![POISON_QUEUE, limit], |r| {
                    Ok(PoisonMessage {
                        id: r.get::<_, i64>(0)?.to_string(),
                        body: r.get(1)?,
                        poisoned_at: r.get(2)?,
                    })
                })
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)
            })
            .await
            .map_err(queue_error)
    }

    async fn remove_poison(&self, id: &str) -> Result<bool, QueueError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(false);
        };
        let n = self
            .db
            .call(move |c| {
                c.prepare_cached("DELETE FROM queue WHERE queue = ?1 AND id = ?2")
                    .map_err(sql)?
                    .execute(params![POISON_QUEUE, id])
                    .map_err(sql)
            })
            .await
            .map_err(queue_error)?;
        Ok(n == 1)
    }
}

impl SqliteBackend {
    /// Run `statement` (`?1` message id, `?2` receipt) on a message this delivery still holds.
    async fn with_receipt(
        &self,
        delivery: &Delivery,
        statement: &'static str,
    ) -> Result<(), QueueError> {
        let (id, receipt) = (delivery.message_id.clone(), delivery.receipt.clone());
        let n = self
            .db
            .call(move |c| {
                c.prepare_cached(statement)
                    .map_err(sql)?
                    .execute(params![id, receipt])
                    .map_err(sql)
            })
            .await
            .map_err(queue_error)?;
        if n == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost {
                message_id: delivery.message_id.clone(),
            })
        }
    }
}

fn queue_error(e: StoreError) -> QueueError {
    QueueError::Unavailable {
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}
