//! Coalesced fresh reads: many tasks finishing at once each need a read that started after
//! their own write (is the group finished? is the job still running?). One read serves every
//! caller that asked before it started, so a burst of N callers costs about two reads, not N,
//! and no caller ever gets an answer older than its request.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The last read of one key: when it started (on the coalescer's clock) and what it returned.
type Slot<V> = Arc<tokio::sync::Mutex<Option<(u64, V)>>>;

pub(crate) struct Coalescer<K, V> {
    clock: AtomicU64,
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            clock: AtomicU64::new(0),
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Coalescer<K, V> {
    /// The value of `key` as of a read that started after this call: shared with concurrent
    /// callers of the same key, run by `read` when none qualifies. A failed read is not shared.
    pub async fn fresh<E, Fut>(&self, key: &K, read: impl FnOnce() -> Fut) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        let ticket = self.clock.fetch_add(1, Ordering::SeqCst);
        let slot = self
            .slots
            .lock()
            .expect("coalescer lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let mut last = slot.lock().await;
            match &*last {
                Some((started, value)) if *started > ticket => Ok(value.clone()),
                _ => {
                    let started = self.clock.fetch_add(1, Ordering::SeqCst);
                    match read().await {
                        Ok(value) => {
                            *last = Some((started, value.clone()));
                            Ok(value)
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        // Forget the key when nobody else waits on it: the cache only lives through a burst.
        let mut slots = self.slots.lock().expect("coalescer lock");
        if Arc::strong_count(&slot) == 2 {
            slots.remove(key);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn a_burst_shares_reads_and_no_answer_predates_its_request() {
        let coalescer = Arc::new(Coalescer::<&str, u64>::default());
        let reads = Arc::new(AtomicUsize::new(0));
        // The "stored value" is a version that each caller bumps before asking (its write).
        let version = Arc::new(AtomicU64::new(0));
        let mut callers = Vec::new();
        for _ in 0..50 {
            let (coalescer, reads, version) = (coalescer.clone(), reads.clone(), version.clone());
            callers.push(tokio::spawn(async move {
                let written = version.fetch_add(1, Ordering::SeqCst) + 1;
                let seen = coalescer
                    .fresh(&"group", || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        let v = version.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok::<_, ()>(v)
                    })
                    .await
                    .unwrap();
                (written, seen)
            }));
        }
        for caller in callers {
            let (written, seen) = caller.await.unwrap();
            assert!(
                seen >= written,
                "saw version {seen} after writing {written}"
            );
        }
        let reads = reads.load(Ordering::SeqCst);
        assert!(reads < 50, "{reads} reads for 50 callers");
        assert!(coalescer.slots.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_is_not_shared() {
        let coalescer = Coalescer::<u8, u8>::default();
        let failed: Result<u8, &str> = coalescer.fresh(&1, || async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        let ok: Result<u8, &str> = coalescer.fresh(&1, || async { Ok(7) }).await;
        assert_eq!(ok, Ok(7));
    }
}
