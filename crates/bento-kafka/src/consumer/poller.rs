//! The poller: receives a subscription's records, decodes them, parks those not due yet and
//! hands the rest to the dispatcher, committing finished offsets as it goes.

use std::sync::Arc;
use std::time::Duration;

use bento_application::backend::Delivery;
use bento_application::wire;
use bento_domain::Envelope;
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio::sync::mpsc;

use super::Tp;
use super::handoff::{Burst, hand_over};
use super::offsets::{Held, SubscriptionState};
use super::parked::Parked;
use super::payloads::Payloads;
use super::settle::KafkaSettle;
use crate::context::BentoContext;
use crate::headers;
use crate::registry::Registry;

/// Records taken from librdkafka in one go, while it has them at hand.
const RECEIVE_BURST: usize = 64;

/// A received record, decoded.
struct Incoming {
    held: Arc<Held>,
    offset: i64,
    envelope: Envelope,
    attempt: u32,
    due: Option<DateTime<Utc>>,
    origin: (i32, i64),
}

fn decode(
    message: &BorrowedMessage<'_>,
    payloads: &mut Payloads,
    held: Arc<Held>,
    unframe: bool,
) -> Incoming {
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
            let value = header.value.map(text).unwrap_or_default();
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
    let payload = payloads.copy(message.payload().unwrap_or_default());
    let mut envelope = wire::from_headers(pairs, payload);
    if unframe {
        // Written with a schema registry: the codec reads what follows the framing.
        envelope.payload = Registry::unframe(
            std::mem::take(&mut envelope.payload),
            &envelope.content_type,
        );
    }
    if envelope.ordering_key.is_none()
        && let Some(key) = message.key()
    {
        envelope.ordering_key = Some(String::from_utf8_lossy(key).into_owned());
    }
    Incoming {
        origin: (
            origin_partition.unwrap_or(held.tp.1),
            origin_offset.unwrap_or(offset),
        ),
        held,
        offset,
        envelope,
        attempt,
        due,
    }
}

/// A header value as text: borrowed when it is UTF-8, as Bento's always are (checked the fast
/// way first; `from_utf8_lossy` walks the bytes in chunks even when they are valid).
fn text(value: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    }
}

/// Runs a subscription's consumer: receives, parks records that are not due yet, hands the
/// rest to the dispatcher, commits finished offsets, serves rebalances.
pub(crate) struct Poller {
    pub(crate) consumer: Arc<StreamConsumer<BentoContext>>,
    pub(crate) state: Arc<SubscriptionState>,
    pub(crate) commit_interval: Duration,
    /// Whether records carry the Confluent wire format (a schema registry is configured).
    pub(crate) unframe: bool,
}

/// Whether `topic`, read by a subscription to `event_topic`, holds records as publishers wrote
/// them, framed when written with a schema registry: the event topic and its delay topic. Retry
/// tiers hold what Bento stored after decoding (the codec's bytes), which must not be taken for
/// framing (an Avro datum may start with a zero byte).
fn holds_framed_records(event_topic: &str, topic: &str) -> bool {
    topic == event_topic || topic.strip_suffix(".delayed") == Some(event_topic)
}

