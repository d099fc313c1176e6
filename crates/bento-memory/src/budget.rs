//! The byte budget of one subscription: what its unsettled messages may take, with publishers
//! waiting for room beyond it.
//!
//! A counter and a wake-up rather than a semaphore: taking and giving back room is one atomic
//! operation each on the path every message takes, with no lock unless a publisher waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Bytes a subscription's unsettled messages may take.
#[derive(Debug)]
pub(crate) struct Budget {
    capacity: usize,
    used: AtomicUsize,
    /// Publishers waiting for room; new publishes queue behind them.
    waiting: AtomicUsize,
    freed: Notify,
}

/// A message's share of its subscription's budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Room {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::SeqCst);
        if self.budget.waiting.load(Ordering::SeqCst) > 0 {
            self.budget.freed.notify_waiters();
        }
    }
}

impl Budget {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// What a message of `payload` bytes counts: the payload and 256 bytes for the envelope's
    /// fields and the bookkeeping around it; never more than the whole budget, so that any
    /// message fits an empty subscription.
    pub(crate) fn weight(&self, payload: usize) -> usize {
        (payload + 256).min(self.capacity)
    }

    /// Room for `bytes` now, unless the budget is spent or publishers wait before this one.
    pub(crate) fn try_take(self: &Arc<Self>, bytes: usize) -> Option<Room> {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.take_now(bytes)
    }

    fn take_now(self: &Arc<Self>, bytes: usize) -> Option<Room> {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            if used + bytes > self.capacity {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    return Some(Room {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    /// Room for `bytes`, waiting until settled messages give enough back.
    pub(crate) async fn take(self: &Arc<Self>, bytes: usize) -> Room {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let room = loop {
            // Registered before the check, so a release between the two still wakes it.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(room) = self.take_now(bytes) {
                break room;
            }
            freed.await;
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        room
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn room_comes_back_when_a_message_is_done() {
        let budget = Budget::new(1000);
        let first = budget.try_take(600).expect("room");
        assert!(budget.try_take(600).is_none(), "600 + 600 > 1000");
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(600).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        assert!(
            budget.try_take(100).is_none(),
            "a new publish queues behind the waiting one"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(budget.used.load(Ordering::SeqCst), 600);
        drop(second);
        assert_eq!(budget.used.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_message_larger_than_the_budget_still_fits_an_empty_one() {
        let budget = Budget::new(1000);
        assert_eq!(budget.weight(5000), 1000);
        assert!(budget.try_take(budget.weight(5000)).is_some());
    }
}
