//! The in-memory bus bounds what a subscription holds and makes publishers wait for room,
//! never dropping a message.

use std::sync::Arc;
use std::time::Duration;

use bento_application::{
    Context, DeliverAt, EnvelopeHandler, HandlerError, MessageBus, PublishOptions, Subscription,
    SubscriptionSpec,
};
use bento_domain::Envelope;
use bento_memory::{MemoryBus, MemoryConfig};
use bento_testkit::Collector;

const PATIENCE: Duration = Duration::from_secs(5);

/// A 1 KiB message weighs 1,280 bytes (payload plus 256): eight fit in 10,240.
fn small_bus() -> MemoryBus {
    MemoryBus::new(MemoryConfig {
        max_bytes_per_subscription: 10_240,
        max_delayed_messages: 3,
        ..MemoryConfig::default()
    })
}

fn message(n: u32) -> Envelope {
    Envelope::new("bounds.noted", 1, "text/plain", vec![b'x'; 1024]).with_header("n", n.to_string())
}

/// The number `message` gave an envelope.
fn number(envelope: &Envelope) -> u32 {
    envelope
        .headers
        .get("n")
        .and_then(|n| n.parse().ok())
        .expect("numbered")
}

fn numbers(collector: &Collector) -> Vec<u32> {
    collector
        .seen()
        .iter()
        .map(|m| number(&m.envelope))
        .collect()
}

/// Subscribes `handler` as `subscription` of `topic`, for the rest of the test.
async fn subscribe<H: EnvelopeHandler>(
    bus: &MemoryBus,
    topic: &str,
    subscription: &str,
    handler: H,
) -> Subscription {
    bus.subscribe(
        SubscriptionSpec::topic(topic, subscription),
        Arc::new(handler),
    )
    .await
    .expect("subscribe")
}

#[tokio::test]
async fn a_full_subscription_holds_its_publishers_and_loses_nothing() {
    let bus = small_bus();
    let spec = SubscriptionSpec::topic("bounds", "slow");
    // The subscription exists, then its consumer goes away: messages wait for the next one.
    let first = Collector::new();
    bus.subscribe(spec.clone(), Arc::new(first.handler()))
        .await
        .expect("subscribe")
        .shutdown()
        .await
        .expect("shutdown");
    let options = PublishOptions::default().to_topic("bounds");
    for n in 0..8 {
        tokio::time::timeout(PATIENCE, bus.publish(message(n), options.clone()))
            .await
            .expect("room for eight")
            .expect("publish");
    }
    let ninth = tokio::spawn({
        let (bus, options) = (bus.clone(), options.clone());
        async move { bus.publish(message(8), options).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ninth.is_finished(), "the ninth publish waits for room");

    let second = Collector::new();
    let _subscription = bus
        .subscribe(spec, Arc::new(second.handler()))
        .await
        .expect("subscribe");
    tokio::time::timeout(PATIENCE, ninth)
        .await
        .expect("room frees up once the consumer acknowledges")
        .expect("task")
        .expect("publish");
    second.wait_for(9, PATIENCE).await;
    assert_eq!(
        numbers(&second),
        (0..9).collect::<Vec<_>>(),
        "all of them, in order"
    );
}

#[tokio::test]
async fn a_message_waiting_for_its_retry_keeps_its_room() {
    let bus = small_bus();
    let failing = |_: Context| async {
        Err::<(), _>(HandlerError::retry_after(
            Duration::from_secs(3600),
            "not yet",
        ))
    };
    let _subscription = subscribe(&bus, "retried", "parked", failing).await;
    let options = PublishOptions::default().to_topic("retried");
    for n in 0..8 {
        tokio::time::timeout(PATIENCE, bus.publish(message(n), options.clone()))
            .await
            .expect("room for eight")
            .expect("publish");
    }
    let ninth =
        tokio::time::timeout(Duration::from_millis(500), bus.publish(message(8), options)).await;
    assert!(
        ninth.is_err(),
        "eight messages waiting an hour for their retry still fill the subscription"
    );
}

#[tokio::test]
async fn acknowledged_and_dead_lettered_messages_give_their_room_back() {
    let bus = small_bus();
    // Even numbers are acknowledged, odd ones dead-lettered at once.
    let half_failing = |ctx: Context| async move {
        if number(ctx.envelope()).is_multiple_of(2) {
            Ok(())
        } else {
            Err(HandlerError::permanent("odd"))
        }
    };
    let _subscription = subscribe(&bus, "settled", "half", half_failing).await;
    let options = PublishOptions::default().to_topic("settled");
    // Five times what the subscription may hold: only room given back lets them all through.
    for n in 0..40 {
        tokio::time::timeout(PATIENCE, bus.publish(message(n), options.clone()))
            .await
            .unwrap_or_else(|_| panic!("publish {n} found no room: settled messages kept theirs"))
            .expect("publish");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while bus.published("settled-half-DLQ").len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 20 odd messages are dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn delayed_publishes_wait_beyond_the_bound_and_are_all_delivered() {
    let bus = small_bus();
    let seen = Collector::new();
    let _subscription = subscribe(&bus, "later", "seen", seen.handler()).await;
    let in_a_second = PublishOptions {
        deliver: Some(DeliverAt::After(Duration::from_secs(1))),
        ..PublishOptions::default()
    }
    .to_topic("later");
    // Timed from before the first publish, whose due time the fourth waits for: timed from
    // the fourth alone, a stall of over 200 ms among the first three (a loaded machine) ate
    // into the wait and failed the bound.
    let started = tokio::time::Instant::now();
    for n in 0..3 {
        tokio::time::timeout(PATIENCE, bus.publish(message(n), in_a_second.clone()))
            .await
            .expect("room for three delayed messages")
            .expect("publish");
    }
    bus.publish(message(3), in_a_second).await.expect("publish");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the fourth delayed publish waited until the first three were due ({:?})",
        started.elapsed()
    );
    seen.wait_for(4, PATIENCE).await;
    let mut got = numbers(&seen);
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3]);
}
