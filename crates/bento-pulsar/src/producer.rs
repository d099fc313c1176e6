//! One producer per topic, created on first use and shared by every publish to that topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bento_application::{BusError, wire};
use bento_domain::Envelope;
use chrono::{DateTime, Utc};
use pulsar::producer::{Message, SendFuture};
use pulsar::{ProducerOptions, TokioExecutor};
use tokio::sync::{Mutex, OnceCell};

use crate::config::{Compression, PulsarConfig};
use crate::error::describe;

/// The pulsar client the bus runs on.
pub(crate) type Client = pulsar::Pulsar<TokioExecutor>;
type RawProducer = pulsar::Producer<TokioExecutor>;

/// A producer, created once; the lock is held only while a message is handed to it, never
/// while its receipt is awaited.
///
/// A failed creation is kept too, so that publishes queued behind it fail at once instead of
/// each trying again in turn; the slot is then replaced by a fresh one.
#[derive(Default)]
struct Slot {
    producer: OnceCell<Result<Mutex<RawProducer>, String>>,
}

/// Which producer of a topic: the batching one (if batching is on) or the plain one, which
/// delayed messages always use because a batch carries no per-message delivery time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Batching,
    Plain,
}

/// The producers of one bus, keyed by full topic name.
pub(crate) struct Producers {
    client: Client,
    batching: Option<ProducerOptions>,
    plain: ProducerOptions,
    create_timeout: Duration,
    receipt_timeout: Duration,
    slots: RwLock<HashMap<(String, Kind), Arc<Slot>>>,
    closed: AtomicBool,
}

/// A message handed to a producer, its receipt still to come.
pub(crate) struct Pending {
    topic: String,
    kind: Kind,
    slot: Arc<Slot>,
    receipt: SendFuture,
}

