//! Testing a Bento service: a [`TestHarness`] (the in-memory bus with a [`Recorder`] on it)
//! that tells a test what was published, what each subscription handled, what it gave up on,
//! and waits for it.
//!
//! ```
//! use std::time::Duration;
//! use bento_application::{Context, HandlerError};
//! use bento_domain::DomainEvent;
//! use bento_testkit::testing::{Expect, TestHarness};
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct UserCreated { user_id: String }
//! impl DomainEvent for UserCreated {
//!     const EVENT_TYPE: &'static str = "users.user-created";
//!     const AGGREGATE_TYPE: &'static str = "user";
//!     fn aggregate_id(&self) -> String { self.user_id.clone() }
//! }
//!
//! async fn welcome(_event: UserCreated, _ctx: Context) -> Result<(), HandlerError> { Ok(()) }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let harness = TestHarness::new();
//! let bus = harness.bus();
//! let _welcome = bus.subscribe("welcome-email", welcome).await?; // runs while held
//! bus.publish(&UserCreated { user_id: "u-1".into() }).await?;
//!
//! harness.wait_for(Expect::consumed::<UserCreated>(1).by("welcome-email")).await?;
//! assert_eq!(harness.published::<UserCreated>(), [UserCreated { user_id: "u-1".into() }]);
//! assert!(harness.dead_lettered().is_empty());
//! # Ok(()) }
//! ```
//!
//! Waiting runs on tokio's clock, so a test under `#[tokio::test(start_paused = true)]` runs
//! retries with long backoffs at once: the clock jumps to the next timer whenever every task
//! waits. Under paused time the timeout of [`Recorder::wait_for`] is virtual too: give it
//! longer than the backoffs ([`Expect::within`]).
//!
//! The [`Recorder`] alone works on any backend: add it to a bus (or a `Bento`) as a handler
//! layer and a publish layer, and it records what goes through, on memory, Pulsar or Kafka.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bento_application::{Bus, Codec};
use bento_codec::Codecs;
use bento_domain::{DomainEvent, Envelope, MessageId};
use parking_lot::Mutex;
use tokio::sync::Notify;

mod expect;
mod harness;
mod record;

use expect::What;
pub use expect::{Expect, WaitTimeout};
pub use harness::TestHarness;
pub use record::{RecordDeliveries, RecordPublishes};

/// How long [`Recorder::wait_for`] waits unless told otherwise.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(10);

/// How a subscription's handler stack settled one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Handled: acknowledged.
    Consumed,
    /// Failed; delivered again later.
    Retried {
        /// When the next attempt comes, if the stack said.
        after: Option<Duration>,
        /// Why it failed.
        error: String,
    },
    /// Given up on: on its way to the dead-letter topic.
    DeadLettered {
        /// The `bento-dlq-failure` kind (`retries-exhausted`, `permanent`, ...).
        failure: &'static str,
        /// Why.
        error: String,
    },
}

/// One delivery a subscription finished, as its handler stack settled it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The subscription.
    pub subscription: String,
    /// The topic it read.
    pub topic: String,
    /// The delivery attempt, from 1.
    pub attempt: u32,
    /// The message.
    pub envelope: Envelope,
    /// How it ended.
    pub settled: Settled,
}

#[derive(Default)]
struct Log {
    published: Vec<Envelope>,
    published_ids: HashSet<MessageId>,
    deliveries: Vec<Delivery>,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    changed: Notify,
}

/// Records every envelope published and every delivery settled on the bus it is added to, as
/// a handler layer ([`Bus::layer`]) and a publish layer ([`Bus::publish_layer`]); see
/// [`Recorder::attach`]. Clones share the record.
///
/// As a service-wide layer it sits outside each subscription's retry layer, so it sees the
/// outcome the backend settles: one [`Delivery`] per attempt.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
    codecs: Arc<Codecs>,
    patience: Duration,
    only_own: bool,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.shared.log.lock();
        f.debug_struct("Recorder")
            .field("published", &log.published.len())
            .field("deliveries", &log.deliveries.len())
            .finish()
    }
}

