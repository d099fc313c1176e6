//! What the admin API takes and gives back, typed. Responses keep the fields an operator needs
//! and ignore the rest, so a newer broker adding fields does not break the client.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A tenant's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "camelCase"))]
pub struct TenantInfo {
    /// Clusters the tenant's namespaces may use.
    pub allowed_clusters: Vec<String>,
    /// Roles allowed to administer the tenant.
    pub admin_roles: Vec<String>,
}

/// How long a namespace keeps acknowledged messages.
///
/// Pulsar keeps a message while any subscription has not acknowledged it; retention keeps
/// acknowledged messages too, up to this age or size (whichever is reached first; `-1` means no
/// limit, `0` means none kept), so a cursor reset can replay them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Retention {
    /// Minutes acknowledged messages are kept (`-1`: no limit).
    #[serde(rename = "retentionTimeInMinutes")]
    pub time_minutes: i64,
    /// Megabytes of acknowledged messages kept (`-1`: no limit).
    #[serde(rename = "retentionSizeInMB")]
    pub size_mb: i64,
}

/// How a namespace checks a new schema version against the existing ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemaCompatibility {
    /// Not set on the namespace: the broker's default applies.
    #[default]
    Undefined,
    /// Every change is refused.
    AlwaysIncompatible,
    /// Every change is accepted.
    AlwaysCompatible,
    /// Readers of the new schema can read data of the last one.
    Backward,
    /// Readers of the last schema can read data of the new one.
    Forward,
    /// Backward and forward.
    Full,
    /// Backward against every earlier version.
    BackwardTransitive,
    /// Forward against every earlier version.
    ForwardTransitive,
    /// Full against every earlier version.
    FullTransitive,
    /// A strategy this client does not know (a newer broker), kept as the broker names it.
    Other(String),
}

impl SchemaCompatibility {
    const NAMES: [(&'static str, SchemaCompatibility); 9] = [
        ("UNDEFINED", SchemaCompatibility::Undefined),
        (
            "ALWAYS_INCOMPATIBLE",
            SchemaCompatibility::AlwaysIncompatible,
        ),
        ("ALWAYS_COMPATIBLE", SchemaCompatibility::AlwaysCompatible),
        ("BACKWARD", SchemaCompatibility::Backward),
        ("FORWARD", SchemaCompatibility::Forward),
        ("FULL", SchemaCompatibility::Full),
        (
            "BACKWARD_TRANSITIVE",
            SchemaCompatibility::BackwardTransitive,
        ),
        ("FORWARD_TRANSITIVE", SchemaCompatibility::ForwardTransitive),
        ("FULL_TRANSITIVE", SchemaCompatibility::FullTransitive),
    ];

    /// The broker's name of the strategy, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(&self) -> &str {
        match self {
            SchemaCompatibility::Other(name) => name,
            known => Self::NAMES
                .iter()
                .find(|(_, s)| s == known)
                .map_or("UNDEFINED", |(name, _)| name),
        }
    }
}

impl fmt::Display for SchemaCompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaCompatibility {
    type Err = String;

    /// Parses a strategy name, in any case and with `-` or `_`: `full`, `backward-transitive`.
    /// Unknown names are refused (use [`SchemaCompatibility::Other`] to send one anyway).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, strategy)| strategy.clone())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown schema compatibility strategy `{s}`; one of {names:?}")
            })
    }
}

impl Serialize for SchemaCompatibility {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SchemaCompatibility {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(name
            .parse()
            .unwrap_or(SchemaCompatibility::Other(name.to_owned())))
    }
}

/// The policies of a namespace that Bento's tools read and set. `None`: not set on the
/// namespace (the broker's default applies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NamespacePolicies {
    /// Broker-side deduplication of messages by producer name and sequence id.
    pub deduplication: Option<bool>,
    /// Retention of acknowledged messages.
    pub retention: Option<Retention>,
    /// Messages older than this many seconds are acknowledged by the broker (expire).
    pub message_ttl_seconds: Option<i64>,
    /// Schema compatibility strategy.
    pub schema_compatibility: SchemaCompatibility,
}

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Position {
    /// At the oldest message the topic still stores.
    Earliest,
    /// After the newest message: only messages published from now on.
    #[default]
    Latest,
}

/// Where to move a subscription's cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetTo {
    /// The oldest message still stored: everything is delivered again.
    Earliest,
    /// The first message published at or after this time.
    Time(DateTime<Utc>),
}

/// A topic's partition count, as `GET .../partitions` reports it (0: not partitioned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct PartitionedMetadata {
    pub(crate) partitions: u32,
}

