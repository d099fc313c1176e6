//! Observing deliveries: a consumer span and metrics around a subscription's handler stack,
//! read from the outcome the stack returns. [`Observer`] (what an [`crate::ObservedBus`]
//! installs on every subscription) does both as the dispatcher's observer, without a future of
//! its own; [`crate::MetricsLayer`] and [`crate::TraceLayer`] each do one half as a layer,
//! with the same code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use bento_application::domain::Envelope;
use bento_application::{Context, DeliveryObserver, EnvelopeHandler, Observation, Outcome};
use futures::future::BoxFuture;
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

    fn start(&self, ctx: &Context) -> Counting {
        let subscription = &self.subscription;
        Counting::start(self.by_event_type.get(ctx.event_type(), |event_type| {
            subscription.consume_stats(event_type)
        }))
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

    fn span(&self, ctx: &Context) -> Span {
        let span = self
            .options
            .process_span(self.backend, &self.span_name, ctx);
        if !span.is_disabled() {
            self.options.adopt(&span, &ctx.envelope().headers);
        }
        span
    }
}

/// Runs one delivery through `inner`, in a consumer span if `tracing` is given and counted if
/// `metrics` is given; what is recorded is the outcome `inner` returns.
pub(crate) fn observe<S: EnvelopeHandler + ?Sized>(
    inner: &S,
    ctx: Context,
    tracing: Option<&TraceObserver>,
    metrics: Option<&MetricsObserver>,
) -> BoxFuture<'static, Outcome> {
    let span = tracing.map_or_else(Span::none, |tracing| tracing.span(&ctx));
    let counting = metrics.map(|metrics| metrics.start(&ctx));
    // Decoding happens when the handler is called: count it, and log it, in the span.
    let future = if span.is_disabled() {
        inner.handle(ctx)
    } else {
        span.in_scope(|| inner.handle(ctx))
    };
    Box::pin(Handling {
        inner: future,
        counting,
        span,
    })
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
        let span = self
            .tracing
            .as_ref()
            .map_or_else(Span::none, |tracing| tracing.span(ctx));
        let mark = match &self.metrics {
            Some(metrics) => {
                metrics
                    .stats(ctx.event_type())
                    .received
                    .fetch_add(1, Ordering::Relaxed);
                Stopwatch::start().mark()
            }
            None => 0,
        };
        Observation { span, mark }
    }

    fn finished(&self, envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>) {
        if let Some(metrics) = &self.metrics {
            let stats = metrics.stats(&envelope.event_type);
            match outcome {
                Some(outcome) => record(&stats, Stopwatch::from_mark(observation.mark), outcome),
                None => {
                    stats.abandoned.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(outcome) = outcome
            && !observation.span.is_disabled()
        {
            record_outcome(&observation.span, outcome);
        }
    }
}

/// One delivery's stack running: polled in the consumer span, its outcome recorded.
struct Handling {
    inner: BoxFuture<'static, Outcome>,
    counting: Option<Counting>,
    span: Span,
}

impl Future for Handling {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Outcome> {
        let Handling {
            inner,
            counting,
            span,
        } = self.get_mut();
        let outcome = {
            let _entered = (!span.is_disabled()).then(|| span.enter());
            match inner.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => outcome,
            }
        };
        if let Some(counting) = counting.take() {
            counting.finish(&outcome);
        }
        if !span.is_disabled() {
            record_outcome(span, &outcome);
        }
        Poll::Ready(outcome)
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

/// One delivery being handled by a stack a [`crate::MetricsLayer`] counts: in flight from its
/// start until it finishes or is dropped (cancelled by a shutdown that stops waiting).
struct Counting {
    stats: Arc<ConsumeStats>,
    start: Stopwatch,
    finished: bool,
}

impl Counting {
    fn start(stats: Arc<ConsumeStats>) -> Self {
        stats.received.fetch_add(1, Ordering::Relaxed);
        Self {
            stats,
            start: Stopwatch::start(),
            finished: false,
        }
    }

    fn finish(mut self, outcome: &Outcome) {
        record(&self.stats, self.start, outcome);
        self.finished = true;
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
        }
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
