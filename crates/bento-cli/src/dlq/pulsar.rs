//! Reading a dead-letter topic on Pulsar with the binary protocol.
//!
//! Listing reads through a non-durable subscription starting at the earliest message: it
//! leaves nothing behind and acknowledges nothing, so other readers of the topic see no
//! difference. Replaying reads through a durable subscription (created at the earliest message
//! the first time) and acknowledges each dead letter once it was republished, so a second
//! replay does not repeat the first.

use std::time::Duration;

use bento_application::wire;
use bento_pulsar::PulsarConfig;
use bento_pulsar::admin::{NamespaceName, TopicName};
use bento_pulsar::message_id::{ack_id, format_id};
use bytes::Bytes;
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};

use super::{Ack, Letter};
use crate::error::CliError;

type Consumer = pulsar::Consumer<Vec<u8>, TokioExecutor>;

/// A consumer of one dead-letter topic.
pub struct PulsarDlq {
    client: Pulsar<TokioExecutor>,
    consumer: Consumer,
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
        let consumer = match tokio::time::timeout(config.connect_timeout(), build).await {
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
        Ok(Self { client, consumer })
    }

    /// The next dead letter, or `None` once nothing arrived for `idle`.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<Letter>, CliError> {
        match tokio::time::timeout(idle, self.consumer.next()).await {
            Err(_) | Ok(None) => Ok(None),
            Ok(Some(Err(error))) => Err(CliError::Broker(format!(
                "reading the dead-letter topic failed: {error}"
            ))),
            Ok(Some(Ok(message))) => {
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
                Ok(Some(Letter {
                    envelope,
                    position,
                    ack: Ack::Pulsar {
                        topic: message.topic,
                        id,
                    },
                }))
            }
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
