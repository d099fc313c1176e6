//! Bento's Prometheus metrics: the families, bounded labels and pre-resolved handles.
//!
//! Every metric is created once per label combination and its handle kept by the layer that
//! records it, so the hot path is a hash lookup (or a string compare, for the common case of one
//! event type per subscription) and a few atomic operations: no label formatting per message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bento_application::FailureKind;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::ObservabilityError;

/// The label value that stands for every value past [`MetricsOptions::max_label_values`].
pub const OTHER: &str = "other";
/// The label value for an empty one (a foreign message without an event type).
pub const UNKNOWN: &str = "unknown";

/// Latency buckets, in seconds: from 50 µs (in-memory) to 30 s (a slow handler).
const LATENCY_BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

/// The clock latencies are measured with: the CPU's time-stamp counter where it is invariant
/// (a few nanoseconds a read, against tens for the OS clock), else the OS monotonic clock.
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Measures one latency.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopwatch(u64);

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self(clock().raw())
    }

    pub(crate) fn elapsed_secs(self) -> f64 {
        let clock = clock();
        clock.delta_as_nanos(self.0, clock.raw()) as f64 / 1e9
    }
}

/// Options of [`Metrics`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Most distinct values kept per label (topic, event type, subscription); further values
    /// are recorded as [`OTHER`].
    pub max_label_values: usize,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self {
            max_label_values: 100,
        }
    }
}

/// Bento's metric families in one Prometheus registry. Cheap to clone; clones share them.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `bento_messages_published_total` | counter | backend, topic, event_type |
/// | `bento_publish_errors_total` | counter | backend, topic, event_type |
/// | `bento_publish_duration_seconds` | histogram | backend, topic |
/// | `bento_messages_received_total` | counter | backend, topic, subscription, event_type |
/// | `bento_messages_handled_total` | counter | ... + outcome (`ok`, `failed`) |
/// | `bento_messages_retried_total` | counter | backend, topic, subscription, event_type |
/// | `bento_messages_dead_lettered_total` | counter | ... + failure |
/// | `bento_handler_duration_seconds` | histogram | backend, topic, subscription, event_type |
/// | `bento_handlers_in_flight` | gauge | backend, topic, subscription |
/// | `bento_consumer_lag_messages` | gauge | backend, topic, subscription |
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("max_label_values", &self.inner.topics.max)
            .finish_non_exhaustive()
    }
}

struct Families {
    registry: Registry,
    published: IntCounterVec,
    publish_errors: IntCounterVec,
    publish_duration: HistogramVec,
    received: IntCounterVec,
    handled: IntCounterVec,
    retried: IntCounterVec,
    dead_lettered: IntCounterVec,
    handler_duration: HistogramVec,
    in_flight: IntGaugeVec,
    lag: IntGaugeVec,
    topics: LabelLimit,
    event_types: LabelLimit,
    subscriptions: LabelLimit,
}

impl Metrics {
    /// Bento's metrics in a registry of their own.
    pub fn new(options: MetricsOptions) -> Result<Self, ObservabilityError> {
        Self::register(&Registry::new(), options)
    }

