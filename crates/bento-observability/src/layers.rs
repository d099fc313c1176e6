//! [`MetricsLayer`] and [`TraceLayer`]: observability as two layers a service stacks where it
//! wants them, one without the other if it likes.
//!
//! Each is one half of the observer an [`crate::ObservedBus`] installs, stacked as an
//! [`ObserverLayer`]: placed outside the retry layer (any service or subscription layer is),
//! it records a retry, a dead letter and a panic once per delivery, as the dispatcher settles
//! them. Neither catches a panic nor decides anything.

use std::sync::OnceLock;

use bento_application::domain::Envelope;
use bento_application::layer::{Layer, Observed, ObserverLayer};
use bento_application::{Context, DeliveryObserver, Observation, Outcome};

use crate::handler::{MetricsObserver, Observer, TraceObserver};
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
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        let layer = self.clone();
        ObserverLayer::new(AtFirstDelivery::new(move |ctx: &Context| {
            let metrics = MetricsObserver::new(
                &layer.metrics,
                layer.backend,
                ctx.topic(),
                ctx.subscription(),
            );
            Observer::new(None, Some(metrics))
        }))
        .layer(inner)
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
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        let layer = self.clone();
        ObserverLayer::new(AtFirstDelivery::new(move |ctx: &Context| {
            let tracing = TraceObserver::new(layer.backend, ctx.topic(), layer.options.clone());
            Observer::new(Some(tracing), None)
        }))
        .layer(inner)
    }
}

/// The observer of one stack a layer observes: [`crate::ObservedBus`]'s, with one half or the
/// other, made by `make` at the stack's first delivery, when its topic and subscription are
/// known (a stack serves one subscription).
struct AtFirstDelivery<F> {
    make: F,
    observer: OnceLock<Observer>,
}

impl<F> AtFirstDelivery<F> {
    fn new(make: F) -> Self {
        Self {
            make,
            observer: OnceLock::new(),
        }
    }
}

impl<F: Fn(&Context) -> Observer + Send + Sync + 'static> DeliveryObserver for AtFirstDelivery<F> {
    fn started(&self, ctx: &Context) -> Observation {
        self.observer.get_or_init(|| (self.make)(ctx)).started(ctx)
    }

    fn finished(&self, envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>) {
        // Made by `started`, which came first.
        if let Some(observer) = self.observer.get() {
            observer.finished(envelope, observation, outcome);
        }
    }
}
