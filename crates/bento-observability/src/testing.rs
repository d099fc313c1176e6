//! Test helpers (feature `testing`): run the same observability scenarios against any
//! `Arc<dyn MessageBus>`, read spans from an in-memory exporter, scrape and parse `/metrics`.
//!
//! The memory bus runs them in this crate's tests; a broker backend runs them the same way:
//!
//! ```text
//! let bus: Arc<dyn MessageBus> = Arc::new(PulsarBus::connect(config).await?);
//! bento_observability::testing::trace_scenario(bus.clone(), ConsumerParent::Child).await?;
//! bento_observability::testing::trace_scenario(bus.clone(), ConsumerParent::Link).await?;
//! bento_observability::testing::metrics_scenario(bus).await?;
//! ```
//!
//! Each run uses event types, topics and subscriptions of its own, so runs can share a broker
//! and a test binary.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bento_application::{
    Context, DeadLetterPolicy, HandlerError, MessageBus, PublishOptions, RetryPolicy,
    SubscriptionSpec,
};
use bento_domain::{Envelope, MessageId};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use crate::{ConsumerParent, Metrics, MetricsOptions, MetricsServer, ObservedBus, TraceOptions};

/// A scenario check that did not hold, with what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

impl ScenarioError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::new(format!("{what}: {error}"))
}

fn fail<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError::new(message))
}

/// How long a scenario waits for a broker to deliver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Spans

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

    let (tx, mut seen) = mpsc::unbounded_channel::<Seen>();
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
    let subscription = observed
        .subscribe(
            SubscriptionSpec::event_type(&event_type, &subscription_name),
            Arc::new(handler),
        )
        .await
        .map_err(|e| ScenarioError::new(format!("subscribe: {e}")))?;

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
    for (span, operation) in [(&producer, "send"), (&consumer, "process")] {
        for (key, expected) in [
            ("messaging.system", backend.to_owned()),
            ("messaging.destination.name", topic.clone()),
            ("messaging.operation.type", operation.to_owned()),
            ("messaging.message.id", message_id.clone()),
            (
                "messaging.message.conversation_id",
                format!("conversation-{run}"),
            ),
            ("bento.event_type", event_type.clone()),
        ] {
            let found = attr(span, key);
            check(
                found == expected,
                format!("{} {key} = `{found}`, expected `{expected}`", span.name),
            );
        }
    }
    check(
        attr(&consumer, "messaging.destination.subscription.name") == subscription_name,
        "consumer subscription attribute".into(),
    );
    check(
        attr(&consumer, "bento.outcome") == "ok",
        format!("consumer outcome `{}`", attr(&consumer, "bento.outcome")),
    );
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

// ---------------------------------------------------------------------------------------------
// Metrics