impl Poller {
    /// Runs the poller, feeding `tx` (the other end of the [`Deliveries`](super::Deliveries)
    /// that runs it), until the consumer's stream ends or the poller is dropped with the
    /// deliveries. What it received and did not hand over stays uncommitted: the group
    /// redelivers it. Committing what is finished when the subscription stops is
    /// [`commit_and_leave`]'s.
    pub(crate) async fn run(self, tx: mpsc::Sender<Burst>) {
        // One stream for the poller's life: a `recv()` per record would register and drop a
        // waker each time.
        let mut records = self.consumer.stream();
        let mut parked = Parked::default();
        let mut payloads = Payloads::default();
        // The partition the last record came from.
        let mut last_held = None;
        // Received and due, waiting for room in the hand-off. Records are taken from
        // librdkafka only when it is empty, so the dispatcher's pace sets the consumer's.
        let mut ready: Burst = Vec::new();
        let mut commit_tick = tokio::time::interval(self.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<(String, tokio::time::Instant)> = None;
        loop {
            let wait = parked
                .next_due()
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            tokio::select! {
                biased;
                // In a block, so that the timer is made only when something is parked: a
                // branch's future is built on every turn, even when its condition is false.
                () = async { tokio::time::sleep(wait.unwrap_or(Duration::ZERO)).await }, if wait.is_some() => {
                    self.release_due(&mut parked, &mut ready);
                }
                _ = commit_tick.tick() => self.commit(CommitMode::Async),
                permit = tx.reserve(), if !ready.is_empty() => match permit {
                    Ok(permit) => permit.send(std::mem::take(&mut ready)),
                    // The dispatcher stopped: what is left is redelivered after we leave.
                    Err(_) => break,
                },
                received = records.next(), if ready.is_empty() => match received {
                    Some(Ok(message)) => {
                        self.receive(&message, &mut payloads, &mut parked, &mut ready, &mut last_held);
                        drop(message);
                        // Take what librdkafka already holds without going round the loop.
                        for _ in 1..RECEIVE_BURST {
                            match records.next().now_or_never() {
                                Some(Some(Ok(message))) => {
                                    self.receive(&message, &mut payloads, &mut parked, &mut ready, &mut last_held);
                                }
                                _ => break,
                            }
                        }
                        hand_over(&tx, &mut ready);
                    }
                    Some(Err(error)) => report_error(&self.state.group, &error, &mut last_error),
                    None => break,
                },
            }
        }
        // Parked and undispatched records stay uncommitted: the group redelivers them.
    }

    fn receive(
        &self,
        message: &BorrowedMessage<'_>,
        payloads: &mut Payloads,
        parked: &mut Parked,
        ready: &mut Burst,
        last_held: &mut Option<Arc<Held>>,
    ) {
        let state = &self.state;
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let Some(held) = state.track_after(last_held, topic, partition, offset) else {
            tracing::debug!(group = %state.group, topic, partition, "record of an unassigned partition ignored");
            return;
        };
        let unframe = self.unframe && holds_framed_records(&held.settler.topic, &held.tp.0);
        let incoming = decode(message, payloads, held, unframe);
        let Some(due) = incoming.due.filter(|at| *at > Utc::now()) else {
            ready.push(Self::delivery(incoming));
            return;
        };
        let (held, offset) = (incoming.held.clone(), incoming.offset);
        let delivery = Self::delivery(incoming);
        if parked.park(&held.tp, held.lease, due, offset, delivery) {
            self.pause(&held.tp, true);
        }
    }

    fn delivery(incoming: Incoming) -> Delivery {
        let Incoming {
            held,
            offset,
            envelope,
            attempt,
            origin,
            ..
        } = incoming;
        Delivery {
            settle: Box::new(KafkaSettle {
                held,
                offset,
                origin,
            }),
            envelope: Arc::new(envelope),
            attempt,
        }
    }

    /// Moves parked records that are due to `ready`, resuming partitions that were paused for
    /// holding too many.
    fn release_due(&self, parked: &mut Parked, ready: &mut Burst) {
        for tp in parked.release_due(ready) {
            self.pause(&tp, false);
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

/// Logs a consumer error: broker and topic trouble is reported while librdkafka retries, so
/// the same error is said once in 10 s, not on every poll.
fn report_error(
    group: &str,
    error: &rdkafka::error::KafkaError,
    last_error: &mut Option<(String, tokio::time::Instant)>,
) {
    let text = error.to_string();
    let repeat = last_error
        .as_ref()
        .is_some_and(|(t, at)| *t == text && at.elapsed() < Duration::from_secs(10));
    if !repeat {
        tracing::warn!(%group, %error, "Kafka consumer error");
        *last_error = Some((text, tokio::time::Instant::now()));
    }
}

/// Commits what is finished and leaves the group (dropping the last handle revokes and
/// commits once more); records not finished are redelivered to the group. Called once the
/// dispatcher stopped, so that what its last handlers finished is committed.
pub(crate) async fn commit_and_leave(
    consumer: Arc<StreamConsumer<BentoContext>>,
    state: Arc<SubscriptionState>,
) {
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

#[cfg(test)]
mod tests {
    use super::holds_framed_records;
    use crate::topics;

    #[test]
    fn only_the_event_and_delay_topics_hold_framed_records() {
        assert!(holds_framed_records("users", "users"));
        assert!(holds_framed_records(
            "users",
            &topics::delayed_topic("users")
        ));
        assert!(!holds_framed_records(
            "users",
            &topics::retry_topic("users", "crm", 1)
        ));
        assert!(!holds_framed_records("users", "users.dlq"));
    }
}
