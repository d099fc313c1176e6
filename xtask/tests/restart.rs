//! Crash and restart: `dev-env kill` SIGKILLs the brokers and PostgreSQL, `dev-env up` brings
//! them back with their data. This is the tooling resilience tests use (through
//! `BENTO_XTASK_BIN`).
//!
//! Needs running brokers and PostgreSQL, like the smoke tests; it leaves them running and healthy.

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

#[test]
fn postgres_comes_back_with_its_committed_rows_after_a_crash() {
    let table = unique("bento_restart").replace('-', "_");
    psql(&format!("create table {table} (note text not null)"));
    // Committed (psql runs each statement in its own transaction) right before the crash: with
    // fsync on it must survive.
    psql(&format!("insert into {table} values ('survives-a-crash')"));

    dev_env(&["kill", "postgres"]);
    // No "nothing answers now" check here: the broker crash test above may run `dev-env up`
    // (of everything) at the same time and bring PostgreSQL back already. `kill` itself waits
    // until the port is closed.
    dev_env(&["up", "postgres"]);
    assert_eq!(
        psql(&format!("select note from {table}")),
        "survives-a-crash",
        "PostgreSQL lost the row of {table} in the crash"
    );
    psql(&format!("drop table {table}"));
}
