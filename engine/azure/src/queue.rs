//! The task queue on Azure Storage Queues: lease = visibility timeout (whole seconds), dequeue
//! count from the service, poison messages moved to `<queue>-poison`.

use std::time::Duration;

use async_trait::async_trait;
use azure_storage_queues::prelude::*;
use engine::ports::{Delivery, QueueError, TaskQueue};
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
}
