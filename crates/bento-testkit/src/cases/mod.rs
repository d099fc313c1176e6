//! The conformance cases. Each takes a [`Backend`], builds a bus and uses topics and
//! subscriptions named uniquely for this run, so cases can run in parallel against one broker.

mod delivery;
mod failures;
mod lifecycle;

use std::time::Duration;

use bento_application::{
    Bus, DeadLetterPolicy, Handler, PublishOptions, RetryPolicy, Subscription, SubscriptionSpec,
};
use bento_codec::Json;
use bento_domain::{DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

use crate::{Backend, Case, Collector};

pub use delivery::{
    competing_consumers, concurrency_bound, delayed_delivery, fan_out, per_key_order, round_trip,
};
pub use failures::{
    panicking_handler, permanent_failure_dead_letter, retries_exhausted_dead_letter,
    retry_then_success, undecodable_dead_letter,
};
pub use lifecycle::{backlog_without_stalls, graceful_shutdown, unit_of_work};

/// The event every case sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    /// Unique per message.
    pub id: String,
    /// Ordering key.
    pub key: String,
    /// Sequence number within its key.
    pub seq: u32,
}

impl DomainEvent for Ping {
    const EVENT_TYPE: &'static str = "bento.conformance.ping";
    const VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "pinger";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

pub(crate) fn ping(key: &str, seq: u32) -> Ping {
    Ping {
        id: format!("{key}-{seq}"),
        key: key.to_owned(),
        seq,
    }
}

/// A topic or subscription name unique to this run.
pub fn unique(what: &str) -> String {
    format!("bento-conformance-{what}-{}", uuid::Uuid::now_v7().simple())
}

pub(crate) struct Setup {
    pub(crate) bus: Bus<Json>,
    pub(crate) topic: String,
    pub(crate) patience: Duration,
    pub(crate) settle: Duration,
}

pub(crate) async fn setup(backend: &dyn Backend, case: Case, name: &str) -> Option<Setup> {
    if let Some(reason) = backend.unsupported(case) {
        println!("conformance case {case:?} not supported by this backend: {reason}");
        return None;
    }
    Some(Setup {
        bus: Bus::new(backend.bus().await, Json),
        topic: unique(name),
        patience: backend.patience(),
        settle: backend.settle_time(),
    })
}

impl Setup {
    pub(crate) fn spec(&self, subscription: &str) -> SubscriptionSpec {
        SubscriptionSpec::topic(&self.topic, unique(subscription))
    }

    /// [`Self::spec`] with `attempts` quick attempts and a dead-letter topic of its own.
    pub(crate) fn failing_spec(&self, subscription: &str, attempts: u32) -> SubscriptionSpec {
        self.spec(subscription)
            .retry(quick_retry(attempts))
            .dead_letter(DeadLetterPolicy::to_topic(unique(&format!(
                "{subscription}-dlq"
            ))))
    }

    /// Subscribes `handler` per `spec` and waits until the backend is ready to deliver.
    pub(crate) async fn subscribe<H: Handler<Ping>>(
        &self,
        spec: SubscriptionSpec,
        handler: H,
    ) -> Subscription {
        let sub = self
            .bus
            .subscribe_with(spec, handler)
            .await
            .unwrap_or_else(|e| panic!("subscribing to {} failed: {e}", self.topic));
        self.ready().await;
        sub
    }

    /// Subscribes a collector of envelopes per `spec`, without waiting for readiness.
    pub(crate) async fn collect_unready(
        &self,
        spec: SubscriptionSpec,
    ) -> (Collector, Subscription) {
        let collector = Collector::new();
        let sub = self
            .bus
            .subscribe_envelopes(spec, collector.handler())
            .await
            .unwrap_or_else(|e| panic!("subscribing to {} failed: {e}", self.topic));
        (collector, sub)
    }

    /// Subscribes a collector of envelopes per `spec` and waits until the backend is ready.
    pub(crate) async fn collect(&self, spec: SubscriptionSpec) -> (Collector, Subscription) {
        let collected = self.collect_unready(spec).await;
        self.ready().await;
        collected
    }

    pub(crate) async fn publish(&self, event: &Ping) {
        self.bus
            .publish_with(event, PublishOptions::default().to_topic(&self.topic))
            .await
            .unwrap_or_else(|e| panic!("publishing to {} failed: {e}", self.topic));
    }

    /// Publishes `events` in batches of `size` (one `publish_batch` each).
    async fn publish_batches(&self, events: &[Ping], size: usize) {
        for chunk in events.chunks(size) {
            let envelopes = chunk
                .iter()
                .map(|e| self.bus.envelope(e).expect("encode"))
                .collect();
            self.bus
                .message_bus()
                .publish_batch(envelopes, PublishOptions::default().to_topic(&self.topic))
                .await
                .unwrap_or_else(|e| panic!("publishing a batch to {} failed: {e}", self.topic));
        }
    }

    async fn publish_envelope(&self, envelope: Envelope) {
        self.bus
            .message_bus()
            .publish(envelope, PublishOptions::default().to_topic(&self.topic))
            .await
            .unwrap_or_else(|e| panic!("publishing to {} failed: {e}", self.topic));
    }

    /// Subscribes a collector to the dead-letter topic of `spec`.
    pub(crate) async fn watch_dead_letters(
        &self,
        spec: &SubscriptionSpec,
    ) -> (Collector, bento_application::Subscription) {
        let dlq = spec
            .dead_letter
            .topic
            .clone()
            .unwrap_or_else(|| panic!("conformance cases set explicit dead-letter topics"));
        let collector = Collector::new();
        let sub = self
            .bus
            .subscribe_envelopes(
                SubscriptionSpec::topic(dlq, unique("dlq-reader")),
                collector.handler(),
            )
            .await
            .unwrap_or_else(|e| panic!("subscribing to the dead-letter topic failed: {e}"));
        (collector, sub)
    }

    pub(crate) async fn ready(&self) {
        if !self.settle.is_zero() {
            tokio::time::sleep(self.settle).await;
        }
    }
}

pub(crate) fn decode(envelope: &Envelope) -> Ping {
    serde_json::from_slice(&envelope.payload)
        .unwrap_or_else(|e| panic!("payload is not a Ping: {e}"))
}

pub(crate) fn header<'a>(envelope: &'a Envelope, name: &str) -> &'a str {
    envelope
        .headers
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("header {name} missing from {envelope:?}"))
}

pub(crate) fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(attempts, Duration::from_millis(50))
        .max_backoff(Duration::from_millis(400))
}
