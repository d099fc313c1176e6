//! What the example tests share.

use std::process::Command;

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
