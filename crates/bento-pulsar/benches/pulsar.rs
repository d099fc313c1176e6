//! The raw `pulsar` crate against Bento's Pulsar bus, on the dev-env broker
//! (`BENTO_TEST_PULSAR_URL`, default `pulsar://127.0.0.1:6650`).
//!
//! `cargo bench -p bento-pulsar` publishes and consumes 100,000 messages of 1 KiB each way
//! (`BENTO_BENCH_MESSAGES` changes the count) with the same producer settings on both sides,
//! and prints a table. Each side runs in 5 alternating rounds. Under `cargo test` it runs once
//! with 2,000 messages as a smoke test. `cargo bench -p bento-pulsar -- produce` runs only the
//! measurements whose setup or side contains `produce` (likewise `consume`, `lz4`, ...).
//!
//! Payloads are text of random words, a different one for every message of a window, as
//! serialized events are: LZ4 shrinks them about as much as it shrinks JSON.
//! `BENTO_BENCH_PAYLOAD=repeated` sends 1,024 × `x` instead, which compresses to almost
//! nothing, so that the message metadata is most of what crosses the wire.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bento_application::{
    Context, HandlerError, MessageBus, PublishOptions, SubscriptionSpec, wire,
};
use bento_domain::Envelope;
use bento_pulsar::{Compression, PulsarAdmin, PulsarBus, PulsarConfig};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
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
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |setup: &Setup, side: &str| {
        filter
            .as_deref()
            .is_none_or(|f| setup.name.contains(f) || side.contains(f))
    };
    let messages = std::env::var("BENTO_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benchmarking { 100_000 } else { 2_000 });
    common::share_broker();
    // The raw client gets the connection queue the bus configures for itself.
    let client = pulsar::Pulsar::builder(common::pulsar_url(), TokioExecutor)
        .with_outbound_channel_size(PulsarConfig::default().producer.max_pending_messages)
        .build()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the Pulsar broker at {} is unreachable: {e}",
                common::pulsar_url()
            )
        });
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
    println!(
        "[1]: the raw side builds the same per-message metadata as Bento (a fresh envelope and wire::to_headers)"
    );
    for setup in setups.iter().filter(|s| wanted(s, "produce consume")) {
        let config = config(setup);
        let bus = common::connect(config.clone()).await;

        // Warm both paths (connections, topic creation, the broker's JIT), then measure in
        // alternating rounds, so that load from elsewhere on the machine hits both sides alike.
        let warm = bench_topic("warm");
        raw_produce(
            &client,
            &config,
            &warm,
            messages.min(5_000),
            Metadata::Fixed,
        )
        .await;
        bento_produce(&bus, &warm, messages.min(5_000)).await;
        let per_round = messages / ROUNDS;
        let (mut raw, mut raw_envelopes, mut bento) = Default::default();
        let produce = wanted(setup, "produce");
        for round in (0..ROUNDS).filter(|_| produce) {
            let topics = [(); 3].map(|_| bench_topic("produce"));
            // Topic creation is the broker's business: done before any side is measured.
            for topic in &topics {
                create_topic(&client, topic).await;
            }
            // Each round starts with another side.
            for side in (0..3).map(|i| (i + round) % 3) {
                match side {
                    0 => {
                        raw += raw_produce(&client, &config, &topics[0], per_round, Metadata::Fixed)
                            .await
                    }
                    1 => {
                        raw_envelopes +=
                            raw_produce(&client, &config, &topics[1], per_round, Metadata::Envelope)
                                .await
                    }
                    _ => bento += bento_produce(&bus, &topics[2], per_round).await,
                }
            }
        }
        if produce {
            row(setup.name, "produce", per_round * ROUNDS, raw, bento);
            row(
                setup.name,
                "produce [1]",
                per_round * ROUNDS,
                raw_envelopes,
                bento,
            );
        }

        for concurrency in [1, 8].into_iter().filter(|_| wanted(setup, "consume")) {
            let (mut raw, mut bento) = (Measured::default(), Measured::default());
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
        delete_bench_topics(&config).await;
    }
}

