//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Administer the broker a Bento service runs on (Apache Pulsar or Apache Kafka) and list or
/// replay its dead letters.
///
/// The CLI reads the configuration services read: `bento.toml` in the working directory (or
/// the file named by --config / BENTO_CONFIG), then BENTO_* environment variables; the backend
/// is `messaging.backend`.
#[derive(Debug, Parser)]
#[command(name = "bento", version)]
pub struct Cli {
    /// Configuration file to read instead of ./bento.toml (same as BENTO_CONFIG).
    #[arg(long, global = true, env = "BENTO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenants, namespaces, topics, subscriptions and schemas.
    #[command(subcommand)]
    Admin(Admin),
    /// Dead-letter topics: list and replay.
    #[command(subcommand)]
    Dlq(Dlq),
    /// Print a service's AsyncAPI 3.0 document: runs the service's command with
    /// BENTO_ASYNCAPI=1 (the runtime builds it offline: no broker connection) and this
    /// configuration, and prints the document it writes.
    Asyncapi(AsyncapiArgs),
}

/// `bento asyncapi [--output FILE] -- <service command>...`
#[derive(Debug, Args)]
pub struct AsyncapiArgs {
    /// Write the document to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The service's command and its arguments, after `--` (e.g.
    /// `-- ./target/release/users-service`, `-- cargo run --example quickstart`).
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `bento admin ...`
#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Pulsar tenants.
    #[command(subcommand)]
    Tenants(Tenants),
    /// Pulsar namespaces and their policies.
    #[command(subcommand)]
    Namespaces(Namespaces),
    /// Topics (Pulsar and Kafka).
    #[command(subcommand)]
    Topics(Topics),
    /// Subscriptions (Pulsar) or consumer groups (Kafka).
    #[command(subcommand)]
    Subscriptions(Subscriptions),
    /// The schema versions of a Pulsar topic.
    Schemas(SchemasArgs),
}

/// `bento admin tenants ...`
#[derive(Debug, Subcommand)]
pub enum Tenants {
    /// List the tenants.
    List,
    /// Create a tenant.
    Create {
        /// Tenant name.
        tenant: String,
        /// Cluster the tenant may use (repeatable); all clusters if none is given.
        #[arg(long = "cluster", value_name = "CLUSTER")]
        clusters: Vec<String>,
    },
    /// Delete a tenant (it must have no namespaces).
    Delete {
        /// Tenant name.
        tenant: String,
    },
}

/// `bento admin namespaces ...`
#[derive(Debug, Subcommand)]
pub enum Namespaces {
    /// List the namespaces of a tenant.
    List {
        /// Tenant name.
        tenant: String,
    },
    /// Create a namespace.
    Create {
        /// `tenant/namespace`.
        namespace: String,
    },
    /// Delete a namespace (it must be empty unless --force).
    Delete {
        /// `tenant/namespace`.
        namespace: String,
        /// Delete its topics too.
        #[arg(long)]
        force: bool,
    },
    /// Show a namespace's policies, setting those given first.
    Policies(PoliciesArgs),
}

/// `bento admin namespaces policies ...`
#[derive(Debug, Args)]
pub struct PoliciesArgs {
    /// `tenant/namespace`.
    pub namespace: String,
    /// Turn broker-side deduplication on or off.
    #[arg(long, value_name = "on|off")]
    pub deduplication: Option<OnOff>,
    /// Keep acknowledged messages this many minutes (-1: no limit); with --retention-mb.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        requires = "retention_mb"
    )]
    pub retention_minutes: Option<i64>,
    /// Keep this many megabytes of acknowledged messages (-1: no limit); with
    /// --retention-minutes.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        requires = "retention_minutes"
    )]
    pub retention_mb: Option<i64>,
    /// Unacknowledged messages expire after this many seconds (0: never).
    #[arg(long, value_name = "N")]
    pub ttl_seconds: Option<u32>,
    /// Schema compatibility strategy: full, backward, forward, backward-transitive, ...
    #[arg(long, value_name = "STRATEGY")]
    pub schema_compatibility: Option<String>,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// `bento admin topics ...`
