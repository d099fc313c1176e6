//! One subscription: a consumer-group member, its offset bookkeeping, the delay/retry parking
//! lot, and the [`Settle`] that retries and dead-letters through the producer.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bento_application::{BusError, Delivery, Settle, wire};
use bento_domain::Envelope;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::context::BentoContext;
use crate::headers;
use crate::producer::{KafkaProducer, Outgoing};
use crate::topics;

/// Deliveries that may wait between the pollers and the dispatcher. When they are all taken
/// the pollers stop taking records from librdkafka, whose own prefetch queue then fills up to
/// `queued.max.messages.kbytes` and stops fetching: back-pressure without pausing partitions
/// (a paused partition loses what librdkafka had prefetched and must fetch it again).
const HANDOFF_CAPACITY: usize = 512;
/// Records taken from librdkafka in one go, while it has them at hand.
const RECEIVE_BURST: usize = 64;
/// Attempts at producing a retry or dead letter before giving the message back.
const SETTLE_ATTEMPTS: u32 = 3;

/// A topic partition; topic names are shared, not copied per record.
type Tp = (Arc<str>, i32);

/// The lease a partition is held under: changes on every assignment, [`VOID`] once revoked.
/// Deliveries keep it to tell, without a lock, whether their partition is still theirs.
type LeaseCell = Arc<AtomicU64>;
/// No lease: the partition was revoked.
const VOID: u64 = 0;

/// Offsets of one assigned partition.
struct PartitionState {
    /// Changes on every assignment: settlements of an older lease are void.
    lease: u64,
    /// `lease`, readable without the tracker's lock.
    cell: LeaseCell,
    /// Received, not yet finished.
    in_flight: BTreeSet<i64>,
    /// Offset after the last received record.
    next: Option<i64>,
    /// Last offset committed (or being committed).
    committed: Option<i64>,
}

impl PartitionState {
    /// The offset it is safe to commit: the oldest unfinished record, or after the last one.
    fn commit_point(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }
}

#[derive(Default)]
struct Tracker {
    partitions: HashMap<Tp, PartitionState>,
    /// The names of the topics seen, so a record's topic is looked up without a copy.
    names: HashSet<Arc<str>>,
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
            let mut tracker = lock(&self.tracker);
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
        let mut tracker = lock(&self.tracker);
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
                    in_flight: BTreeSet::new(),
                    next: None,
                    committed: None,
                },
            );
        }
    }

    /// Rebalance: partitions were assigned.
    pub(crate) fn assigned(&self, assigned: &TopicPartitionList) {
        let partitions = lock(&self.tracker).partitions.len();
        tracing::debug!(group = %self.group, assigned = assigned.count(), partitions, "partitions assigned");
        self.assignment.send_modify(|a| {
            a.rounds += 1;
            a.partitions = partitions;
        });
    }

    /// An asynchronous commit failed: forget it, so the next round commits again.
    pub(crate) fn commit_failed(&self, error: &KafkaError, offsets: &TopicPartitionList) {
        tracing::warn!(group = %self.group, %error, "committing offsets failed; retrying on the next commit");
        let mut tracker = lock(&self.tracker);
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
    fn track(&self, topic: &str, partition: i32, offset: i64) -> Option<(Tp, u64, LeaseCell)> {
        let mut tracker = lock(&self.tracker);
        let tp = (tracker.names.get(topic)?.clone(), partition);
        let state = tracker.partitions.get_mut(&tp)?;
        state.in_flight.insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |n| n.max(offset + 1)));
        let (lease, cell) = (state.lease, state.cell.clone());
        Some((tp, lease, cell))
    }

    /// The record at `offset` is done (handled, retried elsewhere or dead-lettered).
    fn finish(&self, tp: &Tp, lease: u64, offset: i64) {
        let mut tracker = lock(&self.tracker);
        if let Some(state) = tracker.partitions.get_mut(tp)
            && state.lease == lease
        {
            state.in_flight.remove(&offset);
        }
    }

    /// Offsets that moved since the last commit, marked as committed.
    fn due_commits(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let mut tracker = lock(&self.tracker);
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

    fn forget_commits(&self, offsets: &TopicPartitionList) {
        let mut tracker = lock(&self.tracker);
        for element in offsets.elements() {
            let tp = (Arc::from(element.topic()), element.partition());
            if let Some(state) = tracker.partitions.get_mut(&tp) {
                state.committed = None;
            }
        }
    }
}

