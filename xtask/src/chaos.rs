//! `cargo xtask chaos`: the long failure drills, apart from the suite.
//!
//! Two parts. The outbox drills: the orders example's services are killed with SIGKILL at
//! random points, the brokers are killed under them and kept down, and sixteen writers race
//! through the outbox; at end every committed order has exactly one effect and each key's
//! events arrived in commit order (examples/tests/outbox_drills.rs,
//! examples/tests/outbox_writers.rs). The bus scenarios (`crates/bento-chaos`): events
//! published and consumed through the bus while toxiproxy cuts, slows and resets the
//! connections, the broker is SIGKILLed, or the consumer process is; nothing acknowledged may
//! be lost, each key keeps its order, exactly the poison events are dead-lettered
//! (docs/reliability.md). `cargo xtask test` runs both at [`QUICK`] and [`QUICK_BUS`] size;
//! this command runs them at [`FULL`] and [`FULL_BUS`] size.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cli::{ChaosArgs, ChaosTarget};
use crate::config::{Broker, Layout, Ports, workspace_root};
use crate::devenv::{self, DevEnv};
use crate::process::{is_alive, port_open};
use crate::state::State;
use crate::test::{cargo, feature_args, port_env, run_step, test_env};
use crate::versions::TOXIPROXY_VERSION;
use crate::{kafka, progress, start};

/// The drills as the outbox issue states them: 10,000 commands, 10 kills, a broker down for
/// 30 s, 16 writers committing 50,000 events.
pub const FULL: &[(&str, &str)] = &[
    ("BENTO_DRILL_COMMANDS", "10000"),
    ("BENTO_DRILL_KILLS", "10"),
    ("BENTO_DRILL_BROKER_DOWN_SECS", "30"),
    ("BENTO_DRILL_BROKER_KILL", "all"),
    ("BENTO_WRITERS_EVENTS", "50000"),
];

/// The same drills, small enough for every run of the suite.
pub const QUICK: &[(&str, &str)] = &[
    ("BENTO_DRILL_COMMANDS", "2000"),
    ("BENTO_DRILL_KILLS", "6"),
    ("BENTO_DRILL_BROKER_DOWN_SECS", "10"),
    ("BENTO_DRILL_BROKER_KILL", "postgres"),
    ("BENTO_WRITERS_EVENTS", "8000"),
];

/// The bus scenarios as the chaos issue states them: 100,000 events per scenario from 8
/// publishers, the broker unreachable for 30 s, the consumer SIGKILLed 5 times.
pub const FULL_BUS: &[(&str, &str)] = &[
    ("BENTO_CHAOS_EVENTS", "100000"),
    ("BENTO_CHAOS_PUBLISHERS", "8"),
    ("BENTO_CHAOS_FAULT_SECS", "20"),
    ("BENTO_CHAOS_OUTAGE_SECS", "30"),
    ("BENTO_CHAOS_CONSUMER_KILLS", "5"),
    ("BENTO_CHAOS_SIZE", "full"),
];

/// The bus scenarios small enough for every run of the suite (all of them together well under
/// 3 minutes). The broker kill is left out: `crates/*/tests/resilience.rs` kill the brokers in
/// every run already.
pub const QUICK_BUS: &[(&str, &str)] = &[
    ("BENTO_CHAOS_EVENTS", "2000"),
    ("BENTO_CHAOS_PUBLISHERS", "8"),
    ("BENTO_CHAOS_FAULT_SECS", "3"),
    ("BENTO_CHAOS_OUTAGE_SECS", "5"),
    ("BENTO_CHAOS_CONSUMER_KILLS", "5"),
    (
        "BENTO_CHAOS_SCENARIOS",
        "latency,bandwidth,reset,outage,consumer-kill,cluster-broker-kill",
    ),
    ("BENTO_CHAOS_SIZE", "quick"),
];

