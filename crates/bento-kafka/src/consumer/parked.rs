//! The records a subscription holds until their due time (delayed messages, retries), by
//! partition and soonest first, with a running count of all of them so that the bound is
//! checked without a pass over the partitions.

use std::collections::{BTreeMap, HashMap};

use bento_application::backend::Delivery;
use chrono::{DateTime, Utc};

use super::Tp;

/// Records a subscription holds until they are due. Below this its partitions keep being read,
/// so that a message due soon is not stuck behind one due in an hour; at this many, partitions
/// that bring more not-yet-due records pause until half of them left (back-pressure, never
/// dropping), which bounds the memory they take.
pub(super) const MAX_PARKED: usize = 10_000;

/// Records of one partition waiting for their due time, soonest first.
struct Lot {
    lease: u64,
    queue: BTreeMap<(DateTime<Utc>, i64), Delivery>,
    /// Whether the partition is paused because the subscription holds [`MAX_PARKED`].
    paused: bool,
}

impl Lot {
    fn new(lease: u64) -> Self {
        Self {
            lease,
            queue: BTreeMap::new(),
            paused: false,
        }
    }
}

/// Every partition's lot, and how many records they hold in all.
#[derive(Default)]
pub(super) struct Parked {
    lots: HashMap<Tp, Lot>,
    count: usize,
}

impl Parked {
    /// When the soonest record is due, if any is held.
    pub(super) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lots
            .values()
            .filter_map(|lot| lot.queue.first_key_value().map(|((at, _), _)| *at))
            .min()
    }

    /// Holds `delivery` (of `tp` at `offset`, under `lease`) until `due`; `true` when the
    /// subscription now holds [`MAX_PARKED`] and `tp`, not paused yet, should pause.
    pub(super) fn park(
        &mut self,
        tp: &Tp,
        lease: u64,
        due: DateTime<Utc>,
        offset: i64,
        delivery: Delivery,
    ) -> bool {
        let lot = self
            .lots
            .entry(tp.clone())
            .or_insert_with(|| Lot::new(lease));
        if lot.lease != lease {
            // Held under an earlier assignment: their settlements would do nothing.
            self.count -= lot.queue.len();
            *lot = Lot::new(lease);
        }
        if lot.queue.insert((due, offset), delivery).is_none() {
            self.count += 1;
        }
        if !lot.paused && self.count >= MAX_PARKED {
            lot.paused = true;
            return true;
        }
        false
    }

    /// Moves the records that are due to `ready`, soonest first per partition, and drops those
    /// of revoked partitions (their new owner reads them again). Returns the partitions to
    /// resume: the paused ones, once at most half of [`MAX_PARKED`] is held.
    pub(super) fn release_due(&mut self, ready: &mut Vec<Delivery>) -> Vec<Tp> {
        let now = Utc::now();
        let mut released = 0;
        self.lots.retain(|_, lot| {
            let owned = lot
                .queue
                .first_key_value()
                .is_none_or(|(_, delivery)| delivery.settle.is_current());
            if !owned {
                released += lot.queue.len();
                return false;
            }
            while lot
                .queue
                .first_key_value()
                .is_some_and(|((at, _), _)| *at <= now)
            {
                if let Some((_, delivery)) = lot.queue.pop_first() {
                    released += 1;
                    ready.push(delivery);
                }
            }
            !lot.queue.is_empty() || lot.paused
        });
        self.count -= released;
        if self.count > MAX_PARKED / 2 {
            return Vec::new();
        }
        let mut resumed = Vec::new();
        for (tp, lot) in self.lots.iter_mut().filter(|(_, lot)| lot.paused) {
            lot.paused = false;
            resumed.push(tp.clone());
        }
        self.lots.retain(|_, lot| !lot.queue.is_empty());
        resumed
    }

    /// How many records are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use bento_application::BusError;
    use bento_application::backend::Settle;
    use bento_domain::Envelope;

    use super::*;

    struct Held(Arc<AtomicBool>);

    #[async_trait]
    impl Settle for Held {
        fn ack(self: Box<Self>) -> Result<(), BusError> {
            Ok(())
        }
        async fn retry(self: Box<Self>, _: &Envelope, _: u32, _: Duration) -> Result<(), BusError> {
            Ok(())
        }
        async fn dead_letter(self: Box<Self>, _: Envelope, _: &str) -> Result<(), BusError> {
            Ok(())
        }
        async fn release(self: Box<Self>) -> Result<(), BusError> {
            Ok(())
        }
        fn is_current(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn delivery(current: &Arc<AtomicBool>) -> Delivery {
        Delivery {
            envelope: Arc::new(Envelope::new("t.e", 1, "text/plain", &b"x"[..])),
            attempt: 1,
            settle: Box::new(Held(current.clone())),
        }
    }

    #[test]
    fn the_count_follows_parking_releasing_revoking_and_reassigning() {
        let current = Arc::new(AtomicBool::new(true));
        let (a, b): (Tp, Tp) = (("t".into(), 0), ("t".into(), 1));
        let past = Utc::now() - chrono::Duration::seconds(1);
        let later = Utc::now() + chrono::Duration::hours(1);
        let mut parked = Parked::default();
        assert!(!parked.park(&a, 1, later, 10, delivery(&current)));
        assert!(
            !parked.park(&a, 1, later, 10, delivery(&current)),
            "same record twice"
        );
        assert!(!parked.park(&a, 1, past, 11, delivery(&current)));
        assert!(!parked.park(&b, 1, later, 5, delivery(&current)));
        assert_eq!(parked.len(), 3);
        assert_eq!(parked.next_due(), Some(past));

        let mut ready = Vec::new();
        assert!(parked.release_due(&mut ready).is_empty());
        assert_eq!((ready.len(), parked.len()), (1, 2));

        // Reassigned under a new lease: the lot's earlier records are gone.
        assert!(!parked.park(&a, 2, later, 12, delivery(&current)));
        assert_eq!(parked.len(), 2);

        // Revoked: released without being handed over.
        current.store(false, Ordering::Relaxed);
        parked.release_due(&mut ready);
        assert_eq!((ready.len(), parked.len()), (1, 0));
        assert_eq!(parked.next_due(), None);
    }

    #[test]
    fn at_the_bound_a_partition_pauses_once_and_resumes_at_half() {
        let current = Arc::new(AtomicBool::new(true));
        let tp: Tp = ("t".into(), 0);
        let now = Utc::now();
        let mut parked = Parked::default();
        let mut pauses = 0;
        for offset in 0..MAX_PARKED as i64 + 10 {
            // The first half soon due, the rest in an hour.
            let due = if offset < (MAX_PARKED / 2) as i64 + 10 {
                now - chrono::Duration::seconds(1)
            } else {
                now + chrono::Duration::hours(1)
            };
            if parked.park(&tp, 1, due, offset, delivery(&current)) {
                pauses += 1;
            }
        }
        assert_eq!(pauses, 1);
        assert_eq!(parked.len(), MAX_PARKED + 10);
        let mut ready = Vec::new();
        assert_eq!(parked.release_due(&mut ready), vec![tp]);
        assert_eq!(parked.len(), MAX_PARKED / 2);
    }
}
