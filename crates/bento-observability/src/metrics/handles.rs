//! The figures each label combination records into, and the handles the layers keep to them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bento_application::FailureKind;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

use super::{Latency, Metrics};

/// Interns one set of figures per label combination, so that every layer recording under the
/// same labels shares them.
pub(super) fn intern<K: Ord, V>(
    map: &Mutex<BTreeMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce() -> V,
) -> Arc<V> {
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

/// The figures of one (backend, topic, subscription), per event type.
#[derive(Default)]
pub(crate) struct SubscriptionStats {
    pub(super) by_event_type: Mutex<BTreeMap<String, Arc<ConsumeStats>>>,
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

    pub(super) fn in_flight(&self) -> u64 {
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
    pub(super) labels: [String; 3],
    pub(super) stats: Arc<SubscriptionStats>,
    pub(super) metrics: Metrics,
}

impl SubscriptionHandles {
    /// The consumer-lag gauge (created on first use: only backends that can tell get one).
    pub(crate) fn lag(&self) -> IntGauge {
        self.metrics.inner.lag.with_label_values(&self.labels)
    }

    /// The counter of messages this subscription could not settle.
    pub(crate) fn settle_failures(&self) -> IntCounter {
        self.metrics
            .inner
            .settle_failures
            .with_label_values(&self.labels)
    }

    /// The figures for messages of `event_type` on this subscription.
    pub(crate) fn consume_stats(&self, event_type: &str) -> Arc<ConsumeStats> {
        let event_type = self.metrics.inner.event_types.admit(event_type);
        intern(&self.stats.by_event_type, event_type, ConsumeStats::default)
    }
}
