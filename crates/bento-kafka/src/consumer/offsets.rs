//! A subscription's offset bookkeeping: the partitions it holds and under which lease, the
//! records in flight in each, the point it is safe to commit, and the rebalance hooks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::Tp;
use super::in_flight::InFlight;
use super::settle::Settler;
use crate::context::BentoContext;

/// A partition as the subscription holds it under one lease (one assignment): what the
/// settlements of its records share. Each assignment makes a new one, so a settlement of an
/// earlier lease finds its own, revoked, and does nothing.
///
/// A delivery keeps one `Arc` of it rather than one of each part, and the records in flight are
/// locked per partition rather than with the subscription's tracker: the poller (receiving) and
/// the dispatcher (finishing) work on different threads, so every shared counter and lock a
/// record touches on both is a cache line passed between cores, twice per record.
pub(super) struct Held {
    pub(super) tp: Tp,
    pub(super) lease: u64,
    pub(super) settler: Arc<Settler>,
    /// Cleared when the partition is revoked.
    owned: AtomicBool,
    offsets: Mutex<Offsets>,
}

/// The offsets of one held partition.
#[derive(Default)]
struct Offsets {
    /// Received, not yet finished.
    in_flight: InFlight,
    /// Offset after the last received record.
    next: Option<i64>,
}

impl Held {
    /// Whether the partition is still held under this lease.
    pub(super) fn owned(&self) -> bool {
        self.owned.load(Ordering::Acquire)
    }

    /// The record at `offset` is done (handled, retried elsewhere or dead-lettered). Nothing
    /// to do once the partition is revoked: its new owner reads the record again.
    pub(super) fn finish(&self, offset: i64) {
        if self.owned() {
            self.offsets.lock().in_flight.finish(offset);
        }
    }

    fn receive(&self, offset: i64) {
        let mut offsets = self.offsets.lock();
        offsets.in_flight.insert(offset);
        offsets.next = Some(offsets.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// The offset it is safe to commit: the oldest unfinished record, or after the last one.
    fn commit_point(&self) -> Option<i64> {
        let offsets = self.offsets.lock();
        offsets.in_flight.oldest().or(offsets.next)
    }
}

/// A partition assigned to the subscription.
struct PartitionState {
    held: Arc<Held>,
    /// Last offset committed (or being committed).
    committed: Option<i64>,
}

/// The tracker's maps are read for every record received: a fast hash, as in the dispatcher's
/// key map (SipHash of the topic name showed in profiles).
type FastHash = foldhash::fast::RandomState;

#[derive(Default)]
struct Tracker {
    partitions: HashMap<Tp, PartitionState, FastHash>,
    /// The names of the topics seen, so a record's topic is looked up without a copy.
    names: HashSet<Arc<str>, FastHash>,
    next_lease: u64,
}

/// How far the group's partition assignment has come, for `subscribe` to wait on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Assignment {
    /// Assignments received so far.
    pub(crate) rounds: u64,
    /// Partitions currently assigned.
    pub(crate) partitions: usize,
}

/// State shared by a subscription's poller, its rebalance callbacks, its settlements and its
/// handler guard.
pub(crate) struct SubscriptionState {
    pub(crate) group: String,
    settler: Arc<Settler>,
    tracker: Mutex<Tracker>,
    assignment: watch::Sender<Assignment>,
}

impl SubscriptionState {
    pub(crate) fn new(group: &str, settler: Arc<Settler>) -> Self {
        Self {
            group: group.to_owned(),
            settler,
            tracker: Mutex::new(Tracker::default()),
            assignment: watch::channel(Assignment::default()).0,
        }
    }

    pub(crate) fn watch_assignment(&self) -> watch::Receiver<Assignment> {
        self.assignment.subscribe()
    }

    /// Rebalance: partitions are about to be taken away. Their finished offsets are committed
    /// now; settlements still running for them become void (the next owner redelivers).
    pub(crate) fn revoke(
        &self,
        consumer: &BaseConsumer<BentoContext>,
        revoked: &TopicPartitionList,
    ) {
        let mut commit = TopicPartitionList::new();
        let remaining = {
            let mut tracker = self.tracker.lock();
            for element in revoked.elements() {
                let tp = (Arc::from(element.topic()), element.partition());
                let Some(state) = tracker.partitions.remove(&tp) else {
                    continue;
                };
                state.held.owned.store(false, Ordering::Release);
                if let Some(point) = state.held.commit_point()
                    && state.committed.is_none_or(|c| c < point)
                {
                    let _ = commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(point));
                }
            }
            tracker.partitions.len()
        };
        if commit.count() > 0
            && let Err(error) = consumer.commit(&commit, CommitMode::Sync)
        {
            tracing::warn!(group = %self.group, %error, "committing the offsets of revoked partitions failed; their records will be redelivered");
        }
        tracing::debug!(group = %self.group, revoked = revoked.count(), remaining, "partitions revoked");
        self.assignment.send_modify(|a| a.partitions = remaining);
    }

