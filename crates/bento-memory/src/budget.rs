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

    /// Takes room for `bytes` now, unless the budget is spent or publishers wait before this
    /// one; `false` when it did not.
    pub(crate) fn try_take(&self, bytes: usize) -> bool {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return false;
        }
        self.take_now(bytes)
    }

    fn take_now(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            if used + bytes > self.capacity {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Takes room for `bytes`, waiting until settled messages give enough back.
    ///
    /// Cancel-safe: a publish given up while it waits (under a timeout, say) takes no room and
    /// no longer counts as waiting, so later publishes do not queue behind it.
    pub(crate) async fn take(&self, bytes: usize) {
        let _waiting = Waiting::count(self);
        loop {
            // Registered before the check, so a release between the two still wakes it.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.take_now(bytes) {
                break;
            }
            freed.await;
        }
    }

    /// Gives back room for `bytes` taken before, waking the publishers that wait for room.
    pub(crate) fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// One publisher counted in [`Budget::waiting`] while it lives.
struct Waiting<'a>(&'a Budget);

impl<'a> Waiting<'a> {
    fn count(budget: &'a Budget) -> Self {
        budget.waiting.fetch_add(1, Ordering::SeqCst);
        Self(budget)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn room_comes_back_when_a_message_is_done() {
        let budget = Budget::new(1000);
        assert!(budget.try_take(600), "room");
        assert!(!budget.try_take(600), "600 + 600 > 1000");
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(600).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        assert!(
            !budget.try_take(100),
            "a new publish queues behind the waiting one"
        );
        budget.give_back(600);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(budget.used.load(Ordering::SeqCst), 600);
        budget.give_back(600);
        assert_eq!(budget.used.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_publish_given_up_while_waiting_holds_no_one_back() {
        let budget = Budget::new(1000);
        assert!(budget.try_take(1000));
        let gave_up = tokio::time::timeout(Duration::from_millis(20), budget.take(500)).await;
        assert!(gave_up.is_err(), "no room: the wait times out");
        budget.give_back(1000);
        assert!(
            budget.try_take(500),
            "with room again, a new publish takes it at once instead of queueing behind the \
             publish that gave up"
        );
        assert_eq!(budget.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_message_larger_than_the_budget_still_fits_an_empty_one() {
        let budget = Budget::new(1000);
        assert_eq!(budget.weight(5000), 1000);
        assert!(budget.try_take(budget.weight(5000)));
    }
}
