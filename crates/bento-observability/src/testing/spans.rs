//! Spans: the in-memory capture and the trace scenario.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bento_application::{
    Context, HandlerError, MessageBus, PublishOptions, Subscription, SubscriptionSpec,
};
use bento_domain::{Envelope, MessageId};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use super::{DELIVERY_TIMEOUT, ScenarioError, fail};
use crate::{ConsumerParent, ObservedBus, TraceOptions};

/// Every span Bento's layers (and these scenarios) finish, kept in memory: a process-wide
/// `tracing` subscriber with the OpenTelemetry layer over an [`InMemorySpanExporter`].
pub struct SpanCapture {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

impl std::fmt::Debug for SpanCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanCapture").finish_non_exhaustive()
    }
}

static CAPTURE: OnceLock<Result<SpanCapture, ScenarioError>> = OnceLock::new();

impl SpanCapture {
    /// The capture, installed as the global `tracing` subscriber on first use. Fails if the
    /// process already has another global subscriber.
    pub fn global() -> Result<&'static SpanCapture, ScenarioError> {
        CAPTURE
            .get_or_init(|| {
                let exporter = InMemorySpanExporter::default();
                let provider = SdkTracerProvider::builder()
                    .with_simple_exporter(exporter.clone())
                    .build();
                let layer = crate::telemetry::otel_layer(&provider).with_filter(
                    Targets::new().with_target("bento_observability", tracing::Level::TRACE),
                );
                tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                    .map_err(|_| {
                        ScenarioError::new(
                            "SpanCapture needs to be the global tracing subscriber, and another one is set",
                        )
                    })?;
                Ok(SpanCapture {
                    exporter,
                    _provider: provider,
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Every finished span so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// The finished spans whose `messaging.destination.name` is `topic`.
    pub fn spans_on(&self, topic: &str) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|span| attribute(span, "messaging.destination.name").as_deref() == Some(topic))
            .collect()
    }
}

/// A span attribute as a string (numbers and booleans rendered).
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.as_str().to_owned(),
            other => other.to_string(),
        })
}

/// What [`trace_scenario`] saw.
#[derive(Debug)]
pub struct TraceReport {
    /// The topic used.
    pub topic: String,
    /// The span the publish ran in (the "HTTP request").
    pub root: SpanData,
    /// `publish <topic>`.
    pub producer: SpanData,
    /// `process <topic>`.
    pub consumer: SpanData,
    /// The `traceparent` header the handler received.
    pub traceparent: String,
}

struct Seen {
    traceparent: Option<String>,
    baggage: Option<String>,
    trace_id: opentelemetry::trace::TraceId,
}

/// Publishes one message inside a root span over `bus` (wrapped in an [`ObservedBus`] with
/// tracing in `mode`), handles it, and checks the spans: names, kinds, messaging attributes,
/// the `traceparent` header, baggage, and the consumer span's relation to the producer span
/// (child in the same trace, or root of a new trace with a link).
///
/// Installs [`SpanCapture::global`].
pub async fn trace_scenario(
    bus: Arc<dyn MessageBus>,
    mode: ConsumerParent,
) -> Result<TraceReport, ScenarioError> {
    let capture = SpanCapture::global()?;
    let backend = bus.backend();
    let observed: Arc<dyn MessageBus> = Arc::new(
        ObservedBus::builder(bus)
            .tracing(TraceOptions::default().consumer_parent(mode))
            .lag_interval(None)
            .build(),
    );
    let run = MessageId::new().to_string();
    let event_type = format!("bento.observability-test.trace.{run}");
    let topic = observed.topic_for(&event_type);
    let subscription_name = format!("bento-observability-trace-{run}");

    let (subscription, mut seen) =
        subscribe_recorder(&*observed, &event_type, &subscription_name).await?;

    let envelope = Envelope::new(event_type.clone(), 1, "application/json", &b"{}"[..])
        .with_correlation_id(format!("conversation-{run}"));
    let message_id = envelope.id.to_string();
    let root = tracing::info_span!("bento.test.request", test.topic = %topic);
    let _ = root.set_parent(
        opentelemetry::Context::new().with_baggage([KeyValue::new("bento.test", "yes")]),
    );
    let root_span_id = root.context().span().span_context().span_id();
    observed
        .publish(envelope, PublishOptions::default())
        .instrument(root.clone())
        .await
        .map_err(|e| ScenarioError::new(format!("publish: {e}")))?;
    drop(root);

    let seen = tokio::time::timeout(DELIVERY_TIMEOUT, seen.recv())
        .await
        .map_err(|_| ScenarioError::new("the handler did not get the message in time"))?
        .ok_or_else(|| ScenarioError::new("the handler is gone"))?;
    let spans = wait_for_spans(capture, &topic, root_span_id).await?;
    let _ = subscription.shutdown().await;
    let (root, producer, consumer) = spans;

    let ids = Ids {
        backend,
        topic: &topic,
        event_type: &event_type,
        run: &run,
        subscription: &subscription_name,
        message_id: &message_id,
    };
    let mut problems = check_attributes(&ids, &producer, &consumer);
    problems.extend(check_relations(mode, &seen, &root, &producer, &consumer));
    let traceparent = seen.traceparent.clone().unwrap_or_default();
    if !problems.is_empty() {
        return fail(format!(
            "trace scenario ({mode:?}) on {backend}: {}",
            problems.join("; ")
        ));
    }
    Ok(TraceReport {
        topic,
        root,
        producer,
        consumer,
        traceparent,
    })
}

