//! One task per Pulsar consumer: it owns the consumer, turns its messages into
//! [`Delivery`]s for the dispatcher, and applies the settlements the dispatcher sends back.

use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bento_application::backend::Delivery;
use bento_application::{BusError, wire};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::channel::mpsc as delivery_channel;
use futures::{Sink, StreamExt};
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{ConsumerOptions, SubType, TokioExecutor};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::batch_acks::{BatchAcknowledgement, OpenBatches};
use crate::error::{describe, is_unreachable, server_error};
use crate::message_id::ack_id;
use crate::producer::{Client, Producers};

mod probe;
mod settle;
use settle::PulsarSettle;

type RawConsumer = pulsar::Consumer<Vec<u8>, TokioExecutor>;
type RawMessage = pulsar::consumer::Message<Vec<u8>>;

/// Sending half of the dispatcher's stream of deliveries.
pub(crate) type DeliverySender = delivery_channel::Sender<Delivery>;

/// Longest pause between two attempts to re-create a consumer whose connection was lost.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// Acknowledgements kept while the consumer reconnects, sent once it is back.
const MAX_UNSENT_ACKS: usize = 100_000;
/// Messages delivered before their time (exclusive and failover subscriptions ignore it) held
/// until it comes; at this many the consumer stops receiving until the soonest is due.
const MAX_HELD: usize = 10_000;
/// After this long ready for messages and getting none, the consumer asks the broker whether it
/// still knows and feeds it: a client whose re-subscribe gave up after a broker restart neither
/// yields nor ends.
const QUIET_PROBE: Duration = Duration::from_secs(10);
/// Settlements applied in one go once one arrives: they come in bursts, and each turn of the
/// task's loop costs more than taking the next one off the queue.
const SETTLEMENT_BURST: usize = 64;

/// What one consumer reads and how.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerSpec {
    /// Full topic name.
    pub(crate) topic: String,
    /// Subscription name.
    pub(crate) subscription: String,
    /// Subscription type.
    pub(crate) kind: SubType,
    /// How the messages of a batch are acknowledged.
    pub(crate) batch_acks: BatchAcknowledgement,
    /// Flow permits and client-side queue.
    pub(crate) receiver_queue_size: u32,
    /// On a topic shared by several event types: the one this subscription handles; messages
    /// of other types are acknowledged and skipped.
    pub(crate) only_event_type: Option<String>,
    /// Bound on creating (and closing) the consumer.
    pub(crate) timeout: Duration,
    /// The schema the consumer declares, so the broker checks it against the topic's.
    pub(crate) schema: Option<pulsar::proto::Schema>,
}

/// Where a settlement publishes: the retry topic of the subscription, dead-letter topics.
pub(crate) struct SettleTarget {
    pub(crate) producers: Arc<Producers>,
    pub(crate) retry_topic: String,
}

enum Command {
    Ack(MessageIdData),
    Nack(MessageIdData),
    Close(oneshot::Sender<Result<(), BusError>>),
}

/// A running consumer task.
pub(crate) struct Worker {
    spec: Arc<ConsumerSpec>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Worker {
    /// Creates the consumer (failing within `spec.timeout`) and starts its task.
    pub(crate) async fn start(
        client: Client,
        spec: ConsumerSpec,
        target: Arc<SettleTarget>,
        deliveries: DeliverySender,
    ) -> Result<Worker, BusError> {
        let spec = Arc::new(spec);
        let consumer = create(&client, &spec).await?;
        tracing::debug!(topic = %spec.topic, subscription = %spec.subscription, kind = ?spec.kind, "consumer created");
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            Task {
                client,
                spec: spec.clone(),
                target,
                deliveries,
                commands: receiver,
                myself: commands.clone(),
            }
            .run(consumer),
        );
        Ok(Worker {
            spec,
            commands,
            task,
        })
    }

    /// Applies the settlements sent so far, then closes the consumer: the broker redelivers
    /// whatever it delivered and was not acknowledged.
    pub(crate) async fn close(self) -> Result<(), BusError> {
        let (done, result) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_err() {
            return Ok(()); // the task has already ended
        }
        let grace = self.spec.timeout * 2;
        match tokio::time::timeout(grace, result).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                self.task.abort();
                Err(BusError::Timeout {
                    operation: format!(
                        "closing the consumer of `{}` (subscription `{}`)",
                        self.spec.topic, self.spec.subscription
                    ),
                    after: grace,
                })
            }
        }
    }
}