/// The dispatcher's side of the hand-off: the deliveries the pollers produced.
pub(crate) struct Deliveries {
    rx: mpsc::Receiver<Delivery>,
}

impl Deliveries {
    /// A bounded hand-off for pollers to feed.
    pub(crate) fn channel() -> (mpsc::Sender<Delivery>, Deliveries) {
        let (tx, rx) = mpsc::channel(HANDOFF_CAPACITY);
        (tx, Deliveries { rx })
    }
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx)
    }
}

/// Everything a subscription's settlements need.
pub(crate) struct Settler {
    pub(crate) producer: KafkaProducer,
    pub(crate) topic: String,
    pub(crate) group: String,
    pub(crate) tiers: u32,
}

/// A received record, decoded.
struct Incoming {
    tp: Tp,
    offset: i64,
    lease: u64,
    cell: LeaseCell,
    envelope: Envelope,
    attempt: u32,
    due: Option<DateTime<Utc>>,
    origin: (i32, i64),
}

fn decode(message: &BorrowedMessage<'_>, tp: Tp, lease: u64, cell: LeaseCell) -> Incoming {
    let offset = message.offset();
    let mut attempt = 1;
    let mut due = None;
    let (mut origin_partition, mut origin_offset) = (None, None);
    // Bento's own headers are read here; the rest go to the envelope as they are, borrowed
    // until `from_headers` keeps what it needs.
    let record_headers = message.headers();
    let pairs = record_headers
        .iter()
        .flat_map(|h| h.iter())
        .filter_map(|header| {
            let value = header
                .value
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            match header.key {
                wire::ATTEMPT => attempt = value.parse::<u32>().unwrap_or(1).max(1),
                headers::DELIVER_AT => {
                    due = DateTime::parse_from_rfc3339(&value)
                        .ok()
                        .map(|t| t.with_timezone(&Utc));
                }
                headers::ORIGINAL_PARTITION => origin_partition = value.parse().ok(),
                headers::ORIGINAL_OFFSET => origin_offset = value.parse().ok(),
                key => return Some((key, value)),
            }
            None
        });
    let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
    let mut envelope = wire::from_headers(pairs, payload);
    if envelope.ordering_key.is_none()
        && let Some(key) = message.key()
    {
        envelope.ordering_key = Some(String::from_utf8_lossy(key).into_owned());
    }
    Incoming {
        origin: (
            origin_partition.unwrap_or(tp.1),
            origin_offset.unwrap_or(offset),
        ),
        tp,
        offset,
        lease,
        cell,
        envelope,
        attempt,
        due,
    }
}

/// Runs a subscription's consumer: receives, parks records that are not due yet, hands the
/// rest to the dispatcher, commits finished offsets, serves rebalances.
pub(crate) struct Poller {
    pub(crate) consumer: Arc<StreamConsumer<BentoContext>>,
    pub(crate) state: Arc<SubscriptionState>,
    pub(crate) settler: Arc<Settler>,
    pub(crate) commit_interval: Duration,
}

/// Records of one partition waiting for their due time, in offset order.
struct Parked {
    lease: u64,
    queue: VecDeque<(DateTime<Utc>, Delivery)>,
}

