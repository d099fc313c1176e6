//! `cargo xtask chaos`: the long failure drills, apart from the suite.
//!
//! The orders example's services are killed with SIGKILL at random points, the brokers are
//! killed under them and kept down, and sixteen writers race through the outbox; at the end
//! every committed order has exactly one effect and each key's events arrived in commit order
//! (examples/tests/outbox_drills.rs, examples/tests/outbox_writers.rs). `cargo xtask test`
//! runs the same drills at [`QUICK`] size; this command runs them at [`FULL`] size.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::cli::ChaosArgs;
use crate::config::Broker;
use crate::devenv::{self, DevEnv};
use crate::process::is_alive;
use crate::state::State;
use crate::test::{cargo, feature_args, port_env, run_step, test_env};
use crate::{progress, start};

/// The drills as the outbox issue states them: 10,000 commands, 10 kills, a broker down for
/// 30 s, 16 writers committing 50,000 events.
pub const FULL: &[(&str, &str)] = &[
    ("BENTO_DRILL_COMMANDS", "10000"),
    ("BENTO_DRILL_KILLS", "10"),
    ("BENTO_DRILL_BROKER_DOWN_SECS", "30"),
    ("BENTO_WRITERS_EVENTS", "50000"),
];

/// The same drills, small enough for every run of the suite.
pub const QUICK: &[(&str, &str)] = &[
    ("BENTO_DRILL_COMMANDS", "2000"),
    ("BENTO_DRILL_KILLS", "6"),
    ("BENTO_DRILL_BROKER_DOWN_SECS", "10"),
    ("BENTO_WRITERS_EVENTS", "8000"),
];

/// Builds the examples, starts what is not running, runs the drills, stops what it started.
pub fn run(args: ChaosArgs) -> Result<()> {
    progress::install_interrupt_handler()?;
    let started = Instant::now();
    let env = DevEnv::new(args.mode, args.ports);
    let packages = ["bento-examples".to_string()];

    let mut build = cargo();
    build
        .args(["build", "-p", "bento-examples", "--examples"])
        .args(feature_args(&packages));
    if !run_step(build)? {
        bail!("building the examples failed");
    }

    let already: Vec<Broker> = Broker::ALL
        .into_iter()
        .filter(|&b| {
            State::load(&env.layout, b)
                .and_then(|s| s.pid)
                .is_some_and(is_alive)
        })
        .collect();
    {
        let _lock = devenv::lock(&env.layout)?;
        start::up(&env, &Broker::ALL)?;
    }

    let mut drills = cargo();
    drills
        .args(["test", "-p", "bento-examples"])
        .args(feature_args(&packages))
        .args(["--test", "outbox_drills", "--test", "outbox_writers"])
        .args(["--", "--nocapture"])
        .envs(test_env(&env.layout, &env.ports))
        .envs(port_env(&env.ports))
        .envs(if args.quick { QUICK } else { FULL }.iter().copied());
    let passed = run_step(drills);

    let started_here: Vec<Broker> = Broker::ALL
        .into_iter()
        .filter(|b| !already.contains(b))
        .collect();
    if !started_here.is_empty() {
        println!("\n==> stopping what this run started");
        let _lock = devenv::lock(&env.layout)?;
        devenv::down(&env, &started_here)?;
    }
    let passed = passed?;
    println!(
        "\ncargo xtask chaos: {} in {}s",
        if passed { "passed" } else { "FAILED" },
        started.elapsed().as_secs()
    );
    if !passed {
        bail!("a drill failed");
    }
    Ok(())
}
