//! `bento admin ...`: Pulsar through its admin REST API, Kafka through `KafkaAdmin`.

use bento_kafka::{KafkaAdmin, KafkaConfig, OffsetReset};
use bento_pulsar::admin::{
    Position, PulsarAdmin, ResetTo, Retention, SchemaCompatibility, SubscriptionStats, TopicStats,
};
use bento_runtime::BackendKind;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use serde_json::json;

use crate::cli::{
    Admin, Namespaces, OnOff, PoliciesArgs, SchemasArgs, Subscriptions, Tenants, Topics,
};
use crate::config::Loaded;
use crate::error::CliError;
use crate::output::{Output, Table, pairs};

/// Runs one `bento admin` command.
pub async fn run(command: Admin, loaded: &Loaded, out: Output) -> Result<(), CliError> {
    match loaded.backend() {
        BackendKind::Pulsar => {
            let config = loaded.pulsar()?;
            let admin = PulsarAdmin::new(&config)?;
            let default_namespace = format!("{}/{}", config.tenant, config.namespace);
            pulsar(command, &admin, &default_namespace, out).await
        }
        BackendKind::Kafka => {
            let config = loaded.kafka()?;
            let admin = KafkaAdmin::new(&config)?;
            kafka(command, &admin, &config, out).await
        }
        BackendKind::Memory => Err(no_broker()),
    }
}

/// The error for a configuration that names the in-memory bus.
pub fn no_broker() -> CliError {
    CliError::Unsupported(
        "messaging.backend is `memory`, which has no broker to manage; set messaging.backend \
         to pulsar or kafka in bento.toml or with BENTO_MESSAGING__BACKEND"
            .into(),
    )
}

/// Parses an RFC 3339 time given on the command line.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, CliError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CliError::Usage(format!(
                "`{text}` is not an RFC 3339 time like 2026-11-27T10:00:00Z: {e}"
            ))
        })
}

