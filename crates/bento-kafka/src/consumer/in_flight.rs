//! The records of one partition that were received and are not finished yet.
//!
//! Records arrive in offset order and mostly finish in it, so they are kept as a window of
//! offsets in a ring buffer: receiving one appends it, finishing one marks it, and the finished
//! records at the front leave. The oldest unfinished record is the front, where the commit
//! point is read. (A sorted tree did the same with an allocation every few records and a
//! rebalancing walk on both sides, under the lock the poller and the dispatcher share.)

use std::collections::VecDeque;

/// Offsets received and not yet finished, oldest first.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// Received offsets in increasing order, each with whether it is finished; the front is
    /// never finished.
    window: VecDeque<(i64, bool)>,
}

impl InFlight {
    /// A record at `offset` was received.
    pub(super) fn insert(&mut self, offset: i64) {
        if self.window.back().is_none_or(|&(last, _)| offset > last) {
            self.window.push_back((offset, false));
            return;
        }
        // Received again (librdkafka fetched it again after a pause, say): unfinished until it
        // is finished again.
        match self.position(offset) {
            Ok(index) => self.window[index].1 = false,
            Err(index) => self.window.insert(index, (offset, false)),
        }
    }

    /// The record at `offset` is finished; unknown offsets are ignored.
    pub(super) fn finish(&mut self, offset: i64) {
        if let Ok(index) = self.position(offset) {
            self.window[index].1 = true;
        }
        while self.window.front().is_some_and(|&(_, finished)| finished) {
            self.window.pop_front();
        }
    }

    /// The oldest record not finished.
    pub(super) fn oldest(&self) -> Option<i64> {
        self.window.front().map(|&(offset, _)| offset)
    }

    fn position(&self, offset: i64) -> Result<usize, usize> {
        // Records mostly finish in the order they came: look at the front first.
        match self.window.front() {
            Some(&(first, _)) if first == offset => Ok(0),
            _ => self.window.binary_search_by_key(&offset, |&(o, _)| o),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn the_oldest_unfinished_record_stays_the_front() {
        let mut in_flight = InFlight::default();
        for offset in 10..15 {
            in_flight.insert(offset);
        }
        assert_eq!(in_flight.oldest(), Some(10));
        in_flight.finish(12);
        in_flight.finish(11);
        assert_eq!(in_flight.oldest(), Some(10), "10 is still running");
        in_flight.finish(10);
        assert_eq!(in_flight.oldest(), Some(13), "10, 11 and 12 are done");
        in_flight.finish(14);
        in_flight.finish(13);
        assert_eq!(in_flight.oldest(), None);
    }

    #[test]
    fn a_record_received_again_is_unfinished_again() {
        let mut in_flight = InFlight::default();
        for offset in [5, 6, 7] {
            in_flight.insert(offset);
        }
        in_flight.finish(6);
        in_flight.insert(6);
        in_flight.finish(5);
        assert_eq!(in_flight.oldest(), Some(6));
        in_flight.insert(3);
        assert_eq!(
            in_flight.oldest(),
            Some(3),
            "an older offset goes in its place"
        );
        in_flight.insert(7);
        for offset in [3, 6, 7] {
            in_flight.finish(offset);
        }
        assert_eq!(in_flight.oldest(), None);
    }

    #[test]
    fn finishing_an_unknown_offset_changes_nothing() {
        let mut in_flight = InFlight::default();
        in_flight.finish(1);
        assert_eq!(in_flight.oldest(), None);
        in_flight.insert(2);
        in_flight.finish(1);
        in_flight.finish(3);
        assert_eq!(in_flight.oldest(), Some(2));
    }

    #[test]
    fn it_agrees_with_a_sorted_set_on_a_shuffled_run() {
        use std::collections::BTreeSet;
        let mut in_flight = InFlight::default();
        let mut set = BTreeSet::new();
        // A fixed pseudo-random order of finishes over a moving window of receipts.
        let mut seed = 0x9e37_79b9_u64;
        let mut next = 0i64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if !seed.is_multiple_of(3) || set.is_empty() {
                in_flight.insert(next);
                set.insert(next);
                next += 1;
            } else {
                let pick = *set
                    .iter()
                    .nth((seed >> 8) as usize % set.len())
                    .expect("not empty");
                in_flight.finish(pick);
                set.remove(&pick);
            }
            assert_eq!(in_flight.oldest(), set.first().copied());
        }
    }
}