impl Producers {
    pub(crate) fn new(client: Client, config: &PulsarConfig) -> Self {
        let compression = compression(config.producer.compression);
        let plain = ProducerOptions {
            compression: Some(compression),
            // Wait for room on the connection rather than fail with "slow down".
            block_queue_if_full: true,
            ..ProducerOptions::default()
        };
        let batching = config.producer.batching.then(|| ProducerOptions {
            batch_size: Some(config.producer.batch_max_messages),
            batch_byte_size: Some(config.producer.batch_max_bytes),
            batch_timeout: Some(Duration::from_millis(config.producer.batch_max_delay_ms)),
            ..plain.clone()
        });
        Self {
            client,
            batching,
            plain,
            create_timeout: config.connect_timeout(),
            // The client gives up on a receipt after the operation timeout, resending across a
            // reconnect meanwhile; this bound only guards against a receipt that never resolves.
            receipt_timeout: config.operation_timeout() + config.connect_timeout(),
            slots: RwLock::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Hands `message` to the producer of `topic` (created if needed) without waiting for the
    /// broker; `delayed` messages bypass batching.
    pub(crate) async fn send(
        &self,
        topic: &str,
        message: Message,
        delayed: bool,
    ) -> Result<Pending, BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let kind = match (&self.batching, delayed) {
            (Some(_), false) => Kind::Batching,
            _ => Kind::Plain,
        };
        let slot = self.slot(topic, kind);
        let created = slot.producer.get_or_init(|| self.create(topic, kind)).await;
        let producer = match created {
            Ok(producer) => producer,
            Err(reason) => {
                self.evict(topic, kind, &slot);
                return Err(BusError::Publish {
                    topic: topic.to_owned(),
                    reason: reason.clone(),
                });
            }
        };
        let sent = {
            let mut producer = producer.lock().await;
            tokio::time::timeout(self.receipt_timeout, producer.send_non_blocking(message)).await
        };
        match sent {
            Ok(Ok(receipt)) => Ok(Pending {
                topic: topic.to_owned(),
                kind,
                slot,
                receipt,
            }),
            Ok(Err(error)) => {
                self.evict(topic, kind, &slot);
                Err(publish_error(topic, &error))
            }
            Err(_) => {
                self.evict(topic, kind, &slot);
                Err(BusError::Timeout {
                    operation: format!("handing a message to the producer of `{topic}`"),
                    after: self.receipt_timeout,
                })
            }
        }
    }

    /// Waits for the broker's receipt of a message handed over by [`Producers::send`].
    pub(crate) async fn confirm(&self, pending: Pending) -> Result<(), BusError> {
        let Pending {
            topic,
            kind,
            slot,
            receipt,
        } = pending;
        match tokio::time::timeout(self.receipt_timeout, receipt).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                self.evict(&topic, kind, &slot);
                Err(publish_error(&topic, &error))
            }
            Err(_) => {
                self.evict(&topic, kind, &slot);
                Err(BusError::Timeout {
                    operation: format!("waiting for the broker to store a message on `{topic}`"),
                    after: self.receipt_timeout,
                })
            }
        }
    }

    /// Sends and waits for the receipt.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        message: Message,
        delayed: bool,
    ) -> Result<(), BusError> {
        let pending = self.send(topic, message, delayed).await?;
        self.confirm(pending).await
    }

    fn slot(&self, topic: &str, kind: Kind) -> Arc<Slot> {
        let key = (topic.to_owned(), kind);
        if let Some(slot) = read(&self.slots).get(&key) {
            return slot.clone();
        }
        write(&self.slots).entry(key).or_default().clone()
    }

    /// Forgets a producer that failed, so that the next publish creates a fresh one (unless
    /// another publish already replaced it).
    fn evict(&self, topic: &str, kind: Kind, failed: &Arc<Slot>) {
        let key = (topic.to_owned(), kind);
        let mut slots = write(&self.slots);
        if slots
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, failed))
        {
            slots.remove(&key);
            tracing::debug!(
                topic,
                "dropping a failed producer; the next publish creates a new one"
            );
        }
    }

    async fn create(&self, topic: &str, kind: Kind) -> Result<Mutex<RawProducer>, String> {
        let options = match (kind, &self.batching) {
            (Kind::Batching, Some(batching)) => batching.clone(),
            _ => self.plain.clone(),
        };
        // Unique per producer instance: with broker deduplication on, a producer that reused an
        // earlier name would start again at sequence id 0 and the broker would drop its
        // messages as duplicates.
        let name = format!("bento-{}", uuid::Uuid::now_v7().simple());
        let build = self
            .client
            .producer()
            .with_topic(topic)
            .with_name(name.as_str())
            .with_options(options)
            .build();
        match tokio::time::timeout(self.create_timeout, build).await {
            Ok(Ok(producer)) => {
                tracing::debug!(topic, producer = %name, ?kind, "created producer");
                Ok(Mutex::new(producer))
            }
            Ok(Err(error)) => Err(format!("could not create a producer: {}", describe(&error))),
            Err(_) => Err(format!(
                "could not create a producer within {:?} (connect_timeout_ms)",
                self.create_timeout
            )),
        }
    }

    /// Flushes and closes every producer; later sends fail with [`BusError::Closed`].
    pub(crate) async fn close(&self) -> Result<(), BusError> {
        self.closed.store(true, Ordering::Release);
        let slots: Vec<((String, Kind), Arc<Slot>)> = write(&self.slots).drain().collect();
        let mut first_error = None;
        for ((topic, kind), slot) in slots {
            let Some(Ok(producer)) = slot.producer.get() else {
                continue;
            };
            let mut producer = producer.lock().await;
            let closing = async {
                if kind == Kind::Batching {
                    producer.send_batch().await?;
                }
                producer.close().await
            };
            let result = match tokio::time::timeout(self.receipt_timeout, closing).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(BusError::Publish {
                    topic: topic.clone(),
                    reason: format!("closing the producer failed: {}", describe(&error)),
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
        first_error.map_or(Ok(()), Err)
    }
}

/// The Pulsar message for `envelope`: payload, the envelope's metadata as properties (names
/// from [`wire`]), the ordering key as message key, the occurrence time as event time.
pub(crate) fn message(
    envelope: &Envelope,
    deliver_at: Option<DateTime<Utc>>,
    attempt: Option<u32>,
) -> Message {
    let mut properties: HashMap<String, String> = wire::to_headers(envelope)
        .into_iter()
        .map(|(name, value)| (name.into_owned(), value))
        .collect();
    match attempt {
        Some(attempt) => {
            properties.insert(wire::ATTEMPT.to_owned(), attempt.to_string());
        }
        None => {
            properties.remove(wire::ATTEMPT);
        }
    }
    Message {
        payload: envelope.payload.to_vec(),
        properties,
        partition_key: envelope.ordering_key.clone(),
        event_time: u64::try_from(envelope.occurred_at.timestamp_millis()).ok(),
        deliver_at_time: deliver_at.map(|at| at.timestamp_millis()),
        ..Message::default()
    }
}

fn compression(choice: Compression) -> pulsar::compression::Compression {
    use pulsar::compression as c;
    match choice {
        Compression::None => c::Compression::None,
        Compression::Lz4 => c::Compression::Lz4(c::CompressionLz4::default()),
        Compression::Zstd => c::Compression::Zstd(c::CompressionZstd::default()),
        Compression::Zlib => c::Compression::Zlib(c::CompressionZlib::default()),
        Compression::Snappy => c::Compression::Snappy(c::CompressionSnappy::default()),
    }
}

fn publish_error(topic: &str, error: &pulsar::Error) -> BusError {
    BusError::Publish {
        topic: topic.to_owned(),
        reason: describe(error),
    }
}

// A poisoned lock only means a panic elsewhere while holding it; the map stays consistent.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_carries_metadata_key_and_times() {
        let envelope = Envelope::new("orders.placed", 2, "application/json", &b"{}"[..])
            .with_ordering_key("order-1")
            .with_tenant("acme")
            .with_header(wire::ATTEMPT, "3");
        let at = Utc::now();
        let plain = message(&envelope, None, None);
        assert_eq!(plain.partition_key.as_deref(), Some("order-1"));
        assert_eq!(plain.payload, b"{}");
        assert_eq!(
            plain.properties.get(wire::EVENT_TYPE).map(String::as_str),
            Some("orders.placed")
        );
        assert_eq!(
            plain.properties.get(wire::TENANT).map(String::as_str),
            Some("acme")
        );
        assert_eq!(
            plain.properties.get(wire::ATTEMPT),
            None,
            "a fresh publish is attempt 1"
        );
        assert_eq!(
            plain.event_time,
            u64::try_from(envelope.occurred_at.timestamp_millis()).ok()
        );
        assert_eq!(plain.deliver_at_time, None);

        let retry = message(&envelope, Some(at), Some(4));
        assert_eq!(
            retry.properties.get(wire::ATTEMPT).map(String::as_str),
            Some("4")
        );
        assert_eq!(retry.deliver_at_time, Some(at.timestamp_millis()));
    }
}
