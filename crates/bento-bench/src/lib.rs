//! The sides of `cargo xtask bench`: one process measures one side of one backend and prints
//! one JSON line per measurement on stdout ([`Measurement`]).
//!
//! `cargo xtask bench` runs this crate's `sides` benchmark binary once per side and round,
//! with the side and the sizes in `BENTO_BENCH_*` variables ([`Knobs`]), beside the brokers'
//! own Java perf tools, and turns the lines into `target/bench/results.json` and the tables of
//! `docs/benchmarks.md`. The sides:
//!
//! * `bento`: a bus from Bento's configuration (the layers and dispatcher a service gets),
//!   typed JSON events, typed handlers;
//! * `raw`: the `pulsar` crate or rdkafka driven well: a sliding window of sends in flight, a
//!   consumer reading and decoding the same JSON;
//! * `magnetar` (Pulsar only, with the `magnetar` feature): `magnetar-driver`, the other Rust
//!   Pulsar client, driven as the `raw` side;
//! * `ruststream`: RustStream, the nearest Rust peer, doing the same publish-to-typed-handler
//!   work with its memory broker, `ruststream-pulsar` or `ruststream-rdkafka`.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod bento_side;
pub mod event;
pub mod measure;
mod raw_kafka;
#[cfg(feature = "magnetar")]
mod raw_magnetar;
mod raw_pulsar;
mod raw_side;
mod ruststream_broker;
mod ruststream_kafka;
mod ruststream_pulsar;
mod ruststream_side;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

/// One figure, as printed on stdout (one JSON object per line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// `memory`, `pulsar` or `kafka`.
    pub backend: String,
    /// `bento`, `raw` or `ruststream` (`cargo xtask bench` adds the Java tools' sides).
    pub side: String,
    /// What was measured: `produce`, `consume`, `publish-to-handler c=1`, `e2e p99`, ...
    pub metric: String,
    /// Size of each event's payload in bytes.
    pub size: usize,
    /// The fixed publish rate of a latency measurement, in messages per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// `msg/s` or `ms`.
    pub unit: String,
    /// The figure.
    pub value: f64,
}

/// Which broker a side runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Bento's in-memory bus (RustStream's memory broker for its side).
    Memory,
    /// Apache Pulsar.
    Pulsar,
    /// Apache Kafka.
    Kafka,
}

impl Backend {
    /// The name used in the configuration and the results.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Pulsar => "pulsar",
            Backend::Kafka => "kafka",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "memory" => Backend::Memory,
            "pulsar" => Backend::Pulsar,
            "kafka" => Backend::Kafka,
            other => {
                bail!("BENTO_BENCH_BACKEND: unknown backend `{other}` (memory, pulsar, kafka)")
            }
        })
    }
}

/// How much to measure and where the brokers are, from `BENTO_BENCH_*` and `BENTO_TEST_*`.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Events per throughput measurement (`BENTO_BENCH_EVENTS`).
    pub events: u64,
    /// Payload sizes in bytes (`BENTO_BENCH_SIZES`, comma-separated).
    pub sizes: Vec<usize>,
    /// Fixed rates of the latency measurements (`BENTO_BENCH_RATES`, comma-separated).
    pub rates: Vec<u64>,
    /// How long each latency measurement publishes (`BENTO_BENCH_SECONDS`).
    pub seconds: Duration,
    /// Prefix of the topics this run creates (`BENTO_BENCH_TOPIC`).
    pub topic: String,
    /// `BENTO_TEST_PULSAR_URL`.
    pub pulsar_url: String,
    /// `BENTO_TEST_PULSAR_ADMIN_URL`.
    pub pulsar_admin_url: String,
    /// `BENTO_TEST_KAFKA_BOOTSTRAP`.
    pub kafka_bootstrap: String,
}

fn var_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn numbers<T: std::str::FromStr>(name: &str, default: &str) -> Result<Vec<T>> {
    var_or(name, default)
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .ok()
                .with_context(|| format!("{name}: `{n}` is not a number"))
        })
        .collect()
}

