//! The store of every figure recorded, and the collector that turns it into metric families
//! when the registry is gathered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bento_application::FailureKind;
use parking_lot::Mutex;
use prometheus::core::Desc;
use prometheus::proto;

use super::handles::{PublishCounts, SubscriptionStats};
use super::latency::Latency;
use crate::ObservabilityError;

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

/// Every figure recorded so far, by labels.
pub(super) struct Store {
    descs: Vec<Desc>,
    /// (backend, topic, event type)
    pub(super) published: Mutex<BTreeMap<[String; 3], Arc<PublishCounts>>>,
    /// (backend, topic)
    pub(super) publish_latency: Mutex<BTreeMap<[String; 2], Arc<Latency>>>,
    /// (backend, topic, subscription)
    pub(super) subscriptions: Mutex<BTreeMap<[String; 3], Arc<SubscriptionStats>>>,
}

impl Store {
    pub(super) fn new() -> Result<Self, ObservabilityError> {
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
pub(super) struct Collector(pub(super) Arc<Store>);

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
