//! Reading a dead-letter topic on Kafka with librdkafka.
//!
//! Both modes assign every partition of the topic to one consumer (no group membership, so no
//! rebalance delay): listing starts at the beginning under a throwaway group id and never
//! commits, so no group is left behind and no other group's offsets move; replaying starts at
//! the replay group's committed offsets (the beginning the first time) and commits each dead
//! letter once it was republished. Reading stops when every partition reported its end or
//! reached the end it had when reading started (its high watermark then: a replay of a
//! subscription that still fails dead-letters the replayed records again, and reading those
//! too would replay them forever), or when nothing arrived for the idle timeout.
//!
//! A replay goes to the first retry topic of the consumer group that gave up
//! (`<topic>.<group>.retry.1`), which only that group reads, with headers that make it due at
//! once as attempt 1.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use bento_application::wire;
use bento_domain::Envelope;
use bento_kafka::{KafkaAdmin, headers, topics};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{Ack, Letter};
use crate::error::CliError;

/// A consumer of one dead-letter topic.
pub struct KafkaDlq {
    consumer: StreamConsumer,
    topic: String,
    group: String,
    /// Partitions that have not reported their end yet.
    reading: BTreeSet<i32>,
    /// Per partition, its high watermark when reading started: records from there on are left
    /// for the next run.
    ends: HashMap<i32, i64>,
    admin: KafkaAdmin,
    /// The cluster's topics, read the first time a replay needs them.
    known_topics: Option<HashSet<String>>,
}

