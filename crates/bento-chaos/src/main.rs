//! `bento-chaos`: the bus scenarios of `cargo xtask chaos`.
//!
//! `bento-chaos suite` publishes events from concurrent publishers through a Bento bus built
//! from configuration (`bento_runtime::Bento::from_config`), while `bento-chaos consume`, a
//! separate child process, handles them and appends what it handled to a file. Between the
//! two, a fault is injected: toxiproxy between the clients and the broker (latency, a
//! bandwidth limit, connections reset, the broker unreachable), the broker SIGKILLed and
//! restarted, or the consumer SIGKILLed and restarted. The suite then reads the file and
//! checks that nothing acknowledged was lost, that each key kept its order, and that exactly
//! the poison events were dead-lettered. See docs/reliability.md.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod cluster;
mod consumer;
mod driver;
mod fixtures;
mod publishing;
mod report;
mod toxiproxy;

use std::process::ExitCode;

use clap::Parser;

/// The two roles of the binary.
#[derive(Debug, Parser)]
#[command(name = "bento-chaos", about)]
enum Cli {
    /// The consumer child: subscribes, appends each handled event to a file, runs until SIGTERM.
    Consume(consumer::Args),
    /// Runs the scenarios and prints the report; fails when an invariant does not hold.
    Suite(driver::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bento-chaos: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli {
        Cli::Consume(args) => runtime.block_on(consumer::run(args)),
        Cli::Suite(args) => runtime.block_on(driver::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bento-chaos: {error:#}");
            ExitCode::FAILURE
        }
    }
}