impl Poller {
    /// Starts the poller, feeding `tx` (the other end of a [`Deliveries`]).
    pub(crate) fn start(
        self,
        tx: mpsc::Sender<Delivery>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(tx, stop))
    }

    async fn run(self, tx: mpsc::Sender<Delivery>, mut stop: watch::Receiver<bool>) {
        let state = self.state.clone();
        let consumer = self.consumer.clone();
        // One stream for the poller's life: a `recv()` per record would register and drop a
        // waker each time.
        let mut records = consumer.stream();
        let mut parked: HashMap<Tp, Parked> = HashMap::new();
        // Received and due, waiting for room in the hand-off. Records are taken from
        // librdkafka only when it is empty, so the dispatcher's pace sets the consumer's.
        let mut ready: VecDeque<Delivery> = VecDeque::new();
        let mut commit_tick = tokio::time::interval(self.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<(String, tokio::time::Instant)> = None;
        loop {
            let next_due = parked
                .values()
                .filter_map(|p| p.queue.front().map(|(at, _)| *at))
                .min();
            let wait = next_due.map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                    self.release_due(&mut parked, &mut ready);
                }
                _ = commit_tick.tick() => self.commit(CommitMode::Async),
                permit = tx.reserve(), if !ready.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(delivery) = ready.pop_front() {
                            permit.send(delivery);
                        }
                        hand_over(&tx, &mut ready);
                    }
                    // The dispatcher stopped: what is left is redelivered after we leave.
                    Err(_) => break,
                },
                received = records.next(), if ready.is_empty() => match received {
                    Some(Ok(message)) => {
                        self.receive(&message, &mut parked, &mut ready);
                        drop(message);
                        // Take what librdkafka already holds without going round the loop.
                        for _ in 1..RECEIVE_BURST {
                            match records.next().now_or_never() {
                                Some(Some(Ok(message))) => {
                                    self.receive(&message, &mut parked, &mut ready);
                                }
                                _ => break,
                            }
                        }
                        hand_over(&tx, &mut ready);
                    }
                    Some(Err(error)) => {
                        // Broker and topic trouble is reported here while librdkafka retries;
                        // say it once a while, not on every poll.
                        let text = error.to_string();
                        let repeat = last_error.as_ref().is_some_and(|(t, at)| {
                            *t == text && at.elapsed() < Duration::from_secs(10)
                        });
                        if !repeat {
                            tracing::warn!(group = %state.group, %error, "Kafka consumer error");
                            last_error = Some((text, tokio::time::Instant::now()));
                        }
                    }
                    None => break,
                },
            }
        }
        // Parked and undispatched records stay uncommitted: the group redelivers them.
        drop((parked, ready, records, tx));
        drop(self);
        let closed = tokio::task::spawn_blocking(move || {
            let final_commits = state.due_commits();
            if final_commits.count() > 0
                && let Err(error) = consumer.commit(&final_commits, CommitMode::Sync)
            {
                tracing::warn!(group = %state.group, %error, "final offset commit failed; unfinished records will be redelivered");
            }
            // Dropping the last handle leaves the group (revoking and committing once more).
            drop(consumer);
        })
        .await;
        if let Err(error) = closed {
            tracing::warn!(%error, "closing a Kafka consumer failed");
        }
    }

    fn receive(
        &self,
        message: &BorrowedMessage<'_>,
        parked: &mut HashMap<Tp, Parked>,
        ready: &mut VecDeque<Delivery>,
    ) {
        let state = &self.state;
        let Some((tp, lease, cell)) =
            state.track(message.topic(), message.partition(), message.offset())
        else {
            tracing::debug!(group = %state.group, topic = message.topic(), partition = message.partition(), "record of an unassigned partition ignored");
            return;
        };
        let incoming = decode(message, tp, lease, cell);
        let waiting = match parked.get(&incoming.tp) {
            Some(lot) if lot.lease != lease => {
                parked.remove(&incoming.tp);
                false
            }
            Some(lot) => !lot.queue.is_empty(),
            None => false,
        };
        let due = incoming.due.filter(|at| *at > Utc::now());
        if due.is_none() && !waiting {
            ready.push_back(self.delivery(incoming));
            return;
        }
        let tp = incoming.tp.clone();
        let delivery = self.delivery(incoming);
        parked
            .entry(tp.clone())
            .or_insert_with(|| Parked {
                lease,
                queue: VecDeque::new(),
            })
            .queue
            .push_back((due.unwrap_or_else(Utc::now), delivery));
        if !waiting {
            // Stop fetching this partition until its head is due; librdkafka resumes
            // after the last record it handed out.
            self.pause(&tp, true);
        }
    }

    fn delivery(&self, incoming: Incoming) -> Delivery {
        let Incoming {
            tp,
            offset,
            lease,
            cell,
            envelope,
            attempt,
            origin,
            ..
        } = incoming;
        Delivery {
            broker_id: Some(format!("{}/{}/{offset}", tp.0, tp.1)),
            settle: Box::new(KafkaSettle {
                settler: self.settler.clone(),
                state: self.state.clone(),
                tp,
                lease,
                cell,
                offset,
                origin,
            }),
            envelope: Arc::new(envelope),
            attempt,
        }
    }

    /// Moves parked records that are due to `ready`, resuming partitions whose queue emptied.
    fn release_due(&self, parked: &mut HashMap<Tp, Parked>, ready: &mut VecDeque<Delivery>) {
        let now = Utc::now();
        let mut emptied = Vec::new();
        for (tp, lot) in parked.iter_mut() {
            let owned = lot
                .queue
                .front()
                .is_none_or(|(_, delivery)| delivery.settle.is_current());
            if !owned {
                // Revoked: drop them; the new owner reads them again.
                lot.queue.clear();
                emptied.push((tp.clone(), false));
                continue;
            }
            while lot.queue.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, delivery)) = lot.queue.pop_front() {
                    ready.push_back(delivery);
                }
            }
            if lot.queue.is_empty() {
                emptied.push((tp.clone(), true));
            }
        }
        for (tp, owned) in emptied {
            parked.remove(&tp);
            if owned {
                self.pause(&tp, false);
            }
        }
    }

    fn pause(&self, tp: &Tp, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        let result = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(error) = result {
            tracing::warn!(group = %self.state.group, topic = %tp.0, partition = tp.1, %error, pause, "pausing/resuming a partition failed");
        }
    }

    fn commit(&self, mode: CommitMode) {
        let tpl = self.state.due_commits();
        if tpl.count() == 0 {
            return;
        }
        if let Err(error) = self.consumer.commit(&tpl, mode) {
            tracing::debug!(group = %self.state.group, %error, "offset commit not sent; retrying later");
            self.state.forget_commits(&tpl);
        }
    }
}

