//! Runs the example binaries on every backend compiled in and checks their account of what
//! happened. The broker backends need `cargo xtask dev-env up` (done by `cargo xtask test`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{example, point_at_test_brokers};

/// Runs an example on `backend`, pointed at the test brokers when `cargo xtask test` names them.
fn example_on(name: &str, backend: &str) -> std::process::Output {
    let mut command = Command::new(example(name));
    command
        .env("BENTO_MESSAGING__BACKEND", backend)
        .env_remove("BENTO_CONFIG");
    point_at_test_brokers(&mut command);
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {name} example: {e}"))
}

fn run_on(backend: &str) {
    let output = example_on("quickstart", backend);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "quickstart on {backend} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("Bento quickstart on the `{backend}` backend")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Done: 2 users stored, 2 welcome emails, 2 audit entries, 6 CRM attempts, 2 dead letters."),
        "unexpected account on {backend}:\n{stdout}"
    );
    assert!(
        stdout.contains("gave up after 3 attempts: CRM unreachable"),
        "{stdout}"
    );
}

fn codecs_on(backend: &str) {
    let output = example_on("codecs", backend);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "codecs example on {backend} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("users.user-created (application/avro"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"UserCreated { user_id: "u-7", email: "ada@example.com", name: "Ada" }"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("shipping.order-shipped (application/x-protobuf"),
        "{stdout}"
    );
    assert!(stdout.contains(r#"parcel_ids: ["p-1", "p-2"]"#), "{stdout}");
}

/// Held by the codecs runs on Kafka, which share the example's topics and consumer groups
/// (fixed names): one run's records are read by its own consumers, framed or not.
#[cfg(feature = "kafka")]
static CODECS_ON_KAFKA: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn middleware_on(backend: &str) {
    let output = example_on("middleware", backend);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "middleware example on {backend} failed:\n{stdout}\n{stderr}"
    );
    let expected = "order of acme (2500 cents):
  attempt 1: ack
order of globex (25000 cents):
  attempt 1: retry after 300ms (payment provider busy)
  attempt 2: ack
order of initech (900 cents):
  attempt 1: dead letter, permanent (tenant `initech` is not served here)
billing's deliveries, as its observer saw them end: {\"ack\": 2, \"dead-letter\": 1, \"retry\": 1}
";
    assert!(
        stdout.contains(expected),
        "the layers and the observer did not see what they should on {backend}:\n{stdout}"
    );
}

#[test]
fn middleware_on_memory() {
    middleware_on("memory");
}

#[cfg(feature = "pulsar")]
#[test]
fn middleware_on_pulsar() {
    middleware_on("pulsar");
}

#[cfg(feature = "kafka")]
#[test]
fn middleware_on_kafka() {
    middleware_on("kafka");
}

/// The service stops on SIGTERM: its subscriptions and the bus shut down within the grace
/// period, and it exits cleanly.
#[cfg(unix)]
fn service_stops_on_sigterm(backend: &str) {
    use std::time::Duration;
    let mut command = Command::new(example("service"));
    command
        .env("BENTO_MESSAGING__BACKEND", backend)
        .env("BENTO_OBSERVABILITY__METRICS__ADDRESS", "127.0.0.1:0")
        .env_remove("BENTO_CONFIG");
    point_at_test_brokers(&mut command);
    // Let it subscribe, register users and handle them for a while: until its first summary
    // (10 s in), not a fixed 3 s, which a slow start on a real broker could outlast.
    let (output, took) = common::stop_with_sigterm_once_running(
        &mut command,
        common::SERVICE_RUNNING,
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the service on {backend} failed to stop:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("SIGTERM: stopping") && stdout.contains("stopped"),
        "{stdout}"
    );
    // The grace period is 5 s; closing the bus and the endpoint comes on top.
    assert!(took < Duration::from_secs(15), "stopping took {took:?}");
}

#[cfg(unix)]
#[test]
fn service_stops_on_sigterm_on_memory() {
    service_stops_on_sigterm("memory");
}

#[cfg(all(unix, feature = "pulsar"))]
#[test]
fn service_stops_on_sigterm_on_pulsar() {
    service_stops_on_sigterm("pulsar");
}

#[cfg(all(unix, feature = "kafka"))]
#[test]
fn service_stops_on_sigterm_on_kafka() {
    service_stops_on_sigterm("kafka");
}

#[test]
fn quickstart_on_memory() {
    run_on("memory");
}

#[test]
fn codecs_on_memory() {
    codecs_on("memory");
}

#[cfg(feature = "pulsar")]
#[test]
fn quickstart_on_pulsar() {
    run_on("pulsar");
}

#[cfg(feature = "pulsar")]
#[test]
fn codecs_on_pulsar() {
    codecs_on("pulsar");
}

#[cfg(feature = "kafka")]
#[test]
fn quickstart_on_kafka() {
    run_on("kafka");
}

#[cfg(feature = "kafka")]
#[test]
fn codecs_on_kafka() {
    let _kafka = CODECS_ON_KAFKA
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    codecs_on("kafka");
}

/// The codecs example on Kafka with the dev-env's schema registry (`BENTO_TEST_REGISTRY_URL`):
/// its Avro and Protobuf schemas are registered under `<topic>-value`, and its events, framed
/// with their schema ids, are read back by its handlers.
#[cfg(feature = "kafka")]
#[test]
fn codecs_on_kafka_with_a_schema_registry() {
    use bento_kafka::{RegistryClient, SchemaRegistryConfig};

    let _kafka = CODECS_ON_KAFKA
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let url = std::env::var("BENTO_TEST_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".to_owned());
    let mut command = Command::new(example("codecs"));
    command
        .env("BENTO_MESSAGING__BACKEND", "kafka")
        .env_remove("BENTO_CONFIG")
        .env("BENTO_MESSAGING__KAFKA__SCHEMA_REGISTRY__URL", &url);
    point_at_test_brokers(&mut command);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run the codecs example: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "codecs example on Kafka with the registry at {url} failed (is it up? `cargo xtask \
         dev-env up registry`):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(r#"UserCreated { user_id: "u-7""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#"parcel_ids: ["p-1", "p-2"]"#), "{stdout}");

    let registry = RegistryClient::new(&SchemaRegistryConfig::new(&url)).expect("a client");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for (subject, kind) in [
        ("codecs-example.users.user-created-value", "AVRO"),
        ("codecs-example.shipping.order-shipped-value", "PROTOBUF"),
    ] {
        let latest = runtime
            .block_on(registry.latest(subject))
            .unwrap_or_else(|e| panic!("reading subject {subject}: {e}"))
            .unwrap_or_else(|| panic!("the example registered no schema under {subject}"));
        assert_eq!(latest.schema_type, kind, "{subject}");
    }
}

#[cfg(not(feature = "kafka"))]
#[test]
fn asking_for_kafka_without_the_feature_names_it() {
    let output = Command::new(example("quickstart"))
        .env("BENTO_MESSAGING__BACKEND", "kafka")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the quickstart: {e}"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`kafka` cargo feature"), "{stderr}");
}

/// The configuration examples parse and validate, with the values they show.
#[test]
fn pulsar_production_config_is_valid() {
    use bento_runtime::{BackendKind, Config};
    use figment::Figment;
    use figment::providers::{Format, Toml};

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/pulsar-production.toml");
    // The file alone, without this process's BENTO_ variables.
    let config = Config::from_figment(Figment::from(Toml::file_exact(&path)))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(config.messaging.backend, BackendKind::Pulsar);
    let pulsar: bento_pulsar::PulsarConfig = config
        .backend_settings(BackendKind::Pulsar)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pulsar
        .validate()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(pulsar.service_url.starts_with("pulsar+ssl://"));
    assert!(pulsar.create_namespaces);
    assert_eq!(
        (pulsar.tenant.as_str(), pulsar.namespace.as_str()),
        ("shop", "orders")
    );
    assert!(pulsar.auth.token_file.is_some() && pulsar.tls.trust_cert_path.is_some());
    assert_eq!(pulsar.producer.compression, bento_pulsar::Compression::Lz4);
}