    /// Rebalance: partitions are about to be assigned (before fetching starts).
    pub(crate) fn assign(&self, assigned: &TopicPartitionList) {
        let mut tracker = self.tracker.lock();
        for element in assigned.elements() {
            tracker.next_lease += 1;
            let lease = tracker.next_lease;
            let topic = match tracker.names.get(element.topic()) {
                Some(topic) => topic.clone(),
                None => {
                    let topic: Arc<str> = Arc::from(element.topic());
                    tracker.names.insert(topic.clone());
                    topic
                }
            };
            let tp = (topic, element.partition());
            let held = Arc::new(Held {
                tp: tp.clone(),
                lease,
                settler: self.settler.clone(),
                owned: AtomicBool::new(true),
                offsets: Mutex::new(Offsets::default()),
            });
            tracker.partitions.insert(
                tp,
                PartitionState {
                    held,
                    committed: None,
                },
            );
        }
    }

    /// Rebalance: partitions were assigned.
    pub(crate) fn assigned(&self, assigned: &TopicPartitionList) {
        let partitions = self.tracker.lock().partitions.len();
        tracing::debug!(group = %self.group, assigned = assigned.count(), partitions, "partitions assigned");
        self.assignment.send_modify(|a| {
            a.rounds += 1;
            a.partitions = partitions;
        });
    }

    /// An asynchronous commit failed: forget it, so the next round commits again.
    pub(crate) fn commit_failed(&self, error: &KafkaError, offsets: &TopicPartitionList) {
        tracing::warn!(group = %self.group, %error, "committing offsets failed; retrying on the next commit");
        let mut tracker = self.tracker.lock();
        for element in offsets.elements() {
            let tp = (Arc::from(element.topic()), element.partition());
            if let (Some(state), Offset::Offset(offset)) =
                (tracker.partitions.get_mut(&tp), element.offset())
                && state.committed == Some(offset)
            {
                state.committed = None;
            }
        }
    }

    /// Registers a received record: the partition it belongs to as held now, `None` if the
    /// partition is not (or no longer) assigned.
    pub(super) fn track(&self, topic: &str, partition: i32, offset: i64) -> Option<Arc<Held>> {
        let tracker = self.tracker.lock();
        let tp = (tracker.names.get(topic)?.clone(), partition);
        let held = &tracker.partitions.get(&tp)?.held;
        held.receive(offset);
        Some(held.clone())
    }

    /// [`Self::track`], trying the partition of the previous record first (`last`): records
    /// come in runs of one partition, whose records then skip the subscription's lock and its
    /// two map lookups. A partition revoked since is no longer owned and is looked up again;
    /// one revoked between the check and the record's registration has its commit point taken
    /// before the record counted as received, so no commit passes it.
    pub(super) fn track_after(
        &self,
        last: &mut Option<Arc<Held>>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<Arc<Held>> {
        if let Some(held) = last
            .as_ref()
            .filter(|held| held.tp.1 == partition && held.owned() && *held.tp.0 == *topic)
        {
            held.receive(offset);
            return Some(held.clone());
        }
        let held = self.track(topic, partition, offset)?;
        *last = Some(held.clone());
        Some(held)
    }

    /// Offsets that moved since the last commit, marked as committed.
    pub(super) fn due_commits(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let mut tracker = self.tracker.lock();
        for ((topic, partition), state) in tracker.partitions.iter_mut() {
            if let Some(point) = state.held.commit_point()
                && state.committed.is_none_or(|c| c < point)
            {
                state.committed = Some(point);
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(point));
            }
        }
        tpl
    }

    pub(super) fn forget_commits(&self, offsets: &TopicPartitionList) {
        let mut tracker = self.tracker.lock();
        for element in offsets.elements() {
            let tp = (Arc::from(element.topic()), element.partition());
            if let Some(state) = tracker.partitions.get_mut(&tp) {
                state.committed = None;
            }
        }
    }
}
