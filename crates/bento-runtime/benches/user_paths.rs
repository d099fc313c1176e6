//! The paths a service uses, measured the way it uses them, beside the raw clients.
//!
//! Each setup runs in a child process whose bus comes from `Bento::from_env()` (the
//! configuration file and `BENTO_` variables the parent writes), so the figures include
//! everything a service gets by default: the codec registry, the observability layers, the
//! dispatcher. Events are typed JSON events of about 1 KiB with 100 ordering keys; handlers
//! only count. Per setup (Pulsar as configured by default, Pulsar with batching and LZ4, Kafka
//! as configured by default), alternating rounds of:
//!
//! | row | Bento | raw client |
//! | --- | --- | --- |
//! | `publish_all` | batches of 1,000 | a sliding window of in-flight sends, of the event alone and of the event with the envelope's properties or headers Bento writes |
//! | consume backlog, c=8 and c=1 | a subscription restarted behind `EVENTS` events | a new consumer reading the same records: touching the payload only, and decoding the event and reading the envelope's properties or headers as Bento does |
//! | awaited `publish` from 16 tasks | `bus.publish(&e).await` in a loop | |
//! | end-to-end latency at 1,000/s | publish to handler, p50 / p99 | |
//!
//! Consume rates run from the first handled message to the last (joining a group is not
//! counted, on either side); the longest gap between two handled messages is reported too.
//!
//! ```text
//! cargo xtask dev-env up
//! eval "$(cargo xtask dev-env env)"
//! cargo bench -p bento-runtime --features pulsar,kafka --bench user_paths [-- kafka|pulsar]
//! ```
//!
//! `BENTO_BENCH_EVENTS` (default 100,000), `BENTO_BENCH_ROUNDS` (default 2) and
//! `BENTO_BENCH_SECONDS` (per timed publish or latency row, default 5) shorten or lengthen a
//! run; `BENTO_BENCH_ROWS` (e.g. `consume`) picks rows, and `BENTO_BENCH_RAW=0` leaves the raw
//! client's reads out, for profiling one path of Bento's.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, VecDeque};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bento_application::{Context, HandlerError, SubscriptionSpec};
use bento_domain::DomainEvent;
use bento_runtime::{Bento, Bus};
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const CHILD_VAR: &str = "BENTO_BENCH_SETUP";
const TOPIC_VAR: &str = "BENTO_BENCH_TOPIC";
const KEYS: u64 = 100;
const BATCH: usize = 1_000;
const PUBLISHERS: usize = 16;
const LATENCY_RATE: u64 = 1_000;
/// How long a consumer may go without a message before the run is declared stalled.
const PATIENCE: Duration = Duration::from_secs(120);

/// One configuration measured in its own process.
struct Setup {
    name: &'static str,
    backend: &'static str,
    /// Extra lines of the backend's section in the configuration file.
    settings: &'static str,
}

const SETUPS: [Setup; 3] = [
    Setup {
        name: "pulsar (default)",
        backend: "pulsar",
        settings: "",
    },
    Setup {
        name: "pulsar (batching + lz4)",
        backend: "pulsar",
        settings: "[messaging.pulsar.producer]\nbatching = true\ncompression = \"lz4\"\n",
    },
    Setup {
        name: "kafka (default)",
        backend: "kafka",
        settings: "",
    },
];

/// A typed event of about 1 KiB.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payment {
    seq: u64,
    account: String,
    /// When the publisher handed it to the bus, in microseconds since the Unix epoch.
    sent_at_micros: u64,
    memo: String,
}

