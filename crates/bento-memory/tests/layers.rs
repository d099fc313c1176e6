//! The handler and publish stacks on the in-memory bus: where layers sit, what the built-in
//! ones do, and the handler forms a subscription accepts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bento_application::layer::{InboxLayer, Layer, RateLimitLayer};
use bento_application::{
    Bus, BusError, Context, EnvelopeHandler, HandlerError, Inbox, Outcome, Publication,
    PublishOptions, Publisher, RetryPolicy, State, SubscriptionSpec, with_state,
};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_memory::MemoryBus;
use bento_testkit::Collector;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted {
    n: u32,
}

impl DomainEvent for Noted {
    const EVENT_TYPE: &'static str = "layers.noted";
    const AGGREGATE_TYPE: &'static str = "note";
    fn aggregate_id(&self) -> String {
        self.n.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Erased {
    n: u32,
}

impl DomainEvent for Erased {
    const EVENT_TYPE: &'static str = "layers.erased";
    const AGGREGATE_TYPE: &'static str = "note";
    fn aggregate_id(&self) -> String {
        self.n.to_string()
    }
}

const PATIENCE: Duration = Duration::from_secs(5);

fn bus() -> Bus<Json> {
    Bus::new(Arc::new(MemoryBus::default()), Json)
}

/// Records its name on the way in, so a test can read the order layers ran in.
#[derive(Clone)]
struct Mark {
    name: &'static str,
    trail: Arc<Mutex<Vec<&'static str>>>,
}

struct Marked<S> {
    inner: S,
    mark: Mark,
}

impl<S> Layer<S> for Mark {
    type Service = Marked<S>;
    fn layer(&self, inner: S) -> Marked<S> {
        Marked {
            inner,
            mark: self.clone(),
        }
    }
}

impl<S: EnvelopeHandler> EnvelopeHandler for Marked<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        if let Ok(mut trail) = self.mark.trail.lock() {
            trail.push(self.mark.name);
        }
        self.inner.handle(ctx)
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn service_layers_wrap_subscription_layers_which_wrap_route_layers() {
    let trail = Arc::new(Mutex::new(Vec::new()));
    let mark = |name| Mark {
        name,
        trail: trail.clone(),
    };
    let bus = bus().layer(mark("service-1")).layer(mark("service-2"));
    let collector = Collector::new();
    let router = bus
        .router()
        .route({
            let collector = collector.clone();
            move |_: Noted, ctx: Context| {
                collector.record(&ctx);
                async { Ok::<(), HandlerError>(()) }
            }
        })
        .route_layer(mark("route"));
    let sub = bus
        .subscribe_with(
            SubscriptionSpec::topic(Noted::EVENT_TYPE, "ordered")
                .layer(mark("subscription-1"))
                .layer(mark("subscription-2")),
            router,
        )
        .await
        .expect("subscribe");
    bus.publish(&Noted { n: 1 }).await.expect("publish");
    collector.wait_for(1, PATIENCE).await;
    sub.shutdown().await.expect("shutdown");
    assert_eq!(
        *trail.lock().expect("trail"),
        [
            "service-1",
            "service-2",
            "subscription-1",
            "subscription-2",
            "route"
        ]
    );
}

#[tokio::test]
async fn a_router_needs_a_topic_and_says_so() {
    let bus = bus();
    let router = bus
        .router()
        .route(|_: Noted, _ctx: Context| async { Ok(()) });
    let error = bus
        .subscribe("projector", router)
        .await
        .expect_err("a router reads several event types");
    assert!(
        matches!(&error, BusError::Subscribe { subscription, source, .. }
            if subscription == "projector" && source.to_string().contains("SubscriptionSpec::topic")),
        "{error}"
    );
}

#[tokio::test]
async fn an_untyped_handler_needs_a_topic_and_says_so() {
    let bus = bus();
    let error = bus
        .subscribe_envelopes(SubscriptionSpec::named("raw"), |_ctx: Context| async {
            Ok::<(), HandlerError>(())
        })
        .await
        .expect_err("a spec without a topic and a handler without an event type");
    assert!(
        matches!(&error, BusError::Subscribe { subscription, source, .. }
            if subscription == "raw" && source.to_string().contains("SubscriptionSpec::topic")),
        "{error}"
    );
}

#[derive(Clone)]
struct Ledger {
    lines: Arc<Mutex<Vec<u32>>>,
}

async fn book(
    State(ledger): State<Ledger>,
    event: Noted,
    _ctx: Context,
) -> Result<(), HandlerError> {
    ledger
        .lines
        .lock()
        .map_err(|_| HandlerError::retryable("ledger poisoned"))?
        .push(event.n);
    Ok(())
}

#[tokio::test]
async fn handlers_get_their_state_and_their_event_type_is_inferred() {
    let bus = bus();
    let ledger = Ledger {
        lines: Arc::new(Mutex::new(Vec::new())),
    };
    let sub = bus
        .subscribe("ledger", with_state(ledger.clone(), book))
        .await
        .expect("subscribe");
    for n in 1..=3 {
        bus.publish(&Noted { n }).await.expect("publish");
    }
    wait_until("three bookings", || {
        ledger.lines.lock().is_ok_and(|l| l.len() == 3)
    })
    .await;
    sub.shutdown().await.expect("shutdown");
    assert_eq!(*ledger.lines.lock().expect("ledger"), [1, 2, 3]);
}

#[tokio::test]
async fn a_timed_out_handler_is_retried_then_dead_lettered() {
    let bus = bus();
    let dead = Collector::new();
    let dlq = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic("layers.slow-dlq", "dlq"),
            dead.handler(),
        )
        .await
        .expect("subscribe dlq");
    let sub = bus
        .subscribe_with(
            SubscriptionSpec::named("slow")
                .timeout(Duration::from_millis(50))
                .retry(RetryPolicy::exponential(2, Duration::from_millis(10)))
                .dead_letter(bento_application::DeadLetterPolicy::to_topic(
                    "layers.slow-dlq",
                )),
            |_: Noted, _ctx: Context| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            },
        )
        .await
        .expect("subscribe");
    bus.publish(&Noted { n: 1 }).await.expect("publish");
    let letter = dead.wait_for(1, PATIENCE).await.remove(0).envelope;
    assert_eq!(
        letter.headers.get("bento-dlq-attempts").map(String::as_str),
        Some("2")
    );
    let reason = letter
        .headers
        .get("bento-dlq-reason")
        .cloned()
        .unwrap_or_default();
    assert!(reason.contains("did not finish within 50ms"), "{reason}");
    sub.shutdown().await.expect("shutdown");
    dlq.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_inbox_layer_skips_a_message_it_handled() {
    let bus = bus();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let sub = bus
        .subscribe_with(
            SubscriptionSpec::named("dedup").layer(InboxLayer::new(Inbox::with_capacity(10))),
            {
                let handled = handled.clone();
                move |event: Erased, _ctx: Context| {
                    if let Ok(mut handled) = handled.lock() {
                        handled.push(event.n);
                    }
                    async { Ok::<(), HandlerError>(()) }
                }
            },
        )
        .await
        .expect("subscribe");
    let first = bus.envelope(&Erased { n: 1 }).expect("encode");
    let duplicate = first.clone();
    let after = bus.envelope(&Erased { n: 2 }).expect("encode");
    for envelope in [first, duplicate, after] {
        bus.publish_envelopes(vec![envelope], PublishOptions::default())
            .await
            .expect("publish");
    }
    // One subscription, one at a time: once 2 is handled, the duplicate before it was seen.
    wait_until("the message after the duplicate", || {
        handled.lock().is_ok_and(|h| h.contains(&2))
    })
    .await;
    sub.shutdown().await.expect("shutdown");
    assert_eq!(
        *handled.lock().expect("handled"),
        [1, 2],
        "the duplicate ran the handler"
    );
}

#[tokio::test]
async fn a_rate_limit_spaces_messages_out() {
    let bus = bus();
    let collector = Collector::new();
    let sub = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(Noted::EVENT_TYPE, "limited")
                .concurrency(4)
                .layer(RateLimitLayer::new(20, Duration::from_secs(1))),
            collector.handler(),
        )
        .await
        .expect("subscribe");
    let started = Instant::now();
    for n in 0..5 {
        bus.publish(&Noted { n }).await.expect("publish");
    }
    collector.wait_for(5, PATIENCE).await;
    let took = started.elapsed();
    sub.shutdown().await.expect("shutdown");
    // Five messages at 20 per second: the fifth may start 4 * 50 ms after the first.
    assert!(took >= Duration::from_millis(190), "5 messages in {took:?}");
}

