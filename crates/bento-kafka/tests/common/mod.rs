//! Shared by the Kafka test binaries: where the broker is, and the broker lock.

#![allow(dead_code)]

use std::path::PathBuf;

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

/// Held shared by test binaries that only use the broker, for their whole run, so the
/// resilience test (which kills and restarts it, holding the lock exclusively) never runs at
/// the same time.
pub fn share_broker() {
    bento_testkit::broker_lock::share("kafka");
}

/// Takes the broker for this process alone (released at exit).
pub fn own_broker() {
    bento_testkit::broker_lock::own("kafka");
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

/// Runs `interop/python/<script>` with `args` and reads its JSON output, first installing
/// `package` with pip unless python3 can already run `import <modules>`.
pub fn python(
    script: &str,
    modules: &str,
    package: &str,
    args: &[&str],
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    use std::process::Command;
    let importable = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        let install = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", package])
            .output()?;
        assert!(
            install.status.success(),
            "installing {package} failed: {}",
            String::from_utf8_lossy(&install.stderr)
        );
    }
    let script = workspace_root().join("interop/python").join(script);
    let output = Command::new("python3").arg(script).args(args).output()?;
    assert!(
        output.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}
