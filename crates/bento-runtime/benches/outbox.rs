//! The transactional outbox, measured the way a service uses it, beside the same events
//! published directly and beside the database alone.
//!
//! Each setup (a backend: memory, Pulsar or Kafka, times a database: SQLite in a temporary
//! file or a fresh PostgreSQL database) runs in a child process whose bus and outbox come from
//! `Bento::from_env()` (`BENTO_MESSAGING__BACKEND`, `BENTO_OUTBOX__DATABASE_URL` and a
//! configuration file naming fresh topics), so the relay runs as a service gets it by default.
//! A command is one transaction inserting one `orders` row plus one JSON event of about 1 KiB
//! with an ordering key among 100. Per setup, alternating rounds of:
//!
//! | row | outbox + relay | direct publish | database alone |
//! | --- | --- | --- | --- |
//! | events/s, 1 and 16 writers | commands committed, until the relay has the broker's receipt of every event | `bus.publish(&event).await`, no database | the same transactions without the event |
//! | latency at 500 commands/s | commit returned -> subscriber's handler | publish called -> subscriber's handler | |
//!
//! ```text
//! cargo xtask dev-env up
//! eval "$(cargo xtask dev-env env)"
//! cargo bench -p bento-runtime --features pulsar,kafka,sqlite,postgres --bench outbox [-- memory|pulsar|kafka sqlite|postgres]
//! ```
//!
//! `BENTO_BENCH_EVENTS` (commands per throughput row, default 1,000), `BENTO_BENCH_ROUNDS`
//! (default 2) and `BENTO_BENCH_SECONDS` (per latency row, default 2) shorten or lengthen a run.
//! Under `cargo test` every setup runs once, small: a check that every path works.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bento_application::{Context, HandlerError, SubscriptionSpec};
use bento_domain::DomainEvent;
use bento_runtime::sqlx::{Dialect, Outbox};
use bento_runtime::{Bento, Bus, Codecs};
use serde::{Deserialize, Serialize};
use sqlx::Connection as _;
use tokio::sync::Notify;

const CHILD_VAR: &str = "BENTO_BENCH_SETUP";
/// Set for the children of a `cargo test` run: a quick pass over every path.
const QUICK_VAR: &str = "BENTO_BENCH_QUICK";
const BACKENDS: [&str; 3] = ["memory", "pulsar", "kafka"];
const DATABASES: [&str; 2] = ["sqlite", "postgres"];
const WRITERS: [usize; 2] = [1, 16];
const KEYS: u64 = 100;
const LATENCY_RATE: u64 = 500;
/// How long a row may wait for the relay or the subscriber before it is declared stalled.
const PATIENCE: Duration = Duration::from_secs(120);

/// The event of a command: about 1 KiB of JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct OrderPlaced {
    seq: u64,
    order_id: String,
    customer: String,
    total_cents: i64,
    memo: String,
}

impl DomainEvent for OrderPlaced {
    const EVENT_TYPE: &'static str = "bench.order-placed";
    const AGGREGATE_TYPE: &'static str = "customer";
    fn aggregate_id(&self) -> String {
        self.customer.clone()
    }
}

/// The same event on a topic of its own, for the latency rows: a new Kafka group starts from
/// the earliest offset, and must not find the throughput rows' events there.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct Probe(OrderPlaced);

impl DomainEvent for Probe {
    const EVENT_TYPE: &'static str = "bench.order-probe";
    const AGGREGATE_TYPE: &'static str = "customer";
    fn aggregate_id(&self) -> String {
        self.0.customer.clone()
    }
}

impl From<OrderPlaced> for Probe {
    fn from(order: OrderPlaced) -> Self {
        Self(order)
    }
}

/// Text of random words, different per event.
fn memo(seq: u64) -> String {
    const WORDS: [&str; 16] = [
        "invoice", "settled", "account", "transfer", "pending", "approved", "merchant", "refund",
        "currency", "balance", "ledger", "posted", "customer", "order", "shipping", "tax",
    ];
    let mut rng = fastrand::Rng::with_seed(seq);
    let mut text = String::with_capacity(1_000);
    while text.len() < 900 {
        text.push_str(WORDS[rng.usize(..WORDS.len())]);
        text.push(' ');
        text.push_str(&rng.u32(..).to_string());
        text.push(' ');
    }
    text
}

