//! The lease on a received message, shared by the task attempts it carries.
//!
//! A keeper renews the message's visibility every third of the lease until every part is
//! settled; the message is deleted when the last part is acknowledged. A part dropped without
//! being settled (its step failed on storage) keeps the message: it reappears after the lease
//! and is delivered again. A bundle delivered a second time is split into one message per task
//! before anything runs ([`Engine::open_delivery`](super::Engine)), so the dequeue count of a
//! part is that of its own message and a poison task cannot take its bundle-mates down with it.
//!
//! A message pushed by a host that owns it (the Azure Functions host) is shared the same way
//! but never renewed, deleted nor made visible again by the engine: acknowledging only settles
//! the part (the host deletes the message when the invocation answers success), postponing
//! sends a delayed copy, and dead-lettering asks the host to park the message
//! ([`HostedShare::outcome`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use crate::ports::{Delivery, QueueError, TaskQueue};

/// Who owns a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The engine received it: it renews, deletes and dead-letters it.
    Engine,
    /// A host pushed it: the host renews and deletes it; the engine only sends new messages.
    Host,
}

/// One received message and how many of its parts are still open.
struct Shared {
    owner: Owner,
    /// A hosted lone part asked for the message to be dead-lettered.
    park: AtomicBool,
    queue: Arc<dyn TaskQueue>,
    delivery: Mutex<Delivery>,
    open: AtomicUsize,
    /// A part was dropped unsettled: the message must come back, never be deleted.
    keep: AtomicBool,
    /// Stops the keeper.
    stop: CancellationToken,
    parts: usize,
    dequeue_count: u32,
}

impl Shared {
    /// One part settled; returns true when it was the last open one.
    fn settle(&self) -> bool {
        let last = self.open.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            self.stop.cancel();
        }
        last
    }
}

/// The share of a message lease held by one task attempt.
pub(crate) struct PartLease {
    shared: Arc<Shared>,
    /// The body to send when this part leaves a bundle on its own (postponed).
    body: String,
    settled: bool,
}

/// Lease `parts` shares of `delivery`, renewed every `lease / 3` until all are settled.
pub(crate) fn share(
    queue: Arc<dyn TaskQueue>,
    delivery: Delivery,
    bodies: Vec<String>,
    lease: Duration,
) -> Vec<PartLease> {
    let (leases, shared) = share_as(Owner::Engine, queue, delivery, bodies);
    tokio::spawn(keep_alive(shared, lease).in_current_span());
    leases
}

/// What became of a hosted message once its parts are settled or dropped.
pub(crate) struct HostedShare(Arc<Shared>);

/// The answer a host gets for its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostedOutcome {
    /// A part was dropped unsettled (a storage error): the host must deliver it again.
    pub redeliver: bool,
    /// Move the message to the dead-letter queue (poison, or malformed).
    pub park: bool,
}

impl HostedShare {
    pub fn outcome(&self) -> HostedOutcome {
        HostedOutcome {
            redeliver: self.0.keep.load(Ordering::Acquire),
            park: self.0.park.load(Ordering::Acquire),
        }
    }
}

/// Share a message a host pushed (and owns): no keeper, no delete.
pub(crate) fn share_hosted(
    queue: Arc<dyn TaskQueue>,
    delivery: Delivery,
    bodies: Vec<String>,
) -> (Vec<PartLease>, HostedShare) {
    let (leases, shared) = share_as(Owner::Host, queue, delivery, bodies);
    (leases, HostedShare(shared))
}

fn share_as(
    owner: Owner,
    queue: Arc<dyn TaskQueue>,
    delivery: Delivery,
    bodies: Vec<String>,
) -> (Vec<PartLease>, Arc<Shared>) {
    let parts = bodies.len();
    let shared = Arc::new(Shared {
        owner,
        park: AtomicBool::new(false),
        queue,
        dequeue_count: delivery.dequeue_count,
        delivery: Mutex::new(delivery),
        open: AtomicUsize::new(parts),
        keep: AtomicBool::new(false),
        stop: CancellationToken::new(),
        parts,
    });
    let leases = bodies
        .into_iter()
        .map(|body| PartLease {
            shared: shared.clone(),
            body,
            settled: false,
        })
        .collect();
    (leases, shared)
}

async fn keep_alive(shared: Arc<Shared>, lease: Duration) {
    let period = lease / 3;
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let mut delivery = shared.delivery.lock().await;
        if shared.stop.is_cancelled() {
            return;
        }
        match shared.queue.extend_lease(&mut delivery, lease).await {
            Ok(()) => {}
            Err(e @ QueueError::LeaseLost { .. }) => {
                warn!(error = %e, "message lease lost; its tasks may be delivered again");
                return;
            }
            Err(e) => warn!(error = %e, "lease renewal failed; trying again"),
        }
    }
}

impl PartLease {
    pub fn dequeue_count(&self) -> u32 {
        self.shared.dequeue_count
    }

    fn bundled(&self) -> bool {
        self.shared.parts > 1
    }

    /// This part is done: the message is deleted once every part is.
    pub async fn ack(mut self) -> Result<(), QueueError> {
        self.settled = true;
        if !self.shared.settle()
            || self.shared.keep.load(Ordering::Acquire)
            || self.shared.owner == Owner::Host
        {
            return Ok(());
        }
        let delivery = self.shared.delivery.lock().await;
        match self.shared.queue.delete(&delivery).await {
            Err(e @ QueueError::LeaseLost { .. }) => {
                debug!(error = %e, "message already gone");
                Ok(())
            }
            other => other,
        }
    }

    /// Deliver this part again after `wait`: the message's visibility for a lone part, a new
    /// delayed message for a part of a bundle or of a hosted message.
    pub async fn postpone(mut self, wait: Duration) -> Result<(), QueueError> {
        if self.bundled() || self.shared.owner == Owner::Host {
            self.shared
                .queue
                .send(std::slice::from_ref(&self.body), wait)
                .await?;
            return self.ack().await;
        }
        self.settled = true;
        self.shared.settle();
        let mut delivery = self.shared.delivery.lock().await;
        self.shared.queue.extend_lease(&mut delivery, wait).await
    }

    /// Move the message to the poison queue. Only lone parts are ever poison (a bundle
    /// delivered twice is split first); a part of a bundle is sent back on its own instead.
    pub async fn dead_letter(mut self) -> Result<(), QueueError> {
        if self.bundled() {
            return self.postpone(Duration::ZERO).await;
        }
        self.settled = true;
        self.shared.settle();
        if self.shared.owner == Owner::Host {
            self.shared.park.store(true, Ordering::Release);
            return Ok(());
        }
        let delivery = self.shared.delivery.lock().await;
        self.shared.queue.dead_letter(&delivery).await
    }
}

impl Drop for PartLease {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.keep.store(true, Ordering::Release);
            self.shared.settle();
        }
    }
}
