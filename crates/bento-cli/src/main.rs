//! `bento`: administer the broker a Bento service runs on, and list or replay its dead
//! letters, with the service's own configuration (`bento.toml` and `BENTO_*` variables).
//!
//! ```text
//! bento admin topics list
//! bento admin subscriptions reset orders mailer --earliest
//! bento dlq list orders-mailer-DLQ
//! bento dlq replay orders-mailer-DLQ --limit 10
//! bento asyncapi -o users.asyncapi.json -- ./target/release/users-service
//! ```
//!
//! See `docs/cli.md` for every command.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod admin;
mod asyncapi;
mod cli;
mod config;
mod dlq;
mod error;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs of the broker clients go to stderr when RUST_LOG asks for them; quiet otherwise.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Broker clients may keep background tasks; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let loaded = config::load(cli.config.as_deref())?;
    let out = Output { json: cli.json };
    match cli.command {
        Command::Admin(command) => admin::run(command, &loaded, out).await,
        Command::Dlq(command) => dlq::run(command, &loaded, out).await,
        Command::Asyncapi(args) => asyncapi::run(args, cli.config.as_deref()),
    }
}