fn millis_to_time(millis: i64) -> String {
    if millis <= 0 {
        return "-".into();
    }
    Utc.timestamp_millis_opt(millis).single().map_or_else(
        || millis.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

fn done(out: Output, action: &str, what: String) -> Result<(), CliError> {
    out.print(
        &json!({ "ok": true, "action": action, "target": what }),
        || format!("{action} {what}"),
    )
}

// -------------------------------------------------------------------------------- Pulsar

async fn pulsar(
    command: Admin,
    admin: &PulsarAdmin,
    default_namespace: &str,
    out: Output,
) -> Result<(), CliError> {
    match command {
        Admin::Tenants(Tenants::List) => {
            let tenants = admin.tenants().await?;
            out.print(&tenants, || list_table("TENANT", &tenants))
        }
        Admin::Tenants(Tenants::Create { tenant, clusters }) => {
            admin.create_tenant(&tenant, &clusters).await?;
            done(out, "created tenant", tenant)
        }
        Admin::Tenants(Tenants::Delete { tenant }) => {
            admin.delete_tenant(&tenant).await?;
            done(out, "deleted tenant", tenant)
        }
        Admin::Namespaces(Namespaces::List { tenant }) => {
            let namespaces = admin.namespaces(&tenant).await?;
            out.print(&namespaces, || list_table("NAMESPACE", &namespaces))
        }
        Admin::Namespaces(Namespaces::Create { namespace }) => {
            admin.create_namespace(&namespace).await?;
            done(out, "created namespace", namespace)
        }
        Admin::Namespaces(Namespaces::Delete { namespace, force }) => {
            admin.delete_namespace(&namespace, force).await?;
            done(out, "deleted namespace", namespace)
        }
        Admin::Namespaces(Namespaces::Policies(args)) => policies(admin, args, out).await,
        Admin::Topics(Topics::List { namespace }) => {
            let namespace = namespace.unwrap_or_else(|| default_namespace.to_owned());
            let (topics, partitioned) = futures::try_join!(
                admin.topics(&namespace),
                admin.partitioned_topics(&namespace)
            )?;
            let mut rows = Vec::with_capacity(topics.len());
            for topic in topics {
                let partitions = if partitioned.contains(&topic) {
                    admin.partitions(&topic).await?
                } else {
                    0
                };
                rows.push(TopicRow { topic, partitions });
            }
            out.print(&rows, || {
                let mut table = Table::new(&["TOPIC", "PARTITIONS"]);
                for row in &rows {
                    table.row([row.topic.clone(), partitions_cell(row.partitions)]);
                }
                table.render()
            })
        }
        Admin::Topics(Topics::Create { topic, partitions }) => {
            let name = admin.topic_name(&topic)?.to_string();
            admin.create_topic(&name, partitions.unwrap_or(0)).await?;
            done(out, "created topic", name)
        }
        Admin::Topics(Topics::Delete { topic, force }) => {
            let name = admin.topic_name(&topic)?.to_string();
            admin.delete_topic(&name, force).await?;
            done(out, "deleted topic", name)
        }
        Admin::Topics(Topics::Stats { topic }) => {
            let name = admin.topic_name(&topic)?.to_string();
            let stats = admin.topic_stats(&name).await?;
            out.print(&stats, || stats_text(&name, &stats))
        }
        Admin::Subscriptions(command) => pulsar_subscriptions(command, admin, out).await,
        Admin::Schemas(args) => schemas(admin, args, out).await,
    }
}

#[derive(Serialize)]
struct TopicRow {
    topic: String,
    partitions: u32,
}

fn partitions_cell(partitions: u32) -> String {
    if partitions == 0 {
        "-".into()
    } else {
        partitions.to_string()
    }
}

fn list_table(header: &'static str, items: &[String]) -> String {
    let mut table = Table::new(&[header]);
    for item in items {
        table.row([item.clone()]);
    }
    table.render()
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
        } => {
            let topic = full(&topic)?;
            let target = match (earliest, to) {
                (true, _) => ResetTo::Earliest,
                (false, Some(time)) => ResetTo::Time(parse_time(&time)?),
                (false, None) => {
                    return Err(CliError::Usage("give --earliest or --to <TIME>".into()));
                }
            };
            admin.reset_cursor(&topic, &subscription, target).await?;
            let to = match target {
                ResetTo::Earliest => "the earliest message".to_string(),
                ResetTo::Time(at) => at.to_rfc3339_opts(SecondsFormat::Secs, true),
            };
            done(
                out,
                "reset subscription",
                format!("{subscription} on {topic} to {to}"),
            )
        }
        Subscriptions::Skip {
            topic,
            subscription,
            count,
            all,
        } => {
            let topic = full(&topic)?;
            match (all, count) {
                (true, _) => admin.skip_all(&topic, &subscription).await?,
                (false, Some(n)) => admin.skip(&topic, &subscription, n).await?,
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

// -------------------------------------------------------------------------------- Kafka

fn kafka_only_pulsar(what: &str) -> CliError {
    CliError::Unsupported(format!(
        "{what} exist on Pulsar only; messaging.backend is `kafka`"
    ))
}

async fn kafka(
    command: Admin,
    admin: &KafkaAdmin,
    config: &KafkaConfig,
    out: Output,
) -> Result<(), CliError> {
    match command {
        Admin::Tenants(_) => Err(kafka_only_pulsar("tenants")),
        Admin::Namespaces(_) => Err(kafka_only_pulsar("namespaces")),
        Admin::Schemas(_) => Err(kafka_only_pulsar("schemas kept by the broker")),
        Admin::Topics(Topics::List { namespace }) => {
            let prefix = namespace.unwrap_or_default();
            let topics: Vec<String> = admin
                .list_topics()
                .await?
                .into_iter()
                .filter(|t| !t.starts_with("__") && t.starts_with(&prefix))
                .collect();
            let rows: Vec<serde_json::Value> =
                topics.iter().map(|t| json!({ "topic": t })).collect();
            out.print(&rows, || list_table("TOPIC", &topics))
        }
        Admin::Topics(Topics::Create { topic, partitions }) => {
            if admin.list_topics().await?.contains(&topic) {
                return Err(CliError::Broker(format!("topic `{topic}` already exists")));
            }
            let partitions = partitions.unwrap_or(config.partitions).max(1);
            admin
                .create_topics(std::slice::from_ref(&topic), partitions)
                .await?;
            done(
                out,
                "created topic",
                format!("{topic} ({partitions} partitions)"),
            )
        }
        Admin::Topics(Topics::Delete { topic, force: _ }) => {
            if !admin.list_topics().await?.contains(&topic) {
                return Err(CliError::Broker(format!("topic `{topic}` does not exist")));
            }
            admin.delete_topics(std::slice::from_ref(&topic)).await?;
            done(out, "deleted topic", topic)
        }
        Admin::Topics(Topics::Stats { topic }) => {
            let info = admin.describe_topic(&topic).await?;
            let rows: Vec<serde_json::Value> = info
                .partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "low_watermark": p.low_watermark,
                        "high_watermark": p.high_watermark,
                        "messages": p.high_watermark - p.low_watermark,
                    })
                })
                .collect();
            let value = json!({ "topic": info.name, "partitions": rows });
            out.print(&value, || {
                let stored: i64 = info
                    .partitions
                    .iter()
                    .map(|p| p.high_watermark - p.low_watermark)
                    .sum();
                let mut text = pairs(&[
                    ("topic", info.name.clone()),
                    ("partitions", info.partitions.len().to_string()),
                    ("messages stored", stored.to_string()),
                ]);
                text.push('\n');
                let mut table = Table::new(&["PARTITION", "LEADER", "LOW", "HIGH", "MESSAGES"]);
                for p in &info.partitions {
                    table.row([
                        p.partition.to_string(),
                        p.leader.to_string(),
                        p.low_watermark.to_string(),
                        p.high_watermark.to_string(),
                        (p.high_watermark - p.low_watermark).to_string(),
                    ]);
                }
                text.push_str(&table.render());
                text
            })
        }
        Admin::Subscriptions(command) => kafka_groups(command, admin, out).await,
    }
}

