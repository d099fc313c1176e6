//! Pulsar-specific behaviour, against the real broker: subscription types, delayed delivery,
//! retry and dead-letter topics, batches, multi-tenancy, unreachable brokers.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bento_application::{
    BusError, Context, DeadLetterPolicy, HandlerError, MessageBus, PublishOptions, RetryPolicy,
    SubscriptionKind, SubscriptionSpec, wire,
};
use bento_domain::Envelope;
use bento_pulsar::{BatchAckSetting, BatchAcknowledgement, Compression, PulsarBus, PulsarConfig};
use bento_testkit::Collector;
use common::{PATIENCE, unique};
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, SubType};

fn envelope(key: &str, seq: u32) -> Envelope {
    Envelope::new(
        "bento.it.ping",
        1,
        "text/plain",
        format!("{key}:{seq}").into_bytes(),
    )
    .with_aggregate("pinger", key)
    .with_ordering_key(key)
}

fn body(envelope: &Envelope) -> String {
    String::from_utf8_lossy(&envelope.payload).into_owned()
}

async fn publish(bus: &PulsarBus, topic: &str, envelope: Envelope) {
    bus.publish(envelope, PublishOptions::default().to_topic(topic))
        .await
        .unwrap_or_else(|e| panic!("publishing to {topic}: {e}"));
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw consumer of `topic` from its first message, to inspect what Bento wrote there.
async fn raw_reader(topic: &str) -> pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor> {
    common::raw_client()
        .await
        .consumer()
        .with_topic(topic)
        .with_subscription(unique("inspector"))
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap_or_else(|e| panic!("raw consumer of {topic}: {e}"))
}

async fn next_raw(
    reader: &mut pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor>,
    what: &str,
) -> pulsar::consumer::Message<Vec<u8>> {
    tokio::time::timeout(PATIENCE, reader.next())
        .await
        .unwrap_or_else(|_| panic!("no message on the {what} within {PATIENCE:?}"))
        .unwrap_or_else(|| panic!("the {what} reader ended"))
        .unwrap_or_else(|e| panic!("reading the {what}: {e}"))
}

fn properties(message: &pulsar::consumer::Message<Vec<u8>>) -> HashMap<String, String> {
    message
        .metadata()
        .properties
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_subscription_refuses_a_second_consumer() {
    let bus = common::bus().await;
    let topic = unique("exclusive");
    let spec =
        SubscriptionSpec::topic(&topic, unique("only-one")).kind(SubscriptionKind::Exclusive);
    let (first, sub) = Collector::subscribe(&bus, spec.clone()).await;

    let started = Instant::now();
    let second = bus
        .subscribe(spec, Arc::new(Collector::new().handler()))
        .await;
    match second {
        Err(BusError::Subscribe {
            source: reason,
            subscription,
            ..
        }) => {
            assert!(
                reason.to_string().contains("exclusive"),
                "the reason says why: {reason}"
            );
            assert!(
                subscription.starts_with("bento-it-only-one"),
                "{subscription}"
            );
        }
        Err(other) => panic!("expected a subscribe error, got {other}"),
        Ok(_) => panic!("a second consumer of an exclusive subscription was accepted"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "refused promptly, took {:?}",
        started.elapsed()
    );

    publish(&bus, &topic, envelope("k", 1)).await;
    first.wait_for(1, PATIENCE).await;
    sub.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_has_one_active_consumer_that_hands_over_on_shutdown() {
    let bus = common::bus().await;
    let topic = unique("failover");
    let spec = SubscriptionSpec::topic(&topic, unique("standby")).kind(SubscriptionKind::Failover);
    let (a, sub_a) = Collector::subscribe(&bus, spec.clone()).await;
    let (b, sub_b) = Collector::subscribe(&bus, spec).await;
    for seq in 0..20 {
        publish(&bus, &topic, envelope(&format!("k{seq}"), seq)).await;
    }
    wait_until("20 messages", || a.len() + b.len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (active, standby, active_sub, standby_sub) = if !a.is_empty() {
        (a, b, sub_a, sub_b)
    } else {
        (b, a, sub_b, sub_a)
    };
    assert_eq!(active.len(), 20, "the active consumer got every message");
    assert!(standby.is_empty(), "the standby consumer got none");

    active_sub
        .shutdown()
        .await
        .expect("shutdown the active consumer");
    for seq in 20..30 {
        publish(&bus, &topic, envelope(&format!("k{seq}"), seq)).await;
    }
    let taken_over = standby.wait_for(10, PATIENCE).await;
    let bodies: HashSet<String> = taken_over.iter().map(|c| body(&c.envelope)).collect();
    assert!(
        (20..30).all(|seq| bodies.contains(&format!("k{seq}:{seq}"))),
        "the standby took over: {bodies:?}"
    );
    assert_eq!(active.len(), 20, "the closed consumer got nothing more");
    standby_sub.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_gives_each_consumer_a_share() {
    let bus = common::bus().await;
    let topic = unique("shared");
    let spec = SubscriptionSpec::topic(&topic, unique("workers")).kind(SubscriptionKind::Shared);
    let (a, sub_a) = Collector::subscribe(&bus, spec.clone()).await;
    let (b, sub_b) = Collector::subscribe(&bus, spec).await;
    let batch = (0..200)
        .map(|seq| envelope(&format!("k{seq}"), seq))
        .collect();
    bus.publish_batch(batch, PublishOptions::default().to_topic(&topic))
        .await
        .expect("publish batch");
    wait_until("200 messages", || a.len() + b.len() >= 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: Vec<String> = a
        .seen()
        .iter()
        .chain(b.seen().iter())
        .map(|c| body(&c.envelope))
        .collect();
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 200, "every message handled");
    assert_eq!(all.len(), 200, "none handled twice");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both consumers got a share: {} / {}",
        a.len(),
        b.len()
    );
    sub_a.shutdown().await.expect("shutdown");
    sub_b.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shared_subscription_sends_each_key_to_one_consumer() {
    let bus = common::bus().await;
    let topic = unique("key-shared");
    let spec = SubscriptionSpec::topic(&topic, unique("by-key"))
        .kind(SubscriptionKind::KeyShared)
        .concurrency(4);
    let (a, sub_a) = Collector::subscribe(&bus, spec.clone()).await;
    let (b, sub_b) = Collector::subscribe(&bus, spec).await;
    let batch = (0..400)
        .map(|i| envelope(&format!("key-{}", i % 20), i / 20))
        .collect();
    bus.publish_batch(batch, PublishOptions::default().to_topic(&topic))
        .await
        .expect("publish batch");
    wait_until("400 messages", || a.len() + b.len() >= 400).await;

    let keys = |c: &Collector| -> BTreeMap<String, Vec<u32>> {
        let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for seen in c.seen() {
            let text = body(&seen.envelope);
            let (key, seq) = text.split_once(':').expect("key:seq payload");
            by_key
                .entry(key.to_owned())
                .or_default()
                .push(seq.parse().expect("seq"));
        }
        by_key
    };
    let (keys_a, keys_b) = (keys(&a), keys(&b));
    let overlap: Vec<&String> = keys_a.keys().filter(|k| keys_b.contains_key(*k)).collect();
    assert!(
        overlap.is_empty(),
        "keys handled by both consumers: {overlap:?}"
    );
    assert!(
        !keys_a.is_empty() && !keys_b.is_empty(),
        "both consumers own keys: {} / {}",
        keys_a.len(),
        keys_b.len()
    );
    assert_eq!(keys_a.len() + keys_b.len(), 20);
    for (key, seqs) in keys_a.iter().chain(keys_b.iter()) {
        assert_eq!(seqs, &(0..20).collect::<Vec<u32>>(), "order of {key}");
    }
    sub_a.shutdown().await.expect("shutdown");
    sub_b.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_delivery_is_neither_early_nor_much_late() {
    let bus = common::bus().await;
    let topic = unique("delayed");
    let (collector, sub) =
        Collector::subscribe(&bus, SubscriptionSpec::topic(&topic, unique("patient"))).await;
    // The broker checks for due messages once a tick (1 s by default), so two
    // messages due within a tick of each other may come in either order: the
    // two due times here are 3 s apart.
    let delay = Duration::from_secs(5);
    let sent = Instant::now();
    bus.publish(
        envelope("after", 1),
        PublishOptions::deliver_after(delay).to_topic(&topic),
    )
    .await
    .expect("publish delayed");
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let sent_at = Instant::now();
    bus.publish(
        envelope("at", 1),
        PublishOptions::deliver_at(at).to_topic(&topic),
    )
    .await
    .expect("publish at an instant");
    publish(&bus, &topic, envelope("now", 1)).await;

    let seen = collector.wait_for(3, PATIENCE).await;
    let order: Vec<String> = seen.iter().map(|c| body(&c.envelope)).collect();
    assert_eq!(
        order,
        vec!["now:1", "at:1", "after:1"],
        "delivered in due order"
    );
    let after = seen[2].at - sent;
    assert!(
        after >= delay,
        "delivered {after:?} after publishing, before the {delay:?} asked for"
    );
    assert!(
        after < delay + Duration::from_secs(3),
        "delivered {after:?} after publishing, {delay:?} was asked for"
    );
    let at_waited = seen[1].at - sent_at;
    assert!(
        at_waited >= Duration::from_millis(1900),
        "deliver_at came early: {at_waited:?}"
    );
    assert!(
        at_waited < Duration::from_secs(5),
        "deliver_at came late: {at_waited:?}"
    );
    sub.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_keeps_payload_properties_and_cause() {
    let bus = common::bus().await;
    let topic = unique("doomed");
    let subscription = unique("strict");
    let full_topic = bus.topic_name(&topic);
    let dead_letter_topic = format!("{full_topic}-{subscription}-DLQ");
    let mut reader = raw_reader(&dead_letter_topic).await;
    let sub = bus
        .subscribe(
            SubscriptionSpec::topic(&topic, &subscription),
            Arc::new(|_ctx: Context| async {
                Err::<(), _>(HandlerError::permanent("no such mailbox: x@y"))
            }),
        )
        .await
        .expect("subscribe");
    let original = envelope("order-7", 1)
        .with_correlation_id("corr-1")
        .with_header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
    publish(&bus, &topic, original.clone()).await;

    let letter = next_raw(&mut reader, "dead-letter topic").await;
    let props = properties(&letter);
    let prop = |name: &str| {
        props
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("property {name} missing: {props:?}"))
    };
    assert_eq!(
        letter.payload.data,
        original.payload.to_vec(),
        "original payload"
    );
    assert_eq!(letter.key().as_deref(), Some("order-7"), "message key kept");
    assert_eq!(prop(wire::MESSAGE_ID), original.id.to_string());
    assert_eq!(prop(wire::EVENT_TYPE), "bento.it.ping");
    assert_eq!(prop(wire::CORRELATION_ID), "corr-1");
    assert_eq!(
        prop("traceparent"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(prop(wire::DLQ_FAILURE), "permanent");
    assert_eq!(prop(wire::DLQ_REASON), "no such mailbox: x@y");
    assert_eq!(prop(wire::DLQ_ATTEMPTS), "1");
    assert_eq!(prop(wire::DLQ_ORIGINAL_TOPIC), full_topic);
    assert_eq!(prop(wire::DLQ_SUBSCRIPTION), subscription);
    assert!(
        prop(wire::DLQ_BROKER_MESSAGE_ID).split(':').count() >= 3,
        "broker id like ledger:entry:partition"
    );
    assert!(
        !props.contains_key(wire::ATTEMPT),
        "a dead letter starts a new delivery chain"
    );
    sub.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_republished_to_the_retry_topic_with_a_delivery_time() {
    let bus = common::bus().await;
    let topic = unique("flaky");
    let subscription = unique("retrying");
    let retry_topic = bus.retry_topic(&topic, &subscription);
    assert_eq!(
        retry_topic,
        format!("{}-{subscription}-RETRY", bus.topic_name(&topic))
    );
    let mut reader = raw_reader(&retry_topic).await;
    let attempts = Collector::new();
    let handler = {
        let attempts = attempts.clone();
        move |ctx: Context| {
            attempts.record(&ctx);
            async move {
                if ctx.attempt() < 3 {
                    Err(HandlerError::retryable("not yet"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let spec = SubscriptionSpec::topic(&topic, &subscription)
        .retry(RetryPolicy::exponential(5, Duration::from_millis(1500)).jitter(0.0));
    let sub = bus
        .subscribe(spec, Arc::new(handler))
        .await
        .expect("subscribe");
    let sent = envelope("k", 1);
    publish(&bus, &topic, sent.clone()).await;

    let seen = attempts.wait_for(3, PATIENCE).await;
    assert_eq!(
        seen.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(1500),
        "first backoff kept: {:?}",
        seen[1].at - seen[0].at
    );
    assert!(
        seen[2].at - seen[1].at >= Duration::from_millis(3000),
        "second backoff kept: {:?}",
        seen[2].at - seen[1].at
    );
    assert!(
        seen.iter().all(|c| c.envelope.id == sent.id),
        "the same message each time"
    );

    let first_retry = next_raw(&mut reader, "retry topic").await;
    assert_eq!(
        properties(&first_retry)
            .get(wire::ATTEMPT)
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(
        properties(&first_retry).get(wire::MESSAGE_ID),
        Some(&sent.id.to_string())
    );
    assert!(
        first_retry.metadata().deliver_at_time.is_some(),
        "republished with a delivery time"
    );
    assert_eq!(first_retry.payload.data, sent.payload.to_vec());
    sub.shutdown().await.expect("shutdown");
}

/// Publishes a batch of ten (`b:0`..`b:9`) to `topic` with a batching bus, while a
/// subscription per `spec` handles `b:0` and never finishes the others; stops it once `b:0`
/// is handled, so the others stay unsettled.
async fn handle_only_the_first_of_a_batch(bus: &PulsarBus, topic: &str, spec: &SubscriptionSpec) {
    let handled = Collector::new();
    let handler = {
        let handled = handled.clone();
        move |ctx: Context| {
            let handled = handled.clone();
            async move {
                if body(ctx.envelope()) == "b:0" {
                    handled.record(&ctx);
                    Ok(())
                } else {
                    // Never finishes: the message stays unsettled.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
            }
        }
    };
    let sub = bus
        .subscribe(spec.clone(), Arc::new(handler))
        .await
        .expect("subscribe");
    let batch: Vec<Envelope> = (0..10)
        .map(|seq| {
            Envelope::new(
                "bento.it.ping",
                1,
                "text/plain",
                format!("b:{seq}").into_bytes(),
            )
        })
        .collect();
    bus.publish_batch(batch, PublishOptions::default().to_topic(topic))
        .await
        .expect("publish batch");
    handled.wait_for(1, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.shutdown_within(Duration::from_millis(200))
        .await
        .expect("shutdown");
}

/// A bus whose producer batches, acknowledging batches as `acknowledgement` says.
async fn batching_bus(acknowledgement: BatchAckSetting) -> PulsarBus {
    let mut config = common::config();
    config.producer.batching = true;
    config.producer.batch_max_messages = 100;
    config.producer.batch_max_delay_ms = 50;
    config.producer.compression = Compression::Lz4;
    config.consumer.batch_acknowledgement = acknowledgement;
    common::bus_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_a_batch_are_acknowledged_one_by_one() {
    let bus = batching_bus(BatchAckSetting::ByIndex).await;
    let topic = unique("batched");
    let spec = SubscriptionSpec::topic(&topic, unique("one-by-one"));
    handle_only_the_first_of_a_batch(&bus, &topic, &spec).await;

    let (rest, sub) = Collector::subscribe(&bus, spec).await;
    wait_until("the 9 unacknowledged messages of the batch", || {
        let bodies: HashSet<String> = rest.seen().iter().map(|c| body(&c.envelope)).collect();
        (1..10).all(|seq| bodies.contains(&format!("b:{seq}")))
    })
    .await;
    sub.shutdown().await.expect("shutdown");
}

/// A dead letter that cannot be stored (its topic terminated under the subscription) does not
/// leave the message sitting unacknowledged: after the store's own attempts it is handed back
/// to the broker, comes again, and the consumer goes on with other messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_stored_hands_the_message_back() {
    let bus = common::bus().await;
    let topic = unique("unsettled");
    let dead_letters = unique("unsettled-dlq");
    let spec = SubscriptionSpec::topic(&topic, unique("poisoned"))
        .retry(RetryPolicy::none())
        .dead_letter(DeadLetterPolicy::to_topic(&dead_letters));
    let (poison_calls, good) = (
        Arc::new(std::sync::atomic::AtomicU32::new(0)),
        Collector::new(),
    );
    let handler = {
        let (poison_calls, good) = (poison_calls.clone(), good.clone());
        move |ctx: Context| {
            let (poison_calls, good) = (poison_calls.clone(), good.clone());
            async move {
                if body(ctx.envelope()).starts_with("poison") {
                    poison_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return Err(HandlerError::permanent("poison"));
                }
                good.record(&ctx);
                Ok(())
            }
        }
    };
    let metrics = bento_observability::Metrics::new(Default::default()).expect("metrics");
    let observed = bento_observability::ObservedBus::builder(Arc::new(bus.clone()))
        .metrics(&metrics)
        .build();
    let subscription = spec.name.clone();
    let sub = observed
        .subscribe(spec, Arc::new(handler))
        .await
        .expect("subscribe");
    // The subscription prepared its dead-letter producer; now the topic takes no more.
    let (status, answer) = common::admin(
        "POST",
        &format!("/admin/v2/persistent/public/default/{dead_letters}/terminate"),
        None,
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "terminating {dead_letters}: {status} {answer}"
    );

    publish(&bus, &topic, envelope("poison", 1)).await;
    publish(&bus, &topic, envelope("good", 1)).await;
    good.wait_for(1, PATIENCE).await;
    wait_until("the poison message handed back and delivered again", || {
        poison_calls.load(std::sync::atomic::Ordering::SeqCst) >= 2
    })
    .await;
    publish(&bus, &topic, envelope("good", 2)).await;
    good.wait_for(2, PATIENCE).await;
    sub.shutdown_within(Duration::from_secs(5))
        .await
        .expect("shutdown");
    let exposition = metrics.encode().expect("encode");
    let failures = bento_observability::testing::parse_exposition(&exposition)
        .expect("parse")
        .sum(
            "bento_settle_failures_total",
            &[
                ("backend", "pulsar"),
                ("subscription", subscription.as_str()),
            ],
        );
    assert!(
        failures >= 1.0,
        "the failed settlement is counted:\n{exposition}"
    );
}

/// The dev-env broker takes acknowledgements by batch index, and `auto` finds that out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_asks_the_broker_how_to_acknowledge_batches() {
    let bus = common::bus().await;
    assert_eq!(
        bus.batch_acknowledgement().await,
        BatchAcknowledgement::ByIndex
    );
}

/// Acknowledging whole batches (for brokers without batch-index acknowledgement): a batch
/// whose messages are not all settled is not acknowledged at all, so all of it comes back;
/// once all are settled, nothing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_batches_are_acknowledged_once_all_their_messages_are_settled() {
    let bus = batching_bus(BatchAckSetting::WholeBatch).await;
    assert_eq!(
        bus.batch_acknowledgement().await,
        BatchAcknowledgement::WholeBatch
    );
    let topic = unique("whole-batch");
    let spec = SubscriptionSpec::topic(&topic, unique("whole"));
    handle_only_the_first_of_a_batch(&bus, &topic, &spec).await;

    // All ten come back, the one handled too: its acknowledgement would have been the batch's.
    let (again, sub) = Collector::subscribe(&bus, spec.clone()).await;
    wait_until("the whole batch again", || {
        let bodies: HashSet<String> = again.seen().iter().map(|c| body(&c.envelope)).collect();
        (0..10).all(|seq| bodies.contains(&format!("b:{seq}")))
    })
    .await;
    // Let the acknowledgement of the now settled batch reach the broker.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sub.shutdown().await.expect("shutdown");

    let (third, sub) = Collector::subscribe(&bus, spec).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        third.is_empty(),
        "a settled batch came back: {:?}",
        third
            .seen()
            .iter()
            .map(|c| body(&c.envelope))
            .collect::<Vec<_>>()
    );
    sub.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_payloads_round_trip() {
    for compression in [
        Compression::Lz4,
        Compression::Zstd,
        Compression::Zlib,
        Compression::Snappy,
    ] {
        let mut config = common::config();
        config.producer.compression = compression;
        let bus = common::bus_with(config).await;
        let topic = unique("compressed");
        let (collector, sub) =
            Collector::subscribe(&bus, SubscriptionSpec::topic(&topic, unique("reader"))).await;
        let payload = "compress me ".repeat(100);
        let sent = Envelope::new(
            "bento.it.ping",
            1,
            "text/plain",
            payload.clone().into_bytes(),
        );
        publish(&bus, &topic, sent).await;
        let got = collector.wait_for(1, PATIENCE).await;
        assert_eq!(body(&got[0].envelope), payload, "{compression:?}");
        sub.shutdown().await.expect("shutdown");
        bus.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_topic_carries_several_event_types() {
    let mut config = common::config();
    let shared = unique("all-events");
    config.topics.shared = Some(shared.clone());
    let bus = common::bus_with(config).await;
    assert_eq!(bus.topic_for("a.created"), bus.topic_name(&shared));
    assert_eq!(bus.topic_for("b.created"), bus.topic_name(&shared));
    let spec = SubscriptionSpec::event_type("a.created", unique("a-only"))
        .dead_letter(DeadLetterPolicy::to_topic(unique("shared-dlq")));
    let dead_letter_topic = spec.dead_letter.topic.clone().expect("explicit");
    let (dead, dlq_sub) = Collector::subscribe(
        &bus,
        SubscriptionSpec::topic(dead_letter_topic, unique("dlq")),
    )
    .await;
    let (only_a, sub) = Collector::subscribe(&bus, spec).await;
    for (event_type, n) in [
        ("b.created", 1),
        ("a.created", 2),
        ("b.created", 3),
        ("a.created", 4),
    ] {
        let envelope = Envelope::new(event_type, 1, "text/plain", format!("{n}").into_bytes());
        bus.publish(envelope, PublishOptions::default())
            .await
            .expect("publish");
    }
    let seen = only_a.wait_for(2, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> = only_a.seen().iter().map(|c| body(&c.envelope)).collect();
    assert_eq!(bodies, vec!["2", "4"], "only a.created, in order");
    assert!(seen.iter().all(|c| c.envelope.event_type == "a.created"));
    assert!(
        dead.is_empty(),
        "other event types are skipped, not dead-lettered"
    );
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
}

const TEST_TENANT: &str = "bento-it-tenant";

async fn ensure_tenant() {
    let (status, text) = common::admin(
        "PUT",
        &format!("/admin/v2/tenants/{TEST_TENANT}"),
        Some(r#"{"allowedClusters":["standalone"]}"#.into()),
    )
    .await;
    assert!(
        matches!(status, 204 | 409),
        "creating tenant {TEST_TENANT}: {status} {text}"
    );
    let (status, text) = common::admin(
        "PUT",
        &format!("/admin/v2/namespaces/{TEST_TENANT}/default"),
        None,
    )
    .await;
    assert!(
        matches!(status, 204 | 409),
        "creating namespace {TEST_TENANT}/default: {status} {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_tenant_picks_the_pulsar_tenant() {
    ensure_tenant().await;
    let mut config = common::config();
    config.tenant_from_envelope = true;
    let bus = common::bus_with(config).await;
    let topic = unique("tenanted");
    let tenant_topic = format!("persistent://{TEST_TENANT}/default/{topic}");
    let (in_tenant, sub_tenant) = Collector::subscribe(
        &bus,
        SubscriptionSpec::topic(&tenant_topic, unique("tenant-reader")),
    )
    .await;
    let (in_default, sub_default) = Collector::subscribe(
        &bus,
        SubscriptionSpec::topic(&topic, unique("default-reader")),
    )
    .await;

    publish(
        &bus,
        &topic,
        envelope("acme-order", 1).with_tenant(TEST_TENANT),
    )
    .await;
    publish(&bus, &topic, envelope("untenanted", 1)).await;
    let got = in_tenant.wait_for(1, PATIENCE).await;
    assert_eq!(body(&got[0].envelope), "acme-order:1");
    assert_eq!(got[0].envelope.tenant.as_deref(), Some(TEST_TENANT));
    let got = in_default.wait_for(1, PATIENCE).await;
    assert_eq!(body(&got[0].envelope), "untenanted:1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(in_tenant.len(), 1, "nothing else in the tenant's topic");
    assert_eq!(
        in_default.len(),
        1,
        "the tenant's message did not land in public/default"
    );

    let (status, topics) = common::admin(
        "GET",
        &format!("/admin/v2/persistent/{TEST_TENANT}/default"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{topics}");
    assert!(
        topics.contains(&tenant_topic),
        "the broker lists {tenant_topic}: {topics}"
    );
    sub_tenant.shutdown().await.expect("shutdown");
    sub_default.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_gives_a_connection_error_within_the_timeout() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let url = format!("pulsar://127.0.0.1:{port}");
    let config = PulsarConfig {
        service_url: url.clone(),
        connect_timeout_ms: 2_000,
        ..PulsarConfig::default()
    };
    let started = Instant::now();
    let result = PulsarBus::connect(config).await;
    let took = started.elapsed();
    match result {
        Err(BusError::Connection {
            backend,
            address,
            source: reason,
        }) => {
            assert_eq!(backend, "pulsar");
            assert_eq!(address, url);
            assert!(!reason.to_string().is_empty());
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(4),
        "gave up after {took:?}, the timeout is 2s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_gives_a_connection_error_within_the_timeout() {
    // Accepts connections and never answers, like a hung broker or a black-holed route.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("pulsar://127.0.0.1:{port}");
    let config = PulsarConfig {
        service_url: url.clone(),
        connect_timeout_ms: 1_500,
        ..PulsarConfig::default()
    };
    let started = Instant::now();
    let error = PulsarBus::connect(config)
        .await
        .expect_err("nothing answers");
    let took = started.elapsed();
    let text = error.to_string();
    assert!(matches!(error, BusError::Connection { .. }), "{error:?}");
    assert!(text.contains(&url), "the error names the URL: {text}");
    assert!(
        took < Duration::from_secs(3),
        "gave up after {took:?}, the timeout is 1.5s"
    );
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_refused_with_the_key() {
    let config = PulsarConfig {
        service_url: "localhost:6650".into(),
        ..PulsarConfig::default()
    };
    let error = PulsarBus::connect(config).await.expect_err("invalid URL");
    assert!(
        error
            .to_string()
            .contains("messaging.pulsar.service_url: must start with pulsar:// or pulsar+ssl://"),
        "{error}"
    );
}

/// The quiet probe of Bento's consumer (a consumer that received nothing for a while asks the
/// broker for its stats, and is re-created when the broker does not know it) must not take a
/// live consumer for a lost one: the broker answers for a consumer it knows, idle or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_answers_the_quiet_probe_for_a_live_idle_consumer() {
    common::share_broker();
    let topic = format!("persistent://public/default/{}", unique("quiet-probe"));
    let mut consumer = raw_reader(&topic).await;
    for round in 1..=2 {
        let stats = tokio::time::timeout(PATIENCE, consumer.get_stats())
            .await
            .unwrap_or_else(|_| panic!("no stats answer within {PATIENCE:?} (round {round})"));
        let stats = stats
            .unwrap_or_else(|e| panic!("the broker refused the stats of a live consumer: {e}"));
        assert_eq!(stats.len(), 1, "one answer for one topic");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