impl Knobs {
    /// Reads the knobs; unset ones take the full run's sizes.
    pub fn from_env() -> Result<Self> {
        let events = numbers::<u64>("BENTO_BENCH_EVENTS", "100000")?;
        let seconds = numbers::<u64>("BENTO_BENCH_SECONDS", "5")?;
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        Ok(Self {
            events: events.first().copied().unwrap_or(100_000).max(2),
            sizes: numbers("BENTO_BENCH_SIZES", "1024,100")?,
            rates: numbers("BENTO_BENCH_RATES", "1000,10000")?,
            seconds: Duration::from_secs(seconds.first().copied().unwrap_or(5).max(1)),
            topic: var_or(
                "BENTO_BENCH_TOPIC",
                &format!("bench-{}", &suffix[suffix.len() - 12..]),
            ),
            pulsar_url: var_or("BENTO_TEST_PULSAR_URL", "pulsar://127.0.0.1:6650"),
            pulsar_admin_url: var_or("BENTO_TEST_PULSAR_ADMIN_URL", "http://127.0.0.1:8080"),
            kafka_bootstrap: var_or("BENTO_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        })
    }

    /// The topic of one measurement.
    pub fn topic(&self, what: &str) -> String {
        format!("{}-{what}", self.topic)
    }
}

/// Where a side prints its figures.
#[derive(Debug, Clone)]
pub struct Report {
    backend: Backend,
    side: &'static str,
}

impl Report {
    /// Prints one measurement as a JSON line.
    pub fn emit(&self, metric: &str, size: usize, rate: Option<u64>, unit: &str, value: f64) {
        let line = Measurement {
            backend: self.backend.name().to_string(),
            side: self.side.to_string(),
            metric: metric.to_string(),
            size,
            rate,
            unit: unit.to_string(),
            value,
        };
        match serde_json::to_string(&line) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("a measurement could not be written: {err}"),
        }
    }

    /// The latency quantiles of a run at `rate` (milliseconds).
    pub fn latencies(&self, what: &str, size: usize, rate: u64, histogram: &measure::Latencies) {
        for (name, quantile) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            let ms = histogram.quantile_ms(quantile);
            self.emit(&format!("{what} {name}"), size, Some(rate), "ms", ms);
        }
    }
}

/// Runs the side named by `BENTO_BENCH_SIDE` against `BENTO_BENCH_BACKEND`.
///
/// `BENTO_BENCH_SIDE=kafka-topic` only creates the Kafka topic `BENTO_BENCH_TOPIC` with the
/// partitions Bento gives its topics, for the Java tools' side; `kafka-clean-up` deletes every
/// Kafka topic whose name starts with `BENTO_BENCH_TOPIC`.
pub fn run_from_env() -> Result<()> {
    let backend = Backend::parse(&var_or("BENTO_BENCH_BACKEND", "memory"))?;
    let side = var_or("BENTO_BENCH_SIDE", "bento");
    let knobs = Knobs::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(backend, &side, &knobs))
}

/// Runs one side.
pub async fn run(backend: Backend, side: &str, knobs: &Knobs) -> Result<()> {
    let side: &'static str = match side {
        "bento" => "bento",
        "raw" => "raw",
        "magnetar" => "magnetar",
        "ruststream" => "ruststream",
        "kafka-topic" => return raw_kafka::create_topic(knobs, &knobs.topic).await,
        "kafka-clean-up" => return raw_kafka::delete_topics(knobs, &knobs.topic).await,
        other => {
            bail!("BENTO_BENCH_SIDE: unknown side `{other}` (bento, raw, magnetar, ruststream)")
        }
    };
    // Test binaries sharing the brokers hold these locks shared; a broker-kill test holds
    // them exclusively, so a measurement never runs across a broker restart.
    if backend != Backend::Memory {
        bento_testkit::broker_lock::share(backend.name());
    }
    let report = Report { backend, side };
    match (side, backend) {
        ("bento", _) => bento_side::run(backend, knobs, &report).await,
        ("raw", Backend::Pulsar) => raw_pulsar::run(knobs, &report).await,
        ("raw", Backend::Kafka) => raw_kafka::run(knobs, &report).await,
        ("raw", Backend::Memory) => bail!("the in-memory scenario has no raw client side"),
        ("magnetar", Backend::Pulsar) => magnetar_side(knobs, &report).await,
        ("magnetar", _) => bail!("the magnetar side is a Pulsar client"),
        _ => ruststream_side::run(backend, knobs, &report).await,
    }
}

#[cfg(feature = "magnetar")]
async fn magnetar_side(knobs: &Knobs, report: &Report) -> Result<()> {
    raw_magnetar::run(knobs, report).await
}

#[cfg(not(feature = "magnetar"))]
async fn magnetar_side(_knobs: &Knobs, _report: &Report) -> Result<()> {
    Err(Unavailable(
        "built without the `magnetar` feature of bento-bench (`cargo xtask bench pulsar` \
         builds it)"
            .to_owned(),
    )
    .into())
}

/// A side that cannot be measured here, and why: the `sides` benchmark exits with
/// [`UNAVAILABLE_EXIT`] and prints the reason, which `cargo xtask bench` records in the results.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Exit code of a side that is [`Unavailable`].
pub const UNAVAILABLE_EXIT: i32 = 2;

/// Partitions of each Kafka topic: Bento's default (`messaging.kafka.partitions`), given to
/// every side's topics alike.
pub const KAFKA_PARTITIONS: i32 = 4;

/// Events of a throughput run sent per `publish_all` call, and raw sends kept in flight.
pub const WINDOW: usize = 1_000;

/// Bento's in-memory side with a few events, checked to have produced every figure: what the
/// `sides` benchmark does under `cargo test`.
pub fn smoke() -> Result<()> {
    let knobs = Knobs {
        events: 200,
        sizes: vec![100],
        rates: vec![1_000],
        seconds: Duration::from_secs(1),
        ..Knobs::from_env()?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = Report {
        backend: Backend::Memory,
        side: "bento",
    };
    runtime.block_on(bento_side::run(Backend::Memory, &knobs, &report))
}
