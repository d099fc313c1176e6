//! What the raw Kafka and Pulsar sides share: the runs and their timing loops. Each side says
//! how it makes a producer and a consumer ([`RawSide`]), how it hands an event to its client and
//! how it waits for the broker's confirmation ([`RawProducer`]); the loops are the same.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tokio::task::JoinHandle;

use crate::event::{Payment, prepared};
use crate::measure::{Latencies, LatencyProbe, WarmUp, ticker};
use crate::{Knobs, Report};

/// A raw client: its producers and consumers.
pub(crate) trait RawSide {
    /// The broker's name in messages: `Kafka`, `Pulsar`.
    const NAME: &'static str;
    /// The side's producer on one topic.
    type Producer: RawProducer;

    /// Makes `topic` ready before anything reads or writes it. Nothing by default, for brokers
    /// that create a topic when it is first used (Pulsar).
    async fn prepare(&self, _topic: &str) -> Result<()> {
        Ok(())
    }

    /// A producer on `topic`.
    async fn producer(&self, topic: &str) -> Result<Self::Producer>;

    /// Closes a throughput run's producer before its topic is read.
    async fn close(producer: Self::Producer) -> Result<()>;

    /// Reads `events` from the earliest in a new consumer group or subscription, decoding
    /// each: messages per second from the first to the last.
    async fn consume(&self, topic: &str, events: u64) -> Result<f64>;

    /// Starts reading `topic` into `probe` until its clock is done.
    async fn latency_reader(&self, topic: &str, probe: Arc<LatencyProbe>) -> Result<Reader>;
}

/// A latency run's consumer, reading in a task of its own.
pub(crate) type Reader = JoinHandle<Result<()>>;

/// Every measurement of a raw side: produce and consume at each size, then publish and
/// end-to-end latency at each rate.
pub(crate) async fn run<S: RawSide>(side: &S, knobs: &Knobs, report: &Report) -> Result<()> {
    for &size in &knobs.sizes {
        let topic = knobs.topic(&format!("raw-{size}"));
        side.prepare(&topic).await?;
        let events = prepared(knobs.events, size);
        let mut producer = side.producer(&topic).await?;
        let produced = produce(&mut producer, &events).await?;
        report.emit("produce", size, None, "msg/s", produced);
        S::close(producer).await?;
        let consumed = side.consume(&topic, events.len() as u64).await?;
        report.emit("consume", size, None, "msg/s", consumed);
    }
    let size = knobs.sizes.first().copied().unwrap_or(1024);
    for &rate in &knobs.rates {
        let topic = knobs.topic(&format!("raw-latency-{rate}"));
        side.prepare(&topic).await?;
        latency(side, &topic, knobs, report, size, rate).await?;
    }
    Ok(())
}

/// Publishes at `rate` for `knobs.seconds` to `topic` while a consumer reads it.
async fn latency<S: RawSide>(
    side: &S,
    topic: &str,
    knobs: &Knobs,
    report: &Report,
    size: usize,
    rate: u64,
) -> Result<()> {
    let total = rate * knobs.seconds.as_secs();
    let probe = LatencyProbe::new(total);
    let reader = side.latency_reader(topic, probe.clone()).await?;
    let mut producer = side.producer(topic).await?;
    let publish = publish_at_rate(&mut producer, &probe, size, rate, total).await?;
    probe
        .clock
        .wait(&format!("raw {} latency consumer", S::NAME))
        .await?;
    reader.await??;
    report.latencies("e2e", size, rate, &probe.end_to_end);
    report.latencies("publish", size, rate, &publish);
    Ok(())
}

/// A raw client's producer on one topic.
pub(crate) trait RawProducer {
    /// Sends left unconfirmed at most during a throughput run.
    const IN_FLIGHT: usize;
    /// A send the broker has not confirmed yet.
    type Receipt: Send + 'static;

    /// Hands `event` to the client (waiting while its queue is full).
    fn start_send(&mut self, event: &Payment) -> impl Future<Output = Result<Self::Receipt>>;

    /// Resolves once the broker has confirmed the send.
    fn confirmed(receipt: Self::Receipt) -> impl Future<Output = Result<()>> + Send + 'static;
}

/// Sends `events` with at most [`RawProducer::IN_FLIGHT`] unconfirmed: messages per second
/// from the first send to the last confirmation.
pub(crate) async fn produce<P: RawProducer>(producer: &mut P, events: &[Payment]) -> Result<f64> {
    let started = Instant::now();
    let mut window = VecDeque::with_capacity(P::IN_FLIGHT);
    for event in events {
        if window.len() == P::IN_FLIGHT
            && let Some(receipt) = window.pop_front()
        {
            P::confirmed(receipt).await?;
        }
        window.push_back(producer.start_send(event).await?);
    }
    for receipt in window {
        P::confirmed(receipt).await?;
    }
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

/// Warm-up events until `probe` is live, then `total` stamped events of `size` bytes at `rate`
/// per second, each confirmation awaited in a task of its own: the publish latencies, from
/// handing the event to the client to the broker's confirmation.
async fn publish_at_rate<P: RawProducer>(
    producer: &mut P,
    probe: &LatencyProbe,
    size: usize,
    rate: u64,
    total: u64,
) -> Result<Arc<Latencies>> {
    let mut warm_up = WarmUp::new(probe);
    while let Some(seq) = warm_up.next_seq().await? {
        let receipt = producer.start_send(&Payment::sized(seq, size)).await?;
        P::confirmed(receipt).await?;
    }
    let publish = Arc::new(Latencies::new());
    let mut tick = ticker(rate);
    let mut receipts = Vec::with_capacity(total as usize);
    for event in prepared(total, size) {
        tick.tick().await;
        let started = Instant::now();
        let receipt = producer.start_send(&event.stamped()).await?;
        let publish = publish.clone();
        receipts.push(tokio::spawn(async move {
            let result = P::confirmed(receipt).await;
            publish.record(started.elapsed());
            result
        }));
    }
    for receipt in receipts {
        receipt.await??;
    }
    Ok(publish)
}