impl DomainEvent for Payment {
    const EVENT_TYPE: &'static str = "bench.payment";
    const AGGREGATE_TYPE: &'static str = "account";
    fn aggregate_id(&self) -> String {
        self.account.clone()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Text of random words, different per event, so compression sees what real events give it.
fn memo(seq: u64) -> String {
    const WORDS: [&str; 16] = [
        "invoice", "settled", "account", "transfer", "pending", "approved", "merchant", "refund",
        "currency", "balance", "ledger", "posted", "customer", "order", "shipping", "tax",
    ];
    let mut rng = fastrand::Rng::with_seed(seq);
    let mut text = String::with_capacity(1_000);
    while text.len() < 940 {
        text.push_str(WORDS[rng.usize(..WORDS.len())]);
        text.push(' ');
        text.push_str(&rng.u32(..).to_string());
        text.push(' ');
    }
    text
}

fn payment(seq: u64) -> Payment {
    Payment {
        seq,
        account: format!("account-{}", seq % KEYS),
        sent_at_micros: now_micros(),
        memo: memo(seq),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn events() -> u64 {
    env_number("BENTO_BENCH_EVENTS", if quick() { 2_000 } else { 100_000 })
}

fn seconds() -> Duration {
    Duration::from_secs(env_number(
        "BENTO_BENCH_SECONDS",
        if quick() { 1 } else { 5 },
    ))
}

fn pulsar_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_URL").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".into())
}

fn pulsar_admin_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_ADMIN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
}

fn kafka_bootstrap() -> String {
    std::env::var("BENTO_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Set for the children of a `cargo test` run: a quick pass over every path instead of the
/// full benchmark.
const QUICK_VAR: &str = "BENTO_BENCH_QUICK";

fn main() {
    match std::env::var(CHILD_VAR) {
        Ok(setup) => child(&setup),
        Err(_) => parent(),
    }
}

/// `cargo bench` passes `--bench`; under `cargo test` the benchmark runs once, small, as a
/// check that every path works on both brokers.
fn quick() -> bool {
    std::env::var_os(QUICK_VAR).is_some()
}

// ---------------------------------------------------------------------------------------------
// Parent: one child process per setup, then the table.

fn parent() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    // Test binaries sharing the brokers hold these locks shared; a broker-kill test holds
    // them exclusively, so the two never overlap.
    bento_testkit::broker_lock::share("pulsar");
    bento_testkit::broker_lock::share("kafka");
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).expect("creating target/bench");
    let exe = std::env::current_exe().expect("own executable");
    let mut table: Vec<(String, Vec<String>)> = Vec::new();
    for (index, setup) in SETUPS.iter().enumerate() {
        if !filter.is_empty() && !filter.iter().any(|f| setup.name.contains(f.as_str())) {
            continue;
        }
        let run = uuid::Uuid::now_v7().simple().to_string();
        let topic = format!("bench-paths-{}", &run[run.len() - 12..]);
        let section = match setup.backend {
            "pulsar" => format!(
                "[messaging.pulsar]\nservice_url = \"{}\"\nadmin_url = \"{}\"\n[messaging.pulsar.topics.event_types]\n\"{}\" = \"{topic}\"\n",
                pulsar_url(),
                pulsar_admin_url(),
                Payment::EVENT_TYPE
            ),
            _ => format!(
                "[messaging.kafka]\nbootstrap_servers = \"{}\"\n[messaging.kafka.topics]\n\"{}\" = \"{topic}\"\n",
                kafka_bootstrap(),
                Payment::EVENT_TYPE
            ),
        };
        let file = dir.join(format!("user-paths-{index}.toml"));
        let text = format!(
            "[messaging]\nbackend = \"{}\"\n{section}{}",
            setup.backend, setup.settings
        );
        std::fs::write(&file, text).expect("writing the configuration");
        eprintln!("==> {} (topic {topic})", setup.name);
        let mut command = Command::new(&exe);
        if !benchmarking {
            command.env(QUICK_VAR, "1");
        }
        let output = command
            .env(CHILD_VAR, setup.name)
            .env(TOPIC_VAR, &topic)
            .env("BENTO_CONFIG", &file)
            .stderr(Stdio::inherit())
            .output()
            .expect("running a setup");
        assert!(
            output.status.success(),
            "setup `{}` failed: {}",
            setup.name,
            output.status
        );
        let lines = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        table.push((setup.name.to_owned(), lines));
    }
    println!("\n| setup | row | Bento | raw client | Bento / raw |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (setup, lines) in table {
        for line in lines {
            println!("| {setup} | {line} |");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Child: one setup, measured with its own bus.

/// Samples of one row, per side.
#[derive(Default)]
struct Rows {
    rows: BTreeMap<&'static str, (Vec<f64>, Vec<f64>)>,
    notes: BTreeMap<&'static str, String>,
    order: Vec<&'static str>,
}

impl Rows {
    fn add(&mut self, row: &'static str, bento: Option<f64>, raw: Option<f64>) {
        if !self.rows.contains_key(row) {
            self.order.push(row);
        }
        let entry = self.rows.entry(row).or_default();
        entry.0.extend(bento);
        entry.1.extend(raw);
    }

    fn note(&mut self, row: &'static str, note: String) {
        self.notes.insert(row, note);
    }

    fn print(&self) {
        for row in &self.order {
            let (bento, raw) = &self.rows[row];
            let show = |v: &[f64]| {
                if v.is_empty() {
                    String::new()
                } else {
                    v.iter()
                        .map(|x| format!("{x:.0}"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                }
            };
            let best = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
            let ratio = if bento.is_empty() || raw.is_empty() {
                String::new()
            } else {
                format!("{:.2}", best(bento) / best(raw))
            };
            let note = self
                .notes
                .get(row)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            println!("{row}{note} | {} | {} | {ratio}", show(bento), show(raw));
        }
    }
}

fn child(setup: &str) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Ok(workers) = std::env::var("BENTO_BENCH_WORKERS") {
        builder.worker_threads(workers.parse().expect("BENTO_BENCH_WORKERS: a number"));
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(measure(setup));
}

/// Whether `BENTO_BENCH_ROWS` (a comma-separated list of `publish_all`, `consume`, `publish`,
/// `latency`; all by default) selects `row`. The backlog is always written.
fn selected(row: &str) -> bool {
    std::env::var("BENTO_BENCH_ROWS").map_or(true, |rows| rows.split(',').any(|r| r.trim() == row))
}

async fn measure(setup_name: &str) {
    let setup = SETUPS
        .iter()
        .find(|s| s.name == setup_name)
        .expect("known setup");
    let topic = std::env::var(TOPIC_VAR).expect("topic");
    let bento = Bento::from_env().await.expect("Bento::from_env()");
    let bus = bento.bus();
    let raw = Raw::connect(setup, &topic).await;
    let events = events();
    let rounds = env_number("BENTO_BENCH_ROUNDS", if quick() { 1 } else { 2 });
    let with_raw = std::env::var("BENTO_BENCH_RAW").map_or(true, |v| v != "0");
    let prepared: Vec<Payment> = (0..events).map(payment).collect();
    let mut rows = Rows::default();
    for round in 0..rounds {
        eprintln!("  round {}", round + 1);
        // Consumer groups that will find a backlog of `events` when they come back.
        let c8 = format!("paths-c8-{round}");
        let c1 = format!("paths-c1-{round}");
        for name in [&c8, &c1] {
            let sub = bus
                .subscribe_with(
                    SubscriptionSpec::event_type(Payment::EVENT_TYPE, name.clone()),
                    |_e: Payment, _c: Context| async { Ok::<(), HandlerError>(()) },
                )
                .await
                .expect("subscribing to position a group");
            sub.shutdown().await.expect("shutting a subscription down");
        }

        let (raw_rate, raw_envelope_rate) = if selected("publish_all") {
            (
                Some(raw.publish_window(events, false).await),
                Some(raw.publish_window(events, true).await),
            )
        } else {
            (None, None)
        };
        let started = Instant::now();
        for chunk in prepared.chunks(BATCH) {
            bus.publish_all(chunk).await.expect("publish_all");
        }
        let bento_rate = events as f64 / started.elapsed().as_secs_f64();
        if selected("publish_all") {
            rows.add("publish_all, batches of 1,000", Some(bento_rate), raw_rate);
            rows.add(
                "publish_all, raw records carry the envelope",
                Some(bento_rate),
                raw_envelope_rate,
            );
        }

        if selected("consume") {
            // Whoever reads a backlog first may find it colder: take turns.
            let raw_first = round % 2 == 0;
            let mut raw_read = if raw_first && with_raw {
                Some(raw.consume(events, false).await)
            } else {
                None
            };
            let mut reads = Vec::new();
            for (row, full_row, name, concurrency) in [
                (
                    "consume backlog, c=8",
                    "consume backlog, c=8, raw decodes the event and reads the envelope",
                    &c8,
                    8,
                ),
                (
                    "consume backlog, c=1",
                    "consume backlog, c=1, raw decodes the event and reads the envelope",
                    &c1,
                    1,
                ),
            ] {
                let read = bento_consume(&bus, name, concurrency, events).await;
                reads.push((row, full_row, read));
            }
            if raw_read.is_none() && with_raw {
                raw_read = Some(raw.consume(events, false).await);
            }
            // The same job as Bento's: the event decoded, the envelope's headers read.
            let raw_full = if with_raw {
                Some(raw.consume(events, true).await)
            } else {
                None
            };
            for (row, _, read) in &reads {
                rows.add(row, Some(read.rate), raw_read.as_ref().map(|r| r.rate));
                let raw_gap = raw_read.as_ref().map_or(String::from("-"), |r| {
                    format!("{:.0} ms", r.longest_gap.as_secs_f64() * 1e3)
                });
                rows.note(
                    row,
                    format!(
                        "longest gap Bento {:.0} ms, raw {raw_gap}",
                        read.longest_gap.as_secs_f64() * 1e3,
                    ),
                );
            }
            for (_, full_row, read) in reads {
                rows.add(full_row, Some(read.rate), raw_full.as_ref().map(|r| r.rate));
            }
        }

        if selected("publish") {
            let rate = awaited_publishes(&bus).await;
            rows.add("awaited publish, 16 tasks", Some(rate), None);
        }

        if selected("latency") {
            let (p50, p99) = latency(&bus, &format!("paths-latency-{round}")).await;
            rows.add("end-to-end p50 ms at 1,000/s", Some(p50), None);
            rows.add("end-to-end p99 ms at 1,000/s", Some(p99), None);
        }
    }
    rows.print();
    bento.shutdown().await.expect("shutdown");
    raw.delete_topics().await;
}

/// The envelope Bento would write for `event`, as its wire headers.
fn envelope_headers(event: &Payment) -> Vec<(std::borrow::Cow<'static, str>, String)> {
    let envelope = bento_domain::Envelope::for_event(event, "application/json", Vec::new());
    bento_application::wire::to_headers(&envelope)
}

/// How a backlog was read.
struct Read {
    rate: f64,
    longest_gap: Duration,
}

/// Counts handled messages, the first and last time, and the longest gap between two.
struct Clock {
    seen: AtomicU64,
    target: u64,
    /// First and last message, longest gap between two.
    times: Mutex<(Option<Instant>, Option<Instant>, Duration)>,
    done: Notify,
}

impl Clock {
    fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            seen: AtomicU64::new(0),
            target,
            times: Mutex::new((None, None, Duration::ZERO)),
            done: Notify::new(),
        })
    }

    fn tick(&self) {
        let now = Instant::now();
        {
            let mut times = self.times.lock().expect("clock");
            if let Some(last) = times.1 {
                times.2 = times.2.max(now.saturating_duration_since(last));
            }
            times.0.get_or_insert(now);
            times.1 = Some(now);
        }
        if self.seen.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            self.done.notify_one();
        }
    }

    async fn wait(&self, what: &str) -> Read {
        loop {
            let before = self.seen.load(Ordering::Acquire);
            if before >= self.target {
                break;
            }
            let notified = self.done.notified();
            if tokio::time::timeout(PATIENCE, notified).await.is_err()
                && self.seen.load(Ordering::Acquire) == before
            {
                panic!(
                    "{what}: stalled at {before} of {} messages for {PATIENCE:?}",
                    self.target
                );
            }
        }
        let times = self.times.lock().expect("clock");
        let (first, last, gap) = (times.0.expect("first"), times.1.expect("last"), times.2);
        Read {
            rate: (self.target - 1) as f64 / last.duration_since(first).as_secs_f64(),
            longest_gap: gap,
        }
    }
}

async fn bento_consume(bus: &Bus, name: &str, concurrency: usize, events: u64) -> Read {
    let clock = Clock::new(events);
    let handler = {
        let clock = clock.clone();
        move |event: Payment, _ctx: Context| {
            std::hint::black_box(event);
            clock.tick();
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let spec =
        SubscriptionSpec::event_type(Payment::EVENT_TYPE, name.to_owned()).concurrency(concurrency);
    let subscription = bus
        .subscribe_with(spec, handler)
        .await
        .expect("subscribing");
    let read = clock.wait(&format!("Bento consumer `{name}`")).await;
    subscription.shutdown().await.expect("shutdown");
    read
}

async fn awaited_publishes(bus: &Bus) -> f64 {
    let deadline = Instant::now() + seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS as u64)
        .map(|task| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while Instant::now() < deadline {
                    bus.publish(&payment(task * 1_000_000 + sent))
                        .await
                        .expect("publish");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.expect("publisher task");
    }
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Publishes at 1,000 events/s, each from its own task so a slow publish does not hold the
/// next one back, and measures publish-to-handler latency: (p50, p99) in milliseconds.
async fn latency(bus: &Bus, name: &str) -> (f64, f64) {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let total = LATENCY_RATE * seconds().as_secs();
    let clock = Clock::new(total);
    let handler = {
        let (latencies, clock) = (latencies.clone(), clock.clone());
        move |event: Payment, _ctx: Context| {
            let micros = now_micros().saturating_sub(event.sent_at_micros);
            latencies.lock().expect("latencies").push(micros);
            clock.tick();
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let spec = SubscriptionSpec::event_type(Payment::EVENT_TYPE, name.to_owned()).concurrency(8);
    let subscription = bus
        .subscribe_with(spec, handler)
        .await
        .expect("subscribing");
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut publishes = Vec::with_capacity(total as usize);
    for seq in 0..total {
        tick.tick().await;
        let bus = bus.clone();
        publishes.push(tokio::spawn(async move {
            bus.publish(&payment(seq)).await.expect("publish");
        }));
    }
    for publish in publishes {
        publish.await.expect("publisher task");
    }
    clock.wait("latency subscription").await;
    subscription.shutdown().await.expect("shutdown");
    let mut all = std::mem::take(&mut *latencies.lock().expect("latencies"));
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    (at(0.50), at(0.99))
}

// ---------------------------------------------------------------------------------------------
// The raw clients, driven well.

enum Raw {
    Pulsar {
        client: pulsar::Pulsar<pulsar::TokioExecutor>,
        topic: String,
        batching: bool,
    },
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
}

impl Raw {
    async fn connect(setup: &Setup, topic: &str) -> Self {
        match setup.backend {
            "pulsar" => Raw::Pulsar {
                client: pulsar::Pulsar::builder(pulsar_url(), pulsar::TokioExecutor)
                    .build()
                    .await
                    .expect("raw Pulsar client"),
                topic: format!("persistent://public/default/{topic}"),
                batching: setup.settings.contains("batching = true"),
            },
            _ => Raw::Kafka {
                producer: kafka_config()
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .create()
                    .expect("raw Kafka producer"),
                topic: topic.to_owned(),
            },
        }
    }

    /// Deletes the setup's Kafka topics, Bento's (with its retry, delay and dead-letter
    /// topics) and the raw client's: a full run writes gigabytes the broker would keep for its
    /// whole retention time. (Pulsar keeps nothing that every subscription has acknowledged.)
    async fn delete_topics(&self) {
        let Raw::Kafka { topic, .. } = self else {
            return;
        };
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            kafka_config().create().expect("Kafka admin client");
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("listing Kafka topics");
        let names: Vec<&str> = metadata
            .topics()
            .iter()
            .map(|t| t.name())
            .filter(|name| name.starts_with(topic.as_str()))
            .collect();
        let results = admin
            .delete_topics(&names, &rdkafka::admin::AdminOptions::new())
            .await
            .expect("deleting the setup's topics");
        for result in results {
            if let Err((name, code)) = result {
                assert_eq!(
                    code,
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                    "deleting Kafka topic `{name}`"
                );
            }
        }
    }

    /// Publishes `events` to a topic of its own with a sliding window of sends in flight,
    /// encoding each event to JSON as it goes (as Bento does; both sides get the same events).
    /// With `envelope`, each record also carries what Bento's records carry besides the
    /// event: the envelope's dozen properties (Pulsar) or headers (Kafka), made per record.
    async fn publish_window(&self, events: u64, envelope: bool) -> f64 {
        let prepared: Vec<Payment> = (0..events).map(payment).collect();
        let records = prepared.iter().map(|event| {
            let headers = envelope.then(|| envelope_headers(event));
            (
                &event.account,
                serde_json::to_vec(event).expect("json"),
                headers,
            )
        });
        match self {
            Raw::Pulsar {
                client,
                topic,
                batching,
            } => {
                let mut options = pulsar::ProducerOptions {
                    block_queue_if_full: true,
                    ..Default::default()
                };
                if *batching {
                    options.batch_size = Some(1_000);
                    options.batch_byte_size = Some(128 * 1024);
                    options.batch_timeout = Some(Duration::from_millis(10));
                    options.compression = Some(pulsar::compression::Compression::Lz4(
                        pulsar::compression::CompressionLz4::default(),
                    ));
                }
                let mut producer = client
                    .producer()
                    .with_topic(format!("{topic}-raw"))
                    .with_options(options)
                    .build()
                    .await
                    .expect("raw producer");
                let started = Instant::now();
                let mut window = VecDeque::with_capacity(BATCH);
                for (key, payload, headers) in records {
                    if window.len() == BATCH {
                        let receipt: pulsar::producer::SendFuture =
                            window.pop_front().expect("window");
                        receipt.await.expect("raw receipt");
                    }
                    let properties = headers
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, value)| (name.into_owned(), value))
                        .collect();
                    let message = pulsar::producer::Message {
                        payload,
                        properties,
                        partition_key: Some(key.clone()),
                        ..Default::default()
                    };
                    window.push_back(producer.send_non_blocking(message).await.expect("send"));
                }
                for receipt in window {
                    receipt.await.expect("raw receipt");
                }
                let rate = events as f64 / started.elapsed().as_secs_f64();
                producer.close().await.expect("closing the raw producer");
                rate
            }
            Raw::Kafka { producer, topic } => {
                let topic = format!("{topic}-raw");
                let started = Instant::now();
                let mut window = VecDeque::new();
                for (key, payload, headers) in records {
                    if window.len() == 10 * BATCH {
                        let delivery: rdkafka::producer::DeliveryFuture =
                            window.pop_front().expect("window");
                        delivery.await.expect("delivery").expect("raw delivery");
                    }
                    let mut record = FutureRecord::to(&topic).key(key).payload(&payload);
                    if let Some(headers) = headers {
                        record = record.headers(headers.iter().fold(
                            rdkafka::message::OwnedHeaders::new(),
                            |all, (name, value)| {
                                all.insert(rdkafka::message::Header {
                                    key: name,
                                    value: Some(value.as_bytes()),
                                })
                            },
                        ));
                    }
                    loop {
                        match producer.send_result(record) {
                            Ok(delivery) => {
                                window.push_back(delivery);
                                break;
                            }
                            Err((_, back)) => {
                                record = back;
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    }
                }
                for delivery in window {
                    delivery.await.expect("delivery").expect("raw delivery");
                }
                events as f64 / started.elapsed().as_secs_f64()
            }
        }
    }

    /// Reads `events` records of the Bento topic with a new consumer from the earliest; with
    /// `full`, decodes each event and reads each of the envelope's properties or headers as
    /// text, as Bento does, else only touches the payload.
    async fn consume(&self, events: u64, full: bool) -> Read {
        let clock = Clock::new(events);
        let group = format!("raw-{}", uuid::Uuid::now_v7().simple());
        match self {
            Raw::Pulsar { client, topic, .. } => {
                let mut consumer: pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor> = client
                    .consumer()
                    .with_topic(topic)
                    .with_subscription(&group)
                    .with_subscription_type(pulsar::SubType::Shared)
                    .with_options(
                        pulsar::ConsumerOptions::default()
                            .with_initial_position(pulsar::consumer::InitialPosition::Earliest),
                    )
                    .build()
                    .await
                    .expect("raw consumer");
                // On a worker, as Bento's consumer runs: this task's own thread only waits.
                let reader = tokio::spawn({
                    let clock = clock.clone();
                    async move {
                        while clock.seen.load(Ordering::Acquire) < events {
                            let message = consumer
                                .next()
                                .await
                                .expect("raw consumer ended")
                                .expect("raw consumer error");
                            std::hint::black_box(message.payload.data.len());
                            if full {
                                let event: Payment = serde_json::from_slice(&message.payload.data)
                                    .expect("a Payment");
                                std::hint::black_box(event);
                                for property in &message.payload.metadata.properties {
                                    std::hint::black_box((&property.key, &property.value));
                                }
                            }
                            consumer.ack(&message).await.expect("raw ack");
                            clock.tick();
                        }
                        consumer
                    }
                });
                let read = clock.wait("raw Pulsar consumer").await;
                let mut consumer = reader.await.expect("raw reader");
                consumer.close().await.expect("closing");
                read
            }
            Raw::Kafka { topic, .. } => {
                // librdkafka's default `fetch.queue.backoff.ms` (1 s) idles a reader slower than
                // its fetcher once the prefetch queue is full; Bento's consumer sets 10 ms, and
                // so does the raw reader, lest it be measured at a second's pause per refill.
                let consumer: StreamConsumer = kafka_config()
                    .set("group.id", &group)
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.queue.backoff.ms", "10")
                    .create()
                    .expect("raw consumer");
                consumer.subscribe(&[topic]).expect("subscribing");
                // On a worker, as Bento's consumer runs: this task's own thread only waits.
                let reader = tokio::spawn({
                    let clock = clock.clone();
                    async move {
                        let mut stream = consumer.stream();
                        while clock.seen.load(Ordering::Acquire) < events {
                            let message = stream
                                .next()
                                .await
                                .expect("raw stream ended")
                                .expect("raw consumer error");
                            std::hint::black_box(message.payload().map(<[u8]>::len));
                            if full {
                                let event: Payment =
                                    serde_json::from_slice(message.payload().unwrap_or_default())
                                        .expect("a Payment");
                                std::hint::black_box(event);
                                if let Some(headers) = message.headers() {
                                    for header in headers.iter() {
                                        let value = header.value.map(std::str::from_utf8);
                                        std::hint::black_box((header.key, value));
                                    }
                                }
                            }
                            clock.tick();
                        }
                    }
                });
                let read = clock.wait("raw Kafka consumer").await;
                reader.await.expect("raw reader");
                read
            }
        }
    }
}

fn kafka_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka_bootstrap());
    config
}