impl KafkaDlq {
    /// Opens `topic` from the beginning (`group` `None`), or from `group`'s committed offsets.
    /// A replay group with active members is refused: its offsets would be overwritten.
    pub async fn open(
        admin: &KafkaAdmin,
        topic: &str,
        group: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, CliError> {
        if let Some(group) = group
            && let Some(active) = admin
                .list_groups()
                .await?
                .into_iter()
                .find(|g| g.name == group && !g.members.is_empty())
        {
            return Err(CliError::Broker(format!(
                "consumer group `{group}` has {} active member(s); is another replay running?",
                active.members.len()
            )));
        }
        let group_id = group.map_or_else(
            || format!("bento-dlq-list-{}", uuid::Uuid::now_v7()),
            str::to_owned,
        );
        let mut config = admin.consumer_config(&group_id);
        config.set("enable.partition.eof", "true");
        let consumer: StreamConsumer = config
            .create()
            .map_err(|e| CliError::Broker(format!("cannot create a Kafka consumer: {e}")))?;
        let start = if group.is_some() {
            Offset::Stored
        } else {
            Offset::Beginning
        };
        let partitions = partitions(&consumer, topic, timeout)?;
        let mut ends = HashMap::with_capacity(partitions.len());
        for partition in &partitions {
            let (_, high) = tokio::task::block_in_place(|| {
                consumer.fetch_watermarks(topic, *partition, timeout)
            })
            .map_err(|e| {
                CliError::Broker(format!(
                    "reading the end offset of partition {partition} of topic `{topic}` \
                     failed: {e}"
                ))
            })?;
            ends.insert(*partition, high);
        }
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            assignment
                .add_partition_offset(topic, *partition, start)
                .map_err(|e| CliError::Broker(format!("bad partition: {e}")))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| CliError::Broker(format!("cannot read topic `{topic}`: {e}")))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            group: group_id,
            reading: partitions.into_iter().collect(),
            ends,
            admin: admin.clone(),
            known_topics: None,
        })
    }

    /// The first retry topic of consumer group `group` on `original`, which only that group
    /// reads; `Err` says why there is none.
    pub async fn replay_topic(
        &mut self,
        original: &str,
        group: &str,
    ) -> Result<Result<String, String>, CliError> {
        let retry = topics::retry_topic(original, group, 1);
        let known = match &mut self.known_topics {
            Some(known) => known,
            unknown => unknown.insert(self.admin.list_topics().await?.into_iter().collect()),
        };
        if known.contains(&retry) {
            Ok(Ok(retry))
        } else {
            Ok(Err(format!(
                "consumer group `{group}` has no retry topic `{retry}` (its retry policy allows \
                 no retry, or the topic was deleted)"
            )))
        }
    }

    /// The message a replay publishes to the retry topic for `dead`: the original message,
    /// due now as attempt 1 (a dead letter starts a new delivery chain), with the partition
    /// and offset it was first read from.
    pub fn replay_envelope(dead: &Envelope) -> Envelope {
        let mut replay = wire::replay_envelope(dead);
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let out = &mut replay.headers;
        out.insert(wire::ATTEMPT.into(), "1".into());
        out.insert(headers::DELIVER_AT.into(), now);
        for (from, to) in [
            (headers::DLQ_ORIGINAL_PARTITION, headers::ORIGINAL_PARTITION),
            (headers::DLQ_ORIGINAL_OFFSET, headers::ORIGINAL_OFFSET),
        ] {
            if let Some(value) = dead.headers.get(from) {
                out.insert(to.into(), value.clone());
            }
        }
        replay
    }

    /// The next dead letter, or `None` once every partition is read to its end or nothing
    /// arrived for `idle`.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<Letter>, CliError> {
        loop {
            if self.reading.is_empty() {
                return Ok(None);
            }
            let message = match tokio::time::timeout(idle, self.consumer.recv()).await {
                Err(_) => return Ok(None),
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    self.reading.remove(&partition);
                    continue;
                }
                Ok(Err(error)) => {
                    return Err(CliError::Broker(format!(
                        "reading topic `{}` failed: {error}",
                        self.topic
                    )));
                }
                Ok(Ok(message)) => message,
            };
            let partition = message.partition();
            if self
                .ends
                .get(&partition)
                .is_none_or(|end| message.offset() >= *end)
            {
                // Written after reading started: left for the next run.
                self.reading.remove(&partition);
                continue;
            }
            let mut headers: Vec<(String, String)> = Vec::new();
            if let Some(list) = message.headers() {
                for header in list.iter() {
                    let value = header
                        .value
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    headers.push((header.key.to_owned(), value));
                }
            }
            let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
            let envelope = wire::from_headers(headers, payload);
            let offset = message.offset();
            return Ok(Some(Letter {
                envelope,
                position: format!("{}/{partition}/{offset}", message.topic()),
                ack: Ack::Kafka { partition, offset },
            }));
        }
    }

    /// Commits `letter`'s offset (the next record to read) for the replay group.
    pub async fn ack(&mut self, letter: &Letter) -> Result<(), CliError> {
        if let Ack::Kafka { partition, offset } = letter.ack {
            let mut commit = TopicPartitionList::new();
            commit
                .add_partition_offset(&self.topic, partition, Offset::Offset(offset + 1))
                .map_err(|e| CliError::Broker(format!("bad offset: {e}")))?;
            // A synchronous commit waits for the broker: keep it off the async workers.
            tokio::task::block_in_place(|| self.consumer.commit(&commit, CommitMode::Sync))
                .map_err(|e| {
                    CliError::Broker(format!(
                        "committing dead letter {} for group `{}` failed: {e}",
                        letter.position, self.group
                    ))
                })?;
        }
        Ok(())
    }

    /// Closes the consumer.
    pub async fn close(self) {
        drop(self.consumer);
    }
}

/// The partition ids of `topic`; an error if it does not exist.
fn partitions(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, CliError> {
    let metadata = tokio::task::block_in_place(|| consumer.fetch_metadata(Some(topic), timeout))
        .map_err(|e| {
            CliError::Broker(format!(
                "reading the metadata of topic `{topic}` failed: {e}"
            ))
        })?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        Some(t) => Err(CliError::Usage(format!(
            "topic `{topic}` is not available ({})",
            t.error()
                .map(|e| rdkafka::error::RDKafkaErrorCode::from(e).to_string())
                .unwrap_or_else(|| "no partitions".into())
        ))),
        None => Err(CliError::Usage(format!("topic `{topic}` does not exist"))),
    }
}
