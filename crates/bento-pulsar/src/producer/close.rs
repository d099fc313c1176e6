//! Closing: every producer flushed and closed, within the receipt timeout.

use std::sync::Arc;

use bento_application::BusError;

use super::{Producers, TopicProducers};
use crate::error::describe;

impl Producers {
    /// Flushes and closes every producer; later sends fail with [`BusError::Closed`].
    pub(crate) async fn close(&self) -> Result<(), BusError> {
        self.gate.shut();
        let topics: Vec<Arc<TopicProducers>> =
            self.topics.write().drain().map(|(_, p)| p).collect();
        let mut first_error = None;
        for producers in topics {
            for (slot, batching) in [(&producers.batching, true), (&producers.plain, false)] {
                let Some(Ok(producer)) = slot.producer.get() else {
                    continue;
                };
                let mut producer = producer.lock().await;
                let closing = async {
                    if batching {
                        producer.send_batch().await?;
                    }
                    producer.close().await
                };
                let topic = &producers.topic;
                let result = match tokio::time::timeout(self.receipt_timeout, closing).await {
                    Ok(Ok(())) => Ok(()),
                    // An idle producer whose connection dropped (a broker restart) has nothing
                    // left to send: publishes in flight fail on their own receipts.
                    Ok(Err(error)) if is_disconnected(&error) => {
                        tracing::debug!(%topic, "producer closed while disconnected");
                        Ok(())
                    }
                    Ok(Err(error)) => Err(BusError::Publish {
                        topic: topic.clone(),
                        source: format!("closing the producer failed: {}", describe(&error)).into(),
                    }),
                    Err(_) => Err(BusError::Timeout {
                        operation: format!("closing the producer of `{topic}`"),
                        after: self.receipt_timeout,
                    }),
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "could not close a producer cleanly");
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Whether `error` says the producer's connection is gone.
fn is_disconnected(error: &pulsar::Error) -> bool {
    use pulsar::error::{ConnectionError, ProducerError};
    matches!(
        error,
        pulsar::Error::Connection(ConnectionError::Disconnected)
            | pulsar::Error::Producer(ProducerError::Connection(ConnectionError::Disconnected))
    )
}
