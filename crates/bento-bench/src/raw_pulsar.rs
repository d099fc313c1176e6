//! The `pulsar` crate driven well: a batching producer with a sliding window of 1,000 sends in
//! flight, a consumer that decodes each event's JSON, as Bento's handlers get it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use futures::StreamExt;
use pulsar::producer::{Message, SendFuture};
use pulsar::{Pulsar, TokioExecutor};

use crate::event::{Payment, WARM_UP, prepared};
use crate::measure::{Clock, Latencies, LatencyProbe, PATIENCE, ticker};
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

/// Every measurement of the raw `pulsar` crate's side.
pub async fn run(knobs: &Knobs, report: &Report) -> Result<()> {
    let client = Pulsar::builder(knobs.pulsar_url.clone(), TokioExecutor)
        .build()
        .await
        .context("connecting the raw Pulsar client")?;
    for &size in &knobs.sizes {
        let topic = knobs.topic(&format!("raw-{size}"));
        let events = prepared(knobs.events, size);
        let mut producer = producer(&client, &topic).await?;
        let started = Instant::now();
        let mut window: VecDeque<SendFuture> = VecDeque::with_capacity(WINDOW);
        for event in &events {
            if window.len() == WINDOW
                && let Some(receipt) = window.pop_front()
            {
                receipt.await?;
            }
            window.push_back(producer.send_non_blocking(message(event)).await?);
        }
        for receipt in window {
            receipt.await?;
        }
        let produced = events.len() as f64 / started.elapsed().as_secs_f64();
        report.emit("produce", size, None, "msg/s", produced);
        producer.close().await?;
        let consumed = consume(&client, &topic, events.len() as u64).await?;
        report.emit("consume", size, None, "msg/s", consumed);
    }
    let size = knobs.sizes.first().copied().unwrap_or(1024);
    for &rate in &knobs.rates {
        let topic = knobs.topic(&format!("raw-latency-{rate}"));
        latency(&client, &topic, knobs, report, size, rate).await?;
    }
    Ok(())
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

async fn latency(
    client: &Client,
    topic: &str,
    knobs: &Knobs,
    report: &Report,
    size: usize,
    rate: u64,
) -> Result<()> {
    let total = rate * knobs.seconds.as_secs();
    let probe = LatencyProbe::new(total);
    let mut consumer = consumer(client, topic, "bench-latency").await?;
    let reader = {
        let probe = probe.clone();
        tokio::spawn(async move {
            while probe.clock.seen() < total {
                let Some(message) = consumer.next().await else {
                    break;
                };
                let message = message?;
                let event: Payment = serde_json::from_slice(&message.payload.data)?;
                consumer.ack(&message).await?;
                probe.handle(event.seq, event.sent_at_micros);
            }
            anyhow::Ok(())
        })
    };
    let mut producer = producer(client, topic).await?;
    // Warm-up events until the subscription has one (see `measure::warm_up`).
    let mut seq = WARM_UP;
    let deadline = Instant::now() + PATIENCE;
    while !probe.is_live() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no warm-up event reached the raw consumer"
        );
        producer
            .send_non_blocking(message(&Payment::sized(seq, size)))
            .await?
            .await?;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish = Arc::new(Latencies::new());
    let mut tick = ticker(rate);
    let mut receipts = Vec::with_capacity(total as usize);
    for event in prepared(total, size) {
        tick.tick().await;
        let started = Instant::now();
        let receipt = producer
            .send_non_blocking(message(&event.stamped()))
            .await?;
        let publish = publish.clone();
        receipts.push(tokio::spawn(async move {
            let result = receipt.await;
            publish.record(started.elapsed());
            result
        }));
    }
    for receipt in receipts {
        receipt.await??;
    }
    probe.clock.wait("raw Pulsar latency consumer").await?;
    reader.await??;
    report.latencies("e2e", size, rate, &probe.end_to_end);
    report.latencies("publish", size, rate, &publish);
    Ok(())
}
