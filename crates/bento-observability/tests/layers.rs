//! `MetricsLayer` and `TraceLayer` stacked on their own, without an `ObservedBus`: each records
//! every outcome (ack, retry after a delay, dead letter, panic) once per delivery, and neither
//! does the other's work.

use std::sync::Arc;
use std::time::Duration;

use bento_application::{
    Context, HandlerError, MessageBus, PublishOptions, RetryPolicy, SubscriptionSpec,
};
use bento_domain::Envelope;
use bento_memory::MemoryBus;
use bento_observability::testing::{SpanCapture, attribute, parse_exposition};
use bento_observability::{Metrics, MetricsLayer, MetricsOptions, TraceLayer, TraceOptions};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Deliveries of the four messages below: `ok` once, `later` twice (a retry after 10 ms, then
/// ok), `bad` once (permanent), `panics` three times (two retries, then retries exhausted).
const DELIVERIES: usize = 7;

async fn handle(ctx: Context) -> Result<(), HandlerError> {
    match (&ctx.envelope().payload[..], ctx.attempt()) {
        (b"later", 1) => Err(HandlerError::retry_after(
            Duration::from_millis(10),
            "not yet",
        )),
        (b"bad", _) => Err(HandlerError::permanent("invalid")),
        (b"panics", attempt) => panic!("boom on attempt {attempt}"),
        _ => Ok(()),
    }
}

/// Subscribes `spec` (with a 3-attempt policy) on a bare memory bus and publishes the four
/// messages to `event_type`; the subscription is kept until `done` says so.
async fn run(
    event_type: &'static str,
    spec: SubscriptionSpec,
    done: impl Fn() -> Result<bool, Box<dyn std::error::Error>>,
) -> Result<MemoryBus, Box<dyn std::error::Error>> {
    let bus = MemoryBus::default();
    let spec = spec.retry(RetryPolicy::exponential(3, Duration::from_millis(5)).jitter(0.0));
    let subscription = bus.subscribe(spec, Arc::new(handle)).await?;
    for payload in ["ok", "later", "bad", "panics"] {
        let envelope = Envelope::new(event_type, 1, "text/plain", payload.as_bytes().to_vec());
        bus.publish(envelope, PublishOptions::default()).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done()? {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{event_type}: not every delivery was recorded in 10 s").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    subscription.shutdown().await?;
    Ok(bus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_layer_alone_counts_each_outcome_once_and_makes_no_span() -> TestResult {
    let capture = SpanCapture::global()?;
    let metrics = Metrics::new(MetricsOptions::default())?;
    let spec = SubscriptionSpec::event_type("layers.counted", "counted")
        .layer(MetricsLayer::new(&metrics, "memory"));
    let finished = || -> Result<bool, Box<dyn std::error::Error>> {
        let exposition = parse_exposition(&metrics.encode()?)?;
        let labels = [("subscription", "counted")];
        Ok(
            exposition.sum("bento_messages_received_total", &labels) >= DELIVERIES as f64
                && exposition.sum("bento_handlers_in_flight", &labels) == 0.0,
        )
    };
    let bus = run("layers.counted", spec, finished).await?;
    let exposition = parse_exposition(&metrics.encode()?)?;
    let labels = |extra: &[(&'static str, &'static str)]| {
        let mut labels = vec![("subscription", "counted"), ("backend", "memory")];
        labels.extend_from_slice(extra);
        labels
    };
    let sum =
        |name: &str, extra: &[(&'static str, &'static str)]| exposition.sum(name, &labels(extra));
    assert_eq!(sum("bento_messages_received_total", &[]), 7.0);
    assert_eq!(
        sum("bento_messages_handled_total", &[("outcome", "ok")]),
        2.0
    );
    assert_eq!(sum("bento_messages_retried_total", &[]), 3.0);
    let dead = |failure| {
        sum(
            "bento_messages_dead_lettered_total",
            &[("failure", failure)],
        )
    };
    assert_eq!(dead("permanent"), 1.0);
    assert_eq!(dead("retries-exhausted"), 1.0);
    assert_eq!(bus.published("layers.counted-counted-DLQ").len(), 2);
    assert!(
        capture
            .spans_on(&bus.topic_for("layers.counted"))
            .is_empty(),
        "the metrics layer made spans"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_layer_alone_records_each_outcome_once_in_a_consumer_span() -> TestResult {
    let capture = SpanCapture::global()?;
    let topic = MemoryBus::default().topic_for("layers.traced");
    let spec = SubscriptionSpec::event_type("layers.traced", "traced")
        .layer(TraceLayer::new(TraceOptions::default(), "memory"));
    let finished = || Ok(capture.spans_on(&topic).len() >= DELIVERIES);
    run("layers.traced", spec, finished).await?;
    let spans = capture.spans_on(&topic);
    assert_eq!(spans.len(), DELIVERIES, "one consumer span per delivery");
    let outcomes = |outcome: &str| {
        spans
            .iter()
            .filter(|span| attribute(span, "bento.outcome").as_deref() == Some(outcome))
            .count()
    };
    assert_eq!(outcomes("ok"), 2);
    assert_eq!(outcomes("retried"), 3);
    assert_eq!(outcomes("dead-lettered"), 2);
    let errors = |kind: &str| {
        spans
            .iter()
            .filter(|span| attribute(span, "error.type").as_deref() == Some(kind))
            .count()
    };
    assert_eq!(errors("panic"), 2, "the two panics that were retried");
    assert_eq!(errors("retryable"), 1);
    assert_eq!(errors("permanent"), 1);
    assert_eq!(errors("retries-exhausted"), 1);
    assert!(
        spans
            .iter()
            .all(|span| span.name == format!("process {topic}"))
    );
    Ok(())
}
