//! Runs the service's binary as its users run it: `demo` on the in-memory bus, then on the
//! Pulsar broker named by `BENTO_TEST_PULSAR_URL` (`cargo xtask dev-env up pulsar`).

use std::process::Command;

fn run_demo(envs: &[(&str, String)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_orders-tutorial"))
        .arg("demo")
        .env_remove("BENTO_MESSAGING__BACKEND")
        .envs(envs.iter().map(|(key, value)| (*key, value.as_str())))
        .output()
        .expect("the tutorial's binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`orders-tutorial demo` failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn assert_demo_output(stdout: &str) {
    assert_eq!(stdout.matches("placed order-").count(), 3, "{stdout}");
    assert!(stdout.contains("shipped 2 of 3 orders"), "{stdout}");
    // The provider's first outage was retried.
    let metrics = stdout
        .lines()
        .find(|line| line.starts_with("metrics:"))
        .unwrap_or_else(|| panic!("no metrics line in:\n{stdout}"));
    assert!(!metrics.contains(" 0 retried"), "{metrics}");
}

#[test]
fn demo_runs_on_memory() {
    let stdout = run_demo(&[("BENTO_MESSAGING__BACKEND", "memory".into())]);
    assert_demo_output(&stdout);
}

#[test]
fn demo_runs_on_pulsar() {
    let service_url = std::env::var("BENTO_TEST_PULSAR_URL").expect(
        "BENTO_TEST_PULSAR_URL is not set: start Pulsar with `cargo xtask dev-env up pulsar` \
         and export the variables of `cargo xtask dev-env env`",
    );
    let admin_url = std::env::var("BENTO_TEST_PULSAR_ADMIN_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let stdout = run_demo(&[
        ("BENTO_MESSAGING__BACKEND", "pulsar".into()),
        ("BENTO_MESSAGING__PULSAR__SERVICE_URL", service_url),
        ("BENTO_MESSAGING__PULSAR__ADMIN_URL", admin_url),
    ]);
    assert_demo_output(&stdout);
}
