//! Bento's Prometheus metrics: the families, bounded labels and pre-resolved handles.
//!
//! The figures of each label combination are created once and kept by the layer that records
//! them, so the hot path is a string compare (or a hash lookup, past the first event type of a
//! subscription) and a few relaxed atomic additions: no label formatting per message.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bento_application::FailureKind;
use parking_lot::{Mutex, RwLock};
use prometheus::core::Desc;
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry, TextEncoder, proto};

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
/// The same, in nanoseconds.
const LATENCY_BUCKETS_NANOS: [u64; 18] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
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

    pub(crate) fn elapsed_nanos(self) -> u64 {
        let clock = clock();
        clock.delta_as_nanos(self.0, clock.raw())
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

/// Bento's metrics in one Prometheus registry. Cheap to clone; clones share them.
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
///
/// The per-message figures are plain atomic counters, one set per label combination, that a
/// collector turns into metric families when the registry is gathered: recording a delivery
/// costs a handful of relaxed atomic additions, and `bento_handlers_in_flight` is computed at
/// scrape time (received minus finished) rather than kept up per message.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("max_label_values", &self.inner.topics.max)
            .finish_non_exhaustive()
    }
}

struct Shared {
    registry: Registry,
    store: Arc<Store>,
    lag: IntGaugeVec,
    topics: LabelLimit,
    event_types: LabelLimit,
    subscriptions: LabelLimit,
}

const PUBLISHED: &str = "bento_messages_published_total";
const PUBLISH_ERRORS: &str = "bento_publish_errors_total";
const PUBLISH_DURATION: &str = "bento_publish_duration_seconds";
const RECEIVED: &str = "bento_messages_received_total";
const HANDLED: &str = "bento_messages_handled_total";
const RETRIED: &str = "bento_messages_retried_total";
const DEAD_LETTERED: &str = "bento_messages_dead_lettered_total";
const HANDLER_DURATION: &str = "bento_handler_duration_seconds";
const IN_FLIGHT: &str = "bento_handlers_in_flight";

const FAILURES: [FailureKind; 4] = [
    FailureKind::Permanent,
    FailureKind::RetriesExhausted,
    FailureKind::Undecodable,
    FailureKind::UnknownEventType,
];

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
        let store = Arc::new(Store::new()?);
        registry.register(Box::new(Collector(store.clone())))?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "bento_consumer_lag_messages",
                "Messages a subscription has yet to consume, where the backend can tell.",
            ),
            &["backend", "topic", "subscription"],
        )?;
        registry.register(Box::new(lag.clone()))?;
        let max = options.max_label_values.max(1);
        Ok(Self {
            inner: Arc::new(Shared {
                registry: registry.clone(),
                store,
                lag,
                topics: LabelLimit::new(max),
                event_types: LabelLimit::new(max),
                subscriptions: LabelLimit::new(max),
            }),
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
        let shared = &*self.inner;
        let topic = shared.topics.admit(topic);
        let event_type = shared.event_types.admit(event_type);
        let store = &shared.store;
        PublishHandles {
            counts: intern(
                &store.published,
                [backend.to_owned(), topic.clone(), event_type],
                PublishCounts::default,
            ),
            latency: intern(
                &store.publish_latency,
                [backend.to_owned(), topic],
                Latency::default,
            ),
        }
    }

    pub(crate) fn subscription_handles(
        &self,
        backend: &str,
        topic: &str,
        subscription: &str,
    ) -> SubscriptionHandles {
        let shared = &*self.inner;
        let labels = [
            backend.to_owned(),
            shared.topics.admit(topic),
            shared.subscriptions.admit(subscription),
        ];
        SubscriptionHandles {
            stats: intern(
                &shared.store.subscriptions,
                labels.clone(),
                Default::default,
            ),
            labels,
            metrics: self.clone(),
        }
    }
}

