//! Kafka-specific behaviour, against the real broker: partitions split across a group, commits
//! that never pass an unfinished record, retry-topic delays, dead-letter content, rebalances.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bento_application::{
    Bus, Context, DeadLetterPolicy, HandlerError, MessageBus, PublishOptions, RetryPolicy,
    SubscriptionKind, SubscriptionSpec, wire,
};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_kafka::{KafkaBus, KafkaConfig, headers};
use bento_testkit::Collector;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tick {
    key: String,
    seq: u32,
}

impl DomainEvent for Tick {
    const EVENT_TYPE: &'static str = "bento.kafka-test.tick";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "ticker";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

fn tick(key: &str, seq: u32) -> Tick {
    Tick {
        key: key.to_owned(),
        seq,
    }
}

fn id(tick: &Tick) -> String {
    format!("{}-{}", tick.key, tick.seq)
}

async fn bus() -> (KafkaBus, Bus<Json>) {
    common::share_broker();
    let kafka = common::connect(common::config()).await;
    let bus = Bus::new(Arc::new(kafka.clone()) as Arc<dyn MessageBus>, Json);
    (kafka, bus)
}

async fn publish_all(bus: &Bus<Json>, topic: &str, events: &[Tick]) {
    for chunk in events.chunks(200) {
        let envelopes = chunk
            .iter()
            .map(|e| bus.envelope(e).unwrap_or_else(|e| panic!("encode: {e}")))
            .collect();
        bus.message_bus()
            .publish_batch(envelopes, PublishOptions::default().to_topic(topic))
            .await
            .unwrap_or_else(|e| panic!("publishing to {topic}: {e}"));
    }
}

fn decode(ctx: &Context) -> Tick {
    serde_json::from_slice(&ctx.envelope().payload).unwrap_or_else(|e| panic!("not a Tick: {e}"))
}

async fn eventually(what: &str, patience: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two consumers of one group split a 4-partition topic; every key still arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_partitions_and_keep_key_order() {
    let (kafka, bus) = bus().await;
    let topic = common::unique("split");
    let spec = SubscriptionSpec::topic(&topic, common::unique("group"))
        .concurrency(4)
        .competing();
    type Seen = Arc<Mutex<BTreeMap<String, Vec<u32>>>>;
    let make = |seen: Seen, count: Arc<AtomicUsize>| {
        move |ctx: Context| {
            let (seen, count) = (seen.clone(), count.clone());
            async move {
                let t = decode(&ctx);
                if let Ok(mut seen) = seen.lock() {
                    seen.entry(t.key.clone()).or_default().push(t.seq);
                }
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let seen: Seen = Arc::default();
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sub_a = bus
        .subscribe_envelopes(spec.clone(), make(seen.clone(), a.clone()))
        .await
        .expect("subscribe a");
    let sub_b = bus
        .subscribe_envelopes(spec, make(seen.clone(), b.clone()))
        .await
        .expect("subscribe b");
    let info = kafka
        .admin()
        .describe_topic(&topic)
        .await
        .expect("describe");
    assert_eq!(info.partitions.len(), 4, "topic created with 4 partitions");

    let events: Vec<Tick> = (0..400)
        .map(|i| tick(&format!("key-{}", i % 20), i / 20))
        .collect();
    publish_all(&bus, &topic, &events).await;
    eventually("all 400 messages", Duration::from_secs(30), || {
        a.load(Ordering::SeqCst) + b.load(Ordering::SeqCst) >= 400
    })
    .await;
    let (got_a, got_b) = (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst));
    assert!(
        got_a > 0 && got_b > 0,
        "both consumers got partitions: {got_a} / {got_b}"
    );
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 20);
    for (key, seqs) in seen {
        assert_eq!(seqs, (0..20).collect::<Vec<u32>>(), "order of {key}");
    }
    sub_a.shutdown().await.expect("shutdown a");
    sub_b.shutdown().await.expect("shutdown b");
}

/// The committed offset stops at the oldest unfinished record, however many after it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_never_skip_an_unfinished_message() {
    let (kafka, bus) = bus().await;
    let topic = common::unique("commit");
    let group = common::unique("group");
    // One partition, so the slow record and the fast ones share it.
    kafka
        .admin()
        .create_topics(std::slice::from_ref(&topic), 1)
        .await
        .expect("create topic");
    let gate = Arc::new(Notify::new());
    let done = Collector::new();
    let handler = {
        let (gate, done) = (gate.clone(), done.clone());
        move |ctx: Context| {
            let (gate, done) = (gate.clone(), done.clone());
            async move {
                if decode(&ctx).key == "slow" {
                    gate.notified().await;
                }
                done.record(&ctx);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(&topic, &group).concurrency(4),
            handler,
        )
        .await
        .expect("subscribe");
    let mut events = vec![tick("slow", 0)];
    events.extend((0..9).map(|i| tick(&format!("fast-{i}"), 0)));
    publish_all(&bus, &topic, &events).await;
    done.wait_for(9, Duration::from_secs(30)).await;
    // Several commit intervals pass while the first record is still being handled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lag = kafka.admin().group_lag(&group, &topic).await.expect("lag");
    assert_eq!(lag.len(), 1);
    assert_eq!(lag[0].high_watermark, 10);
    assert_eq!(
        lag[0].committed,
        Some(0),
        "9 later records finished, but the commit stays at the unfinished offset 0"
    );
    gate.notify_one();
    done.wait_for(10, Duration::from_secs(30)).await;
    let mut committed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed != Some(10) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        committed = kafka.admin().group_lag(&group, &topic).await.expect("lag")[0].committed;
    }
    assert_eq!(
        committed,
        Some(10),
        "everything committed once the slow record finished"
    );
    sub.shutdown().await.expect("shutdown");
}

/// With `create_topics = false`, a subscription whose dead-letter topic does not exist fails
/// when it starts, naming the topic, instead of at its first poison message; once the topic
/// exists it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_topic_is_an_error_at_subscribe() {
    common::share_broker();
    let mut config = common::config();
    config.create_topics = false;
    let kafka = common::connect(config).await;
    let bus = Bus::new(Arc::new(kafka.clone()) as Arc<dyn MessageBus>, Json);
    let topic = common::unique("no-dlq");
    let dlq = common::unique("missing-dlq");
    kafka
        .admin()
        .create_topics(
            &[topic.clone(), bento_kafka::topics::delayed_topic(&topic)],
            1,
        )
        .await
        .expect("create the event topics");
    let spec = SubscriptionSpec::topic(&topic, common::unique("group"))
        .retry(RetryPolicy::none())
        .dead_letter(DeadLetterPolicy::to_topic(&dlq));
    let refused = bus
        .subscribe_envelopes(spec.clone(), Collector::new().handler())
        .await
        .err()
        .unwrap_or_else(|| panic!("subscribed although `{dlq}` does not exist"));
    let text = refused.to_string();
    assert!(text.contains(&dlq), "the error names the topic: {text}");
    assert!(text.contains("create_topics"), "and the setting: {text}");

    kafka
        .admin()
        .create_topics(std::slice::from_ref(&dlq), 1)
        .await
        .expect("create the dead-letter topic");
    let sub = bus
        .subscribe_envelopes(spec, Collector::new().handler())
        .await
        .expect("subscribes once the topic exists");
    sub.shutdown().await.expect("shutdown");
}

/// A retry parked in a higher tier survives a restart with fewer attempts configured: the
/// subscription still reads every tier that exists, and the parked record is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_max_attempts_does_not_strand_parked_retries() {
    let (_kafka, bus) = bus().await;
    let topic = common::unique("tiers");
    let group = common::unique("group");
    let dead_letters = DeadLetterPolicy::to_topic(common::unique("dlq"));
    // Three tiers; attempt 2 fails too, so the record waits 3 s in tier 2.
    let policy = RetryPolicy {
        multiplier: 15.0,
        ..RetryPolicy::exponential(4, Duration::from_millis(200)).jitter(0.0)
    };
    let before = SubscriptionSpec::topic(&topic, &group)
        .retry(policy)
        .dead_letter(dead_letters.clone());
    let failing = Collector::new();
    let handler = {
        let failing = failing.clone();
        move |ctx: Context| {
            failing.record(&ctx);
            async { Err::<(), _>(HandlerError::retryable("not yet")) }
        }
    };
    let sub = bus
        .subscribe_envelopes(before, handler)
        .await
        .expect("subscribe");
    publish_all(&bus, &topic, &[tick("parked", 0)]).await;
    failing.wait_for(2, Duration::from_secs(30)).await;
    // The second failure's retry is stored in tier 2 before the attempt is acknowledged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sub.shutdown().await.expect("shutdown");
    let tier_two = bento_kafka::topics::retry_topic(&topic, &group, 2);

    // Now one retry tier only: tier 2 is read all the same.
    let after = SubscriptionSpec::topic(&topic, &group)
        .retry(RetryPolicy::exponential(2, Duration::from_millis(200)).jitter(0.0))
        .dead_letter(dead_letters);
    let handled = Collector::new();
    let sub = bus
        .subscribe_envelopes(after, handled.handler())
        .await
        .expect("resubscribe");
    let seen = handled.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(
        seen[0].attempt, 3,
        "the record parked in {tier_two} was delivered as its third attempt"
    );
    sub.shutdown().await.expect("shutdown");
}

/// Retries wait in the retry topics for their backoff, without holding up other messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_topic_delays_are_respected() {
    let (kafka, bus) = bus().await;
    let topic = common::unique("retry");
    let group = common::unique("group");
    // The messages published after the first attempt must be handled before the first retry:
    // a 2 s backoff gives that round trip to the real broker room on a loaded machine (with
    // 1 s it had less than that).
    let policy = RetryPolicy::exponential(3, Duration::from_millis(2000)).jitter(0.0);
    let spec = SubscriptionSpec::topic(&topic, &group)
        .concurrency(2)
        .retry(policy)
        .dead_letter(DeadLetterPolicy::to_topic(common::unique("dlq")));
    let attempts = Collector::new();
    let others = Collector::new();
    let handler = {
        let (attempts, others) = (attempts.clone(), others.clone());
        move |ctx: Context| {
            let (attempts, others) = (attempts.clone(), others.clone());
            async move {
                if decode(&ctx).key != "flaky" {
                    others.record(&ctx);
                    return Ok(());
                }
                attempts.record(&ctx);
                if ctx.attempt() < 3 {
                    Err(HandlerError::retryable("not yet"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let sub = bus
        .subscribe_envelopes(spec, handler)
        .await
        .expect("subscribe");
    publish_all(&bus, &topic, &[tick("flaky", 0)]).await;
    attempts.wait_for(1, Duration::from_secs(30)).await;
    publish_all(&bus, &topic, &[tick("calm", 0), tick("calm", 1)]).await;
    let calm = others.wait_for(2, Duration::from_secs(30)).await;
    let seen = attempts.wait_for(3, Duration::from_secs(30)).await;
    let numbers: Vec<u32> = seen.iter().map(|c| c.attempt).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    let first_gap = seen[1].at - seen[0].at;
    let second_gap = seen[2].at - seen[1].at;
    assert!(
        first_gap >= Duration::from_millis(2000),
        "first retry after {first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(4000),
        "second retry after {second_gap:?}"
    );
    assert!(
        calm.iter().all(|c| c.at < seen[1].at),
        "other messages were handled while the retry waited"
    );
    for tier in [1, 2] {
        let retry_topic = bento_kafka::topics::retry_topic(&topic, &group, tier);
        let info = kafka
            .admin()
            .describe_topic(&retry_topic)
            .await
            .expect("describe");
        let stored: i64 = info.partitions.iter().map(|p| p.high_watermark).sum();
        assert_eq!(stored, 1, "one record in {retry_topic}");
    }
    sub.shutdown().await.expect("shutdown");
}

/// A dead letter keeps payload, key and headers, adds the failure and the original partition
/// and offset, and is readable with a plain Kafka client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_content() {
    let (kafka, bus) = bus().await;
    let topic = common::unique("dead");
    let group = common::unique("group");
    let dlq = common::unique("dead-dlq");
    kafka
        .admin()
        .create_topics(std::slice::from_ref(&dlq), 1)
        .await
        .expect("create dlq");
    let spec =
        SubscriptionSpec::topic(&topic, &group).dead_letter(DeadLetterPolicy::to_topic(&dlq));
    let sub = bus
        .subscribe_envelopes(spec, |_: Context| async {
            Err::<(), _>(HandlerError::permanent("unparseable address"))
        })
        .await
        .expect("subscribe");
    let sent = bus
        .envelope(&tick("dead-key", 7))
        .expect("encode")
        .with_correlation_id("corr-9")
        .with_header("x-trace", "abc");
    bus.message_bus()
        .publish(sent.clone(), PublishOptions::default().to_topic(&topic))
        .await
        .expect("publish");

    // Read the dead-letter topic with librdkafka alone, as another service would.
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", common::bootstrap())
        .set("group.id", common::unique("raw-reader"))
        .set("auto.offset.reset", "earliest");
    let reader: BaseConsumer = config.create().expect("raw consumer");
    reader.subscribe(&[dlq.as_str()]).expect("raw subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        assert!(Instant::now() < deadline, "no dead letter within 30s");
        if let Some(result) = reader.poll(Duration::from_millis(200)) {
            break result.expect("raw poll").detach();
        }
    };
    assert_eq!(
        record.key(),
        Some(&b"dead-key"[..]),
        "record key is the ordering key"
    );
    assert_eq!(
        record.payload(),
        Some(&sent.payload[..]),
        "original payload"
    );
    let mut found = BTreeMap::new();
    if let Some(h) = record.headers() {
        for header in h.iter() {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned());
            found.insert(header.key.to_owned(), value.unwrap_or_default());
        }
    }
    let get = |name: &str| {
        found
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("header {name} missing: {found:?}"))
    };
    assert_eq!(get(wire::MESSAGE_ID), sent.id.to_string());
    assert_eq!(get(wire::EVENT_TYPE), Tick::EVENT_TYPE);
    assert_eq!(get(wire::CORRELATION_ID), "corr-9");
    assert_eq!(get("x-trace"), "abc");
    assert_eq!(get(wire::DLQ_FAILURE), "permanent");
    assert_eq!(get(wire::DLQ_REASON), "unparseable address");
    assert_eq!(get(wire::DLQ_ATTEMPTS), "1");
    assert_eq!(get(wire::DLQ_ORIGINAL_TOPIC), topic);
    assert_eq!(get(wire::DLQ_SUBSCRIPTION), group);
    let partition: i32 = get(headers::DLQ_ORIGINAL_PARTITION)
        .parse()
        .expect("partition");
    assert_eq!(
        get(headers::DLQ_ORIGINAL_OFFSET),
        "0",
        "first record of its partition"
    );
    assert_eq!(
        get(wire::DLQ_BROKER_MESSAGE_ID),
        format!("{topic}/{partition}/0"),
        "broker id is topic/partition/offset"
    );
    assert!(!found.contains_key(headers::DELIVER_AT));
    sub.shutdown().await.expect("shutdown");
}

/// A second consumer joins while the first is busy: every message is still handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_during_processing_loses_nothing() {
    let (_kafka, bus) = bus().await;
    let topic = common::unique("rebalance");
    // Slow enough (10 ms, 2 at a time) that the stream is far from done when B joins.
    let spec = SubscriptionSpec::topic(&topic, common::unique("group"))
        .concurrency(2)
        .competing();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let make = |count: Arc<AtomicUsize>| {
        let seen = seen.clone();
        move |ctx: Context| {
            let (seen, count) = (seen.clone(), count.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Ok(mut seen) = seen.lock() {
                    seen.insert(id(&decode(&ctx)));
                }
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub_a = bus
        .subscribe_envelopes(spec.clone(), make(a.clone()))
        .await
        .expect("subscribe a");
    let total = 3000u32;
    let events: Vec<Tick> = (0..total)
        .map(|i| tick(&format!("k{}", i % 50), i / 50))
        .collect();
    let publisher = {
        let (bus, topic) = (bus.clone(), topic.clone());
        tokio::spawn(async move { publish_all(&bus, &topic, &events).await })
    };
    eventually(
        "the first consumer to be busy",
        Duration::from_secs(30),
        || a.load(Ordering::SeqCst) >= 300,
    )
    .await;
    let sub_b = bus
        .subscribe_envelopes(spec, make(b.clone()))
        .await
        .expect("subscribe b");
    publisher.await.expect("publisher");
    let count = || seen.lock().map(|s| s.len()).unwrap_or(0);
    eventually("every message handled", Duration::from_secs(60), || {
        count() >= total as usize
    })
    .await;
    assert_eq!(count(), total as usize);
    assert!(
        b.load(Ordering::SeqCst) > 0,
        "the joining consumer took over partitions"
    );
    sub_a.shutdown().await.expect("shutdown a");
    sub_b.shutdown().await.expect("shutdown b");
}

/// An unreachable broker fails `connect` with a connection error within the timeout.
#[tokio::test]
async fn unreachable_broker_fails_connect_in_time() {
    let mut config = KafkaConfig::new("127.0.0.1:1");
    config.connect_timeout_ms = 2000;
    let started = Instant::now();
    let error = KafkaBus::connect(config).await.err().map(|e| e.to_string());
    let error = error.unwrap_or_else(|| panic!("connecting to a closed port succeeded"));
    assert!(
        error.contains("cannot reach the kafka broker at 127.0.0.1:1"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
}

/// Exclusive subscriptions are refused with the reason; failover maps to a consumer group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_is_unsupported_failover_is_a_group() {
    let (_kafka, bus) = bus().await;
    let topic = common::unique("kinds");
    let spec = SubscriptionSpec::topic(&topic, common::unique("group"));
    let refused = bus
        .subscribe_envelopes(
            spec.clone().kind(SubscriptionKind::Exclusive),
            |_: Context| async { Ok::<(), HandlerError>(()) },
        )
        .await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("does not support exclusive subscription"),
        "{error}"
    );
    let collector = Collector::new();
    let sub = bus
        .subscribe_envelopes(spec.kind(SubscriptionKind::Failover), collector.handler())
        .await
        .expect("failover subscribe");
    publish_all(&bus, &topic, &[tick("f", 1)]).await;
    collector.wait_for(1, Duration::from_secs(30)).await;
    sub.shutdown().await.expect("shutdown");
}

/// A message delayed by a second is not held back by one delayed by an hour ahead of it in
/// the same partition of the delayed topic; the hour-long one stays parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_delay_is_not_held_back_by_a_long_one() {
    let (_kafka, bus) = bus().await;
    let topic = common::unique("mixed-delays");
    let seen = Collector::new();
    let sub = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(&topic, common::unique("patient")),
            {
                let seen = seen.clone();
                move |ctx: Context| {
                    seen.record(&ctx);
                    async { Ok::<(), HandlerError>(()) }
                }
            },
        )
        .await
        .expect("subscribe");
    // Same key: the same partition of `<topic>.delayed`, the long one first.
    for (seq, delay) in [(0, Duration::from_secs(3600)), (1, Duration::from_secs(1))] {
        bus.publish_with(
            &tick("k", seq),
            PublishOptions::deliver_after(delay).to_topic(&topic),
        )
        .await
        .expect("publish delayed");
    }
    let sent = Instant::now();
    let got = seen.wait_for(1, Duration::from_secs(30)).await;
    let first: Tick = serde_json::from_slice(&got[0].envelope.payload).expect("a Tick");
    assert_eq!(first.seq, 1, "the one-second message came first");
    assert!(
        got[0].at - sent < Duration::from_secs(20),
        "and soon: after {:?}",
        got[0].at - sent
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(seen.len(), 1, "the hour-long one is still waiting");
    sub.shutdown().await.expect("shutdown");
}

/// A dead letter the broker refuses (here: larger than its topic allows) leaves its record
/// unfinished, so the commit point does not pass it, while the records behind it are handled;
/// the failure is reported to the subscription's hook; and once the topic takes it, the dead
/// letter is stored in the background and the commit point moves on, with nothing restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_stored_is_stored_once_it_can() {
    use rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };
    use rdkafka::client::DefaultClientContext;

    let (kafka, bus) = bus().await;
    let topic = common::unique("unstorable");
    let dlq = common::unique("small-dlq");
    let group = common::unique("group");
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::bootstrap())
        .create()
        .expect("admin client");
    let options = AdminOptions::new();
    let created = admin
        .create_topics(
            &[
                NewTopic::new(&topic, 1, TopicReplication::Fixed(1)),
                NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "256"),
            ],
            &options,
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let failures = Arc::new(AtomicUsize::new(0));
    let handled = Collector::new();
    let handler = {
        let handled = handled.clone();
        move |ctx: Context| {
            let poison = decode(&ctx).key.starts_with("poison");
            if !poison {
                handled.record(&ctx);
            }
            async move {
                if poison {
                    Err(HandlerError::permanent("poison"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let sub = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(&topic, &group)
                .concurrency(4)
                .retry(RetryPolicy::none())
                .dead_letter(DeadLetterPolicy::to_topic(&dlq))
                .on_settle_failure({
                    let failures = failures.clone();
                    move |_| {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }),
            handler,
        )
        .await
        .expect("subscribe");
    let mut events = vec![tick(&format!("poison-{}", "x".repeat(400)), 0)];
    events.extend((0..9).map(|i| tick(&format!("fine-{i}"), 0)));
    publish_all(&bus, &topic, &events).await;
    handled.wait_for(9, Duration::from_secs(30)).await;
    eventually(
        "the failed dead letter to be reported",
        Duration::from_secs(30),
        || failures.load(Ordering::SeqCst) >= 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lag = kafka.admin().group_lag(&group, &topic).await.expect("lag");
    assert_eq!(
        lag[0].committed.unwrap_or(0),
        0,
        "the commit point waits at the record whose dead letter is not stored"
    );

    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&dlq)).set("max.message.bytes", "1048576");
    let altered = admin
        .alter_configs(&[alter], &options)
        .await
        .expect("alter the dead-letter topic");
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    let mut committed = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed != Some(10) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        committed = kafka.admin().group_lag(&group, &topic).await.expect("lag")[0].committed;
    }
    assert_eq!(
        committed,
        Some(10),
        "committed past it once the dead letter was stored"
    );
    let stored: i64 = kafka
        .admin()
        .describe_topic(&dlq)
        .await
        .expect("describe")
        .partitions
        .iter()
        .map(|p| p.high_watermark)
        .sum();
    assert_eq!(stored, 1, "one dead letter in {dlq}");
    sub.shutdown().await.expect("shutdown");
}
