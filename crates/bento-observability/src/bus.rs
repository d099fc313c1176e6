//! The observing bus: a [`MessageBus`] around any other, adding metrics and spans.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use bento_application::{
    BusError, ConsumerLag, EnvelopeHandler, HealthCheck, MessageBus, PublishOptions,
    SchemaRegistry, Subscription, SubscriptionSpec,
};
use bento_domain::Envelope;
use futures::future::BoxFuture;
use tracing::{Instrument, Span};

use crate::handler::{MetricsObserver, Observer, TraceObserver};
use crate::metrics::{Cached, HandleCache, Metrics, PublishHandles, Stopwatch};
use crate::trace::{self, TraceOptions};

/// What a bus knows about one (topic, event type) it publishes to, built once.
struct PublishTarget {
    topic: Box<str>,
    span_name: Box<str>,
    metrics: Option<PublishHandles>,
}

/// A [`MessageBus`] that records metrics and spans around any other one, so every backend
/// gets the same observability without a line of backend code.
///
/// - `publish` / `publish_batch`: a producer span (`publish <topic>`) whose W3C trace context
///   (`traceparent`, `tracestate`, `baggage`) is written into the envelope headers, which every
///   backend carries as message properties or headers; published / error counts and latency.
/// - `subscribe`: a layer outside the subscription's stack runs each delivery in a consumer span
///   (`process <topic>`, child of or linked to the producer span) with the message id, event
///   type and correlation id as fields, and is counted: received, handled ok or failed,
///   retried, dead-lettered, latency, in flight.
/// - consumer lag, polled from [`MessageBus::consumer_lag`] where the backend can tell.
/// - `health` says no once the bus is closed, and asks the backend otherwise.
///
/// Every other method, and the backend's capabilities, go straight to the bus underneath. (A
/// method added to the port with a default body must be forwarded here too, or the wrapped
/// backend's own version is skipped.)
///
/// ```
/// # use std::sync::Arc;
/// # use bento_application::MessageBus;
/// # use bento_observability::{Metrics, MetricsOptions, ObservedBus, TraceOptions};
/// # fn demo(backend: Arc<dyn MessageBus>) -> Result<(), bento_observability::ObservabilityError> {
/// let metrics = Metrics::new(MetricsOptions::default())?;
/// let bus: Arc<dyn MessageBus> = Arc::new(
///     ObservedBus::builder(backend)
///         .metrics(&metrics)
///         .tracing(TraceOptions::default())
///         .build(),
/// );
/// # Ok(()) }
/// ```
pub struct ObservedBus {
    inner: Arc<dyn MessageBus>,
    backend: &'static str,
    metrics: Option<Metrics>,
    tracing: Option<TraceOptions>,
    max_label_values: usize,
    lag_interval: Option<Duration>,
    /// Keyed by event type, for publishes to the backend's topic of that type.
    by_event_type: HandleCache<Arc<PublishTarget>>,
    /// Keyed by explicit topic, then event type.
    by_topic: HandleCache<Arc<HandleCache<Arc<PublishTarget>>>>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for ObservedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBus")
            .field("backend", &self.backend)
            .field("metrics", &self.metrics.is_some())
            .field("tracing", &self.tracing)
            .finish_non_exhaustive()
    }
}

/// Builds an [`ObservedBus`]; metrics and tracing are each off until asked for.
pub struct ObservedBusBuilder {
    inner: Arc<dyn MessageBus>,
    metrics: Option<Metrics>,
    tracing: Option<TraceOptions>,
    lag_interval: Option<Duration>,
    max_label_values: usize,
}

impl std::fmt::Debug for ObservedBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBusBuilder")
            .field("backend", &self.inner.backend())
            .field("metrics", &self.metrics.is_some())
            .field("tracing", &self.tracing)
            .finish_non_exhaustive()
    }
}

impl ObservedBusBuilder {
    /// Records Bento's metrics in `metrics`.
    pub fn metrics(mut self, metrics: &Metrics) -> Self {
        self.max_label_values = metrics.max_label_values();
        self.metrics = Some(metrics.clone());
        self
    }

    /// Creates spans and propagates the trace context per `options`.
    pub fn tracing(mut self, options: TraceOptions) -> Self {
        self.tracing = Some(options);
        self
    }

    /// Polls each subscription's consumer lag this often (default 15 s; `None`: never).
    pub fn lag_interval(mut self, interval: Option<Duration>) -> Self {
        self.lag_interval = interval;
        self
    }

