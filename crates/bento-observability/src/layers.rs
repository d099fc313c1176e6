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

use crate::handler::{MetricsObserver, TraceObserver};
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
        ObserverLayer::new(Counted {
            layer: self.clone(),
            observer: OnceLock::new(),
        })
        .layer(inner)
    }
}

/// The observer of one stack a [`MetricsLayer`] counts.
struct Counted {
    layer: MetricsLayer,
    /// A stack serves one subscription: its handles are looked up at its first delivery.
    observer: OnceLock<MetricsObserver>,
}

impl DeliveryObserver for Counted {
    fn started(&self, ctx: &Context) -> Observation {
        let observer = self.observer.get_or_init(|| {
            MetricsObserver::new(
                &self.layer.metrics,
                self.layer.backend,
                ctx.topic(),
                ctx.subscription(),
            )
        });
        Observation::marked(observer.started(ctx))
    }

    fn finished(&self, envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>) {
        // Made by `started`, which came first.
        if let Some(observer) = self.observer.get() {
            observer.finished(envelope, observation.mark, outcome);
        }
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
        ObserverLayer::new(Traced {
            layer: self.clone(),
            observer: OnceLock::new(),
        })
        .layer(inner)
    }
}

/// The observer of one stack a [`TraceLayer`] traces.
struct Traced {
    layer: TraceLayer,
    /// A stack serves one subscription: its span name is made at its first delivery.
    observer: OnceLock<TraceObserver>,
}

impl DeliveryObserver for Traced {
    fn started(&self, ctx: &Context) -> Observation {
        let observer = self.observer.get_or_init(|| {
            TraceObserver::new(self.layer.backend, ctx.topic(), self.layer.options.clone())
        });
        Observation {
            span: observer.started(ctx),
            mark: 0,
        }
    }

    fn finished(&self, _envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>) {
        if let Some(outcome) = outcome {
            TraceObserver::finished(&observation.span, outcome);
        }
    }
}
