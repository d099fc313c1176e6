//! Topic and consumer-group administration over librdkafka's admin API.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bento_application::{BoxError, BusError};
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::context::BentoContext;

/// One partition of a topic: its leader and its offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: i32,
    /// Broker id of the leader (-1 when none).
    pub leader: i32,
    /// Oldest offset still stored.
    pub low_watermark: i64,
    /// Offset the next record will get.
    pub high_watermark: i64,
}

/// A topic and its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Its partitions, by number.
    pub partitions: Vec<PartitionInfo>,
}

/// A consumer group as the broker lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group id (a Bento subscription name).
    pub name: String,
    /// Broker-side state (`Stable`, `Empty`, `PreparingRebalance`...).
    pub state: String,
    /// Client ids of its members.
    pub members: Vec<String>,
}

/// Where a consumer group stands on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// Partition number.
    pub partition: i32,
    /// The group's committed offset (the next record it will read), if any.
    pub committed: Option<i64>,
    /// Offset the next record will get.
    pub high_watermark: i64,
    /// Records not yet consumed: `high_watermark - committed` (all stored ones if none).
    pub lag: i64,
}

/// Where [`KafkaAdmin::reset_group_offsets`] moves a consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetReset {
    /// The oldest record still stored: everything is consumed again.
    Earliest,
    /// The end: only records produced from now on.
    Latest,
    /// The first record whose timestamp is at or after this time (the end if there is none).
    Time(chrono::DateTime<chrono::Utc>),
}