/// Full names of the topics this run created, deleted after each setup so that repeated runs
/// do not fill the broker's disk.
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn remember(full_name: &str) {
    CREATED.lock().push(full_name.to_owned());
}

/// A fresh topic name (short form), remembered for deletion.
fn bench_topic(what: &str) -> String {
    let topic = common::unique(what);
    remember(&common::topic_name(&topic));
    topic
}

async fn delete_bench_topics(config: &PulsarConfig) {
    let admin = PulsarAdmin::new(config).expect("admin client");
    let topics = std::mem::take(&mut *CREATED.lock());
    for topic in topics {
        admin
            .delete_topic(&topic, true)
            .await
            .unwrap_or_else(|e| panic!("deleting {topic}: {e}"));
    }
}

fn row(setup: &str, side: &str, messages: usize, raw: Measured, bento: Measured) {
    let rate = |m: Measured| messages as f64 / m.wall.as_secs_f64();
    let cpu = |m: Measured| m.cpu.as_secs_f64() * 1e6 / messages as f64;
    println!(
        "{setup:<16} {side:<13} {:>12.0} {:>12.0} {:>7.2} {:>10.1} {:>10.1}",
        rate(raw),
        rate(bento),
        rate(bento) / rate(raw),
        cpu(raw),
        cpu(bento),
    );
}

/// Wall-clock time and this process's CPU time (all threads) of one measurement.
#[derive(Clone, Copy, Default)]
struct Measured {
    wall: Duration,
    cpu: Duration,
}

impl std::ops::AddAssign for Measured {
    fn add_assign(&mut self, other: Self) {
        self.wall += other.wall;
        self.cpu += other.cpu;
    }
}

/// Starts a measurement.
struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: process_cpu(),
        }
    }

    fn stop(&self) -> Measured {
        Measured {
            wall: self.wall.elapsed(),
            cpu: process_cpu().saturating_sub(self.cpu),
        }
    }
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (zero elsewhere).
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports these in clock ticks of 1/100 s.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
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

/// The payload of message `seq` (see the module documentation).
fn payload(seq: usize) -> &'static Bytes {
    static PAYLOADS: OnceLock<Vec<Bytes>> = OnceLock::new();
    let payloads = PAYLOADS.get_or_init(|| {
        if std::env::var("BENTO_BENCH_PAYLOAD").is_ok_and(|kind| kind == "repeated") {
            return vec![Bytes::from(vec![b'x'; PAYLOAD])];
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let words: Vec<String> = (0..500)
            .map(|_| {
                let len = rng.usize(3..10);
                (0..len).map(|_| rng.lowercase()).collect()
            })
            .collect();
        (0..WINDOW)
            .map(|_| {
                let mut text = String::with_capacity(PAYLOAD + 16);
                while text.len() < PAYLOAD {
                    text.push_str(&words[rng.usize(..words.len())]);
                    text.push(' ');
                }
                text.truncate(PAYLOAD);
                Bytes::from(text)
            })
            .collect()
    });
    &payloads[seq % payloads.len()]
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

/// A raw message with the metadata Bento writes, built by hand from a fresh envelope.
fn envelope_message(payload: &Bytes, seq: usize) -> Message {
    let envelope = envelope(payload, seq);
    let headers = wire::to_headers(&envelope);
    let mut properties = HashMap::with_capacity(headers.len());
    properties.extend(headers.into_iter().map(|(k, v)| (k.into_owned(), v)));
    Message {
        payload: envelope.payload.to_vec(),
        properties,
        partition_key: envelope.ordering_key.clone(),
        event_time: u64::try_from(envelope.occurred_at.timestamp_millis()).ok(),
        ..Message::default()
    }
}

fn sample_properties(payload: &Bytes) -> HashMap<String, String> {
    wire::to_headers(&envelope(payload, 0))
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v))
        .collect()
}

