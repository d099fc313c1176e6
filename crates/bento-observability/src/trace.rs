//! Spans around publishes and handlers, and the W3C trace context in the envelope headers.
//!
//! Spans are `tracing` spans (level DEBUG by default, target `bento_observability`) with the OpenTelemetry
//! messaging semantic-convention attributes as fields; `tracing-opentelemetry` turns them into
//! OpenTelemetry spans when its layer is installed (see [`crate::telemetry`]). Without a
//! subscriber that wants them, no span is built and no header is touched.

use std::sync::Arc;

use bento_application::{BusError, Context};
use bento_domain::{Envelope, Headers};
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing::field::Empty;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use crate::config::{ConsumerParent, SpanLevel};

/// How the layers trace: the consumer span's relation to the producer span, and the propagator
/// that writes and reads the trace context in envelope headers.
#[derive(Clone)]
pub struct TraceOptions {
    consumer_parent: ConsumerParent,
    span_level: SpanLevel,
    propagator: Arc<dyn TextMapPropagator + Send + Sync>,
}

impl std::fmt::Debug for TraceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceOptions")
            .field("consumer_parent", &self.consumer_parent)
            .field("span_level", &self.span_level)
            .finish_non_exhaustive()
    }
}

impl Default for TraceOptions {
    fn default() -> Self {
        Self {
            consumer_parent: ConsumerParent::default(),
            span_level: SpanLevel::default(),
            propagator: Arc::new(w3c_propagator()),
        }
    }
}

impl TraceOptions {
    /// Child of the producer span (default) or a new trace linked to it.
    pub fn consumer_parent(mut self, parent: ConsumerParent) -> Self {
        self.consumer_parent = parent;
        self
    }

    /// The level of the per-message spans (DEBUG by default).
    pub fn span_level(mut self, level: SpanLevel) -> Self {
        self.span_level = level;
        self
    }

    /// Replaces the default W3C propagator (`traceparent`, `tracestate`, `baggage`).
    pub fn propagator(mut self, propagator: Arc<dyn TextMapPropagator + Send + Sync>) -> Self {
        self.propagator = propagator;
        self
    }

    /// The configured consumer-parent mode.
    pub fn parent_mode(&self) -> ConsumerParent {
        self.consumer_parent
    }

    /// Writes the trace context of `span` (and its baggage) into `headers`.
    pub(crate) fn inject(&self, span: &Span, headers: &mut Headers) {
        let cx = span.context();
        self.propagator
            .inject_context(&cx, &mut HeaderInjector(headers));
    }

    /// Makes `span` a child of, or links it to, the context carried in `headers`.
    pub(crate) fn adopt(&self, span: &Span, headers: &Headers) {
        let cx = self.propagator.extract(&HeaderExtractor(headers));
        // Errors only say no OpenTelemetry layer is installed: nothing to connect then.
        match self.consumer_parent {
            ConsumerParent::Child => {
                let _ = span.set_parent(cx);
            }
            ConsumerParent::Link => {
                let producer = cx.span().span_context().clone();
                if !cx.baggage().is_empty() {
                    // A new trace that still carries the baggage.
                    let mut baggage = Baggage::new();
                    for (key, (value, metadata)) in cx.baggage() {
                        baggage.insert_with_metadata(key.clone(), value.clone(), metadata.clone());
                    }
                    let _ = span.set_parent(opentelemetry::Context::new().with_baggage(baggage));
                }
                span.add_link(producer);
            }
        }
    }
}

/// The W3C propagators: trace context (`traceparent`, `tracestate`) and `baggage`.
pub fn w3c_propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// Writes propagation fields into envelope headers.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty field (e.g. no `tracestate`) is left out rather than sent empty, and must not
        // leave a stale value from an earlier hop next to a new `traceparent`.
        if value.is_empty() {
            self.0.remove(key);
        } else {
            self.0.insert(key.to_owned(), value);
        }
    }
}

/// Reads propagation fields from envelope headers.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The target of Bento's per-message spans.
pub const TARGET: &str = "bento_observability";

