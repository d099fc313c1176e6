//! `bento admin ...` on Pulsar: tenants, namespaces and their policies, topics, subscriptions
//! and schemas, through the admin REST API.

use bento_pulsar::admin::{
    Position, PulsarAdmin, ResetTo, Retention, SchemaCompatibility, SubscriptionStats, TopicStats,
};
use chrono::SecondsFormat;
use serde::Serialize;

use super::topic_roles::{self, TopicRole};
use super::{done, list_table, millis_to_time, parse_time};
use crate::cli::{
    Admin, Namespaces, OnOff, PoliciesArgs, SchemasArgs, Subscriptions, Tenants, Topics,
};
use crate::error::CliError;
use crate::output::{Output, Table, pairs};

/// Runs one `bento admin` command on Pulsar; plain names live in `default_namespace`.
pub(super) async fn run(
    command: Admin,
    admin: &PulsarAdmin,
    default_namespace: &str,
    out: Output,
) -> Result<(), CliError> {
    match command {
        Admin::Tenants(command) => tenants(command, admin, out).await,
        Admin::Namespaces(command) => namespaces(command, admin, out).await,
        Admin::Topics(command) => topics(command, admin, default_namespace, out).await,
        Admin::Subscriptions(command) => pulsar_subscriptions(command, admin, out).await,
        Admin::Schemas(args) => schemas(admin, args, out).await,
    }
}

async fn tenants(command: Tenants, admin: &PulsarAdmin, out: Output) -> Result<(), CliError> {
    match command {
        Tenants::List => {
            let tenants = admin.tenants().await?;
            out.print(&tenants, || list_table("TENANT", &tenants))
        }
        Tenants::Create { tenant, clusters } => {
            admin.create_tenant(&tenant, &clusters).await?;
            done(out, "created tenant", tenant)
        }
        Tenants::Delete { tenant } => {
            admin.delete_tenant(&tenant).await?;
            done(out, "deleted tenant", tenant)
        }
    }
}

async fn namespaces(command: Namespaces, admin: &PulsarAdmin, out: Output) -> Result<(), CliError> {
    match command {
        Namespaces::List { tenant } => {
            let namespaces = admin.namespaces(&tenant).await?;
            out.print(&namespaces, || list_table("NAMESPACE", &namespaces))
        }
        Namespaces::Create { namespace } => {
            admin.create_namespace(&namespace).await?;
            done(out, "created namespace", namespace)
        }
        Namespaces::Delete { namespace, force } => {
            admin.delete_namespace(&namespace, force).await?;
            done(out, "deleted namespace", namespace)
        }
        Namespaces::Policies(args) => policies(admin, args, out).await,
    }
}

async fn topics(
    command: Topics,
    admin: &PulsarAdmin,
    default_namespace: &str,
    out: Output,
) -> Result<(), CliError> {
    match command {
        Topics::List { namespace } => {
            let namespace = namespace.unwrap_or_else(|| default_namespace.to_owned());
            list_topics(admin, &namespace, out).await
        }
        Topics::Create { topic, partitions } => {
            let name = admin.topic_name(&topic)?.to_string();
            admin.create_topic(&name, partitions.unwrap_or(0)).await?;
            done(out, "created topic", name)
        }
        Topics::Delete { topic, force } => {
            let name = admin.topic_name(&topic)?.to_string();
            admin.delete_topic(&name, force).await?;
            done(out, "deleted topic", name)
        }
        Topics::Stats { topic } => {
            let name = admin.topic_name(&topic)?.to_string();
            let stats = admin.topic_stats(&name).await?;
            out.print(&stats, || stats_text(&name, &stats))
        }
    }
}

/// The topics of `namespace` with their partition counts; retry, dead-letter and replay-log
/// topics follow the topic they belong to.
async fn list_topics(admin: &PulsarAdmin, namespace: &str, out: Output) -> Result<(), CliError> {
    let (topics, partitioned) =
        futures::try_join!(admin.topics(namespace), admin.partitioned_topics(namespace))?;
    let mut rows = Vec::with_capacity(topics.len());
    for (topic, role) in topic_roles::classify(topics) {
        let partitions = if partitioned.contains(&topic) {
            admin.partitions(&topic).await?
        } else {
            0
        };
        rows.push(TopicRow {
            topic,
            partitions,
            role,
        });
    }
    out.print(&rows, || {
        let mut table = Table::new(&["TOPIC", "PARTITIONS", "OF"]);
        for row in &rows {
            table.row([
                row.topic.clone(),
                partitions_cell(row.partitions),
                row.role.describe(),
            ]);
        }
        table.render()
    })
}

#[derive(Serialize)]
struct TopicRow {
    topic: String,
    partitions: u32,
    /// `role` (`topic`, `retry`, `dead-letter`, `replay-log`) and, for the others, `of_topic`
    /// and `subscription`.
    #[serde(flatten)]
    role: TopicRole,
}

fn partitions_cell(partitions: u32) -> String {
    if partitions == 0 {
        "-".into()
    } else {
        partitions.to_string()
    }
}