/// One sample of the text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, with its `_bucket` / `_sum` / `_count` suffix if any.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed Prometheus text exposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The sum of the samples named `name` whose labels include all of `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// How many samples named `name` include all of `labels`.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(name, labels).count()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped).
pub fn parse_exposition(text: &str) -> Result<Exposition, ScenarioError> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| ScenarioError::new(format!("line {}: {what}: `{line}`", number + 1));
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| bad("no value"))?;
        let name = line[..name_end].to_owned();
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let mut key = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = Some(i + 1);
                        break;
                    }
                    ',' | ' ' => {}
                    '=' => {
                        if chars.next().map(|(_, c)| c) != Some('"') {
                            return Err(bad("label value not quoted"));
                        }
                        let mut value = String::new();
                        loop {
                            match chars.next() {
                                Some((_, '\\')) => match chars.next() {
                                    Some((_, 'n')) => value.push('\n'),
                                    Some((_, other)) => value.push(other),
                                    None => return Err(bad("unterminated escape")),
                                },
                                Some((_, '"')) => break,
                                Some((_, other)) => value.push(other),
                                None => return Err(bad("unterminated label value")),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    other => key.push(other),
                }
            }
            let end = end.ok_or_else(|| bad("unterminated labels"))?;
            rest = &after[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().map_err(|_| bad("value is not a number"))?,
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok(Exposition { samples })
}

/// `GET http://{address}{path}` over plain HTTP/1.1: the status code and the body.
pub async fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status code"))?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| invalid("bad chunked body"))?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// What [`metrics_scenario`] scraped.
#[derive(Debug)]
pub struct MetricsReport {
    /// The topic of the workload.
    pub topic: String,
    /// The event type of the workload.
    pub event_type: String,
    /// The `/metrics` body.
    pub text: String,
    /// The same, parsed.
    pub exposition: Exposition,
}

/// The subscriptions of [`metrics_scenario`] and what each must count.
struct Expected {
    subscription: &'static str,
    received: f64,
    ok: f64,
    failed: f64,
    retried: f64,
    dead: [(&'static str, f64); 4],
}

const EXPECTED: [Expected; 3] = [
    // 6 ok; 2 flaky (fail once, then ok); 1 doomed (3 attempts, then dead letter);
    // 1 permanent failure; 1 undecodable.
    Expected {
        subscription: "work",
        received: 15.0,
        ok: 8.0,
        failed: 7.0,
        retried: 4.0,
        dead: [
            ("retries-exhausted", 1.0),
            ("permanent", 1.0),
            ("undecodable", 1.0),
            ("unknown-event-type", 0.0),
        ],
    },
    Expected {
        subscription: "audit",
        received: 11.0,
        ok: 11.0,
        failed: 0.0,
        retried: 0.0,
        dead: [
            ("retries-exhausted", 0.0),
            ("permanent", 0.0),
            ("undecodable", 0.0),
            ("unknown-event-type", 0.0),
        ],
    },
    Expected {
        subscription: "dead-letters",
        received: 3.0,
        ok: 3.0,
        failed: 0.0,
        retried: 0.0,
        dead: [
            ("retries-exhausted", 0.0),
            ("permanent", 0.0),
            ("undecodable", 0.0),
            ("unknown-event-type", 0.0),
        ],
    },
];

/// Runs a known workload over `bus` (wrapped in an [`ObservedBus`] with fresh metrics), serves
/// `/metrics` on a free local port, scrapes it and checks every count exactly:
///
/// - 11 messages published (6 in one batch, 5 one by one);
/// - subscription `work`: 6 ok; 2 fail once then succeed (2 retries); 1 always fails (3
///   attempts: 2 retries, then a dead letter, `retries-exhausted`); 1 fails permanently and 1
///   is undecodable (dead letters at once);
/// - subscription `audit`: all 11 ok;
/// - subscription `dead-letters`, on the dead-letter topic: the 3 dead letters, ok;
/// - nothing left in flight; `/health/live` and `/health/ready` answer 200.
pub async fn metrics_scenario(bus: Arc<dyn MessageBus>) -> Result<MetricsReport, ScenarioError> {
    let backend = bus.backend();
    let metrics = Metrics::new(MetricsOptions::default()).map_err(|e| failed("metrics", e))?;
    let observed: Arc<dyn MessageBus> = Arc::new(
        ObservedBus::builder(bus)
            .metrics(&metrics)
            .lag_interval(None)
            .build(),
    );
    let server = MetricsServer::start(
        "127.0.0.1:0",
        metrics.registry().clone(),
        Some(observed.clone()),
    )
    .await
    .map_err(|e| failed("metrics endpoint", e))?;

    let run = MessageId::new().to_string();
    let event_type = format!("bento.observability-test.metrics.{run}");
    let topic = observed.topic_for(&event_type);
    let dead_letter_topic = format!("{event_type}.dlq");
    let names = |s: &str| format!("{s}-{run}");

    let work = |ctx: Context| async move {
        match ctx.envelope().payload.as_ref() {
            b"ok" => Ok(()),
            b"flaky" if ctx.attempt() > 1 => Ok(()),
            b"flaky" | b"doomed" => Err(HandlerError::retryable("downstream unavailable")),
            b"poison" => Err(HandlerError::permanent("invalid order")),
            _ => Err(HandlerError::undecodable("not an event")),
        }
    };
    let ok = |_ctx: Context| async { Ok::<(), HandlerError>(()) };
    let retry = RetryPolicy::exponential(3, Duration::from_millis(10))
        .max_backoff(Duration::from_millis(50))
        .jitter(0.0);
    let subscriptions = vec![
        observed
            .subscribe(
                SubscriptionSpec::event_type(&event_type, names("work"))
                    .retry(retry)
                    .dead_letter(DeadLetterPolicy::to_topic(&dead_letter_topic)),
                Arc::new(work),
            )
            .await
            .map_err(|e| failed("subscribe work", e))?,
        observed
            .subscribe(
                SubscriptionSpec::event_type(&event_type, names("audit")),
                Arc::new(ok),
            )
            .await
            .map_err(|e| failed("subscribe audit", e))?,
        observed
            .subscribe(
                SubscriptionSpec::topic(&dead_letter_topic, names("dead-letters")),
                Arc::new(ok),
            )
            .await
            .map_err(|e| failed("subscribe dead letters", e))?,
    ];

    let envelope =
        |payload: &'static [u8]| Envelope::new(event_type.clone(), 1, "application/json", payload);
    let batch: Vec<Envelope> = (0..6).map(|_| envelope(b"ok")).collect();
    observed
        .publish_batch(batch, PublishOptions::default())
        .await
        .map_err(|e| failed("publish batch", e))?;
    for payload in [&b"flaky"[..], b"flaky", b"doomed", b"poison", b"garbage"] {
        observed
            .publish(envelope(payload), PublishOptions::default())
            .await
            .map_err(|e| failed("publish", e))?;
    }

    // Wait until every subscription has handled what it must, then a little more so that
    // extra deliveries, if any, show up as wrong counts.
    let handled = |exposition: &Exposition, subscription: &str| {
        exposition.sum(
            "bento_messages_handled_total",
            &[("subscription", &names(subscription))],
        )
    };
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let text = metrics.encode().map_err(|e| failed("encode", e))?;
        let exposition = parse_exposition(&text)?;
        let done = EXPECTED
            .iter()
            .all(|e| handled(&exposition, e.subscription) >= e.received);
        if done {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return fail(format!(
                "metrics scenario on {backend}: deliveries still missing after {DELIVERY_TIMEOUT:?}: {}",
                EXPECTED
                    .iter()
                    .map(|e| format!(
                        "{} handled {} of {}",
                        e.subscription,
                        handled(&exposition, e.subscription),
                        e.received
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let address = server.local_addr();
    let (status, text) = http_get(address, "/metrics")
        .await
        .map_err(|e| failed("GET /metrics", e))?;
    let live = http_get(address, "/health/live")
        .await
        .map_err(|e| failed("GET /health/live", e))?;
    let ready = http_get(address, "/health/ready")
        .await
        .map_err(|e| failed("GET /health/ready", e))?;
    for subscription in subscriptions {
        let _ = subscription.shutdown().await;
    }
    server.shutdown().await;
    if status != 200 {
        return fail(format!("GET /metrics answered {status}: {text}"));
    }
    let exposition = parse_exposition(&text)?;

    let problems = RefCell::new(Vec::new());
    let expect = |name: &str, labels: &[(&str, &str)], expected: f64| {
        let found = exposition.sum(name, labels);
        if found != expected || exposition.count(name, labels) == 0 {
            problems
                .borrow_mut()
                .push(format!("{name}{labels:?} = {found}, expected {expected}"));
        }
    };
    let base = [
        ("backend", backend),
        ("topic", topic.as_str()),
        ("event_type", event_type.as_str()),
    ];
    expect("bento_messages_published_total", &base, 11.0);
    expect("bento_publish_errors_total", &base, 0.0);
    expect(
        "bento_publish_duration_seconds_count",
        &[("backend", backend), ("topic", topic.as_str())],
        6.0,
    );
    for e in &EXPECTED {
        let subscription = names(e.subscription);
        let topic = if e.subscription == "dead-letters" {
            dead_letter_topic.as_str()
        } else {
            topic.as_str()
        };
        let labels = [
            ("backend", backend),
            ("topic", topic),
            ("subscription", subscription.as_str()),
            ("event_type", event_type.as_str()),
        ];
        let with = |key: &'static str, value: &'static str| {
            let mut all = labels.to_vec();
            all.push((key, value));
            all
        };
        expect("bento_messages_received_total", &labels, e.received);
        expect("bento_messages_handled_total", &with("outcome", "ok"), e.ok);
        expect(
            "bento_messages_handled_total",
            &with("outcome", "failed"),
            e.failed,
        );
        expect("bento_messages_retried_total", &labels, e.retried);
        for (failure, count) in e.dead {
            expect(
                "bento_messages_dead_lettered_total",
                &with("failure", failure),
                count,
            );
        }
        expect("bento_handler_duration_seconds_count", &labels, e.received);
        expect("bento_handlers_in_flight", &labels[..3], 0.0);
    }
    if live.0 != 200 || ready.0 != 200 {
        problems.borrow_mut().push(format!(
            "health: live {} `{}`, ready {} `{}`",
            live.0,
            live.1.trim(),
            ready.0,
            ready.1.trim()
        ));
    }
    let problems = problems.into_inner();
    if !problems.is_empty() {
        return fail(format!(
            "metrics scenario on {backend}: {}\n--- /metrics ---\n{text}",
            problems.join("; ")
        ));
    }
    Ok(MetricsReport {
        topic,
        event_type,
        text,
        exposition,
    })
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

/// Subscribes, leaves, publishes five messages, and checks that the backend reports a
/// consumer lag of exactly five for the subscription.
pub async fn check_consumer_lag(bus: Arc<dyn MessageBus>) -> Result<(), ScenarioError> {
    let topic = bus.topic_for(&format!("bento-lag-{}", MessageId::new()));
    let idle = |_: Context| std::future::ready(Ok::<(), HandlerError>(()));
    let subscription = bus
        .subscribe(SubscriptionSpec::topic(&topic, "lagging"), Arc::new(idle))
        .await
        .map_err(|e| failed("subscribe", e))?;
    subscription
        .shutdown()
        .await
        .map_err(|e| failed("shutdown", e))?;
    for n in 0..5 {
        let envelope = Envelope::new("lag.test", 1, "application/json", format!("{{\"n\":{n}}}"));
        bus.publish(envelope, PublishOptions::default().to_topic(&topic))
            .await
            .map_err(|e| failed("publish", e))?;
    }
    match bus.consumer_lag(&topic, "lagging").await {
        Ok(Some(5)) => Ok(()),
        other => fail(format!("expected a lag of 5 on {topic}, got {other:?}")),
    }
}
