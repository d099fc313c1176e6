//! `cargo xtask test`: format check, clippy, then the whole suite against fresh brokers.

use std::ffi::OsString;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::TestArgs;
use crate::config::{Broker, HOME_ENV, Layout, Ports};
use crate::devenv::{self, DevEnv};
use crate::prereq::{self, Tool};
use crate::progress::{self, interrupted};
use crate::security::SecurityFiles;
use crate::start;

/// Cargo features enabled for clippy and the test run: the single list to edit.
///
/// Add `crate/feature` entries as backends land, e.g. `"bento-runtime/pulsar"`,
/// `"bento-runtime/kafka"`.
pub const TEST_FEATURES: &[&str] = &[
    "bento-runtime/pulsar",
    "bento-runtime/kafka",
    "bento-examples/pulsar",
    "bento-examples/kafka",
    "bento-pulsar/oauth2",
    "bento-runtime/sqlite",
    "bento-runtime/postgres",
    "bento-sqlx/postgres",
    "bento-examples/postgres",
    "bento-chaos/pulsar",
    "bento-chaos/kafka",
    "bento-runtime/testing",
];

/// Environment variables exported to the tests (also printed by `dev-env up`).
///
/// * `BENTO_TEST_PULSAR_URL`, `BENTO_TEST_PULSAR_ADMIN_URL`, `BENTO_TEST_KAFKA_BOOTSTRAP`: where the
///   brokers are; `BENTO_TEST_POSTGRES_URL`: the PostgreSQL database
///   (`postgres://bento@127.0.0.1:<port>/bento`, no password); `BENTO_TEST_REGISTRY_URL`: the
///   schema registry's Confluent-compatible API (`http://127.0.0.1:<port>/apis/ccompat/v7`).
/// * `BENTO_TEST_PULSAR_TLS_URL`, `BENTO_TEST_PULSAR_HTTPS_URL`: the Pulsar TLS ports;
///   `BENTO_TEST_PULSAR_CA_CERT`: the CA that signed the broker certificate;
///   `BENTO_TEST_PULSAR_TOKEN_SECRET`: the HMAC key the broker checks tokens with.
/// * `BENTO_DEV_ENV_HOME`: the broker installs (`kafka/libs`, `pulsar/dist`), data and logs.
/// * `BENTO_XTASK_BIN`: this xtask binary, so a test can run `$BENTO_XTASK_BIN dev-env kill kafka`
///   (calling `cargo xtask` from inside `cargo test` would wait for cargo's build lock).
/// * `BENTO_TEST_BROKERS=1`: the brokers were started for this run and must be reachable.
pub fn test_env(layout: &Layout, ports: &Ports) -> Vec<(String, String)> {
    let security = SecurityFiles::at(layout);
    // Linux names a binary replaced on disk while it runs (a rebuild) "<path> (deleted)"; the
    // path itself holds the new build.
    let xtask = std::env::current_exe()
        .map(|p| {
            let path = p.display().to_string();
            path.strip_suffix(" (deleted)")
                .map_or(path.clone(), str::to_string)
        })
        .unwrap_or_else(|_| "xtask".to_string());
    vec![
        ("BENTO_TEST_PULSAR_URL".to_string(), ports.pulsar_url()),
        (
            "BENTO_TEST_PULSAR_ADMIN_URL".to_string(),
            ports.pulsar_admin_url(),
        ),
        (
            "BENTO_TEST_KAFKA_BOOTSTRAP".to_string(),
            ports.kafka_bootstrap(),
        ),
        ("BENTO_TEST_POSTGRES_URL".to_string(), ports.postgres_url()),
        ("BENTO_TEST_REGISTRY_URL".to_string(), ports.registry_url()),
        (HOME_ENV.to_string(), layout.home.display().to_string()),
        (
            "BENTO_TEST_PULSAR_TLS_URL".to_string(),
            ports.pulsar_tls_url(),
        ),
        (
            "BENTO_TEST_PULSAR_HTTPS_URL".to_string(),
            ports.pulsar_https_url(),
        ),
        (
            "BENTO_TEST_PULSAR_CA_CERT".to_string(),
            security.ca_cert.display().to_string(),
        ),
        (
            "BENTO_TEST_PULSAR_TOKEN_SECRET".to_string(),
            security.token_secret.display().to_string(),
        ),
        ("BENTO_XTASK_BIN".to_string(), xtask),
        ("BENTO_TEST_BROKERS".to_string(), "1".to_string()),
    ]
}