async fn policies(admin: &PulsarAdmin, args: PoliciesArgs, out: Output) -> Result<(), CliError> {
    let namespace = &args.namespace;
    let strategy = args
        .schema_compatibility
        .as_deref()
        .map(str::parse::<SchemaCompatibility>)
        .transpose()
        .map_err(CliError::Usage)?;
    if let Some(on) = args.deduplication {
        admin.set_deduplication(namespace, on == OnOff::On).await?;
    }
    if let (Some(minutes), Some(mb)) = (args.retention_minutes, args.retention_mb) {
        admin
            .set_retention(
                namespace,
                Retention {
                    time_minutes: minutes,
                    size_mb: mb,
                },
            )
            .await?;
    }
    if let Some(seconds) = args.ttl_seconds {
        admin.set_message_ttl(namespace, seconds).await?;
    }
    if let Some(strategy) = &strategy {
        admin.set_schema_compatibility(namespace, strategy).await?;
    }
    let policies = admin.namespace_policies(namespace).await?;
    out.print(&policies, || {
        let unset = || "(not set)".to_string();
        pairs(&[
            ("namespace", namespace.clone()),
            (
                "deduplication",
                policies
                    .deduplication
                    .map_or_else(unset, |on| if on { "on" } else { "off" }.into()),
            ),
            (
                "retention",
                policies.retention.map_or_else(unset, |r| {
                    format!("{} minutes, {} MB", limit(r.time_minutes), limit(r.size_mb))
                }),
            ),
            (
                "message ttl",
                policies
                    .message_ttl_seconds
                    .map_or_else(unset, |s| format!("{s} s")),
            ),
            (
                "schema compatibility",
                policies.schema_compatibility.to_string(),
            ),
        ])
    })
}

fn limit(value: i64) -> String {
    if value < 0 {
        "unlimited".into()
    } else {
        value.to_string()
    }
}

fn stats_text(topic: &str, stats: &TopicStats) -> String {
    let mut text = pairs(&[
        ("topic", topic.to_owned()),
        ("partitions", partitions_cell(stats.partitions)),
        (
            "rate in",
            format!(
                "{:.2} msg/s, {:.0} B/s",
                stats.msg_rate_in, stats.msg_throughput_in
            ),
        ),
        (
            "rate out",
            format!(
                "{:.2} msg/s, {:.0} B/s",
                stats.msg_rate_out, stats.msg_throughput_out
            ),
        ),
        ("messages in", stats.msg_in_counter.to_string()),
        ("storage size", format!("{} B", stats.storage_size)),
        ("backlog size", format!("{} B", stats.backlog_size)),
        ("producers", stats.publishers.len().to_string()),
    ]);
    text.push('\n');
    text.push_str(&subscriptions_table(stats).render());
    text
}

fn subscriptions_table(stats: &TopicStats) -> Table {
    let mut table = Table::new(&[
        "SUBSCRIPTION",
        "TYPE",
        "BACKLOG",
        "UNACKED",
        "RATE OUT",
        "CONSUMERS",
    ]);
    for (name, sub) in &stats.subscriptions {
        table.row([
            name.clone(),
            sub.kind.clone(),
            sub.msg_backlog.to_string(),
            sub.unacked_messages.to_string(),
            format!("{:.2}/s", sub.msg_rate_out),
            sub.consumers.len().to_string(),
        ]);
    }
    table
}

async fn pulsar_subscriptions(
    command: Subscriptions,
    admin: &PulsarAdmin,
    out: Output,
) -> Result<(), CliError> {
    let full = |topic: &str| admin.topic_name(topic).map(|t| t.to_string());
    match command {
        Subscriptions::List { topic } => {
            let topic = full(&topic)?;
            let stats = admin.topic_stats(&topic).await?;
            out.print(&stats.subscriptions, || {
                subscriptions_table(&stats).render()
            })
        }
        Subscriptions::Create {
            topic,
            subscription,
            earliest,
        } => {
            let topic = full(&topic)?;
            let position = if earliest {
                Position::Earliest
            } else {
                Position::Latest
            };
            admin
                .create_subscription(&topic, &subscription, position)
                .await?;
            done(
                out,
                "created subscription",
                format!("{subscription} on {topic}"),
            )
        }
        Subscriptions::Describe {
            topic,
            subscription,
        } => {
            let topic = full(&topic)?;
            let stats = admin.topic_stats(&topic).await?;
            let Some(sub) = stats.subscriptions.get(&subscription) else {
                return Err(CliError::Usage(format!(
                    "topic {topic} has no subscription `{subscription}`"
                )));
            };
            out.print(sub, || describe_text(&topic, &subscription, sub))
        }
        Subscriptions::Reset {
            topic,
            subscription,
            earliest,
            to,
        } => reset(admin, &full(&topic)?, &subscription, earliest, to, out).await,
        Subscriptions::Skip {
            topic,
            subscription,
            count,
            all,
        } => skip(admin, &full(&topic)?, &subscription, count, all, out).await,
        Subscriptions::Delete {
            topic,
            subscription,
            force,
        } => {
            let topic = full(&topic)?;
            admin
                .delete_subscription(&topic, &subscription, force)
                .await?;
            done(
                out,
                "deleted subscription",
                format!("{subscription} on {topic}"),
            )
        }
    }
}