/// Statistics of a topic (of all its partitions, for a partitioned topic).
///
/// Rates are per second over the broker's last stats interval (a minute by default); counters
/// count since the topic was loaded on its broker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "camelCase"))]
pub struct TopicStats {
    /// Partitions (0: not partitioned). Filled in by [`super::PulsarAdmin::topic_stats`].
    #[serde(skip_deserializing)]
    pub partitions: u32,
    /// Messages published per second.
    pub msg_rate_in: f64,
    /// Messages delivered per second, all subscriptions together.
    pub msg_rate_out: f64,
    /// Bytes published per second.
    pub msg_throughput_in: f64,
    /// Bytes delivered per second.
    pub msg_throughput_out: f64,
    /// Messages published.
    pub msg_in_counter: i64,
    /// Messages delivered.
    pub msg_out_counter: i64,
    /// Bytes published.
    pub bytes_in_counter: i64,
    /// Average message size, in bytes.
    pub average_msg_size: f64,
    /// Bytes the topic occupies in storage.
    pub storage_size: i64,
    /// Bytes not yet acknowledged by the slowest subscription.
    pub backlog_size: i64,
    /// Producers connected.
    pub publishers: Vec<PublisherStats>,
    /// Subscriptions, by name.
    pub subscriptions: BTreeMap<String, SubscriptionStats>,
}

/// A producer connected to a topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "camelCase"))]
pub struct PublisherStats {
    /// The producer's name.
    pub producer_name: Option<String>,
    /// Messages it publishes per second.
    pub msg_rate_in: f64,
    /// Client address.
    pub address: Option<String>,
    /// Since when it is connected.
    pub connected_since: Option<String>,
}

/// A subscription of a topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "camelCase"))]
pub struct SubscriptionStats {
    /// `Exclusive`, `Shared`, `Failover`, `Key_Shared` (`None` while no consumer is connected).
    #[serde(rename(deserialize = "type"))]
    pub kind: String,
    /// Messages not yet acknowledged: what the subscription still has to consume.
    pub msg_backlog: i64,
    /// Bytes of the backlog.
    pub backlog_size: i64,
    /// Messages delivered to consumers and not yet acknowledged.
    pub unacked_messages: i64,
    /// Messages delivered per second.
    pub msg_rate_out: f64,
    /// Bytes delivered per second.
    pub msg_throughput_out: f64,
    /// Messages redelivered per second.
    pub msg_rate_redeliver: f64,
    /// Messages expired (by TTL) per second.
    pub msg_rate_expired: f64,
    /// Delayed messages waiting for their delivery time.
    pub msg_delayed: i64,
    /// Whether the subscription keeps its position while no consumer is connected.
    pub is_durable: bool,
    /// When a consumer last acknowledged, milliseconds since the epoch (0: never).
    pub last_acked_timestamp: i64,
    /// When a message was last delivered, milliseconds since the epoch (0: never).
    pub last_consumed_timestamp: i64,
    /// Consumers connected.
    pub consumers: Vec<ConsumerStats>,
}

/// A consumer connected to a subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "camelCase"))]
pub struct ConsumerStats {
    /// The consumer's name.
    pub consumer_name: Option<String>,
    /// Messages delivered to it per second.
    pub msg_rate_out: f64,
    /// Messages delivered to it and not yet acknowledged.
    pub unacked_messages: i64,
    /// Messages the broker may still push to it.
    pub available_permits: i64,
    /// Client address.
    pub address: Option<String>,
    /// Since when it is connected.
    pub connected_since: Option<String>,
}

/// One version of a topic's schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaInfo {
    /// Version number, from 0.
    pub version: i64,
    /// Schema type: `AVRO`, `JSON`, `PROTOBUF`, `STRING`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was registered, milliseconds since the epoch.
    pub timestamp: i64,
    /// The schema definition (for Avro and JSON, an Avro schema as JSON text).
    pub data: String,
    /// Properties given with the schema.
    pub properties: BTreeMap<String, String>,
}

/// A schema to register on a topic with [`super::PulsarAdmin::upload_schema`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SchemaUpload {
    /// Schema type: `AVRO`, `JSON`, `PROTOBUF`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The definition.
    pub schema: String,
    /// Properties to keep with it.
    pub properties: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SchemaVersions {
    pub(crate) get_schema_responses: Vec<SchemaInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_names() {
        assert_eq!(
            "backward-transitive".parse::<SchemaCompatibility>(),
            Ok(SchemaCompatibility::BackwardTransitive)
        );
        assert_eq!(
            SchemaCompatibility::FullTransitive.as_str(),
            "FULL_TRANSITIVE"
        );
        assert!("sideways".parse::<SchemaCompatibility>().is_err());
        let odd: Result<SchemaCompatibility, _> = serde_json::from_str(r#""NEW_KIND""#);
        assert!(matches!(odd, Ok(SchemaCompatibility::Other(name)) if name == "NEW_KIND"));
    }

    #[test]
    fn stats_tolerate_unknown_and_missing_fields() -> Result<(), serde_json::Error> {
        let stats: TopicStats = serde_json::from_str(
            r#"{"msgRateIn": 1.5, "storageSize": 42, "brandNewField": {"x": 1},
                "subscriptions": {"s": {"msgBacklog": 3, "type": "Shared",
                  "consumers": [{"consumerName": "c", "whatever": true}]}}}"#,
        )?;
        assert_eq!(stats.msg_rate_in, 1.5);
        assert_eq!(stats.storage_size, 42);
        let sub = &stats.subscriptions["s"];
        assert_eq!((sub.msg_backlog, sub.kind.as_str()), (3, "Shared"));
        assert_eq!(sub.consumers[0].consumer_name.as_deref(), Some("c"));
        let shown = serde_json::to_value(&stats)?;
        assert_eq!(shown["subscriptions"]["s"]["msg_backlog"], 3);
        Ok(())
    }
}