async fn create(client: &Client, spec: &ConsumerSpec) -> Result<RawConsumer, BusError> {
    let mut options = ConsumerOptions::default()
        .durable(true)
        .with_initial_position(InitialPosition::Latest)
        .with_receiver_queue_size(spec.receiver_queue_size);
    options.schema = spec.schema.clone();
    let build = client
        .consumer()
        .with_topic(&spec.topic)
        .with_subscription(&spec.subscription)
        .with_subscription_type(spec.kind)
        // Time-ordered, so that on a failover subscription the earliest consumer is active.
        .with_consumer_name(format!("bento-{}", uuid::Uuid::now_v7().simple()))
        .with_batch_size(spec.receiver_queue_size)
        .with_options(options)
        .build::<Vec<u8>>();
    let error = |reason: String| BusError::Subscribe {
        topic: spec.topic.clone(),
        subscription: spec.subscription.clone(),
        source: reason.into(),
    };
    // Never cancelled mid-connect: see `detached`.
    match crate::detached::within(spec.timeout, build).await {
        Some(Ok(consumer)) => Ok(consumer),
        Some(Err(e)) if server_error(&e) == Some(pulsar::proto::ServerError::ConsumerBusy) => {
            Err(error(format!(
                "the broker refused another consumer: a {} subscription takes only one (or the subscription exists with another type): {}",
                kind_name(spec.kind),
                describe(&e)
            )))
        }
        Some(Err(e))
            if server_error(&e) == Some(pulsar::proto::ServerError::IncompatibleSchema) =>
        {
            Err(error(format!(
                "the broker refused the subscription's schema as incompatible with the topic's: {}",
                describe(&e)
            )))
        }
        Some(Err(e)) if is_unreachable(&e) => Err(error(format!(
            "the broker is unreachable: {}",
            describe(&e)
        ))),
        Some(Err(e)) => Err(error(describe(&e))),
        None => Err(error(format!(
            "no consumer within {:?} (connect_timeout_ms); for an exclusive subscription this usually means it already has a consumer",
            spec.timeout
        ))),
    }
}

fn kind_name(kind: SubType) -> &'static str {
    match kind {
        SubType::Exclusive => "exclusive",
        SubType::Shared => "shared",
        SubType::Failover => "failover",
        SubType::KeyShared => "key-shared",
    }
}

type Reconnect = Pin<Box<dyn Future<Output = Result<RawConsumer, BusError>> + Send>>;

struct Task {
    client: Client,
    spec: Arc<ConsumerSpec>,
    target: Arc<SettleTarget>,
    deliveries: DeliverySender,
    commands: mpsc::UnboundedReceiver<Command>,
    myself: mpsc::UnboundedSender<Command>,
}

/// What the consumer task keeps from one turn of its loop to the next.
struct State {
    /// The consumer; `None` while its connection is lost and it is being re-created.
    consumer: Option<RawConsumer>,
    /// The attempt under way at re-creating the consumer.
    reconnect: Option<Reconnect>,
    /// The pause before the next attempt, doubled per failure up to [`MAX_RECONNECT_DELAY`].
    reconnect_delay: Duration,
    /// A delivery waiting for room in the dispatcher's channel.
    pending: Option<Delivery>,
    /// The dispatcher stopped taking deliveries.
    dispatcher_gone: bool,
    /// Acknowledgements received while the consumer is gone, sent once it is back.
    unsent_acks: Vec<MessageIdData>,
    /// Batches not fully settled yet, when batches are acknowledged whole.
    batches: OpenBatches,
    /// Messages that came before their time, soonest first (the number breaks ties).
    held: BTreeMap<(DateTime<Utc>, u64), Delivery>,
    /// The number of the next held message.
    held_seq: u64,
    /// When to look whether the consumer has been quiet; one timer for the task's life, not
    /// one per message.
    probe_at: Pin<Box<tokio::time::Sleep>>,
    /// How often the consumer has heard from the broker (a message taken by the dispatcher or
    /// skipped, an answer to the probe): a count rather than a time, so that a message costs
    /// no clock read.
    heard: u64,
    /// `heard` when the probe timer last went off.
    heard_at_last_look: u64,
}

