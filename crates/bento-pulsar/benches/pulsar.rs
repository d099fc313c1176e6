//! The raw `pulsar` crate against Bento's Pulsar bus, on the dev-env broker
//! (`BENTO_TEST_PULSAR_URL`, default `pulsar://127.0.0.1:6650`).
//!
//! `cargo bench -p bento-pulsar` publishes and consumes 100,000 messages of 1 KiB each way
//! (`BENTO_BENCH_MESSAGES` changes the count) with the same producer settings on both sides,
//! and prints a table. Each side runs in 5 alternating rounds. Under `cargo test` it runs once with 2,000 messages as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bento_application::{
    Context, HandlerError, MessageBus, PublishOptions, SubscriptionSpec, wire,
};
use bento_domain::Envelope;
use bento_pulsar::{Compression, PulsarBus, PulsarConfig};
use bytes::Bytes;
use futures::StreamExt;
use pulsar::compression::{Compression as RawCompression, CompressionLz4};
use pulsar::consumer::InitialPosition;
use pulsar::producer::Message;
use pulsar::{ConsumerOptions, ProducerOptions, SubType, TokioExecutor};
use tokio::sync::Notify;

type Client = pulsar::Pulsar<TokioExecutor>;

const PAYLOAD: usize = 1024;
/// Messages handed over before waiting for their receipts, on both sides.
const WINDOW: usize = 1000;
const KEYS: usize = 100;
/// Each side's messages are measured in this many rounds, the two sides alternating.
const ROUNDS: usize = 5;

struct Setup {
    name: &'static str,
    batching: bool,
    compression: Compression,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let messages = std::env::var("BENTO_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benchmarking { 100_000 } else { 2_000 });
    common::share_broker();
    let client = common::raw_client().await;
    let setups = [
        Setup {
            name: "batching + lz4",
            batching: true,
            compression: Compression::Lz4,
        },
        Setup {
            name: "no batching",
            batching: false,
            compression: Compression::None,
        },
    ];
    println!(
        "{messages} messages of {PAYLOAD} bytes, {KEYS} keys, windows of {WINDOW}; broker {}",
        common::pulsar_url()
    );
    println!(
        "{:<16} {:<10} {:>12} {:>12} {:>7}",
        "setup", "side", "raw msg/s", "bento msg/s", "ratio"
    );
    for setup in &setups {
        let config = config(setup);
        let bus = common::connect(config.clone()).await;

        // Warm both paths (connections, topic creation, the broker's JIT), then measure in
        // alternating rounds, so that load from elsewhere on the machine hits both sides alike.
        let warm = common::unique("warm");
        raw_produce(&client, &config, &warm, messages.min(5_000)).await;
        bento_produce(&bus, &warm, messages.min(5_000)).await;
        let per_round = messages / ROUNDS;
        let (mut raw, mut bento) = (Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            let raw_topic = common::unique("raw-produce");
            let bento_topic = common::unique("bento-produce");
            if round % 2 == 0 {
                raw += raw_produce(&client, &config, &raw_topic, per_round).await;
                bento += bento_produce(&bus, &bento_topic, per_round).await;
            } else {
                bento += bento_produce(&bus, &bento_topic, per_round).await;
                raw += raw_produce(&client, &config, &raw_topic, per_round).await;
            }
        }
        row(setup.name, "produce", per_round * ROUNDS, raw, bento);

        for concurrency in [1, 8] {
            let (mut raw, mut bento) = (Duration::ZERO, Duration::ZERO);
            for round in 0..ROUNDS {
                if round % 2 == 0 {
                    raw += raw_consume(&client, &config, per_round).await;
                    bento += bento_consume(&client, &bus, &config, per_round, concurrency).await;
                } else {
                    bento += bento_consume(&client, &bus, &config, per_round, concurrency).await;
                    raw += raw_consume(&client, &config, per_round).await;
                }
            }
            row(
                setup.name,
                &format!("consume c={concurrency}"),
                per_round * ROUNDS,
                raw,
                bento,
            );
        }
        bus.close().await.expect("closing the bus");
    }
}

fn row(setup: &str, side: &str, messages: usize, raw: Duration, bento: Duration) {
    let rate = |d: Duration| messages as f64 / d.as_secs_f64();
    println!(
        "{setup:<16} {side:<13} {:>12.0} {:>12.0} {:>7.2}",
        rate(raw),
        rate(bento),
        rate(bento) / rate(raw)
    );
}

fn config(setup: &Setup) -> PulsarConfig {
    let mut config = common::config();
    config.producer.batching = setup.batching;
    config.producer.compression = setup.compression;
    config
}

/// The producer options `PulsarBus` derives from `config`, for the raw side.
fn raw_options(config: &PulsarConfig) -> ProducerOptions {
    let compression = match config.producer.compression {
        Compression::Lz4 => RawCompression::Lz4(CompressionLz4::default()),
        _ => RawCompression::None,
    };
    let mut options = ProducerOptions {
        compression: Some(compression),
        block_queue_if_full: true,
        ..ProducerOptions::default()
    };
    if config.producer.batching {
        options.batch_size = Some(config.producer.batch_max_messages);
        options.batch_byte_size = Some(config.producer.batch_max_bytes);
        options.batch_timeout = Some(Duration::from_millis(config.producer.batch_max_delay_ms));
    }
    options
}

fn envelope(payload: &Bytes, seq: usize) -> Envelope {
    Envelope::new(
        "bench.event",
        1,
        "application/octet-stream",
        payload.clone(),
    )
    .with_aggregate("bench", format!("key-{}", seq % KEYS))
    .with_ordering_key(format!("key-{}", seq % KEYS))
}

/// The raw side sends what Bento sends: the same payload, key and properties.
fn raw_message(payload: &[u8], properties: &HashMap<String, String>, seq: usize) -> Message {
    Message {
        payload: payload.to_vec(),
        properties: properties.clone(),
        partition_key: Some(format!("key-{}", seq % KEYS)),
        event_time: Some(1),
        ..Message::default()
    }
}

fn sample_properties(payload: &Bytes) -> HashMap<String, String> {
    wire::to_headers(&envelope(payload, 0))
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v))
        .collect()
}