    /// Bento's metrics, registered in `registry` (e.g. the service's own). Fails if that
    /// registry already has them.
    pub fn register(
        registry: &Registry,
        options: MetricsOptions,
    ) -> Result<Self, ObservabilityError> {
        const PUBLISH: &[&str] = &["backend", "topic", "event_type"];
        const CONSUME: &[&str] = &["backend", "topic", "subscription", "event_type"];
        const SUBSCRIPTION: &[&str] = &["backend", "topic", "subscription"];
        let counter = |name: &str,
                       help: &str,
                       labels: &[&str]|
         -> Result<IntCounterVec, ObservabilityError> {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, ObservabilityError> {
                let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
                let vec = HistogramVec::new(opts, labels)?;
                registry.register(Box::new(vec.clone()))?;
                Ok(vec)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, ObservabilityError> {
                let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(vec.clone()))?;
                Ok(vec)
            };
        let with = |extra: &'static str, base: &[&'static str]| -> Vec<&'static str> {
            base.iter().copied().chain([extra]).collect()
        };
        let max = options.max_label_values.max(1);
        let families = Families {
            published: counter(
                "bento_messages_published_total",
                "Messages the backend confirmed as stored.",
                PUBLISH,
            )?,
            publish_errors: counter(
                "bento_publish_errors_total",
                "Messages whose publish failed (every message of a failed batch).",
                PUBLISH,
            )?,
            publish_duration: histogram(
                "bento_publish_duration_seconds",
                "Time for one publish call (a batch is one call) to be confirmed.",
                &["backend", "topic"],
            )?,
            received: counter(
                "bento_messages_received_total",
                "Deliveries handed to a handler, redeliveries included.",
                CONSUME,
            )?,
            handled: counter(
                "bento_messages_handled_total",
                "Deliveries whose handler finished, by outcome (ok or failed).",
                &with("outcome", CONSUME),
            )?,
            retried: counter(
                "bento_messages_retried_total",
                "Failed deliveries the dispatcher schedules again under the retry policy.",
                CONSUME,
            )?,
            dead_lettered: counter(
                "bento_messages_dead_lettered_total",
                "Failed deliveries sent to the dead-letter topic, by failure kind.",
                &with("failure", CONSUME),
            )?,
            handler_duration: histogram(
                "bento_handler_duration_seconds",
                "Time a handler took, decoding included, whatever the outcome.",
                CONSUME,
            )?,
            in_flight: gauge(
                "bento_handlers_in_flight",
                "Handlers running now.",
                SUBSCRIPTION,
            )?,
            lag: gauge(
                "bento_consumer_lag_messages",
                "Messages a subscription has yet to consume, where the backend can tell.",
                SUBSCRIPTION,
            )?,
            registry: registry.clone(),
            topics: LabelLimit::new(max),
            event_types: LabelLimit::new(max),
            subscriptions: LabelLimit::new(max),
        };
        Ok(Self {
            inner: Arc::new(families),
        })
    }

    /// The most distinct values kept per label.
    pub fn max_label_values(&self) -> usize {
        self.inner.topics.max
    }

    /// The registry the metrics live in; register the service's own metrics here to serve
    /// them from the same endpoint.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The registry's metrics in the Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, ObservabilityError> {
        Ok(TextEncoder::new().encode_to_string(&self.inner.registry.gather())?)
    }

    pub(crate) fn publish_handles(
        &self,
        backend: &str,
        topic: &str,
        event_type: &str,
    ) -> PublishHandles {
        let f = &*self.inner;
        let topic = f.topics.admit(topic);
        let event_type = f.event_types.admit(event_type);
        let labels = [backend, topic.as_str(), event_type.as_str()];
        PublishHandles {
            published: f.published.with_label_values(&labels),
            errors: f.publish_errors.with_label_values(&labels),
            duration: f.publish_duration.with_label_values(&labels[..2]),
        }
    }

    pub(crate) fn subscription_handles(
        &self,
        backend: &str,
        topic: &str,
        subscription: &str,
    ) -> SubscriptionHandles {
        let f = &*self.inner;
        let topic = f.topics.admit(topic);
        let subscription = f.subscriptions.admit(subscription);
        SubscriptionHandles {
            labels: [backend.to_owned(), topic, subscription],
            in_flight: None,
            metrics: self.clone(),
        }
        .init()
    }
}

/// The handles of one (topic, event type) a bus publishes to.
#[derive(Clone)]
pub(crate) struct PublishHandles {
    pub(crate) published: IntCounter,
    pub(crate) errors: IntCounter,
    pub(crate) duration: Histogram,
}

/// The labels and gauges of one subscription; makes the per-event-type handles.
pub(crate) struct SubscriptionHandles {
    labels: [String; 3],
    in_flight: Option<IntGauge>,
    metrics: Metrics,
}

impl SubscriptionHandles {
    fn init(mut self) -> Self {
        self.in_flight = Some(self.metrics.inner.in_flight.with_label_values(&self.labels));
        self
    }

    /// The consumer-lag gauge (created on first use: only backends that can tell get one).
    pub(crate) fn lag(&self) -> IntGauge {
        self.metrics.inner.lag.with_label_values(&self.labels)
    }

    /// The handles for messages of `event_type` on this subscription.
    pub(crate) fn consume_handles(&self, event_type: &str) -> ConsumeHandles {
        let f = &*self.metrics.inner;
        let event_type = f.event_types.admit(event_type);
        let [backend, topic, subscription] = &self.labels;
        let labels = [
            backend.as_str(),
            topic.as_str(),
            subscription.as_str(),
            event_type.as_str(),
        ];
        let with = |extra: &'static str| {
            let [a, b, c, d] = labels;
            [a, b, c, d, extra]
        };
        let dead = |kind: FailureKind| f.dead_lettered.with_label_values(&with(kind.as_str()));
        ConsumeHandles {
            received: f.received.with_label_values(&labels),
            ok: f.handled.with_label_values(&with("ok")),
            failed: f.handled.with_label_values(&with("failed")),
            retried: f.retried.with_label_values(&labels),
            dead_permanent: dead(FailureKind::Permanent),
            dead_exhausted: dead(FailureKind::RetriesExhausted),
            dead_undecodable: dead(FailureKind::Undecodable),
            dead_unknown: dead(FailureKind::UnknownEventType),
            duration: f.handler_duration.with_label_values(&labels),
            in_flight: self
                .in_flight
                .clone()
                .unwrap_or_else(|| f.in_flight.with_label_values(&self.labels)),
        }
    }
}

/// The handles of one (subscription, event type).
pub(crate) struct ConsumeHandles {
    pub(crate) received: IntCounter,
    pub(crate) ok: IntCounter,
    pub(crate) failed: IntCounter,
    pub(crate) retried: IntCounter,
    dead_permanent: IntCounter,
    dead_exhausted: IntCounter,
    dead_undecodable: IntCounter,
    dead_unknown: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) in_flight: IntGauge,
}