/// Builds toxiproxy's server at [`TOXIPROXY_VERSION`] with `go install` (once) into the dev-env
/// home; returns the binary.
pub fn toxiproxy(layout: &Layout) -> Result<PathBuf> {
    let dir = layout.home.join("toxiproxy").join(TOXIPROXY_VERSION);
    let binary = dir.join("toxiproxy-server");
    if binary.exists() {
        return Ok(binary);
    }
    println!("building toxiproxy {TOXIPROXY_VERSION} with `go install` (first time only)");
    let go = ["go", "/usr/local/go/bin/go"]
        .into_iter()
        .find(|go| {
            Command::new(go)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .context("the chaos suite builds toxiproxy with Go, and there is no `go` on PATH")?;
    let gobin = dir.join("gobin");
    let status = Command::new(go)
        .arg("install")
        .arg(format!(
            "github.com/Shopify/toxiproxy/v2/cmd/server@{TOXIPROXY_VERSION}"
        ))
        .env("GOBIN", &gobin)
        .status()
        .context("running `go install`")?;
    if !status.success() {
        bail!("`go install` of toxiproxy {TOXIPROXY_VERSION} failed: {status}");
    }
    fs::rename(gobin.join("server"), &binary)
        .with_context(|| format!("moving the toxiproxy server to {}", binary.display()))?;
    Ok(binary)
}

/// The Kafka broker's chaos listener and the address it advertises there, where the suite's
/// toxiproxy listens.
fn kafka_chaos_env(ports: &Ports) -> [(&'static str, String); 2] {
    let (listener, advertised) = kafka::chaos_listener(ports);
    [
        (
            "BENTO_TEST_KAFKA_CHAOS_LISTENER",
            format!("127.0.0.1:{listener}"),
        ),
        (
            "BENTO_TEST_KAFKA_CHAOS_ADVERTISED",
            format!("127.0.0.1:{advertised}"),
        ),
    ]
}

/// The variables the bus scenarios read, at `sizes`; builds toxiproxy if needed.
pub fn bus_env(
    layout: &Layout,
    ports: &Ports,
    sizes: &[(&str, &str)],
) -> Result<Vec<(String, String)>> {
    let mut vars = vec![(
        "BENTO_CHAOS_TOXIPROXY".to_string(),
        toxiproxy(layout)?.display().to_string(),
    )];
    vars.extend(
        kafka_chaos_env(ports)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    vars.extend(sizes.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Ok(vars)
}

/// The broker test lock the test binaries share (`bento_testkit::broker_lock`).
fn broker_lock(broker: Broker) -> Result<fs::File> {
    let target = target_dir();
    let path = target.join(format!("bento-{broker}-broker.lock"));
    fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// A Kafka broker started before the chaos listener existed is restarted with it, holding the
/// Kafka test lock exclusively (as a test that kills the broker does), so no test is cut off.
fn ensure_kafka_chaos_listener(env: &DevEnv) -> Result<()> {
    let (listener, _) = kafka::chaos_listener(&env.ports);
    if port_open(listener) {
        return Ok(());
    }
    println!("\n==> restarting Kafka with its chaos listener (port {listener})");
    let lock = broker_lock(Broker::Kafka)?;
    lock.lock().context("taking the Kafka test lock")?;
    let _devenv = devenv::lock(&env.layout)?;
    devenv::down(env, &[Broker::Kafka])?;
    start::up(env, &[Broker::Kafka])?;
    if !port_open(listener) {
        bail!("Kafka came back without its chaos listener on port {listener}");
    }
    Ok(())
}

/// Runs the bus scenarios of `target`.
fn bus_scenarios(env: &DevEnv, target: ChaosTarget, sizes: &[(&str, &str)]) -> Result<bool> {
    if matches!(target, ChaosTarget::Kafka | ChaosTarget::All) {
        ensure_kafka_chaos_listener(env)?;
    }
    let packages = ["bento-chaos".to_string()];
    let mut suite = cargo();
    suite
        .args(["run", "-p", "bento-chaos"])
        .args(feature_args(&packages))
        .args(["--", "suite", target.name()])
        .envs(test_env(&env.layout, &env.ports))
        .envs(port_env(&env.ports))
        .envs(bus_env(&env.layout, &env.ports, sizes)?)
        .env("BENTO_CHAOS_REPORT", report_path());
    run_step(suite)
}

fn report_path() -> PathBuf {
    target_dir().join("chaos-report.md")
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else the workspace's `target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the examples, starts what is not running, runs the drills and the bus scenarios,
/// stops what it started.
pub fn run(args: ChaosArgs) -> Result<()> {
    progress::install_interrupt_handler()?;
    let started = Instant::now();
    let env = DevEnv::new(args.mode, args.ports);

    if !args.no_drills {
        let mut build = cargo();
        build
            .args(["build", "-p", "bento-examples", "--examples"])
            .args(feature_args(&example_packages()));
        if !run_step(build)? {
            bail!("building the examples failed");
        }
    }

    let already = running_brokers(&env);
    {
        let _lock = devenv::lock(&env.layout)?;
        start::up(&env, &Broker::ALL)?;
    }

    let drills_passed = if args.no_drills {
        Ok(true)
    } else {
        outbox_drills(&env, &args)
    };
    let bus_passed = if args.no_bus || progress::interrupted() {
        Ok(true)
    } else {
        bus_scenarios(
            &env,
            args.target,
            if args.quick { QUICK_BUS } else { FULL_BUS },
        )
    };
    if report_path().exists() && !args.no_bus {
        println!("the bus scenarios' table: {}", report_path().display());
    }
    let passed = drills_passed.and_then(|d| bus_passed.map(|b| d && b));

    stop_started_here(&env, &already)?;
    progress::verdict("chaos", passed?, started, "a drill failed")
}

/// The package the outbox drills live in.
fn example_packages() -> [String; 1] {
    ["bento-examples".to_string()]
}

/// The brokers (and PostgreSQL) running before this run started.
fn running_brokers(env: &DevEnv) -> Vec<Broker> {
    Broker::ALL
        .into_iter()
        .filter(|&b| {
            State::load(&env.layout, b)
                .and_then(|s| s.pid)
                .is_some_and(is_alive)
        })
        .collect()
}

/// Runs the outbox drills of `args.target` at the size `args.quick` selects.
fn outbox_drills(env: &DevEnv, args: &ChaosArgs) -> Result<bool> {
    let mut drills = cargo();
    drills
        .args(["test", "-p", "bento-examples"])
        .args(feature_args(&example_packages()))
        .args(["--test", "outbox_drills", "--test", "outbox_writers"])
        .arg("--");
    // The drills' names end in their backend (`drill_on_pulsar_with_sqlite`, `..._on_kafka`).
    if let Some(name) = args.target.broker_name() {
        drills.arg(name);
    }
    drills
        .arg("--nocapture")
        .envs(test_env(&env.layout, &env.ports))
        .envs(port_env(&env.ports))
        .envs(if args.quick { QUICK } else { FULL }.iter().copied());
    run_step(drills)
}

/// Stops the brokers that were not running before this run (`already`).
fn stop_started_here(env: &DevEnv, already: &[Broker]) -> Result<()> {
    let started_here: Vec<Broker> = Broker::ALL
        .into_iter()
        .filter(|b| !already.contains(b))
        .collect();
    if !started_here.is_empty() {
        println!("\n==> stopping what this run started");
        let _lock = devenv::lock(&env.layout)?;
        devenv::down(env, &started_here)?;
    }
    Ok(())
}
