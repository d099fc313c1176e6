//! Sixteen writers commit 50,000 events through the outbox on a real PostgreSQL server while
//! the relay publishes them to the real Pulsar or Kafka broker: per ordering key, events arrive
//! in commit order, and none is missing.
//!
//! Commit order per key is made visible by the writers themselves: each unit of work bumps its
//! key's counter row (`UPDATE .. RETURNING n`) and records `n` in its event, so the key's
//! commits are numbered 1, 2, 3, ... in the order they committed. `BENTO_WRITERS_EVENTS`
//! (default 50,000) changes the size.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bento_runtime::Config;
use bento_runtime::prelude::*;
use bento_runtime::sqlx::sqlx::{self, Connection as _};
use serde::{Deserialize, Serialize};

const WRITERS: u64 = 16;
const KEYS: u64 = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counted {
    key: String,
    n: i64,
}

impl DomainEvent for Counted {
    const EVENT_TYPE: &'static str = "writers.counted";
    const AGGREGATE_TYPE: &'static str = "counter";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

/// A fresh database on the dev-env's PostgreSQL server.
async fn fresh_database(run: &str) -> String {
    let base = std::env::var("BENTO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://bento@127.0.0.1:5433/bento".to_string());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {base} does not answer ({e}): run `cargo xtask dev-env up postgres`"
            )
        });
    let name = format!("writers_{run}");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("creating the test database");
    let (prefix, _) = base.rsplit_once('/').expect("a database in the URL");
    format!("{prefix}/{name}")
}

/// The configuration: the backend at the test brokers, fresh topics, the outbox on `database`.
fn config(backend: &str, run: &str, database: &str, dir: &std::path::Path) -> Config {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let text = format!(
        r#"[messaging]
backend = "{backend}"

[messaging.pulsar]
service_url = "{pulsar}"
admin_url = "{admin}"
namespace = "writers-{run}"
create_namespaces = true

[messaging.kafka]
bootstrap_servers = "{kafka}"

[messaging.kafka.topics]
"writers.counted" = "writers-{run}"

[outbox]
database_url = "{database}"
max_connections = 20
"#,
        pulsar = env("BENTO_TEST_PULSAR_URL", "pulsar://127.0.0.1:6650"),
        admin = env("BENTO_TEST_PULSAR_ADMIN_URL", "http://127.0.0.1:8080"),
        kafka = env("BENTO_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
    );
    let path: PathBuf = dir.join("bento.toml");
    std::fs::write(&path, text).expect("writes the configuration");
    Config::from_figment(Config::figment(&path)).expect("a valid configuration")
}

/// What the subscriber saw: per key, the `n` of each new message in arrival order.
#[derive(Default)]
struct Seen {
    ids: HashSet<MessageId>,
    per_key: BTreeMap<String, Vec<i64>>,
    total: usize,
}

async fn writer(
    outbox: bento_runtime::sqlx::Outbox<sqlx::Any, bento_runtime::Codecs>,
    commands: u64,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..commands {
        let key = format!("k{:03}", rng.u64(0..KEYS));
        let mut work = outbox.begin().await.expect("begins");
        let n: i64 = sqlx::query_scalar("UPDATE counters SET n = n + 1 WHERE key = $1 RETURNING n")
            .bind(key.clone())
            .fetch_one(&mut *work)
            .await
            .expect("bumps the key's counter");
        work.record(Counted { key, n });
        work.commit().await.expect("commits");
    }
}

async fn writers_on(backend: &str) {
    let events: u64 = std::env::var("BENTO_WRITERS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    bento_testkit::broker_lock::share(backend);
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = fresh_database(&run).await;
    let bento = Bento::from_config(config(backend, &run, &database, dir.path()))
        .await
        .expect("the runtime starts");
    let outbox = bento.outbox().expect("an outbox");
    sqlx::query("CREATE TABLE counters (key TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(outbox.pool())
        .await
        .expect("creates the counters");
    for k in 0..KEYS {
        sqlx::query("INSERT INTO counters (key, n) VALUES ($1, 0)")
            .bind(format!("k{k:03}"))
            .execute(outbox.pool())
            .await
            .expect("creates a counter");
    }

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let handler = {
        let seen = seen.clone();
        move |event: Counted, ctx: Context| {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.ids.insert(ctx.message_id()) {
                seen.per_key.entry(event.key).or_default().push(event.n);
                seen.total += 1;
            }
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let subscription = bento
        .bus()
        .subscribe_with(
            SubscriptionSpec::named("writers.check").concurrency(8),
            handler,
        )
        .await
        .expect("subscribes");

    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(outbox.clone(), events / WRITERS, w)))
        .collect();
    for task in tasks {
        task.await.expect("a writer ends");
    }
    let committed_in = started.elapsed();
    let expected = usize::try_from(events / WRITERS * WRITERS).expect("fits");
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.lock().unwrap_or_else(|e| e.into_inner()).total < expected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{backend}: {expected} events committed by {WRITERS} writers in {committed_in:?}, all handled after {:?}",
        started.elapsed()
    );
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    assert_eq!(seen.total, expected, "every committed event arrived");
    for (key, ns) in &seen.per_key {
        let in_commit_order: Vec<i64> = (1..=i64::try_from(ns.len()).expect("fits")).collect();
        assert_eq!(
            ns, &in_commit_order,
            "key {key}: arrival order is commit order, with no gap"
        );
    }
    subscription.shutdown().await.expect("stops");
    bento.shutdown().await.expect("stops");
}

#[cfg(feature = "pulsar")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_keep_commit_order_per_key_on_pulsar() {
    writers_on("pulsar").await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_keep_commit_order_per_key_on_kafka() {
    writers_on("kafka").await;
}
