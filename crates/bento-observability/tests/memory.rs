//! The observability layers over the in-memory bus: the backend-agnostic scenarios of
//! `bento_observability::testing`, plus the details only a test in-process can see.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bento_application::{
    Context, HandlerError, MessageBus, PublishOptions, RetryPolicy, SubscriptionSpec,
};
use bento_domain::{Envelope, MessageId};
use bento_memory::{MemoryBus, MemoryConfig};
use bento_observability::testing::{self, Exposition, http_get, parse_exposition};
use bento_observability::{
    ConsumerParent, Metrics, MetricsOptions, MetricsServer, Observability, ObservabilityConfig,
    ObservedBus, SpanLevel, TraceOptions,
};
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn memory() -> Arc<dyn MessageBus> {
    Arc::new(MemoryBus::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_span_is_a_child_of_the_producer_span() -> TestResult {
    let report = testing::trace_scenario(memory(), ConsumerParent::Child).await?;
    assert_eq!(
        report.consumer.parent_span_id,
        report.producer.span_context.span_id()
    );
    assert!(
        report.traceparent.starts_with("00-"),
        "{}",
        report.traceparent
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_span_links_to_the_producer_span_in_link_mode() -> TestResult {
    let report = testing::trace_scenario(memory(), ConsumerParent::Link).await?;
    assert_ne!(
        report.consumer.span_context.trace_id(),
        report.producer.span_context.trace_id()
    );
    assert_eq!(report.consumer.links.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_count_exactly_the_workload() -> TestResult {
    let report = testing::metrics_scenario(memory()).await?;
    // The scenario checked every count; spot-check the parsed scrape independently.
    let sub = |name: &str| {
        report
            .exposition
            .samples
            .iter()
            .find(|s| {
                s.name == "bento_messages_retried_total"
                    && s.labels
                        .get("subscription")
                        .is_some_and(|v| v.starts_with(name))
            })
            .map(|s| s.value)
    };
    assert_eq!(sub("work-"), Some(4.0));
    assert_eq!(sub("audit-"), Some(0.0));
    assert!(
        report
            .text
            .contains("# TYPE bento_handler_duration_seconds histogram")
    );
    Ok(())
}

/// Runs one message through a handler that logs, under a fmt subscriber at `max_level`, and
/// returns the handler's log line and the message id.
async fn handler_log_line(
    max_level: tracing::Level,
    span_level: SpanLevel,
) -> Result<(String, MessageId), Box<dyn std::error::Error>> {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(max_level)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: the subscriber set for this thread sees the handler.
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = ObservedBus::builder(memory())
        .tracing(TraceOptions::default().span_level(span_level))
        .build();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |_ctx: Context| {
        let tx = tx.clone();
        async move {
            tracing::info!("sending the welcome email");
            let _ = tx.send(());
            Ok::<(), HandlerError>(())
        }
    };
    let subscription = bus
        .subscribe(
            SubscriptionSpec::event_type("logs.user-created", "mailer"),
            Arc::new(handler),
        )
        .await?;
    let envelope = Envelope::new("logs.user-created", 1, "application/json", &b"{}"[..])
        .with_correlation_id("signup-42");
    let id = envelope.id;
    bus.publish(envelope, PublishOptions::default()).await?;
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?;
    subscription.shutdown().await?;

    let logs = String::from_utf8(buffer.0.lock().map(|b| b.clone()).unwrap_or_default())?;
    let line = logs
        .lines()
        .find(|line| line.contains("sending the welcome email"))
        .ok_or_else(|| format!("no handler log line in:\n{logs}"))?;
    Ok((line.to_owned(), id))
}

#[tokio::test]
async fn handler_logs_carry_message_id_event_type_and_correlation_id() -> TestResult {
    for (max_level, span_level) in [
        (tracing::Level::DEBUG, SpanLevel::Debug),
        (tracing::Level::INFO, SpanLevel::Info),
    ] {
        let (line, id) = handler_log_line(max_level, span_level).await?;
        for field in [
            format!("messaging.message.id={id}"),
            "bento.event_type=\"logs.user-created\"".to_owned(),
            "messaging.message.conversation_id=signup-42".to_owned(),
            "messaging.destination.subscription.name=\"mailer\"".to_owned(),
        ] {
            assert!(line.contains(&field), "`{field}` missing from: {line}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn debug_spans_cost_nothing_under_an_info_filter() -> TestResult {
    let (line, id) = handler_log_line(tracing::Level::INFO, SpanLevel::Debug).await?;
    assert!(!line.contains(&id.to_string()), "span fields in: {line}");
    assert!(!line.contains("process{"), "span in: {line}");
    Ok(())
}

#[tokio::test]
async fn without_a_subscriber_no_header_is_written() -> TestResult {
    // Other tests here install a global subscriber; this thread has none.
    let _guard = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    let memory = MemoryBus::new(MemoryConfig {
        retain_per_topic: 10,
        ..MemoryConfig::default()
    });
    let bus = ObservedBus::builder(Arc::new(memory.clone()))
        .tracing(TraceOptions::default())
        .build();
    let envelope =
        Envelope::new("quiet.event", 1, "application/json", &b"{}"[..]).with_header("x-user", "1");
    bus.publish(envelope.clone(), PublishOptions::default())
        .await?;
    let published = memory.published("quiet.event");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].headers, envelope.headers);
    Ok(())
}

async fn scrape(metrics: &Metrics) -> Result<Exposition, Box<dyn std::error::Error>> {
    Ok(parse_exposition(&metrics.encode()?)?)
}

async fn wait_until(
    metrics: &Metrics,
    done: impl Fn(&Exposition) -> bool,
) -> Result<Exposition, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let exposition = scrape(metrics).await?;
        if done(&exposition) {
            return Ok(exposition);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out; metrics:\n{}", metrics.encode()?).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_counts_as_failed_and_still_reaches_the_dispatcher() -> TestResult {
    let metrics = Metrics::new(MetricsOptions::default())?;
    let memory = MemoryBus::default();
    let bus = ObservedBus::builder(Arc::new(memory.clone()))
        .metrics(&metrics)
        .build();
    let handler = |ctx: Context| async move {
        if ctx.attempt() < 3 {
            panic!("boom on attempt {}", ctx.attempt());
        }
        Ok::<(), HandlerError>(())
    };
    let subscription = bus
        .subscribe(
            SubscriptionSpec::event_type("panics.event", "panicky")
                .retry(RetryPolicy::exponential(2, Duration::from_millis(5)).jitter(0.0)),
            Arc::new(handler),
        )
        .await?;
    bus.publish(
        Envelope::new("panics.event", 1, "application/json", &b"{}"[..]),
        PublishOptions::default(),
    )
    .await?;
    let exposition = wait_until(&metrics, |e| {
        e.sum(
            "bento_messages_dead_lettered_total",
            &[("subscription", "panicky")],
        ) >= 1.0
    })
    .await?;
    subscription.shutdown().await?;
    let labels = [("subscription", "panicky")];
    assert_eq!(
        exposition.sum("bento_messages_received_total", &labels),
        2.0
    );
    assert_eq!(exposition.sum("bento_messages_retried_total", &labels), 1.0);
    assert_eq!(
        exposition.sum(
            "bento_messages_dead_lettered_total",
            &[
                ("subscription", "panicky"),
                ("failure", "retries-exhausted")
            ]
        ),
        1.0
    );
    assert_eq!(exposition.sum("bento_handlers_in_flight", &labels), 0.0);
    // The dispatcher still saw a panic and dead-lettered with its reason.
    let dead = memory.published("panics.event-panicky-DLQ");
    assert_eq!(dead.len(), 1);
    let reason = dead[0]
        .headers
        .get("bento-dlq-reason")
        .cloned()
        .unwrap_or_default();
    assert!(reason.contains("boom on attempt 2"), "{reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_gauge_follows_running_handlers() -> TestResult {
    let metrics = Metrics::new(MetricsOptions::default())?;
    let bus = ObservedBus::builder(memory()).metrics(&metrics).build();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let gate = gate.clone();
        move |_ctx: Context| {
            let gate = gate.clone();
            async move {
                let _permit = gate.acquire().await.map_err(HandlerError::permanent)?;
                Ok::<(), HandlerError>(())
            }
        }
    };
    let subscription = bus
        .subscribe(
            SubscriptionSpec::event_type("slow.event", "slow").concurrency(4),
            Arc::new(handler),
        )
        .await?;
    for _ in 0..3 {
        bus.publish(
            Envelope::new("slow.event", 1, "application/json", &b"{}"[..]),
            PublishOptions::default(),
        )
        .await?;
    }
    let in_flight = |e: &Exposition| e.sum("bento_handlers_in_flight", &[("subscription", "slow")]);
    wait_until(&metrics, |e| in_flight(e) == 3.0).await?;
    gate.add_permits(3);
    let exposition = wait_until(&metrics, |e| {
        e.sum(
            "bento_messages_handled_total",
            &[("subscription", "slow"), ("outcome", "ok")],
        ) == 3.0
    })
    .await?;
    assert_eq!(in_flight(&exposition), 0.0);
    subscription.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn label_values_past_the_limit_are_folded_into_other() -> TestResult {
    let metrics = Metrics::new(MetricsOptions {
        max_label_values: 2,
    })?;
    let bus = ObservedBus::builder(memory()).metrics(&metrics).build();
    for i in 0..5 {
        bus.publish(
            Envelope::new(format!("many.type-{i}"), 1, "application/json", &b"{}"[..]),
            PublishOptions::default(),
        )
        .await?;
    }
    let exposition = scrape(&metrics).await?;
    let name = "bento_messages_published_total";
    assert_eq!(exposition.count(name, &[]), 3, "{:?}", exposition.samples);
    assert_eq!(exposition.sum(name, &[("event_type", "many.type-0")]), 1.0);
    assert_eq!(exposition.sum(name, &[("event_type", "many.type-1")]), 1.0);
    assert_eq!(exposition.sum(name, &[("event_type", "other")]), 3.0);
    assert_eq!(exposition.sum(name, &[("topic", "other")]), 3.0);
    Ok(())
}

#[tokio::test]
async fn publish_errors_are_counted() -> TestResult {
    let metrics = Metrics::new(MetricsOptions::default())?;
    let bus = ObservedBus::builder(memory()).metrics(&metrics).build();
    bus.close().await?;
    let one = Envelope::new("closed.event", 1, "application/json", &b"{}"[..]);
    assert!(
        bus.publish(one.clone(), PublishOptions::default())
            .await
            .is_err()
    );
    let batch = vec![one.clone(), one.clone(), one];
    assert!(
        bus.publish_batch(batch, PublishOptions::default())
            .await
            .is_err()
    );
    let exposition = scrape(&metrics).await?;
    assert_eq!(
        exposition.sum(
            "bento_publish_errors_total",
            &[("event_type", "closed.event")]
        ),
        4.0
    );
    assert_eq!(
        exposition.sum(
            "bento_messages_published_total",
            &[("event_type", "closed.event")]
        ),
        0.0
    );
    Ok(())
}

#[tokio::test]
async fn readiness_follows_the_bus_and_metrics_are_served() -> TestResult {
    let mut config = ObservabilityConfig::default();
    config.metrics.address = Some("127.0.0.1:0".into());
    let observability = Observability::start(&config, memory()).await?;
    let address = observability
        .metrics_address()
        .ok_or("no metrics address")?;
    let bus = observability.bus();
    bus.publish(
        Envelope::new("served.event", 1, "application/json", &b"{}"[..]),
        PublishOptions::default(),
    )
    .await?;

    let (status, body) = http_get(address, "/metrics").await?;
    assert_eq!(status, 200);
    let exposition = parse_exposition(&body)?;
    assert_eq!(
        exposition.sum(
            "bento_messages_published_total",
            &[("backend", "memory"), ("event_type", "served.event")]
        ),
        1.0
    );
    assert_eq!(http_get(address, "/health/live").await?.0, 200);
    assert_eq!(
        http_get(address, "/health/ready").await?,
        (200, "ready\n".into())
    );
    assert_eq!(http_get(address, "/nope").await?.0, 404);

    bus.close().await?;
    let (status, body) = http_get(address, "/health/ready").await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shut down"), "{body}");
    assert_eq!(http_get(address, "/health/live").await?.0, 200);
    observability.shutdown().await;
    assert!(http_get(address, "/health/live").await.is_err());
    Ok(())
}

#[tokio::test]
async fn metrics_server_reports_a_taken_address() -> TestResult {
    let first = MetricsServer::start("127.0.0.1:0", prometheus_registry(), None).await?;
    let taken = first.local_addr().to_string();
    let error = MetricsServer::start(&taken, prometheus_registry(), None)
        .await
        .err()
        .ok_or("a second server bound the same address")?;
    assert!(error.to_string().contains(&taken), "{error}");
    first.shutdown().await;
    Ok(())
}

fn prometheus_registry() -> bento_observability::prometheus::Registry {
    bento_observability::prometheus::Registry::new()
}

/// A backend that can tell its health and lag, and counts what reaches it.
struct Telling {
    memory: MemoryBus,
    healthy: std::sync::atomic::AtomicBool,
    schemas: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl MessageBus for Telling {
    fn backend(&self) -> &'static str {
        "telling"
    }
    async fn publish(
        &self,
        envelope: Envelope,
        options: PublishOptions,
    ) -> Result<(), bento_application::BusError> {
        self.memory.publish(envelope, options).await
    }
    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn bento_application::EnvelopeHandler>,
    ) -> Result<bento_application::Subscription, bento_application::BusError> {
        self.memory.subscribe(spec, handler).await
    }
    fn topic_for(&self, event_type: &str) -> String {
        format!("persistent://test/{event_type}")
    }
    fn as_health_check(&self) -> Option<&dyn bento_application::HealthCheck> {
        Some(self)
    }
    fn as_consumer_lag(&self) -> Option<&dyn bento_application::ConsumerLag> {
        Some(self)
    }
    fn as_schema_registry(&self) -> Option<&dyn bento_application::SchemaRegistry> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl bento_application::SchemaRegistry for Telling {
    async fn declare_schema(
        &self,
        _schema: &bento_application::SchemaDefinition,
    ) -> Result<(), bento_application::BusError> {
        self.schemas
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait::async_trait]
impl bento_application::HealthCheck for Telling {
    async fn health(&self) -> Result<(), bento_application::BusError> {
        if self.healthy.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(bento_application::BusError::Connection {
                backend: "telling",
                address: "broker:6650".into(),
                source: "connection refused".into(),
            })
        }
    }
}

#[async_trait::async_trait]
impl bento_application::ConsumerLag for Telling {
    async fn consumer_lag(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<Option<u64>, bento_application::BusError> {
        Ok((topic == "persistent://test/lagging.event" && subscription == "behind").then_some(42))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lag_schemas_and_topics_come_from_the_backend() -> TestResult {
    let telling = Arc::new(Telling {
        memory: MemoryBus::default(),
        healthy: std::sync::atomic::AtomicBool::new(false),
        schemas: std::sync::atomic::AtomicUsize::new(0),
    });
    let metrics = Metrics::new(MetricsOptions::default())?;
    let bus: Arc<dyn MessageBus> = Arc::new(
        ObservedBus::builder(telling.clone())
            .metrics(&metrics)
            .lag_interval(Some(Duration::from_millis(10)))
            .build(),
    );
    assert_eq!(bus.backend(), "telling");
    assert_eq!(bus.topic_for("x"), "persistent://test/x");

    let server =
        MetricsServer::start("127.0.0.1:0", metrics.registry().clone(), Some(bus.clone())).await?;
    let (status, body) = http_get(server.local_addr(), "/health/ready").await?;
    assert_eq!(status, 503);
    assert!(body.contains("connection refused"), "{body}");
    telling
        .healthy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(http_get(server.local_addr(), "/health/ready").await?.0, 200);
    server.shutdown().await;

    bus.declare_schema(&bento_application::SchemaDefinition {
        event_type: "lagging.event".into(),
        kind: bento_application::SchemaKind::Json,
        definition: "{}".into(),
    })
    .await?;
    assert_eq!(telling.schemas.load(std::sync::atomic::Ordering::SeqCst), 1);

    let ok = |_ctx: Context| async { Ok::<(), HandlerError>(()) };
    let behind = bus
        .subscribe(
            SubscriptionSpec::event_type("lagging.event", "behind"),
            Arc::new(ok),
        )
        .await?;
    let current = bus
        .subscribe(
            SubscriptionSpec::event_type("lagging.event", "current"),
            Arc::new(ok),
        )
        .await?;
    let exposition = wait_until(&metrics, |e| {
        e.count("bento_consumer_lag_messages", &[("subscription", "behind")]) == 1
    })
    .await?;
    assert_eq!(
        exposition.sum(
            "bento_consumer_lag_messages",
            &[
                ("backend", "telling"),
                ("topic", "persistent://test/lagging.event"),
                ("subscription", "behind")
            ]
        ),
        42.0
    );
    // A backend that cannot tell (None) gets no gauge at all.
    assert_eq!(
        exposition.count(
            "bento_consumer_lag_messages",
            &[("subscription", "current")]
        ),
        0
    );
    behind.shutdown().await?;
    current.shutdown().await?;
    Ok(())
}