impl Recorder {
    /// A recorder that decodes events as JSON (see [`Recorder::with_codecs`]).
    pub fn new() -> Self {
        Self::with_codecs(Arc::new(Codecs::default()))
    }

    /// A recorder that decodes events with `codecs` (a bus's, `bus.codec().clone()`, so the
    /// Avro and Protobuf types registered on it decode too).
    pub fn with_codecs(codecs: Arc<Codecs>) -> Self {
        Self {
            shared: Arc::default(),
            codecs,
            patience: DEFAULT_PATIENCE,
            only_own: false,
        }
    }

    /// Records only deliveries of messages published through this recorder (their dead
    /// letters too, which keep the message's id): on a broker a durable subscription may still
    /// hold messages of an earlier run or of another service, which a test should not count.
    pub fn only_own_messages(mut self) -> Self {
        self.only_own = true;
        self
    }

    /// How long [`Recorder::wait_for`] waits when the expectation does not say
    /// ([`DEFAULT_PATIENCE`] unless set).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// `bus` with this recorder around its subscriptions and its publishes. With the runtime:
    /// `bento.layer(recorder.clone()).publish_layer(recorder.clone())`.
    pub fn attach<C: Codec>(&self, bus: Bus<C>) -> Bus<C> {
        bus.layer(self.clone()).publish_layer(self.clone())
    }

    /// Every envelope published so far, in order.
    pub fn published_envelopes(&self) -> Vec<Envelope> {
        self.shared.log.lock().published.clone()
    }

    /// The events of type `E` published so far, in order.
    ///
    /// # Panics
    ///
    /// If one does not decode as `E`, naming it and why.
    pub fn published<E: DomainEvent>(&self) -> Vec<E> {
        self.decode_all(self.published_envelopes().iter())
    }

