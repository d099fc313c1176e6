//! Settling a record: acknowledging it, or storing it in a retry tier or a dead-letter topic
//! through the producer, while its partition is still this subscription's.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bento_application::backend::{Settle, due_in, store_with_retries};
use bento_application::{BusError, wire};
use bento_domain::Envelope;
use chrono::{DateTime, SecondsFormat, Utc};

use super::offsets::Held;
use crate::headers;
use crate::producer::{KafkaProducer, Outgoing};
use crate::topics;

/// Everything a subscription's settlements need.
pub(crate) struct Settler {
    pub(crate) producer: KafkaProducer,
    pub(crate) topic: String,
    pub(crate) group: String,
    pub(crate) tiers: u32,
}

/// Settles one record: marks its offset finished, after storing a retry or dead letter where
/// needed. Settlements of a revoked partition do nothing: its new owner redelivers the record.
pub(super) struct KafkaSettle {
    /// The record's partition, as held when it was received.
    pub(super) held: Arc<Held>,
    pub(super) offset: i64,
    /// Partition and offset of the record as first received (before any retry).
    pub(super) origin: (i32, i64),
}

impl KafkaSettle {
    fn owned(&self) -> bool {
        self.held.owned()
    }

    fn finish(&self) {
        self.held.finish(self.offset);
    }

    fn settler(&self) -> &Settler {
        &self.held.settler
    }

    /// Produces `record` to `topic` and finishes the record, trying again a few times while
    /// the partition is ours. When that fails the record stays unfinished (the commit point must
    /// not pass it) and a task keeps storing it, with a growing pause, until it succeeds or the
    /// partition is revoked: the other records go on meanwhile, and the commit point moves again
    /// as soon as the store does. The error is returned, so the failure is counted and logged.
    async fn store_and_finish(
        self: Box<Self>,
        topic: &str,
        record: Outgoing,
    ) -> Result<(), BusError> {
        let stored = store_with_retries(
            &format!("a retry or dead letter on `{topic}`"),
            || self.owned(),
            || async { self.settler().producer.send(topic, &record).await.map(drop) },
        )
        .await;
        match stored {
            Ok(()) => {
                self.finish();
                Ok(())
            }
            Err(error) => {
                if self.owned() {
                    tokio::spawn(self.keep_storing(topic.to_owned(), record));
                }
                Err(error)
            }
        }
    }

    async fn keep_storing(self: Box<Self>, topic: String, record: Outgoing) {
        let mut pause = KEEP_STORING_FIRST_PAUSE;
        while self.owned() {
            tokio::time::sleep(pause).await;
            if !self.owned() {
                break;
            }
            match self.settler().producer.send(&topic, &record).await {
                Ok(_) => {
                    tracing::info!(%topic, group = %self.settler().group, offset = self.offset, "a retry or dead letter that could not be stored is stored now");
                    self.finish();
                    return;
                }
                Err(error) => {
                    tracing::warn!(%topic, %error, offset = self.offset, "storing a retry or dead letter still fails; the record stays unfinished and is tried again");
                    pause = (pause * 2).min(KEEP_STORING_MAX_PAUSE);
                }
            }
        }
        // Revoked: the partition's new owner reads the record again.
    }
}

/// The first pause before a failed retry or dead letter is stored again in the background.
const KEEP_STORING_FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between those attempts.
const KEEP_STORING_MAX_PAUSE: Duration = Duration::from_secs(30);

/// `at` as the `bento-kafka-deliver-at` header writes it: RFC 3339 with milliseconds, rounded
/// up, so that a delayed message is never due before the instant asked for.
pub(crate) fn format_due(at: DateTime<Utc>) -> String {
    let below_millis = at.timestamp_subsec_nanos() % 1_000_000;
    let at = if below_millis == 0 {
        at
    } else {
        at.checked_add_signed(chrono::Duration::nanoseconds(i64::from(
            1_000_000 - below_millis,
        )))
        .unwrap_or(at)
    };
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[async_trait]
impl Settle for KafkaSettle {
    fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.finish();
        Ok(())
    }

    async fn retry(
        self: Box<Self>,
        envelope: &Envelope,
        next_attempt: u32,
        delay: Duration,
    ) -> Result<(), BusError> {
        if !self.owned() {
            return Ok(());
        }
        let settler = self.settler();
        if settler.tiers == 0 {
            return Err(BusError::backend(
                "kafka",
                format!("retrying a message of subscription `{}`", settler.group),
                "it has no retry topics (its retry policy allows no retry)",
            ));
        }
        let tier = topics::retry_tier(next_attempt.saturating_sub(1), settler.tiers);
        let topic = topics::retry_topic(&settler.topic, &settler.group, tier);
        let due = due_in(delay);
        let record = Outgoing::from_envelope(envelope)
            .header(wire::ATTEMPT, next_attempt.to_string())
            .header(headers::DELIVER_AT, format_due(due))
            .header(headers::ORIGINAL_PARTITION, self.origin.0.to_string())
            .header(headers::ORIGINAL_OFFSET, self.origin.1.to_string());
        self.store_and_finish(&topic, record).await
    }

    async fn dead_letter(
        self: Box<Self>,
        dead_letter: Envelope,
        topic: &str,
    ) -> Result<(), BusError> {
        if !self.owned() {
            return Ok(());
        }
        let record = Outgoing::from_envelope(&dead_letter)
            .header(headers::DLQ_ORIGINAL_PARTITION, self.origin.0.to_string())
            .header(headers::DLQ_ORIGINAL_OFFSET, self.origin.1.to_string());
        self.store_and_finish(topic, record).await
    }

    async fn release(self: Box<Self>) -> Result<(), BusError> {
        // Left unfinished: never committed past, so the group redelivers it.
        Ok(())
    }

    fn is_current(&self) -> bool {
        self.owned()
    }

    /// `topic/partition/offset`.
    fn broker_id(&self) -> Option<String> {
        let (topic, partition) = &self.held.tp;
        Some(format!("{topic}/{partition}/{}", self.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::format_due;
    use chrono::{DateTime, Utc};

    #[test]
    fn due_times_are_rounded_up_to_the_millisecond() {
        let at = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
        assert_eq!(
            format_due(at(1_700_000_000_123_000)),
            "2023-11-14T22:13:20.123Z",
            "a whole millisecond stays"
        );
        assert_eq!(
            format_due(at(1_700_000_000_123_001)),
            "2023-11-14T22:13:20.124Z",
            "never early"
        );
        assert_eq!(
            format_due(at(1_700_000_000_999_999)),
            "2023-11-14T22:13:21.000Z"
        );
        assert!(!format_due(DateTime::<Utc>::MAX_UTC).is_empty());
    }
}
