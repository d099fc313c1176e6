//! Observing deliveries: a consumer span and metrics for each delivery of a subscription,
//! read from the outcome its stack returns. [`MetricsObserver`] and [`TraceObserver`] each do
//! one half; [`Observer`] (what an [`crate::ObservedBus`] installs on every subscription, as
//! the dispatcher's observer) does both, and [`crate::MetricsLayer`] and [`crate::TraceLayer`]
//! stack one half as a layer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bento_application::domain::Envelope;
use bento_application::{Context, DeliveryObserver, Observation, Outcome};
use tracing::Span;

use crate::metrics::{Cached, ConsumeStats, HandleCache, Metrics, Stopwatch, SubscriptionHandles};
use crate::trace::{self, TraceOptions};

/// One subscription's metric handles: its own, and its counters per event type.
pub(crate) struct MetricsObserver {
    subscription: SubscriptionHandles,
    by_event_type: HandleCache<Arc<ConsumeStats>>,
}

impl MetricsObserver {
    pub(crate) fn new(
        metrics: &Metrics,
        backend: &'static str,
        topic: &str,
        subscription: &str,
    ) -> Self {
        Self {
            subscription: metrics.subscription_handles(backend, topic, subscription),
            by_event_type: HandleCache::new(metrics.max_label_values()),
        }
    }

    /// A delivery of `ctx` starts: counted as received; the clock's reading is returned.
    fn started(&self, ctx: &Context) -> u64 {
        self.stats(ctx.event_type())
            .received
            .fetch_add(1, Ordering::Relaxed);
        Stopwatch::start().mark()
    }

    /// The delivery of `envelope` started at `mark` ended with `outcome` (`None`: abandoned).
    fn finished(&self, envelope: &Envelope, mark: u64, outcome: Option<&Outcome>) {
        let stats = self.stats(&envelope.event_type);
        match outcome {
            Some(outcome) => record(&stats, Stopwatch::from_mark(mark), outcome),
            None => {
                stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters of `event_type`, borrowed where they can be.
    fn stats(&self, event_type: &str) -> Cached<'_, Arc<ConsumeStats>> {
        let subscription = &self.subscription;
        self.by_event_type.get_ref(event_type, |event_type| {
            subscription.consume_stats(event_type)
        })
    }
}

/// One subscription's consumer spans: their name and how they are made.
pub(crate) struct TraceObserver {
    backend: &'static str,
    span_name: Box<str>,
    options: TraceOptions,
}

impl TraceObserver {
    pub(crate) fn new(backend: &'static str, topic: &str, options: TraceOptions) -> Self {
        Self {
            backend,
            span_name: format!("process {topic}").into(),
            options,
        }
    }

    /// The consumer span of a delivery of `ctx` starting.
    fn started(&self, ctx: &Context) -> Span {
        let span = self
            .options
            .process_span(self.backend, &self.span_name, ctx);
        if !span.is_disabled() {
            self.options.adopt(&span, &ctx.envelope().headers);
        }
        span
    }

    /// Writes how the delivery ended into its `span`.
    fn finished(span: &Span, outcome: &Outcome) {
        if !span.is_disabled() {
            record_outcome(span, outcome);
        }
    }
}

/// What an observed subscription of an [`crate::ObservedBus`] is observed with.
pub(crate) struct Observer {
    tracing: Option<TraceObserver>,
    metrics: Option<MetricsObserver>,
}

impl Observer {
    pub(crate) fn new(tracing: Option<TraceObserver>, metrics: Option<MetricsObserver>) -> Self {
        Self { tracing, metrics }
    }

    /// The consumer-lag gauge of this subscription, if metrics are on.
    pub(crate) fn lag_gauge(&self) -> Option<prometheus::IntGauge> {
        self.metrics.as_ref().map(|m| m.subscription.lag())
    }

    /// The counter of messages this subscription could not settle, if metrics are on.
    pub(crate) fn settle_failures(&self) -> Option<prometheus::IntCounter> {
        self.metrics
            .as_ref()
            .map(|m| m.subscription.settle_failures())
    }
}

/// Each delivery of a subscription of an [`crate::ObservedBus`] runs in a consumer span and is
/// counted by the outcome the dispatcher settles (after retry and panic catching, so a retry,
/// a dead letter and a panic are counted once each).
impl DeliveryObserver for Observer {
    fn started(&self, ctx: &Context) -> Observation {
        Observation {
            span: self
                .tracing
                .as_ref()
                .map_or_else(Span::none, |tracing| tracing.started(ctx)),
            mark: self
                .metrics
                .as_ref()
                .map_or(0, |metrics| metrics.started(ctx)),
        }
    }

    fn finished(&self, envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>) {
        if let Some(metrics) = &self.metrics {
            metrics.finished(envelope, observation.mark, outcome);
        }
        if let Some(outcome) = outcome {
            TraceObserver::finished(&observation.span, outcome);
        }
    }
}

/// Writes `outcome` into the consumer span: `bento.outcome`, and the error status of a failure.
fn record_outcome(span: &Span, outcome: &Outcome) {
    span.record("bento.outcome", outcome_name(outcome));
    match outcome {
        Outcome::Ack => {}
        Outcome::Retry { error, .. } if error.is_panic() => {
            trace::record_error(span, "panic", error)
        }
        Outcome::Retry { error, .. } => trace::record_error(span, "retryable", error),
        Outcome::DeadLetter { failure, error } => {
            trace::record_error(span, failure.as_str(), error)
        }
        other => trace::record_error(span, other.as_str(), &"unknown outcome"),
    }
}

/// The `bento.outcome` span field: `ok`, `retried` or `dead-lettered`.
fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ack => "ok",
        Outcome::Retry { .. } => "retried",
        Outcome::DeadLetter { .. } => "dead-lettered",
        other => other.as_str(),
    }
}

/// Counts a delivery that started at `start` and ended with `outcome`.
fn record(stats: &ConsumeStats, start: Stopwatch, outcome: &Outcome) {
    stats.latency.observe(start);
    match outcome {
        Outcome::Ack => {
            stats.ok.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::DeadLetter { failure, .. } => {
            stats
                .dead_lettered(*failure)
                .fetch_add(1, Ordering::Relaxed);
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        // A retry, or an outcome this version does not know: the message comes back.
        _ => {
            stats.retried.fetch_add(1, Ordering::Relaxed);
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