impl ConsumeHandles {
    pub(crate) fn dead_lettered(&self, failure: FailureKind) -> &IntCounter {
        match failure {
            FailureKind::Permanent => &self.dead_permanent,
            FailureKind::RetriesExhausted => &self.dead_exhausted,
            FailureKind::Undecodable => &self.dead_undecodable,
            FailureKind::UnknownEventType => &self.dead_unknown,
        }
    }
}

/// Keeps at most `max` distinct values of one label; later ones become [`OTHER`].
struct LabelLimit {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelLimit {
    fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Runs once per new handle, never per message.
    fn admit(&self, value: &str) -> String {
        let value = if value.is_empty() { UNKNOWN } else { value };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.max {
            seen.insert(value.to_owned());
            value.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

/// A bounded map from a name (event type, topic) to a value built once per name.
///
/// The first name seen is kept apart and found with one string compare and no lock (most
/// subscriptions and most publishers see one event type); the others sit behind a read lock.
/// Past `capacity` names, values are built on each call and not kept, so an unbounded stream
/// of names cannot grow memory (their metric labels are folded into [`OTHER`] anyway).
pub(crate) struct HandleCache<V> {
    first: OnceLock<(Box<str>, Arc<V>)>,
    rest: RwLock<HashMap<Box<str>, Arc<V>>>,
    capacity: usize,
}

impl<V> HandleCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            first: OnceLock::new(),
            rest: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Like [`HandleCache::get`], but borrows the first entry instead of cloning its `Arc`.
    pub(crate) fn get_ref(&self, key: &str, make: impl FnOnce(&str) -> V) -> Cached<'_, V> {
        match self.first.get() {
            Some((first_key, first)) if **first_key == *key => Cached::Borrowed(first),
            _ => Cached::Shared(self.get(key, make)),
        }
    }

    pub(crate) fn get(&self, key: &str, make: impl FnOnce(&str) -> V) -> Arc<V> {
        match self.first.get() {
            Some((first_key, first)) if **first_key == *key => first.clone(),
            Some(_) => self.rest(key, || Arc::new(make(key))),
            None => {
                let value = Arc::new(make(key));
                let (first_key, first) = self.first.get_or_init(|| (key.into(), value.clone()));
                if **first_key == *key {
                    first.clone()
                } else {
                    // Another thread claimed the first slot with another name meanwhile.
                    self.rest(key, || value)
                }
            }
        }
    }

    fn rest(&self, key: &str, make: impl FnOnce() -> Arc<V>) -> Arc<V> {
        if let Some(found) = self
            .rest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
        {
            return found.clone();
        }
        let mut rest = self
            .rest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = rest.get(key) {
            return found.clone();
        }
        let value = make();
        if rest.len() + 1 < self.capacity {
            rest.insert(key.into(), value.clone());
        }
        value
    }
}

/// An entry of a [`HandleCache`], borrowed or shared.
pub(crate) enum Cached<'a, V> {
    Borrowed(&'a V),
    Shared(Arc<V>),
}

impl<V> std::ops::Deref for Cached<'_, V> {
    type Target = V;

    fn deref(&self) -> &V {
        match self {
            Cached::Borrowed(value) => value,
            Cached::Shared(value) => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_limit_fold_into_other() {
        let limit = LabelLimit::new(2);
        assert_eq!(limit.admit("a"), "a");
        assert_eq!(limit.admit("b"), "b");
        assert_eq!(limit.admit("c"), OTHER);
        assert_eq!(limit.admit("a"), "a");
        assert_eq!(limit.admit(""), OTHER);
    }

    #[test]
    fn cache_keeps_first_and_bounds_the_rest() {
        let cache: HandleCache<String> = HandleCache::new(2);
        let built = std::cell::Cell::new(0);
        let make = |k: &str| {
            built.set(built.get() + 1);
            k.to_uppercase()
        };
        assert_eq!(*cache.get("a", make), "A");
        assert_eq!(*cache.get("a", make), "A");
        assert_eq!(*cache.get("b", make), "B");
        assert_eq!(*cache.get("b", make), "B");
        assert_eq!(built.get(), 2);
        // Capacity 2: "a" (first) and "b" are kept, "c" is built on every call.
        assert_eq!(*cache.get("c", make), "C");
        assert_eq!(*cache.get("c", make), "C");
        assert_eq!(built.get(), 4);
    }

    #[test]
    fn metrics_render_with_bounded_labels() -> Result<(), ObservabilityError> {
        let metrics = Metrics::new(MetricsOptions {
            max_label_values: 1,
        })?;
        metrics
            .publish_handles("memory", "t1", "e1")
            .published
            .inc();
        metrics
            .publish_handles("memory", "t2", "e2")
            .published
            .inc_by(2);
        let text = metrics.encode()?;
        assert!(
            text.contains(
                r#"bento_messages_published_total{backend="memory",event_type="e1",topic="t1"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"bento_messages_published_total{backend="memory",event_type="other",topic="other"} 2"#
            ),
            "{text}"
        );
        Ok(())
    }
}