async fn wait_for_spans(
    capture: &SpanCapture,
    topic: &str,
    root_span_id: SpanId,
) -> Result<(SpanData, SpanData, SpanData), ScenarioError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spans = capture.spans();
        let root = spans
            .iter()
            .find(|s| s.span_context.span_id() == root_span_id)
            .cloned();
        let on_topic: Vec<&SpanData> = spans
            .iter()
            .filter(|s| attribute(s, "messaging.destination.name").as_deref() == Some(topic))
            .collect();
        let producer = on_topic
            .iter()
            .find(|s| s.span_kind == SpanKind::Producer)
            .copied()
            .cloned();
        let consumer = on_topic
            .iter()
            .find(|s| s.span_kind == SpanKind::Consumer)
            .copied()
            .cloned();
        if let (Some(root), Some(producer), Some(consumer)) = (root, producer, consumer) {
            return Ok((root, producer, consumer));
        }
        if tokio::time::Instant::now() >= deadline {
            return fail(format!(
                "spans on `{topic}` not all exported: {:?}",
                on_topic
                    .iter()
                    .map(|s| (&s.name, s.span_kind.clone()))
                    .collect::<Vec<_>>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`trace_scenario`] in `mode`, with the relation the mode promises checked: `Child`, the
/// consumer span is a child of the producer span in the same trace; `Link`, it starts a new
/// trace with one link to the producer span. For backends' own test suites.
pub async fn check_trace_continuation(
    bus: Arc<dyn MessageBus>,
    mode: ConsumerParent,
) -> Result<(), ScenarioError> {
    let report = trace_scenario(bus, mode).await?;
    let (producer, consumer) = (&report.producer.span_context, &report.consumer);
    if !report.traceparent.starts_with("00-") {
        return fail(format!("traceparent `{}` is not W3C", report.traceparent));
    }
    let same_trace = consumer.span_context.trace_id() == producer.trace_id();
    match mode {
        ConsumerParent::Child if !same_trace || consumer.parent_span_id != producer.span_id() => {
            fail("the consumer span is not a child of the producer span")
        }
        ConsumerParent::Link if same_trace || consumer.links.len() != 1 => {
            fail("the consumer span does not start a new trace linked to the producer span")
        }
        _ => Ok(()),
    }
}

/// What a trace scenario's spans should say of its message.
struct Ids<'a> {
    backend: &'static str,
    topic: &'a str,
    event_type: &'a str,
    run: &'a str,
    subscription: &'a str,
    message_id: &'a str,
}

/// The span names, kinds and messaging attributes that are not as expected.
fn check_attributes(ids: &Ids<'_>, producer: &SpanData, consumer: &SpanData) -> Vec<String> {
    let Ids {
        backend,
        topic,
        event_type,
        run,
        subscription: subscription_name,
        message_id,
    } = *ids;
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let attr = |span: &SpanData, key: &str| attribute(span, key).unwrap_or_default();
    check(
        producer.name == format!("publish {topic}"),
        format!("producer span name `{}`", producer.name),
    );
    check(
        producer.span_kind == SpanKind::Producer,
        format!("producer kind {:?}", producer.span_kind),
    );
    check(
        consumer.name == format!("process {topic}"),
        format!("consumer span name `{}`", consumer.name),
    );
    check(
        consumer.span_kind == SpanKind::Consumer,
        format!("consumer kind {:?}", consumer.span_kind),
    );
    for (span, operation) in [(producer, "send"), (consumer, "process")] {
        for (key, expected) in [
            ("messaging.system", backend.to_owned()),
            ("messaging.destination.name", topic.to_owned()),
            ("messaging.operation.type", operation.to_owned()),
            ("messaging.message.id", message_id.to_owned()),
            (
                "messaging.message.conversation_id",
                format!("conversation-{run}"),
            ),
            ("bento.event_type", event_type.to_owned()),
        ] {
            let found = attr(span, key);
            check(
                found == expected,
                format!("{} {key} = `{found}`, expected `{expected}`", span.name),
            );
        }
    }
    check(
        attr(consumer, "messaging.destination.subscription.name") == subscription_name,
        "consumer subscription attribute".into(),
    );
    check(
        attr(consumer, "bento.outcome") == "ok",
        format!("consumer outcome `{}`", attr(consumer, "bento.outcome")),
    );
    problems
}

/// How the spans relate (the producer to the publish's span, the consumer to the producer, in
/// `mode`) and what the handler saw (the `traceparent` header, baggage, its span), where that
/// is not as expected.
fn check_relations(
    mode: ConsumerParent,
    seen: &Seen,
    root: &SpanData,
    producer: &SpanData,
    consumer: &SpanData,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    check(
        producer.parent_span_id == root.span_context.span_id()
            && producer.span_context.trace_id() == root.span_context.trace_id(),
        "the producer span is not a child of the span the publish ran in".into(),
    );
    let traceparent = seen.traceparent.clone().unwrap_or_default();
    let expected_traceparent = format!(
        "00-{}-{}-{:02x}",
        producer.span_context.trace_id(),
        producer.span_context.span_id(),
        producer.span_context.trace_flags().to_u8()
    );
    check(
        traceparent == expected_traceparent,
        format!("traceparent header `{traceparent}`, expected `{expected_traceparent}`"),
    );
    check(
        seen.baggage.as_deref() == Some("yes"),
        format!("baggage in the handler: {:?}", seen.baggage),
    );
    check(
        seen.trace_id == consumer.span_context.trace_id(),
        "the handler did not run in the consumer span".into(),
    );
    match mode {
        ConsumerParent::Child => {
            check(
                consumer.span_context.trace_id() == producer.span_context.trace_id(),
                "child mode: consumer and producer are in different traces".into(),
            );
            check(
                consumer.parent_span_id == producer.span_context.span_id(),
                "child mode: the consumer span's parent is not the producer span".into(),
            );
        }
        ConsumerParent::Link => {
            check(
                consumer.span_context.trace_id() != producer.span_context.trace_id(),
                "link mode: the consumer span did not start a new trace".into(),
            );
            check(
                consumer.parent_span_id == SpanId::INVALID,
                "link mode: the consumer span has a parent".into(),
            );
            check(
                consumer.links.iter().any(|link| {
                    link.span_context.trace_id() == producer.span_context.trace_id()
                        && link.span_context.span_id() == producer.span_context.span_id()
                }),
                "link mode: no link from the consumer span to the producer span".into(),
            );
        }
    }
    problems
}

/// Subscribes `subscription_name` to `event_type` with a handler that logs a line and sends
/// what it sees of its message's trace.
async fn subscribe_recorder(
    bus: &dyn MessageBus,
    event_type: &str,
    subscription_name: &str,
) -> Result<(Subscription, mpsc::UnboundedReceiver<Seen>), ScenarioError> {
    let (tx, seen) = mpsc::unbounded_channel::<Seen>();
    let handler = move |ctx: Context| {
        let tx = tx.clone();
        async move {
            // Whatever the handler logs is in the consumer span.
            tracing::info!("handling a test message");
            let current = tracing::Span::current().context();
            let _ = tx.send(Seen {
                traceparent: ctx.header("traceparent").map(str::to_owned),
                baggage: current
                    .baggage()
                    .get("bento.test")
                    .map(|value| value.as_str().to_owned()),
                trace_id: current.span().span_context().trace_id(),
            });
            Ok::<(), HandlerError>(())
        }
    };
    let subscription = bus
        .subscribe(
            SubscriptionSpec::event_type(event_type, subscription_name),
            Arc::new(handler),
        )
        .await
        .map_err(|e| ScenarioError::new(format!("subscribe: {e}")))?;
    Ok((subscription, seen))
}