    /// The bus.
    pub fn build(self) -> ObservedBus {
        ObservedBus {
            backend: self.inner.backend(),
            inner: self.inner,
            metrics: self.metrics,
            tracing: self.tracing,
            lag_interval: self.lag_interval,
            by_event_type: HandleCache::new(self.max_label_values),
            by_topic: HandleCache::new(self.max_label_values),
            max_label_values: self.max_label_values,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl ObservedBus {
    /// Starts building an observed bus around `inner`.
    pub fn builder(inner: Arc<dyn MessageBus>) -> ObservedBusBuilder {
        ObservedBusBuilder {
            inner,
            metrics: None,
            tracing: None,
            lag_interval: Some(Duration::from_secs(15)),
            max_label_values: crate::MetricsOptions::default().max_label_values,
        }
    }

    /// The bus underneath.
    pub fn inner(&self) -> &Arc<dyn MessageBus> {
        &self.inner
    }

    fn target(&self, event_type: &str, topic: Option<&str>) -> Cached<'_, Arc<PublishTarget>> {
        let make = |topic: &str, event_type: &str| {
            Arc::new(PublishTarget {
                topic: topic.into(),
                span_name: format!("publish {topic}").into(),
                metrics: self
                    .metrics
                    .as_ref()
                    .map(|m| m.publish_handles(self.backend, topic, event_type)),
            })
        };
        match topic {
            None => self.by_event_type.get_ref(event_type, |event_type| {
                make(&self.inner.topic_for(event_type), event_type)
            }),
            Some(topic) => Cached::Owned(
                self.by_topic
                    .get(topic, |_| Arc::new(HandleCache::new(self.max_label_values)))
                    .get(event_type, |event_type| make(topic, event_type)),
            ),
        }
    }

    fn tracing_enabled(&self) -> Option<&TraceOptions> {
        self.tracing.as_ref()
    }

    fn spawn_lag_poller(&self, handler: Weak<Observer>, topic: String, subscription: String) {
        let (Some(interval), Some(_)) = (self.lag_interval, &self.metrics) else {
            return;
        };
        let bus = self.inner.clone();
        let closed = self.closed.clone();
        tokio::spawn(async move {
            let mut gauge = None;
            loop {
                // The dispatcher drops the observer when the subscription stops.
                let Some(handler) = handler.upgrade() else {
                    break;
                };
                if closed.load(Ordering::Acquire) {
                    break;
                }
                match bus.consumer_lag(&topic, &subscription).await {
                    Ok(Some(lag)) => {
                        let gauge = gauge.get_or_insert_with(|| handler.lag_gauge());
                        if let Some(gauge) = gauge {
                            gauge.set(i64::try_from(lag).unwrap_or(i64::MAX));
                        }
                    }
                    // The backend cannot tell: no gauge, no more polling.
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(%error, %topic, %subscription, "could not read consumer lag")
                    }
                }
                drop(handler);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

/// A publish that waits for its first poll to start, so that its producer span's parent is
/// the span current then (as for an `async fn`).
struct StartOnPoll<'a> {
    bus: &'a ObservedBus,
    start: Option<(Envelope, PublishOptions)>,
    running: Option<Publishing<'a>>,
}

impl Future for StartOnPoll<'_> {
    type Output = Result<(), BusError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some((envelope, options)) = this.start.take() {
            this.running = Some(Publishing::start(this.bus, envelope, options));
        }
        match &mut this.running {
            Some(running) => Pin::new(running).poll(cx),
            // Polled again after it finished: a caller bug; never ready again.
            None => Poll::Pending,
        }
    }
}

/// One publish on its way: the backend's future, and what to record when it is done.
struct Publishing<'a> {
    inner: BoxFuture<'a, Result<(), BusError>>,
    target: Cached<'a, Arc<PublishTarget>>,
    start: Option<Stopwatch>,
    span: Span,
}

impl<'a> Publishing<'a> {
    fn start(bus: &'a ObservedBus, mut envelope: Envelope, options: PublishOptions) -> Self {
        let target = bus.target(&envelope.event_type, options.topic.as_deref());
        let span = match bus.tracing_enabled() {
            Some(tracing) => {
                let span =
                    tracing.publish_span(bus.backend, &target.topic, &target.span_name, &envelope);
                if !span.is_disabled() {
                    tracing.inject(&span, &mut envelope.headers);
                }
                span
            }
            None => Span::none(),
        };
        let start = target.metrics.as_ref().map(|_| Stopwatch::start());
        let inner = if span.is_disabled() {
            bus.inner.publish(envelope, options)
        } else {
            span.in_scope(|| bus.inner.publish(envelope, options))
        };
        Publishing {
            inner,
            target,
            start,
            span,
        }
    }
}

impl Future for Publishing<'_> {
    type Output = Result<(), BusError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = if this.span.is_disabled() {
            ready!(this.inner.as_mut().poll(cx))
        } else {
            let _entered = this.span.enter();
            ready!(this.inner.as_mut().poll(cx))
        };
        if let (Some(metrics), Some(start)) = (&this.target.metrics, this.start.take()) {
            metrics.latency.observe(start);
            let counter = match &result {
                Ok(()) => &metrics.counts.published,
                Err(_) => &metrics.counts.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(error) = &result
            && !this.span.is_disabled()
        {
            trace::record_error(&this.span, trace::bus_error_type(error), error);
        }
        Poll::Ready(result)
    }
}

#[async_trait]
impl MessageBus for ObservedBus {
    fn backend(&self) -> &'static str {
        self.backend
    }

    // Written out rather than `async` (this is the hottest path of a publisher): unless a
    // producer span is wanted, the backend's call is made at once and the future returned
    // holds only the backend's future and what to record when it is done.
    fn publish<'life0, 'async_trait>(
        &'life0 self,
        envelope: Envelope,
        options: PublishOptions,
    ) -> BoxFuture<'async_trait, Result<(), BusError>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        if self
            .tracing
            .as_ref()
            .is_some_and(TraceOptions::spans_enabled)
        {
            // The producer span's parent is the span current when the future is polled.
            Box::pin(StartOnPoll {
                bus: self,
                start: Some((envelope, options)),
                running: None,
            })
        } else {
            // No span wanted: nothing depends on when the work starts, so start it now and
            // keep the envelope out of this future.
            Box::pin(Publishing::start(self, envelope, options))
        }
    }