/// Topic and consumer-group administration for the brokers a [`KafkaConfig`] points at.
///
/// Every call blocks on the network for at most the configured `connect_timeout_ms`; they run
/// on tokio's blocking pool.
#[derive(Clone)]
pub struct KafkaAdmin {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    admin: AdminClient<DefaultClientContext>,
    metadata: BaseConsumer<BentoContext>,
    /// Topics known to exist, so each is created at most once per process.
    known: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin")
            .field("bootstrap_servers", &self.inner.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

/// A failed admin `operation`, with the client's error kept as the cause.
fn failed(operation: impl Into<String>, source: impl Into<BoxError>) -> BusError {
    BusError::backend("kafka", operation, source)
}

impl Inner {
    /// Low and high watermark of one partition, or an error naming the topic and partition.
    fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<(i64, i64), BusError> {
        self.metadata
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| {
                failed(
                    "a Kafka admin call",
                    format!("reading the offsets of `{topic}` partition {partition} failed: {e}"),
                )
            })
    }
}

impl KafkaAdmin {
    /// Admin clients for `config`'s brokers (no network traffic until the first call).
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        config.validate()?;
        let admin = config
            .common()
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(|e| failed("cannot create the Kafka admin client", e))?;
        let metadata = config
            .common()
            .create_with_context::<_, BaseConsumer<BentoContext>>(BentoContext::plain())
            .map_err(|e| failed("cannot create the Kafka metadata client", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                admin,
                metadata,
                known: Mutex::new(HashSet::new()),
            }),
        })
    }

    fn timeout(&self) -> Duration {
        self.inner.config.connect_timeout()
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout()))
            .operation_timeout(Some(self.timeout()))
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, BusError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, BusError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| failed("a Kafka admin call failed", e))?
    }

    /// Creates `topics` with `partitions` partitions each (the configured replication factor);
    /// topics that already exist are left alone.
    pub async fn create_topics(&self, topics: &[String], partitions: u32) -> Result<(), BusError> {
        let missing: Vec<&String> = {
            let known = self.inner.known.lock();
            topics.iter().filter(|t| !known.contains(*t)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let replication = self.inner.config.replication_factor.map_or(-1, i32::from);
        let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| NewTopic::new(t.as_str(), partitions, TopicReplication::Fixed(replication)))
            .collect();
        let results = self
            .inner
            .admin
            .create_topics(new.iter(), &self.options())
            .await
            .map_err(|e| BusError::Publish {
                topic: missing
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                source: format!("creating the topic failed: {e}").into(),
            })?;
        let mut created = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    created.push(topic);
                }
                Err((topic, code)) => {
                    return Err(BusError::Publish {
                        source: format!("creating the topic failed: {code}").into(),
                        topic,
                    });
                }
            }
        }
        // A created topic is usable once every partition has a leader.
        let timeout = self.timeout();
        let ready = self
            .blocking(move |inner| {
                let deadline = std::time::Instant::now() + timeout;
                for topic in &created {
                    loop {
                        let leaders = partition_ids(&inner.metadata, topic, timeout);
                        match leaders {
                            Ok(p) if !p.is_empty() && p.iter().all(|(_, leader)| *leader >= 0) => {
                                break;
                            }
                            Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Ok(_) => {
                                return Err(BusError::Publish {
                                    topic: topic.clone(),
                                    source: (format!(
                                        "the topic has partitions without a leader after {timeout:?}"
                                    )).into(),
                                });
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                Ok(created)
            })
            .await?;
        self.inner.known.lock().extend(ready);
        Ok(())
    }

    /// Remembers that `topic` exists (when topic creation is off, or after a successful
    /// produce), so it is not created again.
    pub(crate) fn mark_known(&self, topic: &str) {
        self.inner.known.lock().insert(topic.to_owned());
    }

    /// Whether `topic` is known to exist in this process.
    pub(crate) fn is_known(&self, topic: &str) -> bool {
        self.inner.known.lock().contains(topic)
    }

    /// Deletes `topics`; topics that do not exist are not an error.
    pub async fn delete_topics(&self, topics: &[String]) -> Result<(), BusError> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let results = self
            .inner
            .admin
            .delete_topics(&names, &self.options())
            .await
            .map_err(|e| failed(format!("deleting topics {names:?} failed"), e))?;
        let mut known = self.inner.known.lock();
        for result in results {
            match result {
                Ok(topic) | Err((topic, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    known.remove(&topic);
                }
                Err((topic, code)) => {
                    return Err(failed(
                        "a Kafka admin call",
                        format!("deleting topic `{topic}` failed: {code}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Names of all topics (internal ones like `__consumer_offsets` included).
    pub async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        let timeout = self.timeout();
        self.blocking(move |inner| {
            let metadata = inner
                .metadata
                .fetch_metadata(None, timeout)
                .map_err(|e| failed("listing topics failed", e))?;
            let mut names: Vec<String> = metadata
                .topics()
                .iter()
                .map(|t| t.name().to_owned())
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// A topic's partitions with their leaders and watermarks.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicInfo, BusError> {
        let timeout = self.timeout();
        let topic = topic.to_owned();
        self.blocking(move |inner| {
            let partitions = partition_ids(&inner.metadata, &topic, timeout)?;
            let mut out = Vec::with_capacity(partitions.len());
            for (partition, leader) in partitions {
                let (low, high) = inner.watermarks(&topic, partition, timeout)?;
                out.push(PartitionInfo {
                    partition,
                    leader,
                    low_watermark: low,
                    high_watermark: high,
                });
            }
            Ok(TopicInfo {
                name: topic,
                partitions: out,
            })
        })
        .await
    }

    /// The consumer groups the brokers know.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        let timeout = self.timeout();
        self.blocking(move |inner| {
            let groups = inner
                .metadata
                .fetch_group_list(None, timeout)
                .map_err(|e| failed("listing consumer groups failed", e))?;
            Ok(groups
                .groups()
                .iter()
                .map(|g| GroupInfo {
                    name: g.name().to_owned(),
                    state: g.state().to_owned(),
                    members: g
                        .members()
                        .iter()
                        .map(|m| m.client_id().to_owned())
                        .collect(),
                })
                .collect())
        })
        .await
    }

    /// Where consumer group `group` stands on each partition of `topic`: committed offset,
    /// high watermark and lag.
    pub async fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>, BusError> {
        let timeout = self.timeout();
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.blocking(move |inner| {
            let consumer: BaseConsumer<BentoContext> = inner
                .config
                .consumer_config(&group)
                .create_with_context(BentoContext::plain())
                .map_err(|e| failed(format!("cannot create a consumer for group `{group}`"), e))?;
            let partitions = partition_ids(&inner.metadata, &topic, timeout)?;
            let mut tpl = TopicPartitionList::new();
            for (partition, _) in &partitions {
                tpl.add_partition(&topic, *partition);
            }
            let committed = consumer.committed_offsets(tpl, timeout).map_err(|e| {
                failed(
                    "a Kafka admin call",
                    format!(
                        "reading the committed offsets of group `{group}` on `{topic}` failed: {e}"
                    ),
                )
            })?;
            let committed: BTreeMap<i32, Option<i64>> = committed
                .elements_for_topic(&topic)
                .iter()
                .map(|e| {
                    let offset = match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    };
                    (e.partition(), offset)
                })
                .collect();
            let mut out = Vec::with_capacity(partitions.len());
            for (partition, _) in partitions {
                let (low, high) = inner.watermarks(&topic, partition, timeout)?;
                let committed = committed.get(&partition).copied().flatten();
                out.push(PartitionLag {
                    partition,
                    committed,
                    high_watermark: high,
                    lag: high - committed.unwrap_or(low).max(low),
                });
            }
            Ok(out)
        })
        .await
    }

    /// A librdkafka consumer configuration for consumer group `group`, with the brokers,
    /// security settings and `consumer` properties of the configuration; offsets are never
    /// committed automatically and a group without committed offsets starts at the earliest
    /// record. For tools that read topics themselves (the `bento` CLI's dead-letter commands).
    pub fn consumer_config(&self, group: &str) -> rdkafka::ClientConfig {
        self.inner.config.consumer_config(group)
    }

    /// Commits new offsets for consumer group `group` on every partition of `topic`, moving it
    /// to `to`; returns where the group now stands. The group must be stopped (no active
    /// members), as Kafka's own tools require: a running member would overwrite the offsets.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        to: OffsetReset,
    ) -> Result<Vec<PartitionLag>, BusError> {
        if let Some(active) = self
            .list_groups()
            .await?
            .into_iter()
            .find(|g| g.name == group && !g.members.is_empty())
        {
            return Err(failed(
                "a Kafka admin call",
                format!(
                    "consumer group `{group}` has {} active member(s) (state {}); stop them before resetting its offsets",
                    active.members.len(),
                    active.state
                ),
            ));
        }
        let timeout = self.timeout();
        let (group_name, topic_name) = (group.to_owned(), topic.to_owned());
        self.blocking(move |inner| {
            let (group, topic) = (group_name.as_str(), topic_name.as_str());
            let consumer: BaseConsumer<BentoContext> = inner
                .config
                .consumer_config(group)
                .create_with_context(BentoContext::plain())
                .map_err(|e| failed(format!("cannot create a consumer for group `{group}`"), e))?;
            let partitions = partition_ids(&inner.metadata, topic, timeout)?;
            let mut watermarks = BTreeMap::new();
            for (partition, _) in &partitions {
                let marks = inner.watermarks(topic, *partition, timeout)?;
                watermarks.insert(*partition, marks);
            }
            let by_time = match to {
                OffsetReset::Time(at) => offsets_at(&consumer, topic, &partitions, at, timeout)?,
                _ => BTreeMap::new(),
            };
            let mut commit = TopicPartitionList::new();
            let mut out = Vec::with_capacity(partitions.len());
            for (partition, _) in &partitions {
                let (low, high) = watermarks.get(partition).copied().unwrap_or((0, 0));
                let offset = match to {
                    OffsetReset::Earliest => low,
                    OffsetReset::Latest => high,
                    OffsetReset::Time(_) => match by_time.get(partition) {
                        Some(Offset::Offset(o)) => (*o).clamp(low, high),
                        _ => high,
                    },
                };
                commit
                    .add_partition_offset(topic, *partition, Offset::Offset(offset))
                    .map_err(|e| failed("bad offset", e))?;
                out.push(PartitionLag {
                    partition: *partition,
                    committed: Some(offset),
                    high_watermark: high,
                    lag: high - offset,
                });
            }
            consumer.commit(&commit, CommitMode::Sync).map_err(|e| {
                failed(
                    "a Kafka admin call",
                    format!("committing the offsets of group `{group}` on `{topic}` failed: {e}"),
                )
            })?;
            Ok(out)
        })
        .await
    }
}

/// The offset of the first record at or after `at` in each of the `partitions` of `topic`, as
/// the broker finds it by timestamp.
fn offsets_at(
    consumer: &BaseConsumer<BentoContext>,
    topic: &str,
    partitions: &[(i32, i32)],
    at: chrono::DateTime<chrono::Utc>,
    timeout: Duration,
) -> Result<BTreeMap<i32, Offset>, BusError> {
    let mut query = TopicPartitionList::new();
    for (partition, _) in partitions {
        query
            .add_partition_offset(topic, *partition, Offset::Offset(at.timestamp_millis()))
            .map_err(|e| failed("bad offset query", e))?;
    }
    let found = consumer.offsets_for_times(query, timeout).map_err(|e| {
        failed(
            "a Kafka admin call",
            format!("looking up the offsets of `{topic}` at {at} failed: {e}"),
        )
    })?;
    Ok(found
        .elements_for_topic(topic)
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect())
}

/// `(partition, leader)` of every partition of `topic`, sorted.
pub(crate) fn partition_ids<C: Consumer<BentoContext>>(
    client: &C,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i32)>, BusError> {
    let metadata = client.fetch_metadata(Some(topic), timeout).map_err(|e| {
        failed(
            "a Kafka admin call",
            format!("reading the metadata of topic `{topic}` failed: {e}"),
        )
    })?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| {
            failed(
                "a Kafka admin call",
                format!("topic `{topic}` does not exist"),
            )
        })?;
    if let Some(error) = found.error() {
        return Err(failed(
            "a Kafka admin call",
            format!(
                "topic `{topic}` is not available: {}",
                RDKafkaErrorCode::from(error)
            ),
        ));
    }
    let mut partitions: Vec<(i32, i32)> = found
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    partitions.sort_unstable();
    Ok(partitions)
}
