//! The metrics scenario: a known workload, scraped and counted exactly.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bento_application::{
    Context, DeadLetterPolicy, EnvelopeHandler, HandlerError, MessageBus, PublishOptions,
    RetryPolicy, Subscription, SubscriptionSpec,
};
use bento_domain::{Envelope, MessageId};

use super::{
    DELIVERY_TIMEOUT, Exposition, ScenarioError, fail, failed, http_get, parse_exposition,
};
use crate::{Metrics, MetricsOptions, MetricsServer, ObservedBus};

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
    let run = Run::new(&*observed);
    let subscriptions = run.subscribe(&*observed).await?;
    run.publish(&*observed).await?;
    run.wait_until_handled(&metrics).await?;
    // A little more, so that extra deliveries, if any, show up as wrong counts.
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
    let mut problems = run.check(&exposition);
    if live.0 != 200 || ready.0 != 200 {
        problems.push(format!(
            "health: live {} `{}`, ready {} `{}`",
            live.0,
            live.1.trim(),
            ready.0,
            ready.1.trim()
        ));
    }
    if !problems.is_empty() {
        return fail(format!(
            "metrics scenario on {}: {}\n--- /metrics ---\n{text}",
            run.backend,
            problems.join("; ")
        ));
    }
    Ok(MetricsReport {
        topic: run.topic,
        event_type: run.event_type,
        text,
        exposition,
    })
}

/// One run of the scenario: its event type, topics and subscription names, unique to it.
struct Run {
    backend: &'static str,
    id: String,
    event_type: String,
    topic: String,
    dead_letter_topic: String,
}

impl Run {
    fn new(bus: &dyn MessageBus) -> Self {
        let id = MessageId::new().to_string();
        let event_type = format!("bento.observability-test.metrics.{id}");
        Self {
            backend: bus.backend(),
            topic: bus.topic_for(&event_type),
            dead_letter_topic: format!("{event_type}.dlq"),
            event_type,
            id,
        }
    }

    /// The name of subscription `name` in this run.
    fn name(&self, name: &str) -> String {
        format!("{name}-{}", self.id)
    }

    /// Subscribes `work` (whose handler fails as the payload says), `audit` and
    /// `dead-letters` (both always ok).
    async fn subscribe(&self, bus: &dyn MessageBus) -> Result<Vec<Subscription>, ScenarioError> {
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
        let specs: [(SubscriptionSpec, Arc<dyn EnvelopeHandler>); 3] = [
            (
                SubscriptionSpec::event_type(&self.event_type, self.name("work"))
                    .retry(retry)
                    .dead_letter(DeadLetterPolicy::to_topic(&self.dead_letter_topic)),
                Arc::new(work),
            ),
            (
                SubscriptionSpec::event_type(&self.event_type, self.name("audit")),
                Arc::new(ok),
            ),
            (
                SubscriptionSpec::topic(&self.dead_letter_topic, self.name("dead-letters")),
                Arc::new(ok),
            ),
        ];
        let mut subscriptions = Vec::new();
        for (spec, handler) in specs {
            let what = format!("subscribe {}", spec.name);
            subscriptions.push(
                bus.subscribe(spec, handler)
                    .await
                    .map_err(|e| failed(&what, e))?,
            );
        }
        Ok(subscriptions)
    }

    /// Publishes 6 `ok` in one batch, then `flaky` twice, `doomed`, `poison` and `garbage`.
    async fn publish(&self, bus: &dyn MessageBus) -> Result<(), ScenarioError> {
        let envelope = |payload: &'static [u8]| {
            Envelope::new(self.event_type.clone(), 1, "application/json", payload)
        };
        let batch: Vec<Envelope> = (0..6).map(|_| envelope(b"ok")).collect();
        bus.publish_batch(batch, PublishOptions::default())
            .await
            .map_err(|e| failed("publish batch", e))?;
        for payload in [&b"flaky"[..], b"flaky", b"doomed", b"poison", b"garbage"] {
            bus.publish(envelope(payload), PublishOptions::default())
                .await
                .map_err(|e| failed("publish", e))?;
        }
        Ok(())
    }

    /// Waits until every subscription has handled what it must.
    async fn wait_until_handled(&self, metrics: &Metrics) -> Result<(), ScenarioError> {
        let handled = |exposition: &Exposition, subscription: &str| {
            exposition.sum(
                "bento_messages_handled_total",
                &[("subscription", &self.name(subscription))],
            )
        };
        let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let text = metrics.encode().map_err(|e| failed("encode", e))?;
            let exposition = parse_exposition(&text)?;
            if EXPECTED
                .iter()
                .all(|e| handled(&exposition, e.subscription) >= e.received)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let missing = EXPECTED
                    .iter()
                    .map(|e| {
                        let done = handled(&exposition, e.subscription);
                        format!("{} handled {done} of {}", e.subscription, e.received)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return fail(format!(
                    "metrics scenario on {}: deliveries still missing after \
                     {DELIVERY_TIMEOUT:?}: {missing}",
                    self.backend
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every count of the scrape that is not what the workload makes it.
    fn check(&self, exposition: &Exposition) -> Vec<String> {
        let problems = RefCell::new(Vec::new());
        let expect = |name: &str, labels: &[(&str, &str)], expected: f64| {
            let found = exposition.sum(name, labels);
            if found != expected || exposition.count(name, labels) == 0 {
                problems
                    .borrow_mut()
                    .push(format!("{name}{labels:?} = {found}, expected {expected}"));
            }
        };
        let (backend, topic) = (self.backend, self.topic.as_str());
        let event_type = self.event_type.as_str();
        let base = [
            ("backend", backend),
            ("topic", topic),
            ("event_type", event_type),
        ];
        expect("bento_messages_published_total", &base, 11.0);
        expect("bento_publish_errors_total", &base, 0.0);
        expect(
            "bento_publish_duration_seconds_count",
            &[("backend", backend), ("topic", topic)],
            6.0,
        );
        for e in &EXPECTED {
            let subscription = self.name(e.subscription);
            let topic = if e.subscription == "dead-letters" {
                self.dead_letter_topic.as_str()
            } else {
                topic
            };
            let labels = [
                ("backend", backend),
                ("topic", topic),
                ("subscription", subscription.as_str()),
                ("event_type", event_type),
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
        problems.into_inner()
    }
}