/// Passes `ready` deliveries to the dispatcher while the hand-off has room.
fn hand_over(tx: &mpsc::Sender<Delivery>, ready: &mut VecDeque<Delivery>) {
    while let Some(delivery) = ready.pop_front() {
        match tx.try_send(delivery) {
            Ok(()) => {}
            // Closed: the poller sees it on its next reserve and stops.
            Err(
                mpsc::error::TrySendError::Full(delivery)
                | mpsc::error::TrySendError::Closed(delivery),
            ) => {
                ready.push_front(delivery);
                return;
            }
        }
    }
}

/// Settles one record: marks its offset finished, after storing a retry or dead letter where
/// needed. Settlements of a revoked partition do nothing: its new owner redelivers the record.
struct KafkaSettle {
    settler: Arc<Settler>,
    state: Arc<SubscriptionState>,
    tp: Tp,
    lease: u64,
    /// The partition's current lease, to compare with `lease`.
    cell: LeaseCell,
    offset: i64,
    /// Partition and offset of the record as first received (before any retry).
    origin: (i32, i64),
}

impl KafkaSettle {
    fn owned(&self) -> bool {
        self.cell.load(Ordering::Acquire) == self.lease
    }

    fn finish(&self) {
        self.state.finish(&self.tp, self.lease, self.offset);
    }