fn order(seq: u64) -> OrderPlaced {
    OrderPlaced {
        seq,
        order_id: format!("order-{seq}"),
        customer: format!("customer-{}", seq % KEYS),
        total_cents: 100 + (seq % 10_000) as i64,
        memo: memo(seq),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn quick() -> bool {
    std::env::var_os(QUICK_VAR).is_some()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    match std::env::var(CHILD_VAR) {
        Ok(setup) => child(&setup),
        Err(_) => parent(),
    }
}

// ---------------------------------------------------------------------------------------------
// Parent: one child process per backend and database, then the table.

fn parent() {
    // `cargo bench` passes `--bench`; under `cargo test` every setup runs once, small.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let pick = |all: &[&'static str]| -> Vec<&'static str> {
        let named: Vec<_> = all
            .iter()
            .copied()
            .filter(|name| words.iter().any(|w| w == name))
            .collect();
        if named.is_empty() {
            all.to_vec()
        } else {
            named
        }
    };
    // Tests that kill a broker hold its lock exclusively; a run shares the brokers it uses.
    for backend in pick(&BACKENDS) {
        if backend != "memory" {
            bento_testkit::broker_lock::share(backend);
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).expect("creating target/bench");
    let exe = std::env::current_exe().expect("own executable");
    let admin = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut table = Vec::new();
    for backend in pick(&BACKENDS) {
        for database in pick(&DATABASES) {
            let run = uuid::Uuid::now_v7().simple().to_string();
            let topic = format!("bench-outbox-{}", &run[run.len() - 12..]);
            let topics = format!(
                "\"{}\" = \"{topic}\"\n\"{}\" = \"{topic}-probe\"\n",
                OrderPlaced::EVENT_TYPE,
                Probe::EVENT_TYPE
            );
            let file = dir.join(format!("outbox-{backend}-{database}.toml"));
            let config = match backend {
                "pulsar" => format!(
                    "[messaging.pulsar]\nservice_url = \"{}\"\nadmin_url = \"{}\"\n\
                     [messaging.pulsar.topics.event_types]\n{topics}",
                    env_or("BENTO_TEST_PULSAR_URL", "pulsar://127.0.0.1:6650"),
                    env_or("BENTO_TEST_PULSAR_ADMIN_URL", "http://127.0.0.1:8080"),
                ),
                "kafka" => format!(
                    "[messaging.kafka]\nbootstrap_servers = \"{}\"\n[messaging.kafka.topics]\n{topics}",
                    env_or("BENTO_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                ),
                _ => String::new(),
            };
            std::fs::write(&file, config).expect("writing the configuration");
            let db = admin.block_on(Db::create(database));
            eprintln!("==> {backend} / {database} (topic {topic})");
            let mut command = Command::new(&exe);
            if !benchmarking {
                command.env(QUICK_VAR, "1");
            }
            let output = command
                .env(CHILD_VAR, format!("{backend}/{database}"))
                .env("BENTO_CONFIG", &file)
                .env("BENTO_MESSAGING__BACKEND", backend)
                .env("BENTO_OUTBOX__DATABASE_URL", &db.url)
                .stderr(Stdio::inherit())
                .output()
                .expect("running a setup");
            admin.block_on(db.drop());
            assert!(
                output.status.success(),
                "setup {backend} / {database} failed: {}",
                output.status
            );
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                table.push(format!("| {backend} | {database} | {line} |"));
            }
        }
    }
    println!(
        "\n| backend | database | row | outbox + relay | direct publish | database alone | outbox / direct | outbox / database |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for line in table {
        println!("{line}");
    }
}

/// A database of the setup's own, so that no run sees another's rows.
struct Db {
    url: String,
    /// The SQLite file's directory, removed when dropped.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL server's URL and the database's name, to drop it afterwards.
    postgres: Option<(String, String)>,
}

impl Db {
    async fn create(database: &str) -> Self {
        if database == "sqlite" {
            let dir = tempfile::tempdir().expect("a temporary directory");
            return Self {
                url: format!("sqlite://{}", dir.path().join("outbox.db").display()),
                _dir: Some(dir),
                postgres: None,
            };
        }
        let server = env_or(
            "BENTO_TEST_POSTGRES_URL",
            "postgres://bento@127.0.0.1:5433/bento",
        );
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {server}: {e} (start it with `cargo xtask dev-env up postgres`)"
                )
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating the benchmark's database");
        let (prefix, _) = server.rsplit_once('/').expect("a database in the URL");
        Self {
            url: format!("{prefix}/{name}"),
            _dir: None,
            postgres: Some((server, name)),
        }
    }

    async fn drop(self) {
        if let Some((server, name)) = &self.postgres {
            let mut admin = sqlx::PgConnection::connect(server)
                .await
                .expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .expect("dropping the benchmark's database");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Child: one setup.

fn child(setup: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(measure(setup));
}

/// Where a command goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// A transaction with the order row and the event, relayed after the commit.
    Outbox,
    /// `bus.publish(&event).await`, no database.
    Direct,
    /// The transaction with the order row only.
    Database,
}

/// What the writers share.
#[derive(Clone)]
struct Service {
    outbox: Outbox<sqlx::Any, Codecs>,
    bus: Bus,
    /// The next order's number, unique in the setup (the orders table's key).
    next: Arc<AtomicU64>,
}

impl Service {
    /// Reserves `count` order numbers; returns the first.
    fn reserve(&self, count: u64) -> u64 {
        self.next.fetch_add(count, Ordering::Relaxed)
    }

    /// One command: returns once it is committed (or, directly, published).
    async fn command<E: DomainEvent + From<OrderPlaced>>(&self, side: Side, seq: u64) {
        let order = order(seq);
        match side {
            Side::Outbox => {
                let mut work = self.outbox.begin().await.expect("begin");
                insert(&mut work, &order).await;
                work.record(E::from(order));
                work.commit().await.expect("commit");
            }
            Side::Direct => {
                self.bus.publish(&E::from(order)).await.expect("publish");
            }
            Side::Database => {
                let pool = self.outbox.pool();
                // As the outbox begins: SQLite's write lock at once.
                let mut transaction = match self.outbox.dialect() {
                    Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                    _ => pool.begin().await,
                }
                .expect("begin");
                insert(&mut transaction, &order).await;
                transaction.commit().await.expect("commit");
            }
        }
    }
}

async fn insert(conn: &mut sqlx::AnyConnection, order: &OrderPlaced) {
    sqlx::query(
        "INSERT INTO orders (id, customer, total_cents, placed_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(order.order_id.clone())
    .bind(order.customer.clone())
    .bind(order.total_cents)
    .bind(now_millis())
    .execute(conn)
    .await
    .expect("inserting the order");
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

async fn measure(setup: &str) {
    let bento = Bento::from_env().await.expect("Bento::from_env()");
    let service = Service {
        outbox: bento.outbox().expect("the outbox (and its relay)"),
        bus: bento.bus(),
        next: Arc::new(AtomicU64::new(0)),
    };
    sqlx::query(
        "CREATE TABLE orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL, \
         total_cents BIGINT NOT NULL, placed_at BIGINT NOT NULL)",
    )
    .execute(service.outbox.pool())
    .await
    .expect("creating the orders table");
    let probes = Probes::subscribe(&service.bus).await;
    let quick = quick();
    let events = env_number("BENTO_BENCH_EVENTS", if quick { 100 } else { 1_000 });
    let rounds = env_number("BENTO_BENCH_ROUNDS", if quick { 1 } else { 2 });
    let seconds = env_number("BENTO_BENCH_SECONDS", if quick { 1 } else { 2 });

    // Connections opened, topics created, producers and the relay warmed up.
    for side in [Side::Outbox, Side::Direct, Side::Database] {
        throughput(&bento, &service, side, 4, 50).await;
    }
    for side in [Side::Outbox, Side::Direct] {
        latency(&service, &probes, side, 50).await;
    }
    let mut rows = Rows::default();
    for round in 0..rounds {
        eprintln!("  {setup}: round {}", round + 1);
        let mut sides = [Side::Outbox, Side::Direct, Side::Database];
        if round % 2 == 1 {
            sides.reverse();
        }
        for writers in WRITERS {
            let row = format!(
                "events/s, {writers} writer{}",
                if writers > 1 { "s" } else { "" }
            );
            for side in sides {
                let (rate, relay_behind) =
                    throughput(&bento, &service, side, writers, events).await;
                rows.add(&row, side, rate);
                if side == Side::Outbox {
                    rows.note(&row, format!("{:.0}", relay_behind.as_secs_f64() * 1e3));
                }
            }
        }
        let mut sides = [Side::Outbox, Side::Direct];
        if round % 2 == 1 {
            sides.reverse();
        }
        for side in sides {
            let latency = latency(&service, &probes, side, LATENCY_RATE * seconds).await;
            rows.add("latency p50 ms at 500/s", side, latency.p50);
            rows.add("latency p99 ms at 500/s", side, latency.p99);
            if let Some((p50, p99)) = latency.command {
                rows.note("latency p50 ms at 500/s", format!("{p50:.1}"));
                rows.note("latency p99 ms at 500/s", format!("{p99:.1}"));
            }
        }
    }
    rows.print();
    bento.shutdown().await.expect("shutdown");
}

/// Runs `events` commands from `writers` tasks; returns commands per second, counted until the
/// relay has the broker's receipt of every event on the outbox side, and how long the relay
/// took after the last commit.
async fn throughput(
    bento: &Bento,
    service: &Service,
    side: Side,
    writers: usize,
    events: u64,
) -> (f64, Duration) {
    let relayed_before = bento.relay_stats().expect("the relay runs").published;
    let first = service.reserve(events);
    let cursor = Arc::new(AtomicU64::new(first));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (service, cursor) = (service.clone(), cursor.clone());
            tokio::spawn(async move {
                loop {
                    let seq = cursor.fetch_add(1, Ordering::Relaxed);
                    if seq >= first + events {
                        break;
                    }
                    service.command::<OrderPlaced>(side, seq).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    let committed = Instant::now();
    if side == Side::Outbox {
        let deadline = committed + PATIENCE;
        while bento.relay_stats().expect("the relay runs").published < relayed_before + events {
            assert!(
                Instant::now() < deadline,
                "the relay stalled: {:?}",
                bento.relay_stats()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let elapsed = started.elapsed();
    (
        events as f64 / elapsed.as_secs_f64(),
        elapsed.saturating_sub(committed - started),
    )
}

/// The probe subscription, alive for the whole setup: when each probe reached its handler.
struct Probes {
    seen: Arc<Seen>,
    _subscription: bento_runtime::prelude::Subscription,
}

#[derive(Default)]
struct Seen {
    at: Mutex<HashMap<u64, Instant>>,
    /// Distinct probes seen (a redelivered one counts once).
    count: AtomicU64,
    arrived: Notify,
}

impl Probes {
    async fn subscribe(bus: &Bus) -> Self {
        let seen = Arc::new(Seen::default());
        let handler = {
            let seen = seen.clone();
            move |probe: Probe, _ctx: Context| {
                let now = Instant::now();
                if seen
                    .at
                    .lock()
                    .expect("probes")
                    .insert(probe.0.seq, now)
                    .is_none()
                {
                    seen.count.fetch_add(1, Ordering::AcqRel);
                    seen.arrived.notify_one();
                }
                std::future::ready(Ok::<(), HandlerError>(()))
            }
        };
        let spec =
            SubscriptionSpec::event_type(Probe::EVENT_TYPE, "outbox-bench-latency").concurrency(8);
        let subscription = bus
            .subscribe_with(spec, handler)
            .await
            .expect("subscribing to the probes");
        Self {
            seen,
            _subscription: subscription,
        }
    }

    /// Waits until `expected` distinct probes have arrived since the start; returns when each
    /// arrived.
    async fn wait(&self, expected: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        loop {
            let before = self.seen.count.load(Ordering::Acquire);
            if before >= expected {
                return self.seen.at.lock().expect("probes");
            }
            let arrived = self.seen.arrived.notified();
            if tokio::time::timeout(PATIENCE, arrived).await.is_err()
                && self.seen.count.load(Ordering::Acquire) == before
            {
                panic!("probes stalled at {before} of {expected} for {PATIENCE:?}");
            }
        }
    }
}

/// Percentiles of one latency row, in milliseconds.
struct Latency {
    p50: f64,
    p99: f64,
    /// On the outbox side, the command's own time (begin -> commit returned), p50 and p99.
    command: Option<(f64, f64)>,
}

fn percentiles(mut values: Vec<Duration>) -> (f64, f64) {
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}

/// Issues `total` commands at 500/s, each in its own task so a slow one does not hold the
/// next back, and times each event from its commit (outbox) or its publish call (direct) to
/// the subscriber's handler.
async fn latency(service: &Service, probes: &Probes, side: Side, total: u64) -> Latency {
    let expected = probes.seen.count.load(Ordering::Acquire) + total;
    let first = service.reserve(total);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for seq in first..first + total {
        tick.tick().await;
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            service.command::<Probe>(side, seq).await;
            (seq, started, Instant::now())
        }));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for task in tasks {
        sent.push(task.await.expect("command task"));
    }
    let received = probes.wait(expected).await;
    let mut to_handler = Vec::with_capacity(sent.len());
    let mut commands = Vec::with_capacity(sent.len());
    for (seq, started, committed) in sent {
        let seen = received[&seq];
        let from = if side == Side::Outbox {
            committed
        } else {
            started
        };
        to_handler.push(seen.saturating_duration_since(from));
        commands.push(committed - started);
    }
    let (p50, p99) = percentiles(to_handler);
    Latency {
        p50,
        p99,
        command: (side == Side::Outbox).then(|| percentiles(commands)),
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

/// Samples of each row per side, and notes.
#[derive(Default)]
struct Rows {
    order: Vec<String>,
    cells: BTreeMap<String, [Vec<f64>; 3]>,
    notes: BTreeMap<String, Vec<String>>,
}

impl Rows {
    fn add(&mut self, row: &str, side: Side, value: f64) {
        if !self.cells.contains_key(row) {
            self.order.push(row.to_owned());
        }
        self.cells.entry(row.to_owned()).or_default()[side as usize].push(value);
    }

    fn note(&mut self, row: &str, note: String) {
        self.notes.entry(row.to_owned()).or_default().push(note);
    }

    /// One line per row: the row, each side's figures per round, the ratios of the means.
    fn print(&self) {
        for row in &self.order {
            let cells = &self.cells[row];
            let show = |values: &[f64]| {
                values
                    .iter()
                    .map(|v| {
                        if *v >= 100.0 {
                            format!("{v:.0}")
                        } else {
                            format!("{v:.1}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
            let ratio = |a: &[f64], b: &[f64]| {
                if a.is_empty() || b.is_empty() {
                    String::new()
                } else {
                    format!("{:.2}", mean(a) / mean(b))
                }
            };
            let note = match self.notes.get(row) {
                Some(notes) if row.starts_with("events") => {
                    format!(
                        " (relay done {} ms after the last commit)",
                        notes.join(" / ")
                    )
                }
                Some(notes) => format!(" (outbox command itself {} ms)", notes.join(" / ")),
                None => String::new(),
            };
            println!(
                "{row}{note} | {} | {} | {} | {} | {}",
                show(&cells[0]),
                show(&cells[1]),
                show(&cells[2]),
                ratio(&cells[0], &cells[1]),
                ratio(&cells[0], &cells[2]),
            );
        }
    }
}
