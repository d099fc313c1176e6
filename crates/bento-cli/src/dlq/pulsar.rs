//! Reading a dead-letter topic on Pulsar with the binary protocol.
//!
//! Listing reads through a non-durable subscription starting at the earliest message: it
//! leaves nothing behind and acknowledges nothing, so other readers of the topic see no
//! difference. Replaying reads through a durable subscription (created at the earliest message
//! the first time) and acknowledges each dead letter once it was republished, so a second
//! replay does not repeat the first.
//!
//! Both read only what was on the topic when they started (its last message id, per
//! partition, read when the consumer is created): a replay of a subscription that still fails
//! dead-letters the replayed messages again, and reading those too would replay them forever.
//!
//! A replay goes to the retry topic of the subscription that gave up, which that subscription
//! reads along with its topic; the admin API tells whether that subscription is still there.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bento_application::wire;
use bento_pulsar::admin::{NamespaceName, TopicName};
use bento_pulsar::message_id::{ack_id, format_id};
use bento_pulsar::{PulsarAdmin, PulsarConfig};
use bytes::Bytes;
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};

use super::{Ack, Letter};
use crate::error::CliError;

type Consumer = pulsar::Consumer<Vec<u8>, TokioExecutor>;

/// A consumer of one dead-letter topic.
pub struct PulsarDlq {
    client: Pulsar<TokioExecutor>,
    consumer: Consumer,
    admin: PulsarAdmin,
    /// Replay topics looked up so far: retry topic name to the topic, or why it cannot be used.
    replay_topics: HashMap<String, Result<String, String>>,
    /// Per partition (-1: not partitioned), the position of its last message when reading
    /// started: (ledger, entry), as signed numbers, so that an empty ledger's -1 sorts first.
    ends: HashMap<i32, (i64, i64)>,
    /// Partitions read up to their end.
    done: HashSet<i32>,
}

/// The partition of a message id, -1 when the topic is not partitioned.
fn partition_of(id: &MessageIdData) -> i32 {
    id.partition.filter(|p| *p >= 0).unwrap_or(-1)
}

/// A message id's (ledger, entry), ordered as the broker orders them.
fn position_of(id: &MessageIdData) -> (i64, i64) {
    // The broker sends -1 (as an unsigned number) for "no entry yet".
    (id.ledger_id as i64, id.entry_id as i64)
}

impl PulsarDlq {
    /// The full name of `topic` under the configuration's tenant and namespace.
    pub fn full_name(config: &PulsarConfig, topic: &str) -> Result<String, CliError> {
        let namespace = NamespaceName {
            tenant: config.tenant.clone(),
            namespace: config.namespace.clone(),
        };
        Ok(TopicName::parse(topic, &namespace)?.to_string())
    }

    /// Opens `topic` from its earliest message: through a non-durable subscription when
    /// `subscription` is `None`, else through that durable subscription (created at the
    /// earliest message if it does not exist; exclusive, so two replays cannot overlap).
    pub async fn open(
        config: &PulsarConfig,
        admin: PulsarAdmin,
        topic: &str,
        subscription: Option<&str>,
    ) -> Result<Self, CliError> {
        let client = bento_pulsar::connect_client(config).await?;
        let durable = subscription.is_some();
        let name = subscription.map_or_else(
            || format!("bento-dlq-list-{}", uuid::Uuid::now_v7()),
            str::to_owned,
        );
        let build = client
            .consumer()
            .with_topic(topic)
            .with_subscription(&name)
            .with_subscription_type(SubType::Exclusive)
            .with_consumer_name(format!("bento-cli-{}", uuid::Uuid::now_v7()))
            .with_options(
                ConsumerOptions::default()
                    .durable(durable)
                    .with_initial_position(InitialPosition::Earliest)
                    .with_receiver_queue_size(config.consumer.receiver_queue_size),
            )
            .build::<Vec<u8>>();
        let mut consumer = match tokio::time::timeout(config.connect_timeout(), build).await {
            Ok(Ok(consumer)) => consumer,
            Ok(Err(error)) => {
                return Err(CliError::Broker(format!(
                    "cannot read {topic} through subscription `{name}`: {error}"
                )));
            }
            Err(_) => {
                return Err(CliError::Broker(format!(
                    "cannot read {topic}: no consumer within {:?} (connect_timeout_ms)",
                    config.connect_timeout()
                )));
            }
        };
        let last = tokio::time::timeout(config.connect_timeout(), consumer.get_last_message_id());
        let ends = match last.await {
            Ok(Ok(ids)) => ids
                .iter()
                .map(|id| (partition_of(id), position_of(id)))
                .collect(),
            Ok(Err(error)) => {
                let _ = consumer.close().await;
                return Err(CliError::Broker(format!(
                    "reading the last message id of {topic} failed: {error}"
                )));
            }
            Err(_) => {
                let _ = consumer.close().await;
                return Err(CliError::Broker(format!(
                    "reading the last message id of {topic}: no answer within {:?} \
                     (connect_timeout_ms)",
                    config.connect_timeout()
                )));
            }
        };
        Ok(Self {
            client,
            consumer,
            admin,
            replay_topics: HashMap::new(),
            ends,
            done: HashSet::new(),
        })
    }