    /// Produces `record` to `topic`, trying again while the partition is ours.
    async fn store(&self, topic: &str, record: Outgoing) -> Result<(), BusError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.settler.producer.send(topic, &record).await {
                Ok(_) => return Ok(()),
                Err(error) if attempt < SETTLE_ATTEMPTS && self.owned() => {
                    tracing::warn!(group = %self.settler.group, %topic, %error, attempt, "storing a retry or dead letter failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// `at` as the `bento-kafka-deliver-at` header writes it: RFC 3339 with milliseconds, rounded
/// up, so that a delayed message is never due before the instant asked for.
pub(crate) fn format_due(at: DateTime<Utc>) -> String {
    let below_millis = at.timestamp_subsec_nanos() % 1_000_000;
    let at = if below_millis == 0 {
        at
    } else {
        at.checked_add_signed(chrono::Duration::nanoseconds(i64::from(
            1_000_000 - below_millis,
        )))
        .unwrap_or(at)
    };
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[async_trait]
impl Settle for KafkaSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.finish();
        Ok(())
    }

    async fn retry(
        self: Box<Self>,
        envelope: &Envelope,
        next_attempt: u32,
        delay: Duration,
    ) -> Result<(), BusError> {
        if !self.owned() {
            return Ok(());
        }
        let settler = &self.settler;
        if settler.tiers == 0 {
            return Err(BusError::Other(format!(
                "subscription `{}` has no retry topics (its retry policy allows no retry)",
                settler.group
            )));
        }
        let tier = topics::retry_tier(next_attempt.saturating_sub(1), settler.tiers);
        let topic = topics::retry_topic(&settler.topic, &settler.group, tier);
        let due = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|delay| Utc::now().checked_add_signed(delay))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let record = Outgoing::from_envelope(envelope)
            .header(wire::ATTEMPT, next_attempt.to_string())
            .header(headers::DELIVER_AT, format_due(due))
            .header(headers::ORIGINAL_PARTITION, self.origin.0.to_string())
            .header(headers::ORIGINAL_OFFSET, self.origin.1.to_string());
        self.store(&topic, record).await?;
        self.finish();
        Ok(())
    }

    async fn dead_letter(
        self: Box<Self>,
        dead_letter: Envelope,
        topic: &str,
    ) -> Result<(), BusError> {
        if !self.owned() {
            return Ok(());
        }
        let record = Outgoing::from_envelope(&dead_letter)
            .header(headers::DLQ_ORIGINAL_PARTITION, self.origin.0.to_string())
            .header(headers::DLQ_ORIGINAL_OFFSET, self.origin.1.to_string());
        self.store(topic, record).await?;
        self.finish();
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), BusError> {
        // Left unfinished: never committed past, so the group redelivers it.
        Ok(())
    }

    fn is_current(&self) -> bool {
        self.owned()
    }
}

/// Positions a new consumer group at the end of `topics` (partitions without a committed
/// offset get the current high watermark), so that it sees exactly what is published after
/// `subscribe` returns. Blocking.
pub(crate) fn position_new_group(
    consumer: &StreamConsumer<BentoContext>,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<usize, String> {
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let partitions =
            crate::admin::partition_ids(consumer, topic, timeout).map_err(|e| e.to_string())?;
        for (partition, _) in partitions {
            all.add_partition(topic, partition);
        }
    }
    let missing = |committed: &TopicPartitionList| -> Vec<Tp> {
        committed
            .elements()
            .iter()
            .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect()
    };
    let deadline = std::time::Instant::now() + timeout;
    let committed = retrying(deadline, || {
        consumer.committed_offsets(all.clone(), timeout)
    })
    .map_err(|e| format!("reading the committed offsets of group `{group}` failed: {e}"))?;
    let unset = missing(&committed);
    if unset.is_empty() {
        return Ok(0);
    }
    let mut start = TopicPartitionList::new();
    for (topic, partition) in &unset {
        let (_, high) = retrying(deadline, || {
            consumer.fetch_watermarks(topic, *partition, timeout)
        })
        .map_err(|e| {
            format!("reading the end offset of `{topic}` partition {partition} failed: {e}")
        })?;
        let _ = start.add_partition_offset(topic, *partition, Offset::Offset(high));
    }
    if let Err(error) = retrying(deadline, || consumer.commit(&start, CommitMode::Sync)) {
        // Another member may have positioned the group meanwhile; only a gap is an error.
        let again = retrying(deadline, || {
            consumer.committed_offsets(all.clone(), timeout)
        })
        .map_err(|e| format!("reading the committed offsets of group `{group}` failed: {e}"))?;
        let still: HashSet<Tp> = missing(&again).into_iter().collect();
        if !still.is_empty() {
            return Err(format!(
                "setting the start offsets of new consumer group `{group}` failed: {error}"
            ));
        }
    }
    Ok(unset.len())
}

/// Runs a blocking broker call again until it succeeds or `deadline` passes: right after a
/// broker start or a topic creation, coordinators and leaders take a moment to be known.
fn retrying<T>(
    deadline: std::time::Instant,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    loop {
        match call() {
            Ok(value) => return Ok(value),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => return Err(error),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::format_due;
    use chrono::{DateTime, Utc};

    #[test]
    fn due_times_are_rounded_up_to_the_millisecond() {
        let at = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
        assert_eq!(
            format_due(at(1_700_000_000_123_000)),
            "2023-11-14T22:13:20.123Z",
            "a whole millisecond stays"
        );
        assert_eq!(
            format_due(at(1_700_000_000_123_001)),
            "2023-11-14T22:13:20.124Z",
            "never early"
        );
        assert_eq!(
            format_due(at(1_700_000_000_999_999)),
            "2023-11-14T22:13:21.000Z"
        );
        assert!(!format_due(DateTime::<Utc>::MAX_UTC).is_empty());
    }
}
