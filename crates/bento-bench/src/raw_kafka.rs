//! rdkafka driven well: a `FutureProducer` (acks=all, idempotent, as Bento's producer) with a
//! sliding window of 10,000 deliveries in flight, a `StreamConsumer` that decodes each event;
//! and the same producer and consumer on records that carry Bento's envelope headers
//! (`produce-with-headers`, `consume-with-headers`), the raw figures for the records Bento
//! writes and reads.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bento_application::wire;
use bento_domain::Envelope;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::event::Payment;
use crate::measure::{Clock, LatencyProbe, PATIENCE};
use crate::raw_side::{RawProducer, RawSide, Reader};
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

/// Deletes every Kafka topic whose name starts with `prefix`.
///
/// A run writes gigabytes that the broker would otherwise keep for its whole retention time,
/// so `cargo xtask bench` removes each side's topics once it is measured.
pub async fn delete_topics(knobs: &Knobs, prefix: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(knobs).create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("listing Kafka topics to delete those named `{prefix}*`"))?;
    let names: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with(prefix))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    for result in admin.delete_topics(&names, &AdminOptions::new()).await? {
        if let Err((name, code)) = result
            && code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
        {
            bail!("deleting Kafka topic `{name}`: {code}");
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
    // Bento's consumer sets `fetch.queue.backoff.ms` to 10 ms; the raw one does too, so that a
    // reader slower than its fetcher is not measured at librdkafka's default second of pause
    // whenever the prefetch queue filled up.
    let consumer: StreamConsumer = config(knobs)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Hands a record to the producer, with `headers` if any, waiting a millisecond while its
/// queue is full.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    event: &Payment,
    headers: Option<OwnedHeaders>,
) -> Result<DeliveryFuture> {
    let payload = event.json();
    let mut record = FutureRecord::to(topic)
        .key(&event.account)
        .payload(&payload);
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
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

/// The producer on one topic.
struct Sender {
    producer: FutureProducer,
    topic: String,
    /// Whether its records carry the headers Bento writes.
    with_headers: bool,
}

impl RawProducer for Sender {
    /// The sliding window of 10,000 deliveries.
    const IN_FLIGHT: usize = 10 * WINDOW;
    type Receipt = DeliveryFuture;

    fn start_send(&mut self, event: &Payment) -> impl Future<Output = Result<DeliveryFuture>> {
        let headers = self.with_headers.then(|| bento_headers(event));
        send(&self.producer, &self.topic, event, headers)
    }

    fn confirmed(delivery: DeliveryFuture) -> impl Future<Output = Result<()>> + Send + 'static {
        delivered(delivery)
    }
}

/// rdkafka's side: one producer for every topic.
struct RawKafka<'a> {
    knobs: &'a Knobs,
    producer: FutureProducer,
}

impl RawSide for RawKafka<'_> {
    const NAME: &'static str = "Kafka";
    type Producer = Sender;

    async fn prepare(&self, topic: &str) -> Result<()> {
        create_topic(self.knobs, topic).await
    }

    async fn producer(&self, topic: &str) -> Result<Sender> {
        Ok(Sender {
            producer: self.producer.clone(),
            topic: topic.to_owned(),
            with_headers: false,
        })
    }

    async fn close(_producer: Sender) -> Result<()> {
        Ok(())
    }

    async fn consume(&self, topic: &str, events: u64) -> Result<f64> {
        consume(self.knobs, topic, events, false).await
    }

    async fn latency_reader(&self, topic: &str, probe: Arc<LatencyProbe>) -> Result<Reader> {
        let consumer = consumer(self.knobs, topic, &format!("{topic}-latency"))?;
        Ok(tokio::spawn(async move {
            let mut stream = consumer.stream();
            while !probe.clock.is_done() {
                let next = tokio::time::timeout(PATIENCE, stream.next()).await;
                let Ok(Some(message)) = next else { break };
                let message = message?;
                let event: Payment = serde_json::from_slice(message.payload().unwrap_or_default())?;
                probe.handle(event.seq, event.sent_at_micros);
            }
            anyhow::Ok(())
        }))
    }
}

/// Every measurement of rdkafka's side.
pub async fn run(knobs: &Knobs, report: &Report) -> Result<()> {
    let side = RawKafka {
        knobs,
        producer: producer(knobs)?,
    };
    crate::raw_side::run(&side, knobs, report).await?;
    with_headers(&side, knobs, report).await
}

/// The produce and consume figures for the records Bento writes and reads. Bento writes the
/// envelope as about a dozen record headers, which librdkafka copies when it produces them
/// and parses (allocating each one) when they are read, while the records above carry none:
/// this backlog is produced with the headers Bento writes (`produce-with-headers`), and its
/// consumer reads each of them as text besides decoding the event (`consume-with-headers`).
async fn with_headers(side: &RawKafka<'_>, knobs: &Knobs, report: &Report) -> Result<()> {
    let size = knobs.sizes.first().copied().unwrap_or(1024);
    let topic = knobs.topic(&format!("raw-headers-{size}"));
    create_topic(knobs, &topic).await?;
    let events = crate::event::prepared(knobs.events, size);
    let mut sender = Sender {
        producer: side.producer.clone(),
        topic: topic.clone(),
        with_headers: true,
    };
    let produced = crate::raw_side::produce(&mut sender, &events).await?;
    report.emit("produce-with-headers", size, None, "msg/s", produced);
    let consumed = consume(knobs, &topic, events.len() as u64, true).await?;
    report.emit("consume-with-headers", size, None, "msg/s", consumed);
    Ok(())
}

/// The headers Bento writes for `event` (the envelope's payload is not among them, so it is
/// left empty rather than encoded a second time).
fn bento_headers(event: &Payment) -> OwnedHeaders {
    let envelope = Envelope::for_event(event, "application/json", Vec::new());
    wire::to_headers(&envelope)
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
}

/// Reads `events` records from the earliest offset in a new group, decoding each (and, with
/// `read_headers`, reading each header's value as text): records/s from the first to the last
/// (joining the group is not counted).
async fn consume(knobs: &Knobs, topic: &str, events: u64, read_headers: bool) -> Result<f64> {
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
            if read_headers && let Some(headers) = message.headers() {
                for header in headers.iter() {
                    std::hint::black_box(header.value.map(std::str::from_utf8));
                }
            }
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