macro_rules! publish_span {
    ($level:expr, $backend:expr, $topic:expr, $name:expr, $envelope:expr) => {
        tracing::span!(
            target: TARGET,
            $level,
            "publish",
            otel.name = $name,
            otel.kind = "producer",
            otel.status_code = Empty,
            otel.status_description = Empty,
            messaging.system = $backend,
            messaging.destination.name = $topic,
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.message.id = %$envelope.id,
            messaging.message.conversation_id = %$envelope.correlation_id(),
            messaging.message.body.size = $envelope.payload.len(),
            bento.event_type = &*$envelope.event_type,
            error.type = Empty,
        )
    };
}

macro_rules! publish_batch_span {
    ($level:expr, $backend:expr, $topic:expr, $name:expr, $count:expr) => {
        tracing::span!(
            target: TARGET,
            $level,
            "publish",
            otel.name = $name,
            otel.kind = "producer",
            otel.status_code = Empty,
            otel.status_description = Empty,
            messaging.system = $backend,
            messaging.destination.name = $topic,
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.batch.message_count = $count,
            error.type = Empty,
        )
    };
}

macro_rules! process_span {
    ($level:expr, $backend:expr, $name:expr, $ctx:expr) => {
        tracing::span!(
            target: TARGET,
            parent: None,
            $level,
            "process",
            otel.name = $name,
            otel.kind = "consumer",
            otel.status_code = Empty,
            otel.status_description = Empty,
            messaging.system = $backend,
            messaging.destination.name = $ctx.topic(),
            messaging.destination.subscription.name = $ctx.subscription(),
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.message.id = %$ctx.message_id(),
            messaging.message.conversation_id = %$ctx.correlation_id(),
            messaging.message.body.size = $ctx.envelope().payload.len(),
            bento.event_type = $ctx.event_type(),
            bento.attempt = $ctx.attempt(),
            bento.outcome = Empty,
            error.type = Empty,
        )
    };
}

impl TraceOptions {
    /// Whether a subscriber wants the per-message spans at all (checked without making one).
    pub(crate) fn spans_enabled(&self) -> bool {
        match self.span_level {
            SpanLevel::Debug => tracing::enabled!(target: TARGET, Level::DEBUG),
            SpanLevel::Info => tracing::enabled!(target: TARGET, Level::INFO),
        }
    }

    /// The producer span of one publish.
    pub(crate) fn publish_span(
        &self,
        backend: &'static str,
        topic: &str,
        name: &str,
        envelope: &Envelope,
    ) -> Span {
        match self.span_level {
            SpanLevel::Debug => publish_span!(Level::DEBUG, backend, topic, name, envelope),
            SpanLevel::Info => publish_span!(Level::INFO, backend, topic, name, envelope),
        }
    }

    /// The producer span of one batch publish: one span, whose context every message carries.
    pub(crate) fn publish_batch_span(
        &self,
        backend: &'static str,
        topic: &str,
        name: &str,
        count: usize,
    ) -> Span {
        match self.span_level {
            SpanLevel::Debug => publish_batch_span!(Level::DEBUG, backend, topic, name, count),
            SpanLevel::Info => publish_batch_span!(Level::INFO, backend, topic, name, count),
        }
    }

    /// The consumer span of one delivery; a root as far as `tracing` goes, its parent (or
    /// link) comes from the message's headers.
    pub(crate) fn process_span(&self, backend: &'static str, name: &str, ctx: &Context) -> Span {
        match self.span_level {
            SpanLevel::Debug => process_span!(Level::DEBUG, backend, name, ctx),
            SpanLevel::Info => process_span!(Level::INFO, backend, name, ctx),
        }
    }
}

/// Marks a span failed with a low-cardinality error class.
pub(crate) fn record_error(span: &Span, error_type: &str, message: &dyn std::fmt::Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", tracing::field::display(message));
    span.record("error.type", error_type);
}

/// A short, stable name for a publish error, for `error.type`.
pub(crate) fn bus_error_type(error: &BusError) -> &'static str {
    match error {
        BusError::Codec(_) => "codec",
        BusError::Connection { .. } => "connection",
        BusError::Publish { .. } => "publish",
        BusError::Subscribe { .. } => "subscribe",
        BusError::Unsupported { .. } => "unsupported",
        BusError::Timeout { .. } => "timeout",
        BusError::Closed => "closed",
        _ => "other",
    }
}
