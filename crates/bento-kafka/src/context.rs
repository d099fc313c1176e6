//! librdkafka callbacks: logs into `tracing`, and the consumer-group rebalance hooks.

use std::sync::Arc;

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;

use crate::consumer::SubscriptionState;

/// The context of every client Bento creates.
#[derive(Clone, Default)]
pub(crate) struct BentoContext {
    subscription: Option<Arc<SubscriptionState>>,
}

impl BentoContext {
    /// A context without consumer-group state (producers, admin and metadata clients).
    pub(crate) fn plain() -> Self {
        Self::default()
    }

    /// The context of a subscription's consumer.
    pub(crate) fn for_subscription(state: Arc<SubscriptionState>) -> Self {
        Self {
            subscription: Some(state),
        }
    }
}

impl ClientContext for BentoContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for BentoContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(state) = &self.subscription else {
            return;
        };
        match rebalance {
            Rebalance::Revoke(partitions) => state.revoke(consumer, partitions),
            Rebalance::Assign(partitions) => state.assign(partitions),
            Rebalance::Error(error) => {
                tracing::warn!(group = %state.group, %error, "consumer group rebalance failed");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Some(state), Rebalance::Assign(partitions)) = (&self.subscription, rebalance) {
            state.assigned(partitions);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let (Some(state), Err(error)) = (&self.subscription, result) {
            state.commit_failed(&error, offsets);
        }
    }
}
