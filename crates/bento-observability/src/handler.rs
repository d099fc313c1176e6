//! Observing deliveries: a consumer span and metrics around a subscription's handler stack,
//! read from the outcome the stack returns. [`ObserveLayer`] (what an [`crate::ObservedBus`]
//! puts outside every subscription) does both in one future; [`crate::MetricsLayer`] and
//! [`crate::TraceLayer`] each do one half, with the same code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use bento_application::layer::Layer;
use bento_application::{Context, EnvelopeHandler, Outcome};
use futures::future::BoxFuture;
use tracing::Span;

use crate::metrics::{ConsumeStats, HandleCache, Metrics, Stopwatch, SubscriptionHandles};
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

    fn start(&self, ctx: &Context) -> Observation {
        let subscription = &self.subscription;
        Observation::start(self.by_event_type.get(ctx.event_type(), |event_type| {
            subscription.consume_stats(event_type)
        }))
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
    let observation = metrics.map(|metrics| metrics.start(&ctx));
    // Decoding happens when the handler is called: count it, and log it, in the span.
    let future = if span.is_disabled() {
        inner.handle(ctx)
    } else {
        span.in_scope(|| inner.handle(ctx))
    };
    Box::pin(Handling {
        inner: future,
        observation,
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

/// The outermost layer of a subscription of an [`crate::ObservedBus`]: each delivery runs in a
/// consumer span and is counted by the outcome the stack inside returns (after retry and panic
/// catching, so a retry, a dead letter and a panic are counted once each, as the dispatcher
/// settles them).
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    observer: Arc<Observer>,
}

impl ObserveLayer {
    pub(crate) fn new(observer: Arc<Observer>) -> Self {
        Self { observer }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            observer: self.observer.clone(),
        }
    }
}

/// A subscription's handler stack, observed.
pub(crate) struct Observed<S> {
    inner: S,
    observer: Arc<Observer>,
}

impl<S: EnvelopeHandler> EnvelopeHandler for Observed<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let observer = &*self.observer;
        observe(
            &self.inner,
            ctx,
            observer.tracing.as_ref(),
            observer.metrics.as_ref(),
        )
    }
}

/// One delivery's stack running: polled in the consumer span, its outcome recorded.
struct Handling {
    inner: BoxFuture<'static, Outcome>,
    observation: Option<Observation>,
    span: Span,
}

impl Future for Handling {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Outcome> {
        let Handling {
            inner,
            observation,
            span,
        } = self.get_mut();
        let outcome = {
            let _entered = (!span.is_disabled()).then(|| span.enter());
            match inner.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => outcome,
            }
        };
        if let Some(observation) = observation.take() {
            observation.finish(&outcome);
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

/// One delivery being handled: in flight from its start until it finishes or is dropped
/// (cancelled by a shutdown that stops waiting).
struct Observation {
    stats: Arc<ConsumeStats>,
    start: Stopwatch,
    finished: bool,
}

impl Observation {
    fn start(stats: Arc<ConsumeStats>) -> Self {
        stats.received.fetch_add(1, Ordering::Relaxed);
        Self {
            stats,
            start: Stopwatch::start(),
            finished: false,
        }
    }

    fn finish(mut self, outcome: &Outcome) {
        let stats = &self.stats;
        stats.latency.observe(self.start);
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
        self.finished = true;
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }
}