/// `BENTO_*_PORT` variables for `ports`.
pub(crate) fn port_env(ports: &Ports) -> [(&'static str, String); 9] {
    [
        ("BENTO_PULSAR_PORT", ports.pulsar.to_string()),
        ("BENTO_PULSAR_HTTP_PORT", ports.pulsar_http.to_string()),
        ("BENTO_PULSAR_BOOKIE_PORT", ports.pulsar_bookie.to_string()),
        ("BENTO_PULSAR_TLS_PORT", ports.pulsar_tls.to_string()),
        ("BENTO_PULSAR_HTTPS_PORT", ports.pulsar_https.to_string()),
        ("BENTO_KAFKA_PORT", ports.kafka.to_string()),
        (
            "BENTO_KAFKA_CONTROLLER_PORT",
            ports.kafka_controller.to_string(),
        ),
        ("BENTO_POSTGRES_PORT", ports.postgres.to_string()),
        ("BENTO_REGISTRY_PORT", ports.registry.to_string()),
    ]
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// `--features ...` for the selected packages (all of [`TEST_FEATURES`] for the whole workspace).
pub(crate) fn feature_args(packages: &[String]) -> Vec<String> {
    let features: Vec<&str> = TEST_FEATURES
        .iter()
        .copied()
        .filter(|f| {
            packages.is_empty()
                || packages
                    .iter()
                    .any(|p| f.split('/').next() == Some(p.as_str()))
        })
        .collect();
    if features.is_empty() {
        Vec::new()
    } else {
        vec!["--features".to_string(), features.join(" ")]
    }
}

/// `--workspace`, or `-p <package>` for each selected package.
fn scope_args(packages: &[String]) -> Vec<String> {
    if packages.is_empty() {
        return vec!["--workspace".to_string()];
    }
    packages
        .iter()
        .flat_map(|p| ["-p".to_string(), p.clone()])
        .collect()
}

fn show(cmd: &Command) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') || a.is_empty() {
                format!("\"{a}\"")
            } else {
                a.into_owned()
            }
        })
        .collect();
    format!("cargo {}", args.join(" "))
}

