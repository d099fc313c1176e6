//! The chaos suite's quick variant, run by `cargo xtask test`: every bus scenario but the
//! broker kill (the adapters' resilience tests kill the brokers in every run already), on
//! Pulsar and Kafka, at the sizes `cargo xtask test` exports (`BENTO_CHAOS_*`, see
//! xtask/src/chaos.rs), or at the same sizes when run by hand after `cargo xtask dev-env up`.
//!
//! It needs the toxiproxy server `cargo xtask test` and `cargo xtask chaos` build
//! (`BENTO_CHAOS_TOXIPROXY`, else where they put it) and the Kafka broker's chaos listener.

#![cfg(all(feature = "pulsar", feature = "kafka"))]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The quick sizes (as `QUICK_BUS` in xtask/src/chaos.rs), for variables the caller left unset.
const QUICK: &[(&str, &str)] = &[
    ("BENTO_CHAOS_EVENTS", "2000"),
    ("BENTO_CHAOS_FAULT_SECS", "3"),
    ("BENTO_CHAOS_OUTAGE_SECS", "5"),
    ("BENTO_CHAOS_CONSUMER_KILLS", "5"),
    (
        "BENTO_CHAOS_SCENARIOS",
        "latency,bandwidth,reset,outage,consumer-kill,cluster-broker-kill",
    ),
    ("BENTO_CHAOS_SIZE", "quick"),
];

fn toxiproxy() -> PathBuf {
    if let Some(path) = std::env::var_os("BENTO_CHAOS_TOXIPROXY") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("BENTO_DEV_ENV_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dev-env"));
    let path = home.join("toxiproxy/v2.5.0/toxiproxy-server");
    assert!(
        path.exists(),
        "no toxiproxy server at {}: run `cargo xtask chaos --quick` (it builds it) or `cargo xtask test`",
        path.display()
    );
    path
}

#[test]
fn no_acknowledged_event_is_lost_under_network_faults_and_consumer_kills() {
    let mut suite = Command::new(env!("CARGO_BIN_EXE_bento-chaos"));
    suite
        .args(["suite", "all"])
        .env("BENTO_CHAOS_TOXIPROXY", toxiproxy());
    for (name, value) in QUICK {
        if std::env::var_os(name).is_none() {
            suite.env(name, value);
        }
    }
    let started = Instant::now();
    let status = suite.status().expect("running bento-chaos");
    assert!(
        status.success(),
        "an invariant of the chaos suite did not hold, or a scenario could not run (the table \
         above says which): {status}"
    );
    eprintln!("quick chaos suite: {:?}", started.elapsed());
}
