//! Shared by the Kafka test binaries: where the broker is, and the broker lock.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::OnceLock;

use bento_kafka::{KafkaBus, KafkaConfig};

/// The broker the tests use: `BENTO_TEST_KAFKA_BOOTSTRAP`, by default the dev broker.
pub fn bootstrap() -> String {
    std::env::var("BENTO_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
}

fn lock_file() -> File {
    let dir = workspace_root().join("target");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join("bento-kafka-broker.lock");
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// Held shared by test binaries that only use the broker, for their whole run, so the
/// resilience test (which kills and restarts it, holding the lock exclusively) never runs at
/// the same time.
pub fn share_broker() {
    static SHARED: OnceLock<File> = OnceLock::new();
    SHARED.get_or_init(|| {
        let file = lock_file();
        file.lock_shared()
            .unwrap_or_else(|e| panic!("taking the broker lock (shared): {e}"));
        file
    });
}

/// Takes the broker for this process alone (released at exit).
pub fn own_broker() {
    static OWNED: OnceLock<File> = OnceLock::new();
    OWNED.get_or_init(|| {
        let file = lock_file();
        file.lock()
            .unwrap_or_else(|e| panic!("taking the broker lock (exclusive): {e}"));
        file
    });
}

/// The configuration the tests use: the test broker, 4 partitions per created topic.
pub fn config() -> KafkaConfig {
    let mut config = KafkaConfig::new(bootstrap());
    config.client_id = "bento-kafka-tests".into();
    config.partitions = 4;
    config.commit_interval_ms = 200;
    config
}

/// A connected bus; panics (fails the test) when the broker cannot be reached.
pub async fn connect(config: KafkaConfig) -> KafkaBus {
    let bootstrap = config.bootstrap_servers.clone();
    KafkaBus::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "the Kafka broker at {bootstrap} is unreachable ({e}); start it with \
             `cargo xtask dev-env up kafka` or point BENTO_TEST_KAFKA_BOOTSTRAP at one"
        )
    })
}

/// A name unique to this run.
pub fn unique(what: &str) -> String {
    format!("bento-kafka-{what}-{}", uuid::Uuid::now_v7().simple())
}