/// Runs a command to completion; on Ctrl-C gives it a few seconds to stop, then kills it.
pub(crate) fn run_step(mut cmd: Command) -> Result<bool> {
    println!("\n==> {}", show(&cmd));
    let mut child = cmd.spawn().context("starting cargo")?;
    loop {
        if let Some(status) = child.try_wait().context("waiting for cargo")? {
            return Ok(status.success());
        }
        if interrupted() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().context("waiting for cargo")?.is_none()
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the whole check: fmt, clippy, brokers up, tests, brokers down (even when tests fail).
pub fn run(args: TestArgs) -> Result<()> {
    progress::install_interrupt_handler()?;
    let started = Instant::now();
    let env = DevEnv::new(args.mode, args.ports);
    let managed = !args.no_brokers;
    let packages = &args.packages;
    ensure_prerequisites(managed, packages)?;
    static_checks(packages)?;
    progress::check_interrupted()?;
    broker_free_steps(packages)?;

    let mut test = test_command(packages);
    if managed {
        start_brokers(&env, args.keep_data, &mut test)?;
    } else {
        external_broker_env(&env, &mut test);
    }
    let tests_passed = run_tests(test, &env, managed, packages);

    let mut stopped = Ok(());
    if managed && !args.keep_running {
        println!("\n==> stopping the brokers and PostgreSQL");
        stopped = devenv::lock(&env.layout).and_then(|_lock| devenv::down(&env, &Broker::ALL));
    } else if managed {
        println!(
            "\nbrokers left running (--keep-running); stop them with `cargo xtask dev-env down`"
        );
    }
    let tests_passed = tests_passed?;
    stopped.context("stopping the brokers")?;
    progress::verdict("test", tests_passed, started, "tests failed")
}

/// The tools the run needs on the machine: Java and PostgreSQL for managed brokers, node and the
/// AsyncAPI validator for the packages whose tests validate documents.
fn ensure_prerequisites(managed: bool, packages: &[String]) -> Result<()> {
    // Building needs no protoc on the machine: `xtask/protoc` falls back to a bundled one.
    if managed {
        prereq::ensure(&[Tool::Java, Tool::Postgres])?;
    }
    // Tests of these validate AsyncAPI documents with the official parser, run with node.
    const ASYNCAPI_PACKAGES: [&str; 3] = ["bento-asyncapi", "bento-runtime", "bento-examples"];
    if packages.is_empty()
        || packages
            .iter()
            .any(|p| ASYNCAPI_PACKAGES.contains(&p.as_str()))
    {
        prereq::ensure(&[Tool::Node])?;
        crate::asyncapi::install_validator()?;
    }
    Ok(())
}

/// `cargo fmt -- --check`, then clippy with every warning an error.
fn static_checks(packages: &[String]) -> Result<()> {
    let mut fmt = cargo();
    fmt.arg("fmt");
    if packages.is_empty() {
        fmt.arg("--all");
    } else {
        fmt.args(scope_args(packages));
    }
    fmt.args(["--", "--check"]);
    if !run_step(fmt)? {
        bail!("`cargo fmt -- --check` failed: run `cargo fmt --all`");
    }
    let mut clippy = cargo();
    clippy
        .arg("clippy")
        .args(scope_args(packages))
        .arg("--all-targets")
        .args(feature_args(packages));
    clippy.args(["--", "-D", "warnings"]);
    if !run_step(clippy)? {
        bail!("clippy failed");
    }
    Ok(())
}

/// What needs no broker: the example binaries, the documentation's examples and the guide.
fn broker_free_steps(packages: &[String]) -> Result<()> {
    // The examples' tests run the example binaries, which `cargo test` does not build.
    if packages.is_empty() || packages.iter().any(|p| p == "bento-examples") {
        let mut examples = cargo();
        examples
            .arg("build")
            .args(scope_args(packages))
            .arg("--examples")
            .args(feature_args(packages));
        if !run_step(examples)? {
            bail!("building the examples failed");
        }
    }

    // `--all-targets` leaves the documentation's examples out (the README's among them): they
    // need no broker, so they run here, before the brokers start. (`bento-cli` has no library,
    // so no documentation examples.)
    if packages.is_empty() || packages.iter().any(|p| p != "bento-cli") {
        let mut doc = cargo();
        doc.arg("test")
            .args(scope_args(packages))
            .arg("--doc")
            .args(feature_args(packages));
        if !run_step(doc)? {
            bail!("the documentation's examples failed");
        }
    }
    // The guide: its includes resolve and mdBook builds it (its listings ran just above as
    // doctests of bento-runtime, and run below in the tutorial crate).
    if packages.is_empty() {
        crate::docs::build_book()?;
    }
    Ok(())
}

/// `cargo test` over every target of the selected packages.
fn test_command(packages: &[String]) -> Command {
    let mut test = cargo();
    // Every test binary runs even after a failure, so one run shows everything that fails.
    test.arg("test")
        .args(scope_args(packages))
        .arg("--all-targets")
        .arg("--no-fail-fast")
        .args(feature_args(packages));
    test
}

/// Starts fresh brokers and PostgreSQL (unless `keep_data`) and points `test` at them.
fn start_brokers(env: &DevEnv, keep_data: bool, test: &mut Command) -> Result<()> {
    // Before the brokers start, so that a failed toxiproxy build leaves nothing running.
    let chaos_env = crate::chaos::bus_env(&env.layout, &env.ports, crate::chaos::QUICK_BUS)?;
    let lock = devenv::lock(&env.layout)?;
    if !keep_data {
        println!(
            "\n==> fresh brokers and PostgreSQL: stopping any running ones and wiping their data"
        );
        devenv::down(env, &Broker::ALL)?;
        devenv::wipe(env, &Broker::ALL)?;
    }
    println!("\n==> cargo xtask dev-env up");
    if let Err(err) = start::up(env, &Broker::ALL) {
        let _ = devenv::down(env, &Broker::ALL);
        return Err(err.context("starting the brokers and PostgreSQL"));
    }
    // Tests take the lock themselves when they kill or restart a broker.
    drop(lock);
    test.envs(test_env(&env.layout, &env.ports));
    // So that `$BENTO_XTASK_BIN dev-env ...` in a test addresses the same brokers.
    test.envs(port_env(&env.ports));
    // The kill -9 drills at suite size; `cargo xtask chaos` runs them at full size.
    test.envs(crate::chaos::QUICK.iter().copied());
    // The bus chaos scenarios too (crates/bento-chaos/tests/quick.rs), with toxiproxy.
    test.envs(chaos_env);
    Ok(())
}

/// With `--no-brokers`: values set by the caller win (e.g. an external cluster); the rest point
/// at the defaults.
fn external_broker_env(env: &DevEnv, test: &mut Command) {
    for (key, value) in test_env(&env.layout, &env.ports) {
        if std::env::var_os(&key).is_none() {
            let value = if key == "BENTO_TEST_BROKERS" {
                "0".to_string()
            } else {
                value
            };
            test.env(key, value);
        }
    }
}

/// Runs the suite, then (when it passed) the guide's tutorial and, on managed brokers, the
/// benchmark harness's smoke run, all while the brokers still run.
fn run_tests(test: Command, env: &DevEnv, managed: bool, packages: &[String]) -> Result<bool> {
    // The same brokers, for the guide's tutorial below.
    let test_envs: Vec<(OsString, OsString)> = test
        .get_envs()
        .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
        .collect();
    let mut tests_passed = run_step(test);
    // The guide's tutorial, built as a user builds a service and run on memory and Pulsar,
    // while the brokers still run.
    if packages.is_empty() && matches!(tests_passed, Ok(true)) {
        tests_passed = crate::docs::test_tutorial(&test_envs);
    }
    // `cargo xtask bench --quick memory pulsar kafka`: every side of the benchmark harness once
    // with tiny counts, on the brokers still running, with the binaries just built.
    if managed && packages.is_empty() && matches!(tests_passed, Ok(true)) && !interrupted() {
        println!("\n==> cargo xtask bench --quick memory pulsar kafka");
        tests_passed = Ok(crate::bench::smoke_in_suite(env)
            .map_err(|err| eprintln!("{err:#}"))
            .is_ok());
    }
    tests_passed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_workspace_by_default() {
        assert_eq!(scope_args(&[]), ["--workspace"]);
        assert_eq!(scope_args(&["xtask".to_string()]), ["-p", "xtask"]);
    }

    #[test]
    fn features_are_limited_to_selected_packages() {
        assert!(feature_args(&["no-such-package".to_string()]).is_empty());
        assert_eq!(feature_args(&[]).is_empty(), TEST_FEATURES.is_empty());
    }
}
