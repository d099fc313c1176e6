//! [`MetricsLayer`] and [`TraceLayer`]: observability as two layers a service stacks where it
//! wants them, one without the other if it likes.
//!
//! Each reads the outcome the stack inside it returns, as [`crate::ObservedBus`] does (they
//! share its code): placed outside the retry layer (any service or subscription layer is),
//! a retry, a dead letter and a panic are each recorded once per delivery, as the dispatcher
//! settles them. Neither catches a panic nor decides anything.

use std::sync::OnceLock;

use bento_application::layer::Layer;
use bento_application::{Context, EnvelopeHandler, Outcome};
use futures::future::BoxFuture;

use crate::handler::{MetricsObserver, TraceObserver, observe};
use crate::{Metrics, TraceOptions};

/// Counts each delivery of the subscriptions it is stacked on in [`Metrics`]: received,
/// handled ok or failed, retried, dead-lettered (by failure kind), handler latency and
/// handlers in flight, labelled with the backend, the delivery's topic, the subscription and
/// the event type.
///
/// [`crate::ObservedBus`] adds this for every subscription, with the settle-failure counter
/// and the consumer-lag gauge besides; stack it yourself to count without tracing, or to count
/// only some subscriptions:
///
/// ```
/// # use bento_application::SubscriptionSpec;
/// # use bento_observability::{Metrics, MetricsLayer, MetricsOptions};
/// # fn demo() -> Result<(), bento_observability::ObservabilityError> {
/// let metrics = Metrics::new(MetricsOptions::default())?;
/// let spec = SubscriptionSpec::event_type("orders.order-placed", "billing")
///     .layer(MetricsLayer::new(&metrics, "memory"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Metrics,
    backend: &'static str,
}

impl MetricsLayer {
    /// Counts in `metrics`, with `backend` (the bus's [`bento_application::MessageBus::backend`])
    /// as the `backend` label.
    pub fn new(metrics: &Metrics, backend: &'static str) -> Self {
        Self {
            metrics: metrics.clone(),
            backend,
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            layer: self.clone(),
            observer: OnceLock::new(),
        }
    }
}

/// A handler stack counted by a [`MetricsLayer`].
pub struct MetricsService<S> {
    inner: S,
    layer: MetricsLayer,
    /// A stack serves one subscription: its handles are looked up at its first delivery.
    observer: OnceLock<MetricsObserver>,
}

impl<S> std::fmt::Debug for MetricsService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("backend", &self.layer.backend)
            .finish_non_exhaustive()
    }
}

impl<S: EnvelopeHandler> EnvelopeHandler for MetricsService<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let observer = self.observer.get_or_init(|| {
            MetricsObserver::new(
                &self.layer.metrics,
                self.layer.backend,
                ctx.topic(),
                ctx.subscription(),
            )
        });
        observe(&self.inner, ctx, None, Some(observer))
    }
}

/// Runs each delivery of the subscriptions it is stacked on in a consumer span
/// (`process <topic>`), a child of or linked to the producer span whose W3C trace context the
/// envelope carries, with the message id, event type, correlation id and, when it is done, the
/// outcome (`bento.outcome`, and the error status of a failure).
///
/// [`crate::ObservedBus`] adds this for every subscription; stack it yourself to trace without
/// metrics, or to trace only some subscriptions:
///
/// ```
/// # use bento_application::SubscriptionSpec;
/// # use bento_observability::{TraceLayer, TraceOptions};
/// let spec = SubscriptionSpec::event_type("orders.order-placed", "billing")
///     .layer(TraceLayer::new(TraceOptions::default(), "memory"));
/// ```
#[derive(Clone, Debug)]
pub struct TraceLayer {
    options: TraceOptions,
    backend: &'static str,
}

impl TraceLayer {
    /// Traces per `options`, with `backend` (the bus's
    /// [`bento_application::MessageBus::backend`]) as the `messaging.system` attribute.
    pub fn new(options: TraceOptions, backend: &'static str) -> Self {
        Self { options, backend }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService {
            inner,
            layer: self.clone(),
            observer: OnceLock::new(),
        }
    }
}

/// A handler stack traced by a [`TraceLayer`].
pub struct TraceService<S> {
    inner: S,
    layer: TraceLayer,
    /// A stack serves one subscription: its span name is made at its first delivery.
    observer: OnceLock<TraceObserver>,
}

impl<S> std::fmt::Debug for TraceService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceService")
            .field("backend", &self.layer.backend)
            .finish_non_exhaustive()
    }
}

impl<S: EnvelopeHandler> EnvelopeHandler for TraceService<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let observer = self.observer.get_or_init(|| {
            TraceObserver::new(self.layer.backend, ctx.topic(), self.layer.options.clone())
        });
        observe(&self.inner, ctx, Some(observer), None)
    }
}
