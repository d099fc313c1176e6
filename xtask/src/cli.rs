//! Command-line interface of `cargo xtask`.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Broker, Ports};

/// Developer tasks for the Bento workspace.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level tasks.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Local Pulsar and Kafka brokers and PostgreSQL for development and tests.
    DevEnv(DevEnvArgs),
    /// Format check, clippy, then the whole test suite against fresh brokers and PostgreSQL.
    Test(TestArgs),
    /// The long failure drills: services and brokers killed under load, at full size.
    Chaos(ChaosArgs),
    /// Builds the guide (docs/guide) with mdBook into target/guide, installing mdBook first if
    /// needed.
    Docs,
    /// Every benchmark: Bento beside the raw clients, RustStream and the brokers' Java perf
    /// tools; writes target/bench/results.json, docs/benchmarks.md and its charts.
    Bench(BenchArgs),
}

/// How to run the brokers.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ModeArgs {
    /// Use Docker (deploy/docker/compose.dev.yaml) even if native mode would be chosen.
    #[arg(long, global = true, conflicts_with = "native")]
    pub docker: bool,
    /// Run the brokers as local JVMs even when a Docker engine answers.
    #[arg(long, global = true)]
    pub native: bool,
}

/// `cargo xtask dev-env ...`
#[derive(Debug, Args)]
pub struct DevEnvArgs {
    /// Docker or native mode.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Loopback ports.
    #[command(flatten)]
    pub ports: Ports,
    /// What to do with the brokers.
    #[command(subcommand)]
    pub action: Action,
}

/// Which services a command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Only Pulsar.
    Pulsar,
    /// Only Kafka.
    Kafka,
    /// Only PostgreSQL.
    Postgres,
    /// Only the schema registry.
    Registry,
    /// Both brokers, PostgreSQL and the schema registry.
    All,
}

impl Target {
    /// The services this target names.
    pub fn brokers(self) -> Vec<Broker> {
        match self {
            Target::Pulsar => vec![Broker::Pulsar],
            Target::Kafka => vec![Broker::Kafka],
            Target::Postgres => vec![Broker::Postgres],
            Target::Registry => vec![Broker::Registry],
            Target::All => Broker::ALL.to_vec(),
        }
    }
}

/// `dev-env` subcommands.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Download if needed, start, wait until ready (keeps existing data; no-op if already running).
    Up {
        /// Which brokers.
        #[arg(value_enum, default_value_t = Target::All)]
        target: Target,
    },
    /// Version, mode, ports, pid, memory and health of each broker.
    Status,
    /// Print the variables the tests read, as shell `export` lines, for running tests or
    /// benchmarks by hand: `eval "$(cargo xtask dev-env env)"`.
    Env,
    /// Print (or follow) a broker's log.
    Logs {
        /// Which broker.
        #[arg(value_enum)]
        broker: Broker,
        /// Keep printing new lines as they arrive.
        #[arg(short, long)]
        follow: bool,
        /// How many lines from the end to print first.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
    /// Stop brokers started by `up` (whole process tree), wait for their ports to close.
    Down {
        /// Which brokers.
        #[arg(value_enum, default_value_t = Target::All)]
        target: Target,
    },
    /// SIGKILL a broker's process tree to simulate a crash (`up` restarts it with its data).
    Kill {
        /// Which broker.
        #[arg(value_enum)]
        broker: Broker,
    },
    /// Stop everything and delete broker data and logs (installs are kept).
    Reset,
}

/// Which backends `cargo xtask chaos` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChaosTarget {
    /// Only Pulsar.
    Pulsar,
    /// Only Kafka.
    Kafka,
    /// Both.
    All,
}

impl ChaosTarget {
    /// The name the bus suite takes.
    pub fn name(self) -> &'static str {
        match self {
            ChaosTarget::Pulsar => "pulsar",
            ChaosTarget::Kafka => "kafka",
            ChaosTarget::All => "all",
        }
    }

    /// The one broker it names, if it names one.
    pub fn broker_name(self) -> Option<&'static str> {
        match self {
            ChaosTarget::All => None,
            one => Some(one.name()),
        }
    }
}

/// `cargo xtask chaos ...`
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Which backends.
    #[arg(value_enum, default_value_t = ChaosTarget::All)]
    pub target: ChaosTarget,
    /// Run the drills and the bus scenarios at the size `cargo xtask test` uses.
    #[arg(long)]
    pub quick: bool,
    /// Leave out the outbox drills (only the bus scenarios).
    #[arg(long, conflicts_with = "no_bus")]
    pub no_drills: bool,
    /// Leave out the bus scenarios (only the outbox drills).
    #[arg(long)]
    pub no_bus: bool,
    /// Docker or native mode.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Loopback ports.
    #[command(flatten)]
    pub ports: Ports,
}

/// `cargo xtask test ...`
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Leave the brokers and PostgreSQL running after the tests.
    #[arg(long)]
    pub keep_running: bool,
    /// Neither start nor stop brokers and PostgreSQL (use ones already running, or external ones).
    #[arg(long)]
    pub no_brokers: bool,
    /// Keep broker and database data from earlier runs instead of starting from empty ones.
    #[arg(long)]
    pub keep_data: bool,
    /// Check and test only these packages instead of the whole workspace (repeatable).
    #[arg(short, long = "package", value_name = "PACKAGE")]
    pub packages: Vec<String>,
    /// Docker or native mode.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Loopback ports.
    #[command(flatten)]
    pub ports: Ports,
}

/// A scenario of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The in-memory bus, publish to typed handler, beside RustStream's memory broker.
    Memory,
    /// Each codec through Bento's codec layer beside the bare library (criterion).
    Codecs,
    /// Pulsar: Bento, the raw `pulsar` crate, RustStream and `pulsar-perf`.
    Pulsar,
    /// Kafka: Bento, rdkafka, RustStream and Kafka's Java perf classes.
    Kafka,
    /// The observability layers' cost on the in-memory bus.
    Observability,
    /// The outbox and relay on SQLite and PostgreSQL, on memory, Pulsar and Kafka.
    Outbox,
}

/// `cargo xtask bench ...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which scenarios (all when none is named).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// A smoke run: every side once with tiny counts, checked to produce figures; the docs
    /// are left alone.
    #[arg(long)]
    pub quick: bool,
    /// Rounds per scenario (3; 1 with --quick); the sides take turns going first.
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Docker or native mode.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Loopback ports.
    #[command(flatten)]
    pub ports: Ports,
}