/// Stamps a tenant on every envelope published through it.
struct StampTenant<P> {
    inner: P,
}

struct StampTenantLayer;

impl<P> Layer<P> for StampTenantLayer {
    type Service = StampTenant<P>;
    fn layer(&self, inner: P) -> StampTenant<P> {
        StampTenant { inner }
    }
}

impl<P: Publisher> Publisher for StampTenant<P> {
    fn publish(&self, mut publication: Publication) -> BoxFuture<'static, Result<(), BusError>> {
        for envelope in &mut publication.envelopes {
            envelope.tenant.get_or_insert_with(|| "acme".to_owned());
        }
        self.inner.publish(publication).boxed()
    }
}

#[tokio::test]
async fn publish_layers_see_every_publish() {
    let bus = bus().publish_layer(StampTenantLayer);
    let collector = Collector::new();
    let sub = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(Noted::EVENT_TYPE, "tenants"),
            collector.handler(),
        )
        .await
        .expect("subscribe");
    bus.publish(&Noted { n: 1 }).await.expect("publish");
    bus.publish_all(&[Noted { n: 2 }, Noted { n: 3 }])
        .await
        .expect("publish all");
    let got = collector.wait_for(3, PATIENCE).await;
    sub.shutdown().await.expect("shutdown");
    assert!(
        got.iter()
            .all(|c| c.envelope.tenant.as_deref() == Some("acme")),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_dead_letter_layer_skips_the_retries_of_poison() {
    let bus = bus();
    let dead = Collector::new();
    let dlq = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic("layers.poison-dlq", "dlq"),
            dead.handler(),
        )
        .await
        .expect("subscribe dlq");
    let attempts = Arc::new(Mutex::new(0u32));
    let sub = bus
        .subscribe_with(
            SubscriptionSpec::named("poisoned")
                .retry(RetryPolicy::exponential(5, Duration::from_millis(10)))
                .dead_letter(bento_application::DeadLetterPolicy::to_topic(
                    "layers.poison-dlq",
                ))
                .layer(bento_application::layer::DeadLetterLayer::when(|error| {
                    error
                        .source()
                        .is_some_and(|source| source.is::<std::num::ParseIntError>())
                })),
            {
                let attempts = attempts.clone();
                move |_: Noted, _ctx: Context| {
                    *attempts.lock().expect("attempts") += 1;
                    async {
                        "not a number".parse::<u32>()?;
                        Ok::<(), HandlerError>(())
                    }
                }
            },
        )
        .await
        .expect("subscribe");
    bus.publish(&Noted { n: 1 }).await.expect("publish");
    let letter = dead.wait_for(1, PATIENCE).await.remove(0).envelope;
    assert_eq!(
        letter.headers.get("bento-dlq-failure").map(String::as_str),
        Some("permanent")
    );
    assert_eq!(*attempts.lock().expect("attempts"), 1, "poison was retried");
    sub.shutdown().await.expect("shutdown");
    dlq.shutdown().await.expect("shutdown");
}