impl State {
    /// Keeps `delivery` until `at`.
    fn hold(&mut self, delivery: Delivery, at: DateTime<Utc>) {
        self.held_seq += 1;
        self.held.insert((at, self.held_seq), delivery);
    }

    /// How long until the soonest held message is due, if one is held.
    fn next_due(&self) -> Option<Duration> {
        let ((at, _), _) = self.held.first_key_value()?;
        Some((*at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
    }
}

/// What to acknowledge for the settled message `id`, if anything yet.
fn to_acknowledge(
    batches: &mut OpenBatches,
    spec: &ConsumerSpec,
    id: MessageIdData,
) -> Option<MessageIdData> {
    match spec.batch_acks {
        BatchAcknowledgement::ByIndex => Some(id),
        BatchAcknowledgement::WholeBatch => batches.settled(id),
    }
}

/// What to do with one received message.
enum Incoming {
    /// Hand it to the dispatcher.
    Deliver(Delivery),
    /// Hand it over at this time (it came before its delivery time).
    Hold(Delivery, chrono::DateTime<Utc>),
    /// Acknowledge it without handling it (another event type on a shared topic).
    Skip(MessageIdData),
}

impl Task {
    async fn run(mut self, consumer: RawConsumer) {
        let mut state = State {
            consumer: Some(consumer),
            reconnect: None,
            reconnect_delay: Duration::from_millis(200),
            pending: None,
            dispatcher_gone: false,
            unsent_acks: Vec::new(),
            batches: OpenBatches::default(),
            held: BTreeMap::new(),
            held_seq: 0,
            probe_at: Box::pin(tokio::time::sleep(QUIET_PROBE)),
            heard: 0,
            heard_at_last_look: 0,
        };
        loop {
            let turn = if state.consumer.is_some() {
                self.serve(&mut state).await
            } else {
                self.reconnect(&mut state).await
            };
            if turn.is_break() {
                return;
            }
        }
    }

    /// One turn while the consumer is gone: a command (acknowledgements are kept for later),
    /// or the end of an attempt at re-creating the consumer.
    async fn reconnect(&mut self, state: &mut State) -> ControlFlow<()> {
        let attempt = state.reconnect.get_or_insert_with(|| {
            let (client, spec, delay) = (
                self.client.clone(),
                self.spec.clone(),
                state.reconnect_delay,
            );
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                create(&client, &spec).await
            })
        });
        tokio::select! {
            biased;
            command = self.commands.recv() => match command {
                Some(Command::Ack(id)) if state.unsent_acks.len() < MAX_UNSENT_ACKS => {
                    if let Some(id) = to_acknowledge(&mut state.batches, &self.spec, id) {
                        state.unsent_acks.push(id);
                    }
                }
                Some(Command::Ack(_) | Command::Nack(_)) => {}
                Some(Command::Close(done)) => {
                    let _ = done.send(Ok(()));
                    return ControlFlow::Break(());
                }
                None => return ControlFlow::Break(()),
            },
            created = attempt => {
                state.reconnect = None;
                match created {
                    Ok(mut fresh) => {
                        tracing::info!(topic = %self.spec.topic, subscription = %self.spec.subscription, "consumer re-created after a lost connection");
                        for id in state.unsent_acks.drain(..) {
                            let _ = fresh.ack_with_id(&self.spec.topic, id).await;
                        }
                        // The broker redelivers every batch not acknowledged: they are counted
                        // afresh, and settlements of the earlier copies acknowledge nothing.
                        state.batches = OpenBatches::default();
                        // Held ones too come again, and are held anew.
                        state.held.clear();
                        state.consumer = Some(fresh);
                        // A fresh consumer is given the whole quiet time before it is probed.
                        state.heard_at_last_look = state.heard;
                        state.probe_at.as_mut().reset(tokio::time::Instant::now() + QUIET_PROBE);
                        state.reconnect_delay = Duration::from_millis(200);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not re-create the consumer yet; trying again");
                        state.reconnect_delay = (state.reconnect_delay * 2).min(MAX_RECONNECT_DELAY);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Carries out a settlement or a request of the subscription's handle; `None` means the
    /// handle is gone, which closes the consumer too.
    async fn obey(
        &self,
        command: Option<Command>,
        live: &mut RawConsumer,
        batches: &mut OpenBatches,
    ) -> ControlFlow<()> {
        match command {
            Some(Command::Ack(id)) => {
                if let Some(id) = to_acknowledge(batches, &self.spec, id)
                    && let Err(error) = live.ack_with_id(&self.spec.topic, id).await
                {
                    tracing::warn!(topic = %self.spec.topic, %error, "could not acknowledge; the message will be redelivered");
                }
            }
            Some(Command::Nack(id)) => {
                batches.released(&id);
                if let Err(error) = live.nack_with_id(&self.spec.topic, id).await {
                    tracing::debug!(topic = %self.spec.topic, %error, "could not ask for a redelivery; it happens when the consumer closes");
                }
            }
            Some(Command::Close(done)) => {
                let result = self.close(live).await;
                let _ = done.send(result);
                return ControlFlow::Break(());
            }
            None => {
                let _ = self.close(live).await;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// One turn with a live consumer: a command, a delivery handed to the dispatcher, or a
    /// message received.
    async fn serve(&mut self, state: &mut State) -> ControlFlow<()> {
        let next_due = state.next_due();
        let Some(live) = state.consumer.as_mut() else {
            return ControlFlow::Continue(());
        };
        tokio::select! {
            biased;
            command = self.commands.recv() => {
                let mut flow = self.obey(command, live, &mut state.batches).await;
                for _ in 1..SETTLEMENT_BURST {
                    let Ok(command) = self.commands.try_recv() else {
                        break;
                    };
                    if flow.is_break() {
                        break;
                    }
                    flow = self.obey(Some(command), live, &mut state.batches).await;
                }
                return flow;
            }
            ready = poll_fn(|cx| self.deliveries.poll_ready(cx)), if state.pending.is_some() => {
                let sent = match (ready, state.pending.take()) {
                    (Ok(()), Some(delivery)) => Pin::new(&mut self.deliveries).start_send(delivery).is_ok(),
                    _ => false,
                };
                // Quiet means ready to receive with nothing coming: the time spent waiting
                // for the dispatcher does not count.
                state.heard += 1;
                if !sent {
                    // The dispatcher stopped: what is left is redelivered once we close.
                    state.dispatcher_gone = true;
                }
            },
            // An async block, so that the timer is made only when the branch is polled: the
            // expressions of disabled branches are evaluated too, on every turn.
            () = async { tokio::time::sleep(next_due.unwrap_or_default()).await },
                if state.pending.is_none() && next_due.is_some() =>
            {
                state.pending = state.held.pop_first().map(|(_, delivery)| delivery);
            }
            // Probed only while it is ready to receive, like the arm below.
            () = &mut state.probe_at,
                if state.pending.is_none() && !state.dispatcher_gone && state.held.len() < MAX_HELD =>
            {
                self.probe(state).await;
            }
            next = live.next(),
                if state.pending.is_none() && !state.dispatcher_gone && state.held.len() < MAX_HELD =>
            match next {
                Some(Ok(message)) => {
                    if self.spec.batch_acks == BatchAcknowledgement::WholeBatch {
                        state.batches.received(&message.message_id.id, message.message_id.batch_size);
                    }
                    let incoming = self.incoming(message);
                    // A delivery counts as heard when the dispatcher takes it.
                    if !matches!(incoming, Incoming::Deliver(_)) {
                        state.heard += 1;
                    }
                    match incoming {
                        Incoming::Deliver(delivery) => self.hand_over(state, delivery),
                        Incoming::Hold(delivery, at) => state.hold(delivery, at),
                        Incoming::Skip(id) => {
                            if let Some(id) = to_acknowledge(&mut state.batches, &self.spec, id) {
                                let _ = live.ack_with_id(&self.spec.topic, id).await;
                            }
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(topic = %self.spec.topic, subscription = %self.spec.subscription, %error, "consumer reported an error");
                }
                None => {
                    tracing::warn!(topic = %self.spec.topic, subscription = %self.spec.subscription, "consumer lost its connection for good; re-creating it");
                    state.consumer = None;
                }
            },
        }
        ControlFlow::Continue(())
    }

    /// Hands `delivery` to the dispatcher now if its channel has room, else keeps it until it
    /// has: one turn of the loop per message instead of two.
    fn hand_over(&mut self, state: &mut State, delivery: Delivery) {
        match self.deliveries.try_send(delivery) {
            Ok(()) => state.heard += 1,
            Err(full) if full.is_full() => state.pending = Some(full.into_inner()),
            // The dispatcher stopped: what is left is redelivered once we close.
            Err(_) => state.dispatcher_gone = true,
        }
    }

    /// Asks the broker for a quiet consumer's stats, and re-creates a consumer the broker
    /// does not know or does not feed (see [`probe`]).
    async fn probe(&self, state: &mut State) {
        state
            .probe_at
            .as_mut()
            .reset(tokio::time::Instant::now() + QUIET_PROBE);
        if state.heard != state.heard_at_last_look {
            // Heard from since the timer was set: look again in 10 s.
            state.heard_at_last_look = state.heard;
            return;
        }
        let Some(live) = state.consumer.as_mut() else {
            return;
        };
        let stats = match tokio::time::timeout(self.spec.timeout, live.get_stats()).await {
            Ok(Ok(stats)) => Some(stats),
            _ => None,
        };
        match probe::verdict(stats.as_deref()) {
            probe::Verdict::Alive => {}
            probe::Verdict::Unknown => {
                tracing::warn!(topic = %self.spec.topic, subscription = %self.spec.subscription, "the broker does not know this consumer any more (a reconnection that never completed); re-creating it");
                state.consumer = None;
            }
            probe::Verdict::Starved {
                backlog,
                permits,
                blocked,
            } => {
                tracing::warn!(topic = %self.spec.topic, subscription = %self.spec.subscription, backlog, permits, blocked, "the broker holds messages for this consumer and sends none; re-creating it");
                state.consumer = None;
            }
        }
    }

    async fn close(&self, consumer: &mut RawConsumer) -> Result<(), BusError> {
        match tokio::time::timeout(self.spec.timeout, consumer.close()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(BusError::Subscribe {
                topic: self.spec.topic.clone(),
                subscription: self.spec.subscription.clone(),
                source: format!("closing the consumer failed: {}", describe(&error)).into(),
            }),
            Err(_) => Err(BusError::Timeout {
                operation: format!(
                    "closing the consumer of `{}` (subscription `{}`)",
                    self.spec.topic, self.spec.subscription
                ),
                after: self.spec.timeout,
            }),
        }
    }

    fn incoming(&self, message: RawMessage) -> Incoming {
        let batch_size = message.message_id.batch_size;
        let id = match self.spec.batch_acks {
            BatchAcknowledgement::ByIndex => ack_id(message.message_id.id, batch_size),
            // Plain ids: the open batches decide when the whole batch is acknowledged.
            BatchAcknowledgement::WholeBatch => MessageIdData {
                batch_size,
                ..message.message_id.id
            },
        };
        let payload = message.payload;
        let deliver_at = payload.metadata.deliver_at_time;
        let properties = payload.metadata.properties;
        let property = |name: &str| {
            properties
                .iter()
                .find(|kv| kv.key == name)
                .map(|kv| kv.value.as_str())
        };
        if let Some(only) = &self.spec.only_event_type
            && property(wire::EVENT_TYPE) != Some(only.as_str())
        {
            return Incoming::Skip(id);
        }
        let attempt = property(wire::ATTEMPT)
            .and_then(|a| a.parse::<u32>().ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1);
        let envelope = wire::from_headers(
            properties.into_iter().map(|kv| (kv.key, kv.value)),
            Bytes::from(payload.data),
        );
        let delivery = Delivery {
            envelope: Arc::new(envelope),
            attempt,
            settle: Box::new(PulsarSettle {
                worker: self.myself.clone(),
                id,
                target: self.target.clone(),
                spec: self.spec.clone(),
            }),
        };
        let due = deliver_at.and_then(chrono::DateTime::<Utc>::from_timestamp_millis);
        match due {
            Some(at) if at > Utc::now() => Incoming::Hold(delivery, at),
            _ => Incoming::Deliver(delivery),
        }
    }
}
