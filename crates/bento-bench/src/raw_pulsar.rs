//! The `pulsar` crate driven well: a batching producer with a sliding window of 1,000 sends in
//! flight, a consumer that decodes each event's JSON, as Bento's handlers get it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use pulsar::producer::{Message, SendFuture};
use pulsar::{Pulsar, TokioExecutor};

use crate::event::Payment;
use crate::measure::{Clock, LatencyProbe};
use crate::raw_side::{RawProducer, RawSide, Reader};
use crate::{Knobs, Report, WINDOW};

type Client = Pulsar<TokioExecutor>;
type Producer = pulsar::Producer<TokioExecutor>;
type Consumer = pulsar::Consumer<Vec<u8>, TokioExecutor>;

fn full_name(topic: &str) -> String {
    format!("persistent://public/default/{topic}")
}

/// Batching as Bento's and pulsar-perf's side: up to 1,000 messages or 128 KiB, 10 ms at most.
async fn producer(client: &Client, topic: &str) -> Result<Producer> {
    let options = pulsar::ProducerOptions {
        block_queue_if_full: true,
        batch_size: Some(1_000),
        batch_byte_size: Some(128 * 1024),
        batch_timeout: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    Ok(client
        .producer()
        .with_topic(full_name(topic))
        .with_options(options)
        .build()
        .await?)
}

async fn consumer(client: &Client, topic: &str, subscription: &str) -> Result<Consumer> {
    Ok(client
        .consumer()
        .with_topic(full_name(topic))
        .with_subscription(subscription)
        .with_subscription_type(pulsar::SubType::Shared)
        .with_options(
            pulsar::ConsumerOptions::default()
                .with_initial_position(pulsar::consumer::InitialPosition::Earliest),
        )
        .build()
        .await?)
}

fn message(event: &Payment) -> Message {
    Message {
        payload: event.json(),
        partition_key: Some(event.account.clone()),
        ..Default::default()
    }
}

impl RawProducer for Producer {
    const IN_FLIGHT: usize = WINDOW;
    type Receipt = SendFuture;

    async fn start_send(&mut self, event: &Payment) -> Result<SendFuture> {
        Ok(self.send_non_blocking(message(event)).await?)
    }

    async fn confirmed(receipt: SendFuture) -> Result<()> {
        receipt.await?;
        Ok(())
    }
}

/// The `pulsar` crate's side: one client, a producer per topic.
struct RawPulsar {
    client: Client,
}

impl RawSide for RawPulsar {
    const NAME: &'static str = "Pulsar";
    type Producer = Producer;

    async fn producer(&self, topic: &str) -> Result<Producer> {
        producer(&self.client, topic).await
    }

    async fn close(mut producer: Producer) -> Result<()> {
        Ok(producer.close().await?)
    }

    async fn consume(&self, topic: &str, events: u64) -> Result<f64> {
        consume(&self.client, topic, events).await
    }

    async fn latency_reader(&self, topic: &str, probe: Arc<LatencyProbe>) -> Result<Reader> {
        let mut consumer = consumer(&self.client, topic, "bench-latency").await?;
        Ok(tokio::spawn(async move {
            while !probe.clock.is_done() {
                let Some(message) = consumer.next().await else {
                    break;
                };
                let message = message?;
                let event: Payment = serde_json::from_slice(&message.payload.data)?;
                consumer.ack(&message).await?;
                probe.handle(event.seq, event.sent_at_micros);
            }
            anyhow::Ok(())
        }))
    }
}

/// Every measurement of the raw `pulsar` crate's side.
pub async fn run(knobs: &Knobs, report: &Report) -> Result<()> {
    let client = Pulsar::builder(knobs.pulsar_url.clone(), TokioExecutor)
        .build()
        .await
        .context("connecting the raw Pulsar client")?;
    crate::raw_side::run(&RawPulsar { client }, knobs, report).await
}

/// Reads `events` from the earliest with a new subscription, decoding and acknowledging each.
async fn consume(client: &Client, topic: &str, events: u64) -> Result<f64> {
    let mut consumer = consumer(client, topic, "bench-backlog").await?;
    let clock = Clock::new(events);
    let reader = async {
        while clock.seen() < events {
            let message = consumer
                .next()
                .await
                .context("the raw consumer's stream ended")??;
            let event: Payment = serde_json::from_slice(&message.payload.data)?;
            std::hint::black_box(event);
            consumer.ack(&message).await?;
            clock.tick();
        }
        anyhow::Ok(())
    };
    let (waited, read) = tokio::join!(clock.wait("raw Pulsar consumer"), reader);
    waited?;
    read?;
    consumer.close().await?;
    Ok(clock.rate())
}
