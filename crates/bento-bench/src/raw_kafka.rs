//! rdkafka driven well: a `FutureProducer` (acks=all, idempotent, as Bento's producer) with a
//! sliding window of 10,000 deliveries in flight, a `StreamConsumer` that decodes each event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::event::{Payment, prepared};
use crate::measure::{Clock, Latencies, LatencyProbe, PATIENCE, ticker, warm_up};
use crate::{KAFKA_PARTITIONS, Knobs, Report, WINDOW};

fn config(knobs: &Knobs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &knobs.kafka_bootstrap);
    config
}

/// Creates `topic` with Bento's partition count, so every side writes to the same layout.
pub async fn create_topic(knobs: &Knobs, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(knobs).create()?;
    let new = NewTopic::new(topic, KAFKA_PARTITIONS, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new], &AdminOptions::new()).await? {
        if let Err((name, code)) = result
            && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            bail!("creating Kafka topic `{name}`: {code}");
        }
    }
    Ok(())
}

fn producer(knobs: &Knobs) -> Result<FutureProducer> {
    Ok(config(knobs)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?)
}

fn consumer(knobs: &Knobs, topic: &str, group: &str) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = config(knobs)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Hands a record to the producer, waiting a millisecond while its queue is full.
async fn send(producer: &FutureProducer, topic: &str, event: &Payment) -> Result<DeliveryFuture> {
    let payload = event.json();
    let mut record = FutureRecord::to(topic)
        .key(&event.account)
        .payload(&payload);
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((_, back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

async fn delivered(delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((err, _))) => Err(err.into()),
        Err(_) => bail!("the producer dropped a delivery"),
    }
}

/// Every measurement of rdkafka's side.
pub async fn run(knobs: &Knobs, report: &Report) -> Result<()> {
    let producer = producer(knobs)?;
    for &size in &knobs.sizes {
        let topic = knobs.topic(&format!("raw-{size}"));
        create_topic(knobs, &topic).await?;
        let events = prepared(knobs.events, size);
        let started = Instant::now();
        let mut window = VecDeque::with_capacity(10 * WINDOW);
        for event in &events {
            if window.len() == 10 * WINDOW
                && let Some(delivery) = window.pop_front()
            {
                delivered(delivery).await?;
            }
            window.push_back(send(&producer, &topic, event).await?);
        }
        for delivery in window {
            delivered(delivery).await?;
        }
        let produced = events.len() as f64 / started.elapsed().as_secs_f64();
        report.emit("produce", size, None, "msg/s", produced);
        let consumed = consume(knobs, &topic, events.len() as u64).await?;
        report.emit("consume", size, None, "msg/s", consumed);
    }
    let size = knobs.sizes.first().copied().unwrap_or(1024);
    for &rate in &knobs.rates {
        let topic = knobs.topic(&format!("raw-latency-{rate}"));
        create_topic(knobs, &topic).await?;
        latency(&producer, &topic, knobs, report, size, rate).await?;
    }
    Ok(())
}

/// Reads `events` records from the earliest offset in a new group, decoding each: records/s
/// from the first to the last (joining the group is not counted).
async fn consume(knobs: &Knobs, topic: &str, events: u64) -> Result<f64> {
    let group = format!("{topic}-backlog");
    let consumer = consumer(knobs, topic, &group)?;
    let clock = Clock::new(events);
    let reader = async {
        let mut stream = consumer.stream();
        while clock.seen() < events {
            let message = stream
                .next()
                .await
                .context("the raw consumer's stream ended")??;
            let event: Payment = serde_json::from_slice(message.payload().unwrap_or_default())?;
            std::hint::black_box(event);
            clock.tick();
        }
        anyhow::Ok(())
    };
    let (waited, read) = tokio::join!(clock.wait("raw Kafka consumer"), reader);
    waited?;
    read?;
    Ok(clock.rate())
}

async fn latency(
    producer: &FutureProducer,
    topic: &str,
    knobs: &Knobs,
    report: &Report,
    size: usize,
    rate: u64,
) -> Result<()> {
    let total = rate * knobs.seconds.as_secs();
    let probe = LatencyProbe::new(total);
    let consumer = consumer(knobs, topic, &format!("{topic}-latency"))?;
    let reader = {
        let probe = probe.clone();
        tokio::spawn(async move {
            let mut stream = consumer.stream();
            while probe.clock.seen() < total {
                let next = tokio::time::timeout(PATIENCE, stream.next()).await;
                let Ok(Some(message)) = next else { break };
                let message = message?;
                let event: Payment = serde_json::from_slice(message.payload().unwrap_or_default())?;
                probe.handle(event.seq, event.sent_at_micros);
            }
            anyhow::Ok(())
        })
    };
    warm_up(&probe, |seq| async move {
        delivered(send(producer, topic, &Payment::sized(seq, size)).await?).await
    })
    .await?;
    let publish = Arc::new(Latencies::new());
    let mut tick = ticker(rate);
    let mut deliveries = Vec::with_capacity(total as usize);
    for event in prepared(total, size) {
        tick.tick().await;
        let started = Instant::now();
        let delivery = send(producer, topic, &event.stamped()).await?;
        let publish = publish.clone();
        deliveries.push(tokio::spawn(async move {
            let result = delivered(delivery).await;
            publish.record(started.elapsed());
            result
        }));
    }
    for delivery in deliveries {
        delivery.await??;
    }
    probe.clock.wait("raw Kafka latency consumer").await?;
    reader.await??;
    report.latencies("e2e", size, rate, &probe.end_to_end);
    report.latencies("publish", size, rate, &publish);
    Ok(())
}
