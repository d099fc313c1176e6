//! Smoke tests proving the development brokers are the real thing.
//!
//! They talk to Pulsar, Kafka and PostgreSQL through the addresses in `BENTO_TEST_PULSAR_URL`,
//! `BENTO_TEST_PULSAR_ADMIN_URL`, `BENTO_TEST_KAFKA_BOOTSTRAP` and `BENTO_TEST_POSTGRES_URL` (set
//! by `cargo xtask test`; the `dev-env` defaults otherwise). A missing broker fails these tests
//! loudly: start them with `cargo xtask dev-env up` or run everything with `cargo xtask test`.

mod common;

use common::*;
use xtask::{probe, versions};

#[test]
fn pulsar_admin_reports_its_version_and_the_standalone_cluster() {
    let admin = pulsar_admin_url();
    let version = get_ok(&format!("{admin}/admin/v2/brokers/version"));
    assert_eq!(
        version.trim().trim_matches('"'),
        versions::PULSAR_VERSION,
        "unexpected Pulsar version"
    );
    let clusters: Vec<String> =
        serde_json::from_str(&get_ok(&format!("{admin}/admin/v2/clusters")))
            .expect("the cluster list is a JSON array of names");
    assert_eq!(clusters, ["standalone"]);
    let namespaces = get_ok(&format!("{admin}/admin/v2/namespaces/public"));
    assert!(
        namespaces.contains("public/default"),
        "namespaces of tenant public: {namespaces}"
    );
}

#[test]
fn pulsar_binary_protocol_answers_connect() {
    let address = pulsar_address();
    let server = probe::pulsar_connect(&address, TIMEOUT)
        .unwrap_or_else(|err| panic!("Pulsar binary protocol at {address}: {err:#}\n{HINT}"));
    assert!(
        server.contains(versions::PULSAR_VERSION),
        "CONNECTED reports server version {server:?}"
    );
}

#[test]
fn pulsar_stores_a_message_and_returns_it() {
    let path = pulsar_create_topic("bento-smoke");
    let payload = unique("hello-pulsar");
    pulsar_produce(&path, &payload);
    let stored = pulsar_first_message(&path);
    assert!(
        stored.contains(&payload),
        "read back {stored:?}, expected {payload:?}"
    );
}

#[test]
fn kafka_answers_api_versions() {
    let bootstrap = kafka_bootstrap();
    let apis = probe::kafka_api_versions(&bootstrap, TIMEOUT)
        .unwrap_or_else(|err| panic!("Kafka at {bootstrap}: {err:#}\n{HINT}"));
    for (key, name) in [
        (0, "Produce"),
        (1, "Fetch"),
        (3, "Metadata"),
        (18, "ApiVersions"),
        (19, "CreateTopics"),
    ] {
        assert!(
            apis.iter().any(|a| a.api_key == key),
            "Kafka does not list {name} ({key}) in {apis:?}"
        );
    }
}

#[test]
fn kafka_round_trips_a_record_with_its_own_cli() {
    let bootstrap = kafka_bootstrap();
    // Fail at once, not after the tools' own minute of retries.
    if let Err(err) = probe::kafka_api_versions(&bootstrap, TIMEOUT) {
        panic!("Kafka at {bootstrap}: {err:#}\n{HINT}");
    }
    let topic = unique("bento-smoke");
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    );
    let described = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--topic",
            &topic,
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&described.stdout).contains(&topic));

    let record = unique("hello-kafka");
    kafka_tool(
        "org.apache.kafka.tools.ConsoleProducer",
        &["--bootstrap-server", &bootstrap, "--topic", &topic],
        Some(&format!("{record}\n")),
    );
    let consumed = kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "60000",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&consumed.stdout);
    assert!(
        stdout.lines().any(|l| l.trim() == record),
        "consumed {stdout:?}, expected {record:?}"
    );
}

#[test]
fn postgres_is_the_pinned_major_and_serves_the_bento_database() {
    let version: u32 = psql("show server_version_num")
        .parse()
        .expect("server_version_num is a number");
    assert_eq!(
        version / 10_000,
        versions::POSTGRES_MAJOR,
        "server {version}"
    );
    assert_eq!(
        psql("select current_user || ' ' || current_database()"),
        "bento bento"
    );
    // The crash tests rely on committed rows surviving a SIGKILL.
    assert_eq!(psql("show fsync"), "on");
}
