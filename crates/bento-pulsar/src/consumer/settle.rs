//! Settling one Pulsar message: acknowledging it, or storing its retry or dead letter first,
//! through the consumer's task.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bento_application::BusError;
use bento_application::backend::{Settle, due_in, store_with_retries};
use bento_domain::Envelope;
use pulsar::proto::MessageIdData;
use tokio::sync::mpsc;

use super::{Command, ConsumerSpec, SettleTarget};
use crate::message_id::format_id;
use crate::producer::{self, Sending};

/// Settles one message through its consumer's task.
pub(super) struct PulsarSettle {
    pub(super) worker: mpsc::UnboundedSender<Command>,
    pub(super) id: MessageIdData,
    pub(super) target: Arc<SettleTarget>,
    pub(super) spec: Arc<ConsumerSpec>,
}

impl PulsarSettle {
    /// Acknowledges the message once its retry or dead letter is `stored`; hands it back to
    /// the broker (a negative acknowledgement, so it comes again) when that failed.
    fn acknowledge_if(&self, stored: Result<(), BusError>) -> Result<(), BusError> {
        match stored {
            Ok(()) => self.command(Command::Ack(self.id.clone())),
            Err(error) => {
                let _ = self.command(Command::Nack(self.id.clone()));
                Err(error)
            }
        }
    }

    fn command(&self, command: Command) -> Result<(), BusError> {
        self.worker.send(command).map_err(|_| BusError::Subscribe {
            topic: self.spec.topic.clone(),
            subscription: self.spec.subscription.clone(),
            source: "the consumer has stopped; the message will be redelivered".into(),
        })
    }
}

#[async_trait]
impl Settle for PulsarSettle {
    fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.command(Command::Ack(self.id.clone()))
    }

    fn broker_id(&self) -> Option<String> {
        Some(format_id(&self.id))
    }

    async fn retry(
        self: Box<Self>,
        envelope: &Envelope,
        next_attempt: u32,
        delay: Duration,
    ) -> Result<(), BusError> {
        let due = due_in(delay);
        let topic = &self.target.retry_topic;
        // Stored first, acknowledged after: a crash in between means a redelivery, not a loss.
        let stored = store_with_retries(
            &format!("a retry on `{topic}`"),
            || true,
            || {
                let message = producer::message(envelope.clone(), Some(due), Some(next_attempt));
                self.target
                    .producers
                    .publish(topic, message, true, Sending::Copy)
            },
        )
        .await;
        self.acknowledge_if(stored)
    }

    async fn dead_letter(
        self: Box<Self>,
        dead_letter: Envelope,
        topic: &str,
    ) -> Result<(), BusError> {
        let stored = store_with_retries(
            &format!("a dead letter on `{topic}`"),
            || true,
            || {
                let message = producer::message(dead_letter.clone(), None, None);
                self.target
                    .producers
                    .publish(topic, message, false, Sending::Copy)
            },
        )
        .await;
        self.acknowledge_if(stored)
    }

    async fn release(self: Box<Self>) -> Result<(), BusError> {
        self.command(Command::Nack(self.id.clone()))
    }
}
