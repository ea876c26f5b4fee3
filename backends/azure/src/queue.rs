//! The task queue on Azure Storage Queues: lease = visibility timeout (whole seconds), dequeue
//! count from the service, poison messages moved to `<queue>-poison`.

use std::time::Duration;

use async_trait::async_trait;
use azure_storage_queues::prelude::*;
use engine::ports::{Delivery, PoisonMessage, PoisonQueue, QueueDepth, QueueError, TaskQueue};
use futures::{StreamExt, TryStreamExt};

use crate::ops::Op;
use crate::{AzureBackend, describe, status_of};

/// Messages sent at once.
const SEND_PARALLEL: usize = 32;

pub(crate) async fn create_if_missing(queue: &QueueClient) -> azure_core::Result<()> {
    match queue.create().await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Storage Queues count visibility in whole seconds: round up, so a lease is never shorter
/// than asked.
fn seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_millis().div_ceil(1000) as u64)
}

fn unavailable(what: &str, e: azure_core::Error) -> QueueError {
    QueueError::Unavailable {
        message: format!("{what}: {}", describe(&e)),
        source: Some(Box::new(e)),
    }
}

impl AzureBackend {
    async fn put(
        &self,
        queue: &QueueClient,
        body: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.ops.count(Op::QueuePut);
        let mut put = queue.put_message(body.to_owned());
        if !delay.is_zero() {
            put = put.visibility_timeout(seconds(delay));
        }
        put.await
            .map(|_| ())
            .map_err(|e| unavailable("queue put", e))
    }
}

#[async_trait]
impl TaskQueue for AzureBackend {
    async fn send(&self, bodies: &[String], delay: Duration) -> Result<(), QueueError> {
        futures::stream::iter(bodies.iter().cloned())
            .map(|body| async move { self.put(&self.queue, &body, delay).await })
            .buffer_unordered(SEND_PARALLEL)
            .try_collect::<()>()
            .await
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.ops.count(Op::QueueGet);
        let response = self
            .queue
            .get_messages()
            .number_of_messages(max.clamp(1, 32) as u8)
            .visibility_timeout(seconds(lease).max(Duration::from_secs(1)))
            .await
            .map_err(|e| unavailable("queue receive", e))?;
        Ok(response
            .messages
            .into_iter()
            .map(|m| Delivery {
                message_id: m.message_id,
                receipt: m.pop_receipt,
                dequeue_count: u32::try_from(m.dequeue_count).unwrap_or(u32::MAX),
                body: m.message_text,
            })
            .collect())
    }

    async fn extend_lease(
        &self,
        delivery: &mut Delivery,
        lease: Duration,
    ) -> Result<(), QueueError> {
        self.ops.count(Op::QueueUpdate);
        let receipt = PopReceipt::new(delivery.message_id.clone(), delivery.receipt.clone());
        match self
            .queue
            .pop_receipt_client(receipt)
            .update(delivery.body.clone(), seconds(lease))
            .await
        {
            Ok(response) => {
                delivery.receipt = response.pop_receipt;
                Ok(())
            }
            Err(e) if matches!(status_of(&e), Some(400 | 404)) => Err(QueueError::LeaseLost {
                message_id: delivery.message_id.clone(),
            }),
            Err(e) => Err(unavailable("queue lease extension", e)),
        }
    }

    async fn delete(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.ops.count(Op::QueueDelete);
        let receipt = PopReceipt::new(delivery.message_id.clone(), delivery.receipt.clone());
        match self.queue.pop_receipt_client(receipt).delete().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(400 | 404)) => Err(QueueError::LeaseLost {
                message_id: delivery.message_id.clone(),
            }),
            Err(e) => Err(unavailable("queue delete", e)),
        }
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), QueueError> {
        // Copy first: a crash in between leaves a duplicate, never a lost message.
        self.put(&self.poison, &delivery.body, Duration::ZERO)
            .await?;
        self.delete(delivery).await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let count = |queue: &QueueClient| {
            let queue = queue.clone();
            async move {
                self.ops.count(Op::QueueGet);
                queue
                    .get_metadata()
                    .await
                    .map(|m| m.approximate_messages_count as u64)
                    .map_err(|e| unavailable("queue metadata", e))
            }
        };
        let (messages, poison) = futures::try_join!(count(&self.queue), count(&self.poison))?;
        Ok(QueueDepth { messages, poison })
    }
}

#[async_trait]
impl PoisonQueue for AzureBackend {
    async fn poison_messages(&self, limit: usize) -> Result<Vec<PoisonMessage>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.ops.count(Op::QueueGet);
        let peeked = self
            .poison
            .peek_messages()
            .number_of_messages(limit.min(PEEK_MAX) as u8)
            .await
            .map_err(|e| unavailable("poison queue peek", e))?;
        Ok(peeked
            .messages
            .into_iter()
            .map(|m| PoisonMessage {
                id: m.message_id,
                body: m.message_text,
                poisoned_at: millis(m.insertion_time),
            })
            .collect())
    }

    /// Storage Queues delete a message by pop receipt only: receive batches of the poison
    /// queue until the message shows, delete it, and make the others visible again at once.
    async fn remove_poison(&self, id: &str) -> Result<bool, QueueError> {
        let mut held = Vec::new();
        let mut found = false;
        loop {
            self.ops.count(Op::QueueGet);
            let batch = self
                .poison
                .get_messages()
                .number_of_messages(PEEK_MAX as u8)
                .visibility_timeout(POISON_SCAN_LEASE)
                .await
                .map_err(|e| unavailable("poison queue receive", e))?
                .messages;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                if !found && m.message_id == id {
                    self.ops.count(Op::QueueDelete);
                    self.poison
                        .pop_receipt_client(m.pop_receipt())
                        .delete()
                        .await
                        .map_err(|e| unavailable("poison queue delete", e))?;
                    found = true;
                } else {
                    held.push(m);
                }
            }
            if found {
                break;
            }
        }
        // Shown again now, not at the end of the scan's lease (failures here only delay them).
        for m in held {
            self.ops.count(Op::QueueUpdate);
            let restored = self
                .poison
                .pop_receipt_client(m.pop_receipt())
                .update(m.message_text.clone(), Duration::ZERO)
                .await;
            if let Err(e) = restored {
                tracing::debug!(error = %describe(&e), "a poison message shows again at the end of its scan lease");
            }
        }
        Ok(found)
    }
}

/// At most this many messages per peek or receive (the service's limit).
const PEEK_MAX: usize = 32;

/// How long a scan for one poison message hides the others (made visible again after it).
const POISON_SCAN_LEASE: Duration = Duration::from_secs(30);

fn millis(t: time::OffsetDateTime) -> engine::model::Millis {
    (t.unix_timestamp_nanos() / 1_000_000) as engine::model::Millis
}