    async fn publish_batch(
        &self,
        mut envelopes: Vec<Envelope>,
        options: PublishOptions,
    ) -> Result<(), BusError> {
        let Some(first) = envelopes.first() else {
            return self.inner.publish_batch(envelopes, options).await;
        };
        let first = self.target(&first.event_type, options.topic.as_deref());
        let span = match self.tracing_enabled() {
            Some(tracing) => {
                let span = tracing.publish_batch_span(
                    self.backend,
                    &first.topic,
                    &first.span_name,
                    envelopes.len(),
                );
                if !span.is_disabled() {
                    for envelope in &mut envelopes {
                        tracing.inject(&span, &mut envelope.headers);
                    }
                }
                span
            }
            None => Span::none(),
        };
        // Counted per message, in runs of one event type (usually the whole batch).
        let runs = first.metrics.as_ref().map(|_| {
            let mut runs: Vec<(Cached<'_, Arc<PublishTarget>>, u64)> = Vec::new();
            let mut previous: Option<&str> = None;
            for envelope in &envelopes {
                match (previous, runs.last_mut()) {
                    (Some(event_type), Some((_, count))) if event_type == envelope.event_type => {
                        *count += 1;
                    }
                    _ => runs.push((
                        self.target(&envelope.event_type, options.topic.as_deref()),
                        1,
                    )),
                }
                previous = Some(&envelope.event_type);
            }
            (runs, Stopwatch::start())
        });
        let result = if span.is_disabled() {
            self.inner.publish_batch(envelopes, options).await
        } else {
            self.inner
                .publish_batch(envelopes, options)
                .instrument(span.clone())
                .await
        };
        if let (Some(metrics), Some((runs, start))) = (&first.metrics, runs) {
            metrics.latency.observe(start);
            for (target, count) in runs {
                if let Some(metrics) = &target.metrics {
                    let counter = match &result {
                        Ok(()) => &metrics.counts.published,
                        Err(_) => &metrics.counts.errors,
                    };
                    counter.fetch_add(count, Ordering::Relaxed);
                }
            }
        }
        if let Err(error) = &result
            && !span.is_disabled()
        {
            trace::record_error(&span, trace::bus_error_type(error), error);
        }
        result
    }

    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EnvelopeHandler>,
    ) -> Result<Subscription, BusError> {
        let topic = spec
            .source
            .topic(|event_type| self.inner.topic_for(event_type));
        let observer = Arc::new(Observer::new(
            self.tracing
                .clone()
                .map(|options| TraceObserver::new(self.backend, &topic, options)),
            self.metrics
                .as_ref()
                .map(|metrics| MetricsObserver::new(metrics, self.backend, &topic, &spec.name)),
        ));
        let weak = Arc::downgrade(&observer);
        let name = spec.name.clone();
        let spec = match observer.settle_failures() {
            Some(counter) => spec.on_settle_failure(move |_| counter.inc()),
            None => spec,
        };
        // Outside the whole stack, so what is counted is the outcome the dispatcher settles.
        let spec = spec.observe(observer);
        let subscription = self.inner.subscribe(spec, handler).await?;
        self.spawn_lag_poller(weak, topic, name);
        Ok(subscription)
    }

    fn topic_for(&self, event_type: &str) -> String {
        self.inner.topic_for(event_type)
    }

    async fn close(&self) -> Result<(), BusError> {
        self.closed.store(true, Ordering::Release);
        self.inner.close().await
    }

    /// Says no once the bus is closed, and asks the backend otherwise.
    fn as_health_check(&self) -> Option<&dyn HealthCheck> {
        Some(self)
    }

    fn as_consumer_lag(&self) -> Option<&dyn ConsumerLag> {
        self.inner.as_consumer_lag()
    }

    fn as_schema_registry(&self) -> Option<&dyn SchemaRegistry> {
        self.inner.as_schema_registry()
    }
}

#[async_trait]
impl HealthCheck for ObservedBus {
    async fn health(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        self.inner.health().await
    }
}