    /// The retry topic of `subscription` on the full topic `original`
    /// (`<original>-<subscription>-RETRY`), which only that subscription reads; `Err` says why
    /// it cannot be used (no such topic, or the subscription is not on it).
    pub async fn replay_topic(
        &mut self,
        original: &str,
        subscription: &str,
    ) -> Result<Result<String, String>, CliError> {
        let retry = bento_pulsar::retry_topic(original, subscription);
        if let Some(known) = self.replay_topics.get(&retry) {
            return Ok(known.clone());
        }
        let found = match self.admin.subscriptions(&retry).await {
            Ok(names) if names.iter().any(|name| name == subscription) => Ok(retry.clone()),
            Ok(_) => Err(format!(
                "subscription `{subscription}` is not on its retry topic {retry} (was it \
                 deleted?)"
            )),
            Err(error) if error.is_not_found() => Err(format!(
                "subscription `{subscription}` has no retry topic {retry} (was it deleted?)"
            )),
            Err(error) => {
                return Err(CliError::Broker(format!(
                    "reading the subscriptions of {retry} failed: {error}"
                )));
            }
        };
        self.replay_topics.insert(retry, found.clone());
        Ok(found)
    }

    /// The next dead letter, or `None` once every partition was read up to where it ended when
    /// reading started, or nothing arrived for `idle`. Messages published since are left
    /// unacknowledged, for the next run.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<Letter>, CliError> {
        loop {
            if self.done.len() >= self.ends.len() {
                return Ok(None);
            }
            let message = match tokio::time::timeout(idle, self.consumer.next()).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(Err(error))) => {
                    return Err(CliError::Broker(format!(
                        "reading the dead-letter topic failed: {error}"
                    )));
                }
                Ok(Some(Ok(message))) => message,
            };
            let partition = partition_of(&message.message_id.id);
            let within = self
                .ends
                .get(&partition)
                .is_some_and(|end| position_of(&message.message_id.id) <= *end);
            if !within {
                self.done.insert(partition);
                continue;
            }
            if self.done.contains(&partition) {
                continue;
            }
            return Ok(Some(Self::letter(message)));
        }
    }

    fn letter(message: pulsar::consumer::Message<Vec<u8>>) -> Letter {
        let id = ack_id(message.message_id.id.clone(), message.message_id.batch_size);
        let position = format_id(&id);
        let payload = message.payload;
        let envelope = wire::from_headers(
            payload
                .metadata
                .properties
                .into_iter()
                .map(|kv| (kv.key, kv.value)),
            Bytes::from(payload.data),
        );
        Letter {
            envelope,
            position,
            ack: Ack::Pulsar {
                topic: message.topic,
                id,
            },
        }
    }

    /// Acknowledges `letter` on the durable subscription.
    pub async fn ack(&mut self, letter: &Letter) -> Result<(), CliError> {
        if let Ack::Pulsar { topic, id } = &letter.ack {
            self.consumer
                .ack_with_id(topic, id.clone())
                .await
                .map_err(|e| {
                    CliError::Broker(format!(
                        "acknowledging dead letter {} failed: {e}",
                        letter.position
                    ))
                })?;
        }
        Ok(())
    }

    /// Closes the consumer (unacknowledged messages stay on a durable subscription) and the
    /// connection.
    pub async fn close(mut self) {
        let _ = self.consumer.close().await;
        drop(self.consumer);
        drop(self.client);
    }
}
