//! The chaos suite's quick variant, run by `cargo xtask test`: every bus scenario but the
//! broker kill (the resilience tests of the adapters kill the brokers already), on Pulsar and
//! Kafka, at the sizes `cargo xtask test` exports (`BENTO_CHAOS_*`, see xtask/src/chaos.rs).
//!
//! It needs the toxiproxy server `cargo xtask test` builds (`BENTO_CHAOS_TOXIPROXY`) and the
//! Kafka broker's chaos listener; run by hand without them, it says so and checks nothing.

#![cfg(all(feature = "pulsar", feature = "kafka"))]

use std::process::Command;
use std::time::Instant;

#[test]
fn no_acknowledged_event_is_lost_under_network_faults_and_consumer_kills() {
    if std::env::var_os("BENTO_CHAOS_TOXIPROXY").is_none() {
        eprintln!(
            "skipped: BENTO_CHAOS_TOXIPROXY is not set (`cargo xtask test` or `cargo xtask chaos --quick` sets it)"
        );
        return;
    }
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_bento-chaos"))
        .args(["suite", "all"])
        .status()
        .expect("running bento-chaos");
    assert!(
        status.success(),
        "an invariant of the chaos suite did not hold (the table above says which): {status}"
    );
    eprintln!("quick chaos suite: {:?}", started.elapsed());
}
