//! `bento admin schemas` on Kafka, against the real broker and the dev-env's schema registry
//! (`cargo xtask dev-env up kafka registry`; `BENTO_TEST_KAFKA_BOOTSTRAP`,
//! `BENTO_TEST_REGISTRY_URL`): a topic's subject versions as a table and as JSON, one version
//! with its schema, and the error without a registry.

use std::process::Output;
use std::sync::Arc;

use bento_application::{Bus, MessageBus};
use bento_domain::DomainEvent;
use bento_kafka::{KafkaBus, KafkaConfig, SchemaRegistryConfig};
use bento_runtime::{Codecs, Format};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PlanChanged {
    plan_id: String,
    seats: u32,
}

impl DomainEvent for PlanChanged {
    const EVENT_TYPE: &'static str = "billing.plan-changed";
    const AGGREGATE_TYPE: &'static str = "plan";
    fn aggregate_id(&self) -> String {
        self.plan_id.clone()
    }
}

fn kafka_bootstrap() -> String {
    std::env::var("BENTO_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn registry_url() -> String {
    std::env::var("BENTO_TEST_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".to_owned())
}

/// Runs the built `bento` on Kafka, with the registry or without.
async fn bento(registry: bool, args: &[&str]) -> Output {
    let dir = std::env::temp_dir().join("bento-cli-tests");
    let _ = std::fs::create_dir_all(&dir);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bento"));
    command
        .current_dir(&dir)
        .args(args)
        .env_remove("BENTO_CONFIG")
        .env("BENTO_MESSAGING__BACKEND", "kafka")
        .env(
            "BENTO_MESSAGING__KAFKA__BOOTSTRAP_SERVERS",
            kafka_bootstrap(),
        );
    if registry {
        command.env(
            "BENTO_MESSAGING__KAFKA__SCHEMA_REGISTRY__URL",
            registry_url(),
        );
    }
    let shown = format!("bento {}", args.join(" "));
    tokio::task::spawn_blocking(move || {
        command
            .output()
            .unwrap_or_else(|e| panic!("running {shown}: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("the bento process task failed: {e}"))
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "bento failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_schemas_lists_a_topics_subject_versions() {
    bento_testkit::broker_lock::share("kafka");
    let topic = format!("bento-cli-schemas-{}", uuid::Uuid::now_v7().simple());
    let mut config = KafkaConfig::new(kafka_bootstrap());
    config
        .topics
        .insert(PlanChanged::EVENT_TYPE.to_owned(), topic.clone());
    config.schema_registry = Some(SchemaRegistryConfig::new(registry_url()));
    let kafka = KafkaBus::connect(config).await.unwrap_or_else(|e| {
        panic!("the Kafka broker is unreachable ({e}): `cargo xtask dev-env up kafka`")
    });
    let bus = Bus::new(Arc::new(kafka.clone()), Codecs::new(Format::Json));
    bus.declare::<PlanChanged>().await.unwrap_or_else(|e| {
        panic!(
            "declaring the schema with the registry at {} failed ({e}): `cargo xtask dev-env up \
             registry`",
            registry_url()
        )
    });

    let subject = format!("{topic}-value");
    let table = stdout(&bento(true, &["admin", "schemas", &topic]).await);
    assert!(table.contains(&subject), "{table}");
    assert!(table.contains("JSON"), "{table}");
    let rows: Value = serde_json::from_str(&stdout(
        &bento(true, &["--json", "admin", "schemas", &topic]).await,
    ))
    .expect("JSON output");
    assert_eq!(rows[0]["subject"], subject.as_str());
    assert_eq!(rows[0]["version"], 1);
    assert_eq!(rows[0]["type"], "JSON");

    let one = stdout(&bento(true, &["admin", "schemas", &topic, "--version", "1"]).await);
    assert!(one.contains("\"seats\""), "the schema itself: {one}");

    let without = bento(false, &["admin", "schemas", &topic]).await;
    assert!(!without.status.success());
    let error = String::from_utf8_lossy(&without.stderr);
    assert!(
        error.contains("messaging.kafka.schema_registry.url"),
        "says what to set: {error}"
    );
    kafka.close().await.expect("the bus closes");
}