async fn raw_produce(
    client: &Client,
    config: &PulsarConfig,
    topic: &str,
    messages: usize,
) -> Duration {
    let topic = common::topic_name(topic);
    let mut producer = client
        .producer()
        .with_topic(&topic)
        .with_name(format!("bench-{}", uuid::Uuid::now_v7().simple()))
        .with_options(raw_options(config))
        .build()
        .await
        .expect("raw producer");
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let properties = sample_properties(&payload);
    let started = Instant::now();
    let mut seq = 0;
    while seq < messages {
        let end = (seq + WINDOW).min(messages);
        let mut receipts = Vec::with_capacity(WINDOW);
        for n in seq..end {
            receipts.push(
                producer
                    .send_non_blocking(raw_message(&payload, &properties, n))
                    .await
                    .expect("raw send"),
            );
        }
        for receipt in futures::future::join_all(receipts).await {
            receipt.expect("raw receipt");
        }
        seq = end;
    }
    let took = started.elapsed();
    producer.close().await.expect("closing the raw producer");
    took
}

async fn bento_produce(bus: &PulsarBus, topic: &str, messages: usize) -> Duration {
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let started = Instant::now();
    let mut seq = 0;
    while seq < messages {
        let end = (seq + WINDOW).min(messages);
        let batch = (seq..end).map(|n| envelope(&payload, n)).collect();
        bus.publish_batch(batch, PublishOptions::default().to_topic(topic))
            .await
            .expect("bento publish_batch");
        seq = end;
    }
    started.elapsed()
}

/// Creates `subscription` on a fresh topic, then fills the topic with `messages` (written like
/// Bento writes them), so that the consumer under test starts with a full backlog.
async fn backlog(
    client: &Client,
    config: &PulsarConfig,
    subscription: &str,
    messages: usize,
) -> String {
    let topic = common::topic_name(&common::unique("backlog"));
    let consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription(subscription)
        .with_subscription_type(SubType::Shared)
        .build()
        .await
        .expect("creating the subscription");
    drop(consumer);
    raw_fill(client, config, &topic, messages).await;
    topic
}

async fn raw_fill(client: &Client, config: &PulsarConfig, topic: &str, messages: usize) {
    let mut producer = client
        .producer()
        .with_topic(topic)
        .with_options(raw_options(config))
        .build()
        .await
        .expect("filling producer");
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let properties = sample_properties(&payload);
    let mut receipts = Vec::with_capacity(messages);
    for n in 0..messages {
        let mut message = raw_message(&payload, &properties, n);
        message
            .properties
            .insert(wire::MESSAGE_ID.into(), uuid::Uuid::now_v7().to_string());
        receipts.push(
            producer
                .send_non_blocking(message)
                .await
                .expect("fill send"),
        );
    }
    for receipt in futures::future::join_all(receipts).await {
        receipt.expect("fill receipt");
    }
    producer
        .close()
        .await
        .expect("closing the filling producer");
}

async fn raw_consume(client: &Client, config: &PulsarConfig, messages: usize) -> Duration {
    let subscription = common::unique("raw-reader");
    let topic = backlog(client, config, &subscription, messages).await;
    let started = Instant::now();
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription(&subscription)
        .with_subscription_type(SubType::Shared)
        .with_batch_size(config.consumer.receiver_queue_size)
        .with_options(
            ConsumerOptions::default()
                .with_initial_position(InitialPosition::Latest)
                .with_receiver_queue_size(config.consumer.receiver_queue_size),
        )
        .build()
        .await
        .expect("raw consumer");
    let mut seen = 0;
    while seen < messages {
        let message = tokio::time::timeout(common::PATIENCE, consumer.next())
            .await
            .expect("raw consumer stalled")
            .expect("raw consumer ended")
            .expect("raw consumer error");
        consumer.ack(&message).await.expect("raw ack");
        seen += 1;
    }
    let took = started.elapsed();
    consumer.close().await.expect("closing the raw consumer");
    took
}

async fn bento_consume(
    client: &Client,
    bus: &PulsarBus,
    config: &PulsarConfig,
    messages: usize,
    concurrency: usize,
) -> Duration {
    let subscription = common::unique("bento-reader");
    let topic = backlog(client, config, &subscription, messages).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let handler = {
        let (handled, all_done) = (handled.clone(), all_done.clone());
        move |_ctx: Context| {
            if handled.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                all_done.notify_one();
            }
            futures::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let started = Instant::now();
    let spec = SubscriptionSpec::topic(&topic, &subscription).concurrency(concurrency);
    let sub = bus
        .subscribe(spec, Arc::new(handler))
        .await
        .expect("bento subscribe");
    tokio::time::timeout(common::PATIENCE * 10, all_done.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "bento consumer stalled at {} of {messages}",
                handled.load(Ordering::Relaxed)
            )
        });
    let took = started.elapsed();
    sub.shutdown().await.expect("bento shutdown");
    took
}
