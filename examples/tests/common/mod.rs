//! What the example tests share.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// An example binary cargo built next to this test binary (`cargo test` does not build them:
/// `cargo build -p bento-examples --examples` with the features of the backends under test).
pub fn example(name: &str) -> PathBuf {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test binary: {e}"));
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} was not built; run `cargo build -p bento-examples --examples` with the features of \
         the backends under test",
        binary.display()
    );
    binary
}

/// Points `command` at the test brokers `cargo xtask test` names, where it names them.
pub fn point_at_test_brokers(command: &mut Command) {
    for (test_var, config_var) in [
        (
            "BENTO_TEST_PULSAR_URL",
            "BENTO_MESSAGING__PULSAR__SERVICE_URL",
        ),
        (
            "BENTO_TEST_PULSAR_ADMIN_URL",
            "BENTO_MESSAGING__PULSAR__ADMIN_URL",
        ),
        (
            "BENTO_TEST_KAFKA_BOOTSTRAP",
            "BENTO_MESSAGING__KAFKA__BOOTSTRAP_SERVERS",
        ),
    ] {
        if let Some(value) = std::env::var_os(test_var) {
            command.env(config_var, value);
        }
    }
}
