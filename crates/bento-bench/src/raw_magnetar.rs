//! `magnetar-driver`, the other Rust Pulsar client, driven like the `pulsar` crate's raw side:
//! a batching producer with a sliding window of 1,000 sends in flight, a consumer that decodes
//! each event's JSON. It answers whether a second Pulsar adapter on it would be faster than one
//! on the `pulsar` crate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::runtime_tokio::{Consumer, Producer, SendFut};
use magnetar::{OutgoingMessage, PulsarClient};

use crate::event::Payment;
use crate::measure::{Clock, LatencyProbe};
use crate::raw_side::{RawProducer, RawSide, Reader};
use crate::{Knobs, Report, Unavailable, WINDOW};

fn full_name(topic: &str) -> String {
    format!("persistent://public/default/{topic}")
}

/// Batching as the other Pulsar sides: up to 1,000 messages or 128 KiB, 10 ms at most.
async fn producer(client: &PulsarClient, topic: &str) -> Result<Producer> {
    client
        .producer(full_name(topic))
        .batching(1_000, 128 * 1024)
        .batching_max_publish_delay(Duration::from_millis(10))
        .create()
        .await
        .with_context(|| format!("creating a magnetar producer on `{topic}`"))
}

async fn consumer(client: &PulsarClient, topic: &str, subscription: &str) -> Result<Consumer> {
    client
        .consumer(full_name(topic))
        .subscription(subscription)
        .subscription_type(SubType::Shared)
        .initial_position(InitialPosition::Earliest)
        .subscribe()
        .await
        .with_context(|| format!("subscribing a magnetar consumer to `{topic}`"))
}

impl RawProducer for Producer {
    const IN_FLIGHT: usize = WINDOW;
    type Receipt = SendFut;

    async fn start_send(&mut self, event: &Payment) -> Result<SendFut> {
        let message = OutgoingMessage::with_payload(event.json()).key(event.account.clone());
        Ok(self.send(message.into()))
    }

    async fn confirmed(receipt: SendFut) -> Result<()> {
        receipt.await?;
        Ok(())
    }
}

/// magnetar's side: one client, a producer per topic.
struct RawMagnetar {
    client: PulsarClient,
}

impl RawSide for RawMagnetar {
    const NAME: &'static str = "Pulsar (magnetar)";
    type Producer = Producer;

    async fn producer(&self, topic: &str) -> Result<Producer> {
        producer(&self.client, topic).await
    }

    async fn close(producer: Producer) -> Result<()> {
        Ok(producer.close().await?)
    }

    async fn consume(&self, topic: &str, events: u64) -> Result<f64> {
        consume(&self.client, topic, events).await
    }

    /// Not measured: in this harness a magnetar 1.7.4 consumer subscribed before the first
    /// publish never returned from `receive()` (not even under a tokio timeout, so the thread
    /// it ran on was blocked), with its own client or the producer's. Reading a backlog works.
    async fn latency_reader(&self, _topic: &str, _probe: Arc<LatencyProbe>) -> Result<Reader> {
        Err(Unavailable(
            "latency: a magnetar 1.7.4 consumer subscribed before the first publish never \
             returned from receive() here, even under a timeout; produce and consume are \
             measured"
                .to_owned(),
        )
        .into())
    }
}

/// Every measurement of magnetar's side.
pub async fn run(knobs: &Knobs, report: &Report) -> Result<()> {
    let client = PulsarClient::builder()
        .service_url(knobs.pulsar_url.clone())
        .build()
        .await
        .context("connecting the magnetar Pulsar client")?;
    crate::raw_side::run(&RawMagnetar { client }, knobs, report).await
}

/// Reads `events` from the earliest with a new subscription, decoding and acknowledging each
/// (acknowledgements grouped, the Java client's default).
async fn consume(client: &PulsarClient, topic: &str, events: u64) -> Result<f64> {
    let consumer = consumer(client, topic, "bench-backlog").await?;
    let clock = Clock::new(events);
    let reader = async {
        while clock.seen() < events {
            let message = consumer.receive().await?;
            let event: Payment = serde_json::from_slice(&message.payload)?;
            std::hint::black_box(event);
            consumer.ack_grouped(message.message_id);
            clock.tick();
        }
        anyhow::Ok(())
    };
    let (waited, read) = tokio::join!(clock.wait("magnetar consumer"), reader);
    waited?;
    read?;
    consumer.close().await?;
    Ok(clock.rate())
}
