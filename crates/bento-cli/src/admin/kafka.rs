//! `bento admin ...` on Kafka: topics and consumer groups, through `KafkaAdmin`.

use bento_kafka::{KafkaAdmin, KafkaConfig, OffsetReset, RegistryClient, SubjectNameStrategy};
use serde::Serialize;
use serde_json::json;

use super::topic_roles::{self, TopicRole};
use super::{done, parse_time};
use crate::cli::{Admin, SchemasArgs, Subscriptions, Topics};
use crate::error::CliError;
use crate::output::{Output, Table, pairs};

fn kafka_only_pulsar(what: &str) -> CliError {
    CliError::Unsupported(format!(
        "{what} exist on Pulsar only; messaging.backend is `kafka`"
    ))
}

/// Runs one `bento admin` command on Kafka.
pub(super) async fn run(
    command: Admin,
    admin: &KafkaAdmin,
    config: &KafkaConfig,
    out: Output,
) -> Result<(), CliError> {
    match command {
        Admin::Tenants(_) => Err(kafka_only_pulsar("tenants")),
        Admin::Namespaces(_) => Err(kafka_only_pulsar("namespaces")),
        Admin::Schemas(args) => schemas(config, args, out).await,
        Admin::Topics(Topics::List { namespace }) => {
            let prefix = namespace.unwrap_or_default();
            let topics: Vec<String> = admin
                .list_topics()
                .await?
                .into_iter()
                .filter(|t| !t.starts_with("__") && t.starts_with(&prefix))
                .collect();
            // Retry tiers, delayed and dead-letter topics follow the topic they belong to.
            let rows: Vec<TopicRow> = topic_roles::classify(topics)
                .into_iter()
                .map(|(topic, role)| TopicRow { topic, role })
                .collect();
            out.print(&rows, || {
                let mut table = Table::new(&["TOPIC", "OF"]);
                for row in &rows {
                    table.row([row.topic.clone(), row.role.describe()]);
                }
                table.render()
            })
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
        Admin::Topics(Topics::Stats { topic }) => topic_stats(admin, &topic, out).await,
        Admin::Subscriptions(command) => kafka_groups(command, admin, out).await,
    }
}

/// `topics stats`: the partitions of `topic`, their leaders and offsets.
async fn topic_stats(admin: &KafkaAdmin, topic: &str, out: Output) -> Result<(), CliError> {
    let info = admin.describe_topic(topic).await?;
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
        Subscriptions::List { topic } => list_groups(admin, &topic, out).await,
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

/// `subscriptions list`: the consumer groups reading `topic`, with their lag.
async fn list_groups(admin: &KafkaAdmin, topic: &str, out: Output) -> Result<(), CliError> {
    // Kafka does not say which topics a group reads: a group is listed when it has
    // committed offsets on this topic.
    admin.describe_topic(topic).await?;
    let mut rows = Vec::new();
    for group in admin.list_groups().await? {
        let lag = admin.group_lag(&group.name, topic).await?;
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

/// `bento admin schemas <topic> [--version N]` on Kafka: the versions of the topic's subject in
/// the schema registry (`<topic>-value`; with the record strategy, the argument is the subject).
async fn schemas(config: &KafkaConfig, args: SchemasArgs, out: Output) -> Result<(), CliError> {
    let Some(registry) = &config.schema_registry else {
        return Err(CliError::Unsupported(
            "schemas on Kafka live in a schema registry, and none is configured: set \
             messaging.kafka.schema_registry.url"
                .into(),
        ));
    };
    let client = RegistryClient::new(registry).map_err(CliError::Broker)?;
    let subject = match registry.subject_name_strategy {
        SubjectNameStrategy::Record => args.topic.clone(),
        _ => format!("{}-value", args.topic),
    };
    if let Some(version) = args.version {
        let version = i64::try_from(version)
            .map_err(|_| CliError::Usage(format!("version {version} is out of range")))?;
        let Some(schema) = client
            .version(&subject, version)
            .await
            .map_err(CliError::Broker)?
        else {
            return Err(CliError::Broker(format!(
                "subject `{subject}` has no version {version} in the registry at {}",
                client.url()
            )));
        };
        let value = json!({
            "subject": schema.subject, "version": schema.version, "id": schema.id,
            "type": schema.schema_type, "schema": schema.schema,
        });
        return out.print(&value, || {
            let mut text = pairs(&[
                ("subject", schema.subject.clone()),
                ("version", schema.version.to_string()),
                ("id", schema.id.to_string()),
                ("type", schema.schema_type.clone()),
            ]);
            text.push('\n');
            text.push_str(&schema.schema);
            text
        });
    }
    let mut versions = Vec::new();
    for number in client.versions(&subject).await.map_err(CliError::Broker)? {
        if let Some(version) = client
            .version(&subject, number)
            .await
            .map_err(CliError::Broker)?
        {
            versions.push(version);
        }
    }
    let rows: Vec<serde_json::Value> = versions
        .iter()
        .map(|v| {
            json!({ "subject": v.subject, "version": v.version, "id": v.id,
                    "type": v.schema_type, "size": v.schema.len() })
        })
        .collect();
    out.print(&rows, || {
        if versions.is_empty() {
            return format!("subject `{subject}` has no schema");
        }
        let mut table = Table::new(&["SUBJECT", "VERSION", "ID", "TYPE", "SIZE"]);
        for v in &versions {
            table.row([
                v.subject.clone(),
                v.version.to_string(),
                v.id.to_string(),
                v.schema_type.clone(),
                format!("{} B", v.schema.len()),
            ]);
        }
        table.render()
    })
}

/// One row of `admin topics list`.
#[derive(Serialize)]
struct TopicRow {
    topic: String,
    /// `role` (`topic`, `retry`, `dead-letter`, `replay-log`, `delayed`) and, for the others,
    /// `of_topic` and `subscription`.
    #[serde(flatten)]
    role: TopicRole,
}