#[derive(Debug, Subcommand)]
pub enum Topics {
    /// List topics: the persistent topics of a namespace (Pulsar; default the configured
    /// tenant/namespace), or every topic whose name starts with the argument (Kafka).
    List {
        /// `tenant/namespace` (Pulsar) or a name prefix (Kafka).
        namespace: Option<String>,
    },
    /// Create a topic.
    Create {
        /// Topic name (Pulsar: plain, tenant/ns/topic or persistent://...).
        topic: String,
        /// Partitions: Pulsar 0 = not partitioned (default); Kafka default `partitions` of the
        /// configuration.
        #[arg(long, value_name = "N")]
        partitions: Option<u32>,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        topic: String,
        /// Pulsar: even with connected clients and subscriptions.
        #[arg(long)]
        force: bool,
    },
    /// Rates, storage and backlog per subscription (Pulsar); partitions and offsets (Kafka).
    Stats {
        /// Topic name.
        topic: String,
    },
}

/// `bento admin subscriptions ...`
#[derive(Debug, Subcommand)]
pub enum Subscriptions {
    /// List the subscriptions (Pulsar) or the consumer groups with offsets (Kafka) of a topic,
    /// with their backlog.
    List {
        /// Topic name.
        topic: String,
    },
    /// Create a subscription at the latest (default) or earliest message (Pulsar).
    Create {
        /// Topic name.
        topic: String,
        /// Subscription name.
        subscription: String,
        /// Start at the oldest stored message instead of the next published one.
        #[arg(long)]
        earliest: bool,
    },
    /// Where a subscription stands: backlog and consumers (Pulsar), lag per partition (Kafka).
    Describe {
        /// Topic name.
        topic: String,
        /// Subscription (consumer group) name.
        subscription: String,
    },
    /// Move a subscription back (or forward): to the earliest message or to a time. On Kafka
    /// the consumer group must be stopped.
    Reset {
        /// Topic name.
        topic: String,
        /// Subscription (consumer group) name.
        subscription: String,
        /// To the oldest stored message.
        #[arg(long, conflicts_with = "to", required_unless_present = "to")]
        earliest: bool,
        /// To the first message published at or after this time (RFC 3339, e.g.
        /// 2026-11-27T10:00:00Z).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
    },
    /// Acknowledge messages without delivering them: the next N (Pulsar), or all.
    Skip {
        /// Topic name.
        topic: String,
        /// Subscription (consumer group) name.
        subscription: String,
        /// How many.
        #[arg(
            long,
            value_name = "N",
            conflicts_with = "all",
            required_unless_present = "all"
        )]
        count: Option<u64>,
        /// The whole backlog.
        #[arg(long)]
        all: bool,
    },
    /// Delete a subscription (Pulsar).
    Delete {
        /// Topic name.
        topic: String,
        /// Subscription name.
        subscription: String,
        /// Even with connected consumers (they are disconnected).
        #[arg(long)]
        force: bool,
    },
}

/// `bento admin schemas ...`
#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// Topic name.
    pub topic: String,
    /// Show this version only, with its definition.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
}

/// `bento dlq ...`
#[derive(Debug, Subcommand)]
pub enum Dlq {
    /// Print the dead letters of a dead-letter topic, oldest first, without consuming them.
    List(DlqListArgs),
    /// Republish dead letters to the subscriptions that gave up on them (their retry topics),
    /// then acknowledge them.
    Replay(DlqReplayArgs),
}

/// `bento dlq list ...`
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// The dead-letter topic, e.g. persistent://public/default/orders-mailer-DLQ.
    pub topic: String,
    /// Print at most this many.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Stop when no message arrived for this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub idle_ms: u64,
}

/// `bento dlq replay ...`
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// The dead-letter topic.
    pub topic: String,
    /// Replay at most this many.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print what would be replayed; publish and acknowledge nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop when no message arrived for this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub idle_ms: u64,
    /// The durable subscription (Kafka: consumer group) that remembers what was replayed.
    #[arg(long, value_name = "NAME", default_value = "bento-dlq-replay")]
    pub subscription: String,
    /// Republish to the topic each message came from instead, so that every subscription of
    /// that topic handles it again, not only the one that gave up.
    #[arg(long)]
    pub to_original_topic: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn reset_needs_exactly_one_target() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|_| ());
        let base = ["bento", "admin", "subscriptions", "reset", "t", "s"];
        assert!(parse(&base).is_err());
        assert!(parse(&[&base[..], &["--earliest"]].concat()).is_ok());
        assert!(parse(&[&base[..], &["--to", "2026-01-01T00:00:00Z"]].concat()).is_ok());
        assert!(parse(&[&base[..], &["--earliest", "--to", "x"]].concat()).is_err());
        let retention = [
            "bento",
            "admin",
            "namespaces",
            "policies",
            "a/b",
            "--retention-mb",
            "5",
        ];
        assert!(parse(&retention).is_err(), "retention needs both values");
    }
}