/// Interns one set of figures per label combination, so that every layer recording under the
/// same labels shares them.
fn intern<K: Ord, V>(map: &Mutex<BTreeMap<K, Arc<V>>>, key: K, make: impl FnOnce() -> V) -> Arc<V> {
    map.lock()
        .entry(key)
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

/// Publish counts of one (backend, topic, event type).
#[derive(Default)]
pub(crate) struct PublishCounts {
    pub(crate) published: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// What a bus records for one (topic, event type) it publishes to.
#[derive(Clone)]
pub(crate) struct PublishHandles {
    pub(crate) counts: Arc<PublishCounts>,
    pub(crate) latency: Arc<Latency>,
}

/// A latency histogram: the bucket an observation falls in and the sum, two relaxed atomic
/// additions an observation.
pub(crate) struct Latency {
    /// Per bucket (not cumulative), the last one past the largest bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Latency {
    pub(crate) fn observe(&self, stopwatch: Stopwatch) {
        let nanos = stopwatch.elapsed_nanos();
        let bucket = LATENCY_BUCKETS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn proto(&self) -> proto::Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
        for (count, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            cumulative += count.load(Ordering::Relaxed);
            let mut bucket = proto::Bucket::default();
            bucket.set_upper_bound(bound);
            bucket.set_cumulative_count(cumulative);
            buckets.push(bucket);
        }
        let total = cumulative + self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let mut histogram = proto::Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_count(total);
        histogram.set_sample_sum(self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        histogram
    }
}

/// The figures of one (backend, topic, subscription), per event type.
#[derive(Default)]
pub(crate) struct SubscriptionStats {
    by_event_type: Mutex<BTreeMap<String, Arc<ConsumeStats>>>,
}

/// The figures of one (subscription, event type).
#[derive(Default)]
pub(crate) struct ConsumeStats {
    pub(crate) received: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    dead_lettered: [AtomicU64; 4],
    /// Deliveries whose handler was dropped before it finished (a shutdown that stopped
    /// waiting): neither in flight nor handled.
    pub(crate) abandoned: AtomicU64,
    pub(crate) latency: Latency,
}

impl ConsumeStats {
    pub(crate) fn dead_lettered(&self, failure: FailureKind) -> &AtomicU64 {
        &self.dead_lettered[failure_index(failure)]
    }

    fn in_flight(&self) -> u64 {
        // Finished first, received last: a delivery counted as finished was received before.
        let finished = self.ok.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.abandoned.load(Ordering::Relaxed);
        self.received
            .load(Ordering::Relaxed)
            .saturating_sub(finished)
    }
}

fn failure_index(failure: FailureKind) -> usize {
    match failure {
        FailureKind::Permanent => 0,
        FailureKind::RetriesExhausted => 1,
        FailureKind::Undecodable => 2,
        FailureKind::UnknownEventType => 3,
        // A kind newer than this crate is counted with the permanent failures.
        _ => 0,
    }
}

/// The labels of one subscription; makes the per-event-type figures.
pub(crate) struct SubscriptionHandles {
    labels: [String; 3],
    stats: Arc<SubscriptionStats>,
    metrics: Metrics,
}

impl SubscriptionHandles {
    /// The consumer-lag gauge (created on first use: only backends that can tell get one).
    pub(crate) fn lag(&self) -> IntGauge {
        self.metrics.inner.lag.with_label_values(&self.labels)
    }

    /// The figures for messages of `event_type` on this subscription.
    pub(crate) fn consume_stats(&self, event_type: &str) -> Arc<ConsumeStats> {
        let event_type = self.metrics.inner.event_types.admit(event_type);
        intern(&self.stats.by_event_type, event_type, ConsumeStats::default)
    }
}

/// Every figure recorded so far, by labels.
struct Store {
    descs: Vec<Desc>,
    /// (backend, topic, event type)
    published: Mutex<BTreeMap<[String; 3], Arc<PublishCounts>>>,
    /// (backend, topic)
    publish_latency: Mutex<BTreeMap<[String; 2], Arc<Latency>>>,
    /// (backend, topic, subscription)
    subscriptions: Mutex<BTreeMap<[String; 3], Arc<SubscriptionStats>>>,
}

impl Store {
    fn new() -> Result<Self, ObservabilityError> {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
        };
        let publish = ["backend", "topic", "event_type"];
        let consume = ["backend", "topic", "subscription", "event_type"];
        Ok(Self {
            descs: vec![
                desc(
                    PUBLISHED,
                    "Messages the backend confirmed as stored.",
                    &publish,
                )?,
                desc(
                    PUBLISH_ERRORS,
                    "Messages whose publish failed (every message of a failed batch).",
                    &publish,
                )?,
                desc(
                    PUBLISH_DURATION,
                    "Time for one publish call (a batch is one call) to be confirmed.",
                    &["backend", "topic"],
                )?,
                desc(
                    RECEIVED,
                    "Deliveries handed to a handler, redeliveries included.",
                    &consume,
                )?,
                desc(
                    HANDLED,
                    "Deliveries whose handler finished, by outcome (ok or failed).",
                    &["backend", "topic", "subscription", "event_type", "outcome"],
                )?,
                desc(
                    RETRIED,
                    "Failed deliveries the dispatcher schedules again under the retry policy.",
                    &consume,
                )?,
                desc(
                    DEAD_LETTERED,
                    "Failed deliveries sent to the dead-letter topic, by failure kind.",
                    &["backend", "topic", "subscription", "event_type", "failure"],
                )?,
                desc(
                    HANDLER_DURATION,
                    "Time a handler took, decoding included, whatever the outcome.",
                    &consume,
                )?,
                desc(
                    IN_FLIGHT,
                    "Handlers running now.",
                    &["backend", "topic", "subscription"],
                )?,
            ],
            published: Mutex::default(),
            publish_latency: Mutex::default(),
            subscriptions: Mutex::default(),
        })
    }

    fn help(&self, name: &str) -> String {
        self.descs
            .iter()
            .find(|d| d.fq_name == name)
            .map(|d| d.help.clone())
            .unwrap_or_default()
    }
}

/// Turns the [`Store`] into metric families when the registry is gathered.
struct Collector(Arc<Store>);

/// Builds one metric family.
struct Family {
    family: proto::MetricFamily,
}

impl Family {
    fn new(store: &Store, name: &str, kind: proto::MetricType) -> Self {
        let mut family = proto::MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(store.help(name));
        family.set_field_type(kind);
        Self { family }
    }

    fn push(&mut self, labels: &[(&str, &str)], fill: impl FnOnce(&mut proto::Metric)) {
        let mut pairs: Vec<proto::LabelPair> = labels
            .iter()
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        let mut metric = proto::Metric::default();
        metric.set_label(pairs);
        fill(&mut metric);
        self.family.mut_metric().push(metric);
    }

    fn counter(&mut self, labels: &[(&str, &str)], value: &AtomicU64) {
        let value = value.load(Ordering::Relaxed) as f64;
        self.push(labels, |metric| {
            let mut counter = proto::Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        });
    }

    fn gauge(&mut self, labels: &[(&str, &str)], value: u64) {
        self.push(labels, |metric| {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(value as f64);
            metric.set_gauge(gauge);
        });
    }

    fn histogram(&mut self, labels: &[(&str, &str)], latency: &Latency) {
        let histogram = latency.proto();
        self.push(labels, |metric| metric.set_histogram(histogram));
    }

    fn done(self, out: &mut Vec<proto::MetricFamily>) {
        if !self.family.get_metric().is_empty() {
            out.push(self.family);
        }
    }
}

impl prometheus::core::Collector for Collector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        use proto::MetricType::{COUNTER, GAUGE, HISTOGRAM};
        let store = &*self.0;
        let mut out = Vec::with_capacity(store.descs.len());

        let mut published = Family::new(store, PUBLISHED, COUNTER);
        let mut errors = Family::new(store, PUBLISH_ERRORS, COUNTER);
        for ([backend, topic, event_type], counts) in store.published.lock().iter() {
            let labels = [
                ("backend", &**backend),
                ("topic", topic),
                ("event_type", event_type),
            ];
            published.counter(&labels, &counts.published);
            errors.counter(&labels, &counts.errors);
        }
        published.done(&mut out);
        errors.done(&mut out);

        let mut duration = Family::new(store, PUBLISH_DURATION, HISTOGRAM);
        for ([backend, topic], latency) in store.publish_latency.lock().iter() {
            duration.histogram(&[("backend", backend), ("topic", topic)], latency);
        }
        duration.done(&mut out);

        let mut received = Family::new(store, RECEIVED, COUNTER);
        let mut handled = Family::new(store, HANDLED, COUNTER);
        let mut retried = Family::new(store, RETRIED, COUNTER);
        let mut dead = Family::new(store, DEAD_LETTERED, COUNTER);
        let mut duration = Family::new(store, HANDLER_DURATION, HISTOGRAM);
        let mut in_flight = Family::new(store, IN_FLIGHT, GAUGE);
        for ([backend, topic, subscription], stats) in store.subscriptions.lock().iter() {
            let mut running = 0;
            for (event_type, stats) in stats.by_event_type.lock().iter() {
                let labels = [
                    ("backend", &**backend),
                    ("topic", topic),
                    ("subscription", subscription),
                    ("event_type", event_type),
                ];
                let with = |name, value| {
                    let [a, b, c, d] = labels;
                    [a, b, c, d, (name, value)]
                };
                running += stats.in_flight();
                received.counter(&labels, &stats.received);
                handled.counter(&with("outcome", "ok"), &stats.ok);
                handled.counter(&with("outcome", "failed"), &stats.failed);
                retried.counter(&labels, &stats.retried);
                for failure in FAILURES {
                    dead.counter(
                        &with("failure", failure.as_str()),
                        stats.dead_lettered(failure),
                    );
                }
                duration.histogram(&labels, &stats.latency);
            }
            in_flight.gauge(
                &[
                    ("backend", backend),
                    ("topic", topic),
                    ("subscription", subscription),
                ],
                running,
            );
        }
        for family in [received, handled, retried, dead, duration, in_flight] {
            family.done(&mut out);
        }
        out
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
        let mut seen = self.seen.lock();
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

/// A bounded map from a name (event type, topic) to a value built once per name (usually an
/// `Arc`, cheap to clone).
///
/// The first name seen is kept apart and found with one string compare and no lock (most
/// subscriptions and most publishers see one event type); the others sit behind a read lock.
/// Past `capacity` names, values are built on each call and not kept, so an unbounded stream
/// of names cannot grow memory (their metric labels are folded into [`OTHER`] anyway).
pub(crate) struct HandleCache<T> {
    first: OnceLock<(Box<str>, T)>,
    rest: RwLock<HashMap<Box<str>, T>>,
    capacity: usize,
}

impl<T: Clone> HandleCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            first: OnceLock::new(),
            rest: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Like [`HandleCache::get`], but borrows the first entry instead of cloning it.
    pub(crate) fn get_ref(&self, key: &str, make: impl FnOnce(&str) -> T) -> Cached<'_, T> {
        match self.first.get() {
            Some((first_key, first)) if **first_key == *key => Cached::Borrowed(first),
            _ => Cached::Owned(self.get(key, make)),
        }
    }

    pub(crate) fn get(&self, key: &str, make: impl FnOnce(&str) -> T) -> T {
        match self.first.get() {
            Some((first_key, first)) if **first_key == *key => first.clone(),
            Some(_) => self.rest(key, || make(key)),
            None => {
                let value = make(key);
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

    fn rest(&self, key: &str, make: impl FnOnce() -> T) -> T {
        if let Some(found) = self.rest.read().get(key) {
            return found.clone();
        }
        let mut rest = self.rest.write();
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

/// An entry of a [`HandleCache`], borrowed or cloned.
pub(crate) enum Cached<'a, T> {
    Borrowed(&'a T),
    Owned(T),
}

impl<T> std::ops::Deref for Cached<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Cached::Borrowed(value) => value,
            Cached::Owned(value) => value,
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
        assert_eq!(cache.get("a", make), "A");
        assert_eq!(cache.get("a", make), "A");
        assert_eq!(cache.get("b", make), "B");
        assert_eq!(cache.get("b", make), "B");
        assert_eq!(built.get(), 2);
        // Capacity 2: "a" (first) and "b" are kept, "c" is built on every call.
        assert_eq!(cache.get("c", make), "C");
        assert_eq!(cache.get("c", make), "C");
        assert_eq!(built.get(), 4);
    }

    #[test]
    fn metrics_render_with_bounded_labels() -> Result<(), ObservabilityError> {
        let metrics = Metrics::new(MetricsOptions {
            max_label_values: 1,
        })?;
        let count = |topic, event_type, n| {
            metrics
                .publish_handles("memory", topic, event_type)
                .counts
                .published
                .fetch_add(n, Ordering::Relaxed)
        };
        count("t1", "e1", 1);
        count("t2", "e2", 2);
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
