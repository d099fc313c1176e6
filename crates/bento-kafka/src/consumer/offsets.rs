//! A subscription's offset bookkeeping: the partitions it holds and under which lease, the
//! records in flight in each, the point it is safe to commit, and the rebalance hooks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::in_flight::InFlight;
use super::{LeaseCell, Tp, VOID};
use crate::context::BentoContext;

/// Offsets of one assigned partition.
struct PartitionState {
    /// Changes on every assignment: settlements of an older lease are void.
    lease: u64,
    /// `lease`, readable without the tracker's lock.
    cell: LeaseCell,
    /// Received, not yet finished.
    in_flight: InFlight,
    /// Offset after the last received record.
    next: Option<i64>,
    /// Last offset committed (or being committed).
    committed: Option<i64>,
}

impl PartitionState {
    /// The offset it is safe to commit: the oldest unfinished record, or after the last one.
    fn commit_point(&self) -> Option<i64> {
        self.in_flight.oldest().or(self.next)
    }
}

/// The tracker's maps are read for every record received and settled: a fast hash, as in the
/// dispatcher's key map (SipHash of the topic name, twice a record, showed in profiles).
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
    tracker: Mutex<Tracker>,
    assignment: watch::Sender<Assignment>,
}

impl SubscriptionState {
    pub(crate) fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
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
                let removed = tracker.partitions.remove(&tp);
                if let Some(state) = &removed {
                    state.cell.store(VOID, Ordering::Release);
                }
                if let Some(state) = removed
                    && let Some(point) = state.commit_point()
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
            tracker.partitions.insert(
                (topic, element.partition()),
                PartitionState {
                    lease,
                    cell: Arc::new(AtomicU64::new(lease)),
                    in_flight: InFlight::default(),
                    next: None,
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

    /// Registers a received record: its partition and lease, `None` if the partition is not
    /// (or no longer) assigned.
    pub(super) fn track(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<(Tp, u64, LeaseCell)> {
        let mut tracker = self.tracker.lock();
        let tp = (tracker.names.get(topic)?.clone(), partition);
        let state = tracker.partitions.get_mut(&tp)?;
        state.in_flight.insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |n| n.max(offset + 1)));
        let (lease, cell) = (state.lease, state.cell.clone());
        Some((tp, lease, cell))
    }

    /// The record at `offset` is done (handled, retried elsewhere or dead-lettered).
    pub(super) fn finish(&self, tp: &Tp, lease: u64, offset: i64) {
        let mut tracker = self.tracker.lock();
        if let Some(state) = tracker.partitions.get_mut(tp)
            && state.lease == lease
        {
            state.in_flight.finish(offset);
        }
    }

    /// Offsets that moved since the last commit, marked as committed.
    pub(super) fn due_commits(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let mut tracker = self.tracker.lock();
        for ((topic, partition), state) in tracker.partitions.iter_mut() {
            if let Some(point) = state.commit_point()
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