/// `subscriptions reset`: moves the cursor of `subscription` on `topic` (a full name) to the
/// earliest message or to a time.
async fn reset(
    admin: &PulsarAdmin,
    topic: &str,
    subscription: &str,
    earliest: bool,
    to: Option<String>,
    out: Output,
) -> Result<(), CliError> {
    let target = match (earliest, to) {
        (true, _) => ResetTo::Earliest,
        (false, Some(time)) => ResetTo::Time(parse_time(&time)?),
        (false, None) => {
            return Err(CliError::Usage("give --earliest or --to <TIME>".into()));
        }
    };
    // Described before the reset, so that a target this version cannot name moves nothing.
    let to = match target {
        ResetTo::Earliest => "the earliest message".to_string(),
        ResetTo::Time(at) => at.to_rfc3339_opts(SecondsFormat::Secs, true),
        other => {
            return Err(CliError::Unsupported(format!(
                "resetting a cursor to {other:?} is not supported by this version of bento"
            )));
        }
    };
    admin.reset_cursor(topic, subscription, target).await?;
    done(
        out,
        "reset subscription",
        format!("{subscription} on {topic} to {to}"),
    )
}

/// `subscriptions skip`: acknowledges `count` messages, or all of them, of `subscription` on
/// `topic` (a full name) without delivering them.
async fn skip(
    admin: &PulsarAdmin,
    topic: &str,
    subscription: &str,
    count: Option<u64>,
    all: bool,
    out: Output,
) -> Result<(), CliError> {
    match (all, count) {
        (true, _) => admin.skip_all(topic, subscription).await?,
        (false, Some(n)) => admin.skip(topic, subscription, n).await?,
        (false, None) => return Err(CliError::Usage("give --count <N> or --all".into())),
    }
    let what = if all {
        "all messages".to_string()
    } else {
        format!("{} message(s)", count.unwrap_or(0))
    };
    done(
        out,
        "skipped",
        format!("{what} of {subscription} on {topic}"),
    )
}

fn describe_text(topic: &str, name: &str, sub: &SubscriptionStats) -> String {
    let mut text = pairs(&[
        ("topic", topic.to_owned()),
        ("subscription", name.to_owned()),
        ("type", sub.kind.clone()),
        (
            "backlog",
            format!("{} messages, {} B", sub.msg_backlog, sub.backlog_size),
        ),
        ("unacked", sub.unacked_messages.to_string()),
        ("delayed", sub.msg_delayed.to_string()),
        ("rate out", format!("{:.2} msg/s", sub.msg_rate_out)),
        (
            "redelivered",
            format!("{:.2} msg/s", sub.msg_rate_redeliver),
        ),
        ("last acked", millis_to_time(sub.last_acked_timestamp)),
        ("durable", sub.is_durable.to_string()),
    ]);
    text.push('\n');
    let mut table = Table::new(&[
        "CONSUMER",
        "ADDRESS",
        "UNACKED",
        "RATE OUT",
        "CONNECTED SINCE",
    ]);
    for consumer in &sub.consumers {
        table.row([
            consumer.consumer_name.clone().unwrap_or_default(),
            consumer.address.clone().unwrap_or_default(),
            consumer.unacked_messages.to_string(),
            format!("{:.2}/s", consumer.msg_rate_out),
            consumer.connected_since.clone().unwrap_or_default(),
        ]);
    }
    text.push_str(&table.render());
    text
}

async fn schemas(admin: &PulsarAdmin, args: SchemasArgs, out: Output) -> Result<(), CliError> {
    let topic = admin.topic_name(&args.topic)?.to_string();
    if let Some(version) = args.version {
        let schema = admin.schema_version(&topic, version).await?;
        return out.print(&schema, || {
            let mut text = pairs(&[
                ("topic", topic.clone()),
                ("version", schema.version.to_string()),
                ("type", schema.kind.clone()),
                ("registered", millis_to_time(schema.timestamp)),
            ]);
            text.push('\n');
            text.push_str(&schema.data);
            text
        });
    }
    let versions = admin.schema_versions(&topic).await?;
    out.print(&versions, || {
        if versions.is_empty() {
            return format!("{topic} has no schema");
        }
        let mut table = Table::new(&["VERSION", "TYPE", "REGISTERED", "SIZE", "PROPERTIES"]);
        for schema in &versions {
            let properties: Vec<String> = schema
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            table.row([
                schema.version.to_string(),
                schema.kind.clone(),
                millis_to_time(schema.timestamp),
                format!("{} B", schema.data.len()),
                properties.join(", "),
            ]);
        }
        table.render()
    })
}