#[derive(Serialize)]
struct GroupRow {
    group: String,
    state: String,
    members: usize,
    lag: i64,
}

async fn kafka_groups(
    command: Subscriptions,
    admin: &KafkaAdmin,
    out: Output,
) -> Result<(), CliError> {
    match command {
        Subscriptions::List { topic } => {
            // Kafka does not say which topics a group reads: a group is listed when it has
            // committed offsets on this topic.
            admin.describe_topic(&topic).await?;
            let mut rows = Vec::new();
            for group in admin.list_groups().await? {
                let lag = admin.group_lag(&group.name, &topic).await?;
                if lag.iter().any(|p| p.committed.is_some()) {
                    rows.push(GroupRow {
                        lag: lag.iter().map(|p| p.lag).sum(),
                        members: group.members.len(),
                        state: group.state,
                        group: group.name,
                    });
                }
            }
            rows.sort_by(|a, b| a.group.cmp(&b.group));
            out.print(&rows, || {
                let mut table = Table::new(&["GROUP", "STATE", "MEMBERS", "LAG"]);
                for row in &rows {
                    table.row([
                        row.group.clone(),
                        row.state.clone(),
                        row.members.to_string(),
                        row.lag.to_string(),
                    ]);
                }
                table.render()
            })
        }
        Subscriptions::Describe {
            topic,
            subscription,
        } => {
            let lag = admin.group_lag(&subscription, &topic).await?;
            lag_output(out, &topic, &subscription, &lag)
        }
        Subscriptions::Reset {
            topic,
            subscription,
            earliest,
            to,
        } => {
            let target = match (earliest, to) {
                (true, _) => OffsetReset::Earliest,
                (false, Some(time)) => OffsetReset::Time(parse_time(&time)?),
                (false, None) => {
                    return Err(CliError::Usage("give --earliest or --to <TIME>".into()));
                }
            };
            let lag = admin
                .reset_group_offsets(&subscription, &topic, target)
                .await?;
            lag_output(out, &topic, &subscription, &lag)
        }
        Subscriptions::Skip {
            topic,
            subscription,
            count,
            all,
        } => {
            if !all || count.is_some() {
                return Err(CliError::Unsupported(
                    "skipping a number of records on Kafka: offsets are per partition; use \
                     --all, or `reset --to <TIME>`"
                        .into(),
                ));
            }
            let lag = admin
                .reset_group_offsets(&subscription, &topic, OffsetReset::Latest)
                .await?;
            lag_output(out, &topic, &subscription, &lag)
        }
        Subscriptions::Create { .. } => Err(CliError::Unsupported(
            "creating a consumer group on Kafka: a group exists once a consumer joined it or \
             offsets were committed for it (`subscriptions reset --earliest`)"
                .into(),
        )),
        Subscriptions::Delete { .. } => Err(CliError::Unsupported(
            "deleting a consumer group on Kafka with the bento CLI".into(),
        )),
    }
}

fn lag_output(
    out: Output,
    topic: &str,
    group: &str,
    lag: &[bento_kafka::PartitionLag],
) -> Result<(), CliError> {
    let rows: Vec<serde_json::Value> = lag
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "committed": p.committed,
                "high_watermark": p.high_watermark,
                "lag": p.lag,
            })
        })
        .collect();
    let value = json!({ "topic": topic, "group": group, "partitions": rows });
    out.print(&value, || {
        let mut text = pairs(&[
            ("topic", topic.to_owned()),
            ("group", group.to_owned()),
            ("lag", lag.iter().map(|p| p.lag).sum::<i64>().to_string()),
        ]);
        text.push('\n');
        let mut table = Table::new(&["PARTITION", "COMMITTED", "HIGH", "LAG"]);
        for p in lag {
            table.row([
                p.partition.to_string(),
                p.committed.map_or_else(|| "-".into(), |c| c.to_string()),
                p.high_watermark.to_string(),
                p.lag.to_string(),
            ]);
        }
        text.push_str(&table.render());
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert!(parse_time("2026-11-27T10:00:00Z").is_ok());
        assert!(parse_time("2026-11-27T10:00:00+01:00").is_ok());
        assert!(parse_time("yesterday").is_err());
        assert_eq!(millis_to_time(0), "-");
        assert_eq!(millis_to_time(1_000), "1970-01-01T00:00:01.000Z");
    }
}