/// What the raw side puts in each message's properties.
#[derive(Clone, Copy)]
enum Metadata {
    /// The properties of one sample envelope, built once and copied into every message.
    Fixed,
    /// What Bento writes: a fresh envelope per message (new id and time) through
    /// `wire::to_headers`.
    Envelope,
}

async fn raw_produce(
    client: &Client,
    config: &PulsarConfig,
    topic: &str,
    messages: usize,
    metadata: Metadata,
) -> Measured {
    let topic = common::topic_name(topic);
    let properties = sample_properties(payload(0));
    // Like the bus, which creates its producer on the first publish, inside the measurement.
    let started = Stopwatch::start();
    let mut producer = client
        .producer()
        .with_topic(&topic)
        .with_name(format!("bench-{}", uuid::Uuid::now_v7().simple()))
        .with_options(raw_options(config))
        .build()
        .await
        .expect("raw producer");
    let mut seq = 0;
    while seq < messages {
        let end = (seq + WINDOW).min(messages);
        let mut receipts = Vec::with_capacity(WINDOW);
        for n in seq..end {
            let message = match metadata {
                Metadata::Fixed => raw_message(payload(n), &properties, n),
                Metadata::Envelope => envelope_message(payload(n), n),
            };
            receipts.push(producer.send_non_blocking(message).await.expect("raw send"));
        }
        for receipt in futures::future::join_all(receipts).await {
            receipt.expect("raw receipt");
        }
        seq = end;
    }
    let took = started.stop();
    producer.close().await.expect("closing the raw producer");
    took
}

async fn bento_produce(bus: &PulsarBus, topic: &str, messages: usize) -> Measured {
    let started = Stopwatch::start();
    let mut seq = 0;
    while seq < messages {
        let end = (seq + WINDOW).min(messages);
        let batch = (seq..end).map(|n| envelope(payload(n), n)).collect();
        bus.publish_batch(batch, PublishOptions::default().to_topic(topic))
            .await
            .expect("bento publish_batch");
        seq = end;
    }
    started.stop()
}

/// Creates `topic` on the broker (by connecting a producer to it).
async fn create_topic(client: &Client, topic: &str) {
    let mut producer = client
        .producer()
        .with_topic(common::topic_name(topic))
        .build()
        .await
        .expect("creating a topic");
    producer
        .close()
        .await
        .expect("closing the topic-creating producer");
}

/// Creates `subscription` on `topic` (creating the topic too).
async fn create_subscription(client: &Client, topic: &str, subscription: &str) {
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(SubType::Shared)
        .build()
        .await
        .expect("creating the subscription");
    consumer
        .close()
        .await
        .expect("closing the subscribing consumer");
}

/// Creates `subscription` on a fresh topic, then fills the topic with `messages` (written like
/// Bento writes them), so that the consumer under test starts with a full backlog.
async fn backlog(
    client: &Client,
    config: &PulsarConfig,
    subscription: &str,
    messages: usize,
) -> String {
    let topic = common::topic_name(&bench_topic("backlog"));
    create_subscription(client, &topic, subscription).await;
    // The bus also reads the subscription's retry topic: create it beforehand as well.
    let retry = format!("{topic}-{subscription}-RETRY");
    remember(&retry);
    create_subscription(client, &retry, subscription).await;
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
    let properties = sample_properties(payload(0));
    let mut receipts = Vec::with_capacity(messages);
    for n in 0..messages {
        let mut message = raw_message(payload(n), &properties, n);
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

async fn raw_consume(client: &Client, config: &PulsarConfig, messages: usize) -> Measured {
    let subscription = common::unique("raw-reader");
    let topic = backlog(client, config, &subscription, messages).await;
    let started = Stopwatch::start();
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
    let took = started.stop();
    consumer.close().await.expect("closing the raw consumer");
    took
}

async fn bento_consume(
    client: &Client,
    bus: &PulsarBus,
    config: &PulsarConfig,
    messages: usize,
    concurrency: usize,
) -> Measured {
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
    let started = Stopwatch::start();
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
    let took = started.stop();
    sub.shutdown().await.expect("bento shutdown");
    took
}
