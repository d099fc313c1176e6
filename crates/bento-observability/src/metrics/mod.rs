//! Bento's Prometheus metrics: the families, bounded labels and pre-resolved handles.
//!
//! The figures of each label combination are created once and kept by the layer that records
//! them, so the hot path is a string compare (or a hash lookup, past the first event type of a
//! subscription) and a few relaxed atomic additions: no label formatting per message.

mod cache;
mod collector;
mod handles;
mod labels;
mod latency;

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::ObservabilityError;
use collector::{Collector, Store};
use handles::{PublishCounts, intern};
use labels::LabelLimit;
use latency::Latency;

pub(crate) use cache::{Cached, HandleCache};
pub(crate) use handles::{ConsumeStats, PublishHandles, SubscriptionHandles};
pub(crate) use latency::Stopwatch;

/// The label value that stands for every value past [`MetricsOptions::max_label_values`].
pub const OTHER: &str = "other";
/// The label value for an empty one (a foreign message without an event type).
pub const UNKNOWN: &str = "unknown";

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
/// | `bento_settle_failures_total` | counter | backend, topic, subscription |
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
    settle_failures: IntCounterVec,
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
        let settle_failures = IntCounterVec::new(
            Opts::new(
                "bento_settle_failures_total",
                "Messages that could not be settled on the broker (a retry or dead letter not \
                 stored, an acknowledgement not sent); they come again.",
            ),
            &["backend", "topic", "subscription"],
        )?;
        registry.register(Box::new(settle_failures.clone()))?;
        let max = options.max_label_values.max(1);
        Ok(Self {
            inner: Arc::new(Shared {
                registry: registry.clone(),
                store,
                lag,
                settle_failures,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

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
