//! Developer tasks for the Bento workspace (`cargo xtask`).
//!
//! * `cargo xtask dev-env up|status|logs|down|kill|reset`: local Apache Pulsar and Apache Kafka
//!   brokers, run natively from Maven Central downloads or with Docker Compose, and a PostgreSQL
//!   server from the machine's packages.
//! * `cargo xtask test`: format check, clippy and the whole test suite against fresh brokers.
//! * `cargo xtask bench`: every benchmark, Bento beside the raw clients, RustStream and the
//!   brokers' Java perf tools, into `target/bench/results.json` and `docs/benchmarks.md`.
//! * `cargo xtask docs`: the guide (`docs/guide`), built with mdBook into `target/guide`.
//!
//! The library part exists so the smoke tests in `tests/` can share the probes and paths.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod asyncapi;
mod bench;
mod chaos;
pub mod cli;
pub mod config;
mod devenv;
mod disk;
mod docker;
mod docs;
pub mod download;
mod inspect;
mod kafka;
pub mod postgres;
mod prereq;
pub mod probe;
pub mod process;
pub mod progress;
mod pulsar;
mod registry;
pub mod security;
mod start;
pub mod state;
mod test;
pub mod versions;

use anyhow::Result;
use clap::Parser;

pub use test::{TEST_FEATURES, test_env};

/// Parses the command line and runs the task.
pub fn run() -> Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::DevEnv(args) => devenv::run(args),
        cli::Command::Test(args) => test::run(args),
        cli::Command::Chaos(args) => chaos::run(args),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Docs => docs::run(),
    }
}
