//! Plain Storage Queue operations on any queue of an account, for programs that play the
//! Azure Functions host in tests and benchmarks (poll a trigger queue, delete on success,
//! hide again on failure, move to `<queue>-poison`). Counts its requests. Production code
//! goes through the engine's ports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_storage::{CloudLocation, ConnectionString};
use azure_storage_queues::QueueServiceClientBuilder;
use azure_storage_queues::prelude::*;

/// A received message with what the host puts in an invocation's `Metadata`.
#[derive(Clone, Debug)]
pub struct HostMessage {
    pub id: String,
    pub pop_receipt: String,
    pub dequeue_count: u32,
    pub text: String,
    /// RFC 3339 times.
    pub insertion_time: String,
    pub expiration_time: String,
    pub next_visible_time: String,
}

/// Queues of one account.
pub struct HostQueues {
    service: QueueServiceClient,
    requests: AtomicU64,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_millis().div_ceil(1000) as u64)
}

impl HostQueues {
    /// The queues of the account of a connection string.
    pub fn connect(connection: &str) -> Result<Self, String> {
        let cs = ConnectionString::new(connection).map_err(|e| e.to_string())?;
        let credentials = cs.storage_credentials().map_err(|e| e.to_string())?;
        let (Some(account), Some(queue)) = (cs.account_name, cs.queue_endpoint) else {
            return Err("the connection string names no AccountName or QueueEndpoint".into());
        };
        let location = CloudLocation::Custom {
            account: account.to_owned(),
            uri: queue.trim_end_matches('/').to_owned(),
        };
        let service = QueueServiceClientBuilder::with_location(location, credentials).build();
        Ok(HostQueues {
            service,
            requests: AtomicU64::new(0),
        })
    }

    fn queue(&self, name: &str) -> QueueClient {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.service.queue_client(name)
    }

    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub async fn create(&self, name: &str) -> Result<(), String> {
        match self.queue(name).create().await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(format!("create {name}: {}", describe(&e))),
        }
    }

    pub async fn put(&self, name: &str, text: &str, delay: Duration) -> Result<(), String> {
        let mut put = self.queue(name).put_message(text.to_owned());
        if !delay.is_zero() {
            put = put.visibility_timeout(whole_seconds(delay));
        }
        put.await
            .map(|_| ())
            .map_err(|e| format!("put on {name}: {}", describe(&e)))
    }

    /// Up to `max` (1..=32) visible messages, each hidden for `visibility`.
    pub async fn get(
        &self,
        name: &str,
        max: u8,
        visibility: Duration,
    ) -> Result<Vec<HostMessage>, String> {
        let response = self
            .queue(name)
            .get_messages()
            .number_of_messages(max.clamp(1, 32))
            .visibility_timeout(whole_seconds(visibility).max(Duration::from_secs(1)))
            .await
            .map_err(|e| format!("get from {name}: {}", describe(&e)))?;
        Ok(response
            .messages
            .into_iter()
            .map(|m| HostMessage {
                id: m.message_id,
                pop_receipt: m.pop_receipt,
                dequeue_count: u32::try_from(m.dequeue_count).unwrap_or(u32::MAX),
                text: m.message_text,
                insertion_time: rfc3339(m.insertion_time),
                expiration_time: rfc3339(m.expiration_time),
                next_visible_time: rfc3339(m.time_next_visible),
            })
            .collect())
    }

    pub async fn delete(&self, name: &str, message: &HostMessage) -> Result<(), String> {
        let receipt = PopReceipt::new(message.id.clone(), message.pop_receipt.clone());
        self.queue(name)
            .pop_receipt_client(receipt)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| format!("delete from {name}: {}", describe(&e)))
    }

    /// Hide the message for `visibility` from now (a renewal, or a release after a failure).
    pub async fn update(
        &self,
        name: &str,
        message: &mut HostMessage,
        visibility: Duration,
    ) -> Result<(), String> {
        let receipt = PopReceipt::new(message.id.clone(), message.pop_receipt.clone());
        let response = self
            .queue(name)
            .pop_receipt_client(receipt)
            .update(message.text.clone(), whole_seconds(visibility))
            .await
            .map_err(|e| format!("update on {name}: {}", describe(&e)))?;
        message.pop_receipt = response.pop_receipt;
        Ok(())
    }

    /// Approximate number of messages (visible or not).
    pub async fn count(&self, name: &str) -> Result<usize, String> {
        self.queue(name)
            .get_metadata()
            .await
            .map(|m| m.approximate_messages_count)
            .map_err(|e| format!("metadata of {name}: {}", describe(&e)))
    }

    /// The texts of up to 32 visible messages, without receiving them.
    pub async fn peek(&self, name: &str) -> Result<Vec<String>, String> {
        self.queue(name)
            .peek_messages()
            .number_of_messages(32)
            .await
            .map(|r| r.messages.into_iter().map(|m| m.message_text).collect())
            .map_err(|e| format!("peek {name}: {}", describe(&e)))
    }
}

/// An Azure error as one line, as engine-azure words it.
fn describe(e: &azure_core::Error) -> String {
    engine_azure::describe_error(e)
}

/// The HTTP status of a failed request, if the service answered.
fn status_of(e: &azure_core::Error) -> Option<u16> {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}
