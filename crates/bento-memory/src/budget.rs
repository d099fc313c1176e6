//! The byte budget of one subscription: what its unsettled messages may take, with publishers
//! waiting for room beyond it.
//!
//! A counter and a wake-up rather than a semaphore: taking and giving back room is one atomic
//! operation each on the path every message takes, with no lock unless a publisher waits.
//!
//! Well before the budget is spent, a publisher paces itself: a task that publishes one event
//! at a time never waits for the bus, and on tokio's multi-threaded runtime the consumer it
//! wakes is queued on the publisher's own worker, where no other worker may take it, so the
//! publisher would run ahead by thousands of messages that leave the CPU's caches before the
//! consumer reads them. Past [`PACE`] unsettled bytes it waits until consumers have caught up
//! to half of that, or for [`PACE_PATIENCE`] at most: consumers that do not catch up in that
//! time are slow, not starved, and are left to fill the budget until they have drained.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Unsettled bytes past which a publisher waits for consumers that keep up.
const PACE: usize = 1024 * 1024;
/// How long a publisher waits for consumers to catch up before it takes them for slow.
const PACE_PATIENCE: Duration = Duration::from_millis(20);

/// Bytes a subscription's unsettled messages may take.
#[derive(Debug)]
pub(crate) struct Budget {
    capacity: usize,
    used: AtomicUsize,
    /// Publishers waiting for room; new publishes queue behind them.
    waiting: AtomicUsize,
    /// Publishers waiting for consumers to catch up (see the module's comment).
    pacing: AtomicUsize,
    /// Consumers did not catch up within [`PACE_PATIENCE`]: no pacing until they drained to
    /// half of [`Budget::pace`].
    lagging: AtomicBool,
    /// Unsettled bytes past which publishers pace themselves.
    pace: usize,
    freed: Notify,
}

impl Budget {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            pacing: AtomicUsize::new(0),
            lagging: AtomicBool::new(false),
            // A budget within twice the pace holds publishers close enough by itself.
            pace: if capacity / 2 >= PACE {
                PACE
            } else {
                usize::MAX
            },
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
        let _waiting = Waiting::count(&self.waiting);
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

    /// Whether a publisher should wait for consumers to catch up before it goes on: past the
    /// pace, unless they were found slow.
    pub(crate) fn ahead(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.pace && !self.lagging.load(Ordering::Relaxed)
    }

    /// Stops pacing publishers until consumers have drained to half the pace: they are slow,
    /// or there are none.
    pub(crate) fn mark_lagging(&self) {
        self.lagging.store(true, Ordering::Relaxed);
    }

    /// Waits until consumers have caught up to half the pace, or for [`PACE_PATIENCE`], after
    /// which they count as lagging.
    pub(crate) async fn catch_up(&self) {
        let _pacing = Waiting::count(&self.pacing);
        let deadline = Instant::now() + PACE_PATIENCE;
        loop {
            // Registered before the check, so a drain between the two still wakes it.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.used.load(Ordering::SeqCst) <= self.pace / 2 {
                return;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.mark_lagging();
                return;
            }
        }
    }

    /// Gives back room for `bytes` taken before, waking the publishers that wait for room, and
    /// those pacing themselves once consumers have caught up.
    pub(crate) fn give_back(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::SeqCst);
        let low = self.pace / 2;
        let caught_up = before > low && before - bytes <= low;
        if caught_up {
            self.lagging.store(false, Ordering::Relaxed);
        }
        if self.waiting.load(Ordering::SeqCst) > 0
            || (caught_up && self.pacing.load(Ordering::SeqCst) > 0)
        {
            self.freed.notify_waiters();
        }
    }
}

/// One publisher counted in a count of waiting publishers while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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

    #[tokio::test(start_paused = true)]
    async fn a_publisher_ahead_of_its_consumers_waits_until_they_caught_up() {
        let budget = Budget::new(64 * PACE);
        assert!(budget.try_take(PACE));
        assert!(!budget.ahead(), "at the pace, not past it");
        assert!(budget.try_take(1000));
        assert!(budget.ahead());
        let pacing = tokio::spawn({
            let budget = budget.clone();
            async move { budget.catch_up().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !pacing.is_finished(),
            "waits while its consumers are behind"
        );
        budget.give_back(PACE / 4);
        tokio::task::yield_now().await;
        assert!(!pacing.is_finished(), "still above half the pace");
        budget.give_back(PACE / 4 + 1000);
        tokio::time::timeout(PACE_PATIENCE / 2, pacing)
            .await
            .expect("woken once the consumers caught up, before its patience ran out")
            .expect("task");
        assert!(!budget.lagging.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn consumers_that_do_not_catch_up_are_left_to_fill_the_budget_until_they_drained() {
        let budget = Budget::new(64 * PACE);
        assert!(budget.try_take(2 * PACE));
        let started = Instant::now();
        budget.catch_up().await;
        assert_eq!(
            started.elapsed(),
            PACE_PATIENCE,
            "waits its patience out, no longer"
        );
        assert!(
            !budget.ahead(),
            "slow consumers: publishers no longer pace themselves"
        );
        assert!(
            budget.try_take(PACE),
            "and still take room up to the budget"
        );
        budget.give_back(3 * PACE - PACE / 2);
        assert!(budget.try_take(PACE));
        assert!(
            budget.ahead(),
            "once they drained, publishers pace themselves again"
        );
    }

    #[test]
    fn a_budget_within_twice_the_pace_holds_publishers_by_itself() {
        let budget = Budget::new(2 * PACE - 1);
        assert!(budget.try_take(2 * PACE - 1));
        assert!(!budget.ahead());
    }

    #[test]
    fn a_message_larger_than_the_budget_still_fits_an_empty_one() {
        let budget = Budget::new(1000);
        assert_eq!(budget.weight(5000), 1000);
        assert!(budget.try_take(budget.weight(5000)));
    }
}
