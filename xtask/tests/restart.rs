//! Crash and restart: `dev-env kill` SIGKILLs the brokers, `dev-env up` brings them back with
//! their data. This is the tooling resilience tests use (through `BENTO_XTASK_BIN`).
//!
//! Needs running brokers, like the smoke tests; it leaves them running and healthy.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use xtask::probe;

/// The xtask binary: `BENTO_XTASK_BIN` under `cargo xtask test`, else the one cargo just built.
fn xtask() -> Command {
    Command::new(var_or(
        "BENTO_XTASK_BIN",
        env!("CARGO_BIN_EXE_xtask").to_string(),
    ))
}

fn dev_env(args: &[&str]) {
    let out = xtask()
        .arg("dev-env")
        .args(args)
        .output()
        .expect("running the xtask binary");
    assert!(
        out.status.success(),
        "xtask dev-env {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn brokers_come_back_with_their_data_after_a_crash() {
    let bootstrap = kafka_bootstrap();
    if let Err(err) = probe::kafka_api_versions(&bootstrap, Duration::from_secs(10)) {
        panic!("Kafka at {bootstrap}: {err:#}\n{HINT}");
    }
    let pulsar_topic = pulsar_create_topic("bento-restart");
    let payload = unique("survives-a-crash");
    pulsar_produce(&pulsar_topic, &payload);
    let kafka_topic = unique("bento-restart");
    let create = [
        "--bootstrap-server",
        &bootstrap,
        "--create",
        "--topic",
        &kafka_topic,
    ];
    kafka_tool("org.apache.kafka.tools.TopicCommand", &create, None);

    dev_env(&["kill", "pulsar"]);
    dev_env(&["kill", "kafka"]);
    assert!(
        probe::kafka_api_versions(&bootstrap, Duration::from_secs(2)).is_err(),
        "Kafka still answers after kill"
    );
    assert!(
        probe::pulsar_connect(&pulsar_address(), Duration::from_secs(2)).is_err(),
        "Pulsar still answers after kill"
    );

    dev_env(&["up"]);
    assert!(
        pulsar_first_message(&pulsar_topic).contains(&payload),
        "Pulsar lost {pulsar_topic} in the crash"
    );
    let describe = [
        "--bootstrap-server",
        &bootstrap,
        "--describe",
        "--topic",
        &kafka_topic,
    ];
    let described = kafka_tool("org.apache.kafka.tools.TopicCommand", &describe, None);
    assert!(
        String::from_utf8_lossy(&described.stdout).contains(&kafka_topic),
        "Kafka lost {kafka_topic} in the crash"
    );
}