    /// Every delivery settled so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.log.lock().deliveries.clone()
    }

    /// The deliveries `subscription` settled, in order.
    pub fn deliveries_to(&self, subscription: &str) -> Vec<Delivery> {
        self.select(|d| d.subscription == subscription)
    }

    /// The events of type `E` that a subscription handled successfully, once per subscription
    /// that did (a message read by two subscriptions is here twice).
    ///
    /// # Panics
    ///
    /// If one does not decode as `E`, naming it and why.
    pub fn consumed<E: DomainEvent>(&self) -> Vec<E> {
        let consumed = self
            .select(|d| d.settled == Settled::Consumed && d.envelope.event_type == E::EVENT_TYPE);
        self.decode_all(consumed.iter().map(|d| &d.envelope))
    }

    /// The deliveries `subscription` handled successfully.
    pub fn consumed_by(&self, subscription: &str) -> Vec<Delivery> {
        self.select(|d| d.subscription == subscription && d.settled == Settled::Consumed)
    }

    /// The deliveries given up on (sent to the subscription's dead-letter topic), in order.
    pub fn dead_lettered(&self) -> Vec<Delivery> {
        self.select(|d| matches!(d.settled, Settled::DeadLettered { .. }))
    }

    /// Waits until `expectation` holds; after its timeout (the recorder's patience unless
    /// [`Expect::within`] says), an error naming what was expected and everything seen.
    pub async fn wait_for(&self, expectation: Expect) -> Result<(), WaitTimeout> {
        let patience = expectation.within.unwrap_or(self.patience);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change between the look and the wait wakes us.
            changed.as_mut().enable();
            let seen = self.count(&expectation.what);
            if seen >= expectation.count {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let seen = self.count(&expectation.what);
                if seen >= expectation.count {
                    return Ok(());
                }
                return Err(WaitTimeout {
                    message: format!(
                        "waited {patience:?} for {expectation}, saw {seen}\n{}",
                        self.summary()
                    ),
                });
            }
        }
    }

    /// What was seen, for a failure message: publishes per event type, deliveries per
    /// subscription and how they ended.
    pub fn summary(&self) -> String {
        let log = self.shared.log.lock();
        let mut published = BTreeMap::<&str, usize>::new();
        for envelope in &log.published {
            *published.entry(&envelope.event_type).or_default() += 1;
        }
        let mut out = String::from("published:");
        if published.is_empty() {
            out.push_str(" nothing");
        }
        for (event_type, n) in published {
            out.push_str(&format!("\n  {n} x `{event_type}`"));
        }
        #[derive(Default)]
        struct Tally<'a> {
            consumed: usize,
            retried: usize,
            dead: usize,
            last_error: Option<&'a str>,
        }
        let mut by_subscription = BTreeMap::<(&str, &str), Tally>::new();
        for d in &log.deliveries {
            let tally = by_subscription
                .entry((&d.subscription, &d.envelope.event_type))
                .or_default();
            match &d.settled {
                Settled::Consumed => tally.consumed += 1,
                Settled::Retried { error, .. } => {
                    tally.retried += 1;
                    tally.last_error = Some(error);
                }
                Settled::DeadLettered { error, .. } => {
                    tally.dead += 1;
                    tally.last_error = Some(error);
                }
            }
        }
        out.push_str("\ndeliveries:");
        if by_subscription.is_empty() {
            out.push_str(" none");
        }
        for ((subscription, event_type), t) in by_subscription {
            out.push_str(&format!(
                "\n  `{subscription}` <- `{event_type}`: {} consumed, {} retried, {} dead-lettered",
                t.consumed, t.retried, t.dead
            ));
            if let Some(error) = t.last_error {
                out.push_str(&format!(" (last error: {error})"));
            }
        }
        out
    }

    fn select(&self, keep: impl Fn(&Delivery) -> bool) -> Vec<Delivery> {
        let log = self.shared.log.lock();
        log.deliveries.iter().filter(|d| keep(d)).cloned().collect()
    }

    fn count(&self, what: &What) -> usize {
        let log = self.shared.log.lock();
        match what {
            What::Published { event_type } => log
                .published
                .iter()
                .filter(|e| event_type.is_none_or(|t| e.event_type == t))
                .count(),
            What::Settled {
                consumed,
                event_type,
                subscription,
            } => log
                .deliveries
                .iter()
                .filter(|d| {
                    let kind = if *consumed {
                        d.settled == Settled::Consumed
                    } else {
                        matches!(d.settled, Settled::DeadLettered { .. })
                    };
                    kind && event_type.is_none_or(|t| d.envelope.event_type == t)
                        && subscription.as_deref().is_none_or(|s| d.subscription == s)
                })
                .count(),
        }
    }

    fn decode_all<'a, E: DomainEvent>(
        &self,
        envelopes: impl Iterator<Item = &'a Envelope>,
    ) -> Vec<E> {
        envelopes
            .filter(|e| e.event_type == E::EVENT_TYPE)
            .map(|e| {
                self.codecs.decode_envelope::<E>(e).unwrap_or_else(|error| {
                    panic!(
                        "message {} (`{}`) does not decode as {}: {error}",
                        e.id,
                        e.event_type,
                        std::any::type_name::<E>()
                    )
                })
            })
            .collect()
    }

    /// Before a publish: a message may be delivered before its publish returns.
    fn record_publishing(&self, envelopes: &[Envelope]) {
        let mut log = self.shared.log.lock();
        log.published_ids.extend(envelopes.iter().map(|e| e.id));
    }

    fn record_published(&self, envelopes: &[Envelope]) {
        self.shared
            .log
            .lock()
            .published
            .extend_from_slice(envelopes);
        self.shared.changed.notify_waiters();
    }

    fn record_delivery(&self, delivery: Delivery) {
        let mut log = self.shared.log.lock();
        if self.only_own && !log.published_ids.contains(&delivery.envelope.id) {
            return;
        }
        log.deliveries.push(delivery);
        drop(log);
        self.shared.changed.notify_waiters();
    }
}
