//! The observing handler: wraps a subscription's handler with a consumer span and metrics.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use bento_application::{
    Context, EnvelopeHandler, FailureKind, HandlerError, RetryPolicy, SubscriptionSpec,
};
use futures::future::BoxFuture;
use tracing::Span;

use crate::metrics::{ConsumeStats, HandleCache, Metrics, Stopwatch, SubscriptionHandles};
use crate::trace::{self, TraceOptions};

/// What the dispatcher does with a delivery after its handler returned. The dispatcher decides
/// it itself, after the handler; this mirrors its rule (same error, same attempt, same retry
/// policy) so every backend is counted alike without the backend's help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    Retried,
    DeadLettered(FailureKind),
}

impl Verdict {
    /// The dispatcher's rule: a retryable error with attempts left is retried; anything else
    /// that failed is dead-lettered, with the error's failure kind.
    pub(crate) fn of_error(error: &HandlerError, retry_left: bool) -> Self {
        if error.is_retryable() && retry_left {
            Verdict::Retried
        } else {
            Verdict::DeadLettered(error.failure_kind())
        }
    }

    /// A panic is a retryable failure to the dispatcher.
    pub(crate) fn of_panic(retry_left: bool) -> Self {
        if retry_left {
            Verdict::Retried
        } else {
            Verdict::DeadLettered(FailureKind::RetriesExhausted)
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Retried => "retried",
            Verdict::DeadLettered(_) => "dead-lettered",
        }
    }
}

struct SubscriptionMetrics {
    subscription: SubscriptionHandles,
    by_event_type: HandleCache<Arc<ConsumeStats>>,
}

/// Wraps the handler of one subscription.
pub(crate) struct ObservedHandler {
    inner: Arc<dyn EnvelopeHandler>,
    backend: &'static str,
    retry: RetryPolicy,
    span_name: Box<str>,
    tracing: Option<TraceOptions>,
    metrics: Option<SubscriptionMetrics>,
}

impl ObservedHandler {
    pub(crate) fn new(
        inner: Arc<dyn EnvelopeHandler>,
        backend: &'static str,
        topic: &str,
        spec: &SubscriptionSpec,
        metrics: Option<&Metrics>,
        tracing: Option<TraceOptions>,
        max_label_values: usize,
    ) -> Self {
        Self {
            inner,
            backend,
            retry: spec.retry.clone(),
            span_name: format!("process {topic}").into(),
            tracing,
            metrics: metrics.map(|metrics| SubscriptionMetrics {
                subscription: metrics.subscription_handles(backend, topic, &spec.name),
                by_event_type: HandleCache::new(max_label_values),
            }),
        }
    }

    /// The consumer-lag gauge of this subscription, if metrics are on.
    pub(crate) fn lag_gauge(&self) -> Option<prometheus::IntGauge> {
        self.metrics.as_ref().map(|m| m.subscription.lag())
    }
}

impl EnvelopeHandler for ObservedHandler {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
        let retry_left = self.retry.allows_retry_after(ctx.attempt());
        let span = match &self.tracing {
            Some(tracing) => {
                let span = tracing.process_span(self.backend, &self.span_name, &ctx);
                if !span.is_disabled() {
                    tracing.adopt(&span, &ctx.envelope().headers);
                }
                span
            }
            None => Span::none(),
        };
        let observation = self.metrics.as_ref().map(|m| {
            let subscription = &m.subscription;
            Observation::start(m.by_event_type.get(ctx.event_type(), |event_type| {
                subscription.consume_stats(event_type)
            }))
        });
        // Decoding happens when the handler is called: count it, and log it, in the span.
        let future = if span.is_disabled() {
            self.inner.handle(ctx)
        } else {
            span.in_scope(|| self.inner.handle(ctx))
        };
        Box::pin(Handling {
            inner: future,
            observation,
            span,
            retry_left,
        })
    }
}

/// One delivery's handler running: polls it in the consumer span, catches a panic to count
/// it, then hands the result (or the panic) to the dispatcher unchanged.
struct Handling {
    inner: BoxFuture<'static, Result<(), HandlerError>>,
    observation: Option<Observation>,
    span: Span,
    retry_left: bool,
}

impl Future for Handling {
    type Output = Result<(), HandlerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let Handling {
            inner,
            observation,
            span,
            retry_left,
        } = self.get_mut();
        let polled = {
            let _entered = (!span.is_disabled()).then(|| span.enter());
            std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx)))
        };
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => Ok(result),
            Err(panic) => Err(panic),
        };
        let verdict = match &outcome {
            Ok(Ok(())) => Verdict::Ok,
            Ok(Err(error)) => Verdict::of_error(error, *retry_left),
            Err(_) => Verdict::of_panic(*retry_left),
        };
        if let Some(observation) = observation.take() {
            observation.finish(verdict);
        }
        if !span.is_disabled() {
            span.record("bento.outcome", verdict.as_str());
            match (&outcome, verdict) {
                (Ok(Err(error)), Verdict::Retried) => trace::record_error(span, "retryable", error),
                (Ok(Err(error)), Verdict::DeadLettered(kind)) => {
                    trace::record_error(span, kind.as_str(), error)
                }
                (Err(_), _) => trace::record_error(span, "panic", &"handler panicked"),
                _ => {}
            }
        }
        match outcome {
            Ok(result) => Poll::Ready(result),
            // The dispatcher turns the panic into a failure, as it would without us.
            Err(panic) => std::panic::resume_unwind(panic),
        }
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

    fn finish(mut self, verdict: Verdict) {
        let stats = &self.stats;
        stats.latency.observe(self.start);
        match verdict {
            Verdict::Ok => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Retried => {
                stats.retried.fetch_add(1, Ordering::Relaxed);
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::DeadLettered(kind) => {
                stats.dead_lettered(kind).fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_dispatcher() {
        let retryable = HandlerError::retryable("down");
        assert_eq!(Verdict::of_error(&retryable, true), Verdict::Retried);
        assert_eq!(
            Verdict::of_error(&retryable, false),
            Verdict::DeadLettered(FailureKind::RetriesExhausted)
        );
        let permanent = HandlerError::permanent("bad");
        assert_eq!(
            Verdict::of_error(&permanent, true),
            Verdict::DeadLettered(FailureKind::Permanent)
        );
        let undecodable = HandlerError::undecodable("garbage");
        assert_eq!(
            Verdict::of_error(&undecodable, true),
            Verdict::DeadLettered(FailureKind::Undecodable)
        );
        assert_eq!(Verdict::of_panic(true), Verdict::Retried);
        assert_eq!(
            Verdict::of_panic(false),
            Verdict::DeadLettered(FailureKind::RetriesExhausted)
        );
    }
}
