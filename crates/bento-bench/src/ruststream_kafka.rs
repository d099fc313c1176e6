//! RustStream on Kafka (`ruststream-rdkafka`): the same typed events published through its
//! publisher ([`IN_FLIGHT`] publishes in flight) to a typed `#[subscriber]` with eight workers,
//! on topics of Bento's partition count.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, anyhow};
use futures::StreamExt;
use ruststream_rdkafka::context::KafkaContext;
use ruststream_rdkafka::prelude::*;
use ruststream_rdkafka::{KafkaPublisher, StartOffset};

use crate::event::{Payment, WARM_UP};
use crate::measure::{Clock, Latencies, LatencyProbe, PATIENCE, ticker};
use crate::ruststream_side::RsPayment;
use crate::{Knobs, Report};

/// Publishes in flight, as the raw rdkafka side keeps.
const IN_FLIGHT: usize = 10 * crate::WINDOW;

/// The topic the subscriber of the next service reads (the attribute is evaluated when the
/// service is built).
static TOPIC: Mutex<String> = Mutex::new(String::new());

fn topic() -> String {
    TOPIC.lock().map(|t| t.clone()).unwrap_or_default()
}

/// What the handler reports to: a plain count, or a latency probe.
#[derive(Debug)]
pub struct Target {
    clock: Arc<Clock>,
    probe: Option<Arc<LatencyProbe>>,
}

#[subscriber(
    KafkaTopic::new(topic()).group(format!("{}-group", topic())).start(StartOffset::Earliest),
    workers(8)
)]
async fn handle(
    event: &RsPayment,
    ctx: &mut Context<'_, KafkaContext, Arc<Target>>,
) -> HandlerOutcome {
    match &ctx.state().probe {
        Some(probe) => probe.handle(event.seq, event.sent_at_micros),
        None => ctx.state().clock.tick(),
    }
    HandlerOutcome::ack()
}

/// A started service on `name`: with the subscriber when `target` is given, else publisher only.
async fn service(
    knobs: &Knobs,
    name: &str,
    target: Option<Arc<Target>>,
) -> Result<(ruststream::runtime::RunningApp, KafkaPublisher)> {
    if let Ok(mut current) = TOPIC.lock() {
        current.clear();
        current.push_str(name);
    }
    crate::raw_kafka::create_topic(knobs, name).await?;
    let publisher = KafkaBroker::new([knobs.kafka_bootstrap.clone()])
        .connect()
        .await
        .map_err(|e| anyhow!("connecting RustStream's Kafka publisher: {e}"))?
        .publisher(Publish::default());
    let broker = KafkaBroker::new([knobs.kafka_bootstrap.clone()]);
    let subscribe = target.is_some();
    let state = target.unwrap_or_else(|| {
        Arc::new(Target {
            clock: Clock::new(1),
            probe: None,
        })
    });
    let app = RustStream::new(AppInfo::new("bench", "0.0.0"))
        .on_startup(async move |()| Ok::<_, Infallible>(state))
        .with_broker(broker, |b| {
            if subscribe {
                b.include(handle);
            }
        });
    let running = app
        .start()
        .await
        .map_err(|e| anyhow!("starting the RustStream service: {e}"))?;
    Ok((running, publisher))
}

async fn publish(publisher: &KafkaPublisher, name: &str, event: &RsPayment) -> Result<()> {
    publisher
        .message(event)
        .to(name)
        .publish()
        .await
        .map_err(|e| anyhow!("RustStream publish to `{name}`: {e}"))
}

/// Every measurement of RustStream's side on Kafka.
pub async fn run(knobs: &Knobs, report: &Report) -> Result<()> {
    for &size in &knobs.sizes {
        let name = knobs.topic(&format!("rs-{size}"));
        let events: Vec<RsPayment> = crate::event::prepared(knobs.events, size)
            .into_iter()
            .map(RsPayment::from)
            .collect();
        let (running, publisher) = service(knobs, &name, None).await?;
        let started = Instant::now();
        let sends = futures::stream::iter(&events)
            .map(|event| publish(&publisher, &name, event))
            .buffer_unordered(IN_FLIGHT);
        let results: Vec<Result<()>> = sends.collect().await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        let produced = events.len() as f64 / started.elapsed().as_secs_f64();
        report.emit("produce", size, None, "msg/s", produced);
        running.shutdown().await.map_err(|e| anyhow!("{e}"))?;
        let clock = Clock::new(events.len() as u64);
        let target = Arc::new(Target {
            clock: clock.clone(),
            probe: None,
        });
        let (running, _) = service(knobs, &name, Some(target)).await?;
        clock.wait("RustStream Kafka subscriber").await?;
        report.emit("consume", size, None, "msg/s", clock.rate());
        running.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    }
    let size = knobs.sizes.first().copied().unwrap_or(1024);
    for &rate in &knobs.rates {
        latency(knobs, report, size, rate).await?;
    }
    Ok(())
}

async fn latency(knobs: &Knobs, report: &Report, size: usize, rate: u64) -> Result<()> {
    let name = knobs.topic(&format!("rs-latency-{rate}"));
    let total = rate * knobs.seconds.as_secs();
    let probe = LatencyProbe::new(total);
    let target = Arc::new(Target {
        clock: Clock::new(1),
        probe: Some(probe.clone()),
    });
    let (running, publisher) = service(knobs, &name, Some(target)).await?;
    let deadline = Instant::now() + PATIENCE;
    let mut seq = WARM_UP;
    while !probe.is_live() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no warm-up event reached RustStream"
        );
        publish(&publisher, &name, &Payment::sized(seq, size).into()).await?;
        seq += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let publish_latency = Arc::new(Latencies::new());
    let mut tick = ticker(rate);
    let mut tasks = Vec::with_capacity(total as usize);
    for event in crate::event::prepared(total, size) {
        tick.tick().await;
        let (publisher, name, latencies) =
            (publisher.clone(), name.clone(), publish_latency.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = publish(&publisher, &name, &event.stamped().into()).await;
            latencies.record(started.elapsed());
            result
        }));
    }
    for task in tasks {
        task.await??;
    }
    probe
        .clock
        .wait("RustStream Kafka latency subscriber")
        .await?;
    running.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    report.latencies("e2e", size, rate, &probe.end_to_end);
    report.latencies("publish", size, rate, &publish_latency);
    Ok(())
}
