//! Bento's side: a bus built from configuration the way a service builds it
//! (`Config::figment` reads the file `BENTO_CONFIG` would name, then `BENTO_` variables), typed
//! events published with `publish_all` / `publish`, typed handlers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use bento_application::{Context, HandlerError, SubscriptionSpec};
use bento_domain::DomainEvent;
use bento_runtime::Config;
use bento_runtime::{Bento, Bus};

use crate::event::{Payment, prepared};
use crate::measure::{Clock, Latencies, LatencyProbe, ticker, warm_up};
use crate::{Backend, Knobs, Report, WINDOW};

/// The `[messaging]` configuration of `backend` with the event type mapped to `topic`.
fn configuration(backend: Backend, knobs: &Knobs, topic: &str) -> String {
    let event = Payment::EVENT_TYPE;
    match backend {
        Backend::Memory => "[messaging]\nbackend = \"memory\"\n".to_string(),
        // Batching as the raw producer and pulsar-perf batch: up to 1,000 messages or 128 KiB,
        // 10 ms at most.
        Backend::Pulsar => format!(
            "[messaging]\nbackend = \"pulsar\"\n[messaging.pulsar]\nservice_url = \"{}\"\n\
             admin_url = \"{}\"\n[messaging.pulsar.producer]\nbatching = true\n\
             [messaging.pulsar.topics.event_types]\n\"{event}\" = \"{topic}\"\n",
            knobs.pulsar_url, knobs.pulsar_admin_url
        ),
        Backend::Kafka => format!(
            "[messaging]\nbackend = \"kafka\"\n[messaging.kafka]\nbootstrap_servers = \"{}\"\n\
             [messaging.kafka.topics]\n\"{event}\" = \"{topic}\"\n",
            knobs.kafka_bootstrap
        ),
    }
}

/// A service's bus on `topic`.
async fn start(backend: Backend, knobs: &Knobs, topic: &str) -> Result<Bento> {
    let file = std::env::temp_dir().join(format!("{topic}.toml"));
    std::fs::write(&file, configuration(backend, knobs, topic))
        .with_context(|| format!("writing {}", file.display()))?;
    let config = Config::from_figment(Config::figment(&file));
    let _ = std::fs::remove_file(&file);
    Ok(Bento::from_config(config?).await?)
}

/// Every measurement of Bento's side on `backend`.
pub async fn run(backend: Backend, knobs: &Knobs, report: &Report) -> Result<()> {
    for &size in &knobs.sizes {
        let topic = knobs.topic(&format!("bento-{size}"));
        let events = prepared(knobs.events, size);
        if backend == Backend::Memory {
            // A bus of its own per run: a subscription left behind by the previous run, with no
            // consumer, would fill up (64 MiB by default) and hold the publisher, as documented.
            for concurrency in [1, 8] {
                let bento = start(backend, knobs, &topic).await?;
                let rate = publish_to_handler(&bento.bus(), &events, concurrency).await?;
                let metric = format!("publish-to-handler c={concurrency}");
                report.emit(&metric, size, None, "msg/s", rate);
                bento.shutdown().await?;
            }
            continue;
        }
        let bento = start(backend, knobs, &topic).await?;
        let bus = bento.bus();
        let group = "bench-backlog";
        position(&bus, group).await?;
        let started = Instant::now();
        for chunk in events.chunks(WINDOW) {
            bus.publish_all(chunk).await?;
        }
        let produced = events.len() as f64 / started.elapsed().as_secs_f64();
        report.emit("produce", size, None, "msg/s", produced);
        let consumed = consume(&bus, group, events.len() as u64).await?;
        report.emit("consume", size, None, "msg/s", consumed);
        bento.shutdown().await?;
    }
    let size = knobs.sizes.first().copied().unwrap_or(1024);
    for &rate in &knobs.rates {
        let topic = knobs.topic(&format!("bento-latency-{rate}"));
        let bento = start(backend, knobs, &topic).await?;
        latency(&bento.bus(), knobs, report, size, rate).await?;
        bento.shutdown().await?;
    }
    Ok(())
}

/// Creates the group (subscription) so that it finds what is published next as a backlog.
async fn position(bus: &Bus, group: &str) -> Result<()> {
    let spec = SubscriptionSpec::event_type(Payment::EVENT_TYPE, group.to_owned());
    let subscription = bus
        .subscribe_with(spec, |_e: Payment, _c: Context| async {
            Ok::<(), HandlerError>(())
        })
        .await?;
    subscription.shutdown().await?;
    Ok(())
}

/// A handler that only counts.
fn counting(
    clock: Arc<Clock>,
) -> impl Fn(Payment, Context) -> std::future::Ready<Result<(), HandlerError>> + Clone {
    move |event: Payment, _ctx: Context| {
        std::hint::black_box(event);
        clock.tick();
        std::future::ready(Ok(()))
    }
}

/// Reads the backlog of `group` with a typed handler at concurrency 8: messages/s from the
/// first handled message to the last.
async fn consume(bus: &Bus, group: &str, events: u64) -> Result<f64> {
    let clock = Clock::new(events);
    let spec = SubscriptionSpec::event_type(Payment::EVENT_TYPE, group.to_owned()).concurrency(8);
    let subscription = bus.subscribe_with(spec, counting(clock.clone())).await?;
    clock.wait("Bento consumer").await?;
    subscription.shutdown().await?;
    Ok(clock.rate())
}

/// Publishes `events` in batches to a typed handler at `concurrency`: events/s from the first
/// publish until the handler has seen them all.
async fn publish_to_handler(bus: &Bus, events: &[Payment], concurrency: usize) -> Result<f64> {
    let clock = Clock::new(events.len() as u64);
    let spec = SubscriptionSpec::event_type(Payment::EVENT_TYPE, format!("bench-c{concurrency}"))
        .concurrency(concurrency);
    let subscription = bus.subscribe_with(spec, counting(clock.clone())).await?;
    let started = Instant::now();
    for chunk in events.chunks(500) {
        bus.publish_all(chunk).await?;
    }
    clock.wait("Bento in-memory handler").await?;
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    subscription.shutdown().await?;
    Ok(rate)
}

/// Publishes at `rate` per second, each publish in its own task, for the configured seconds:
/// end-to-end (publish call to typed handler) and publish (call to broker receipt) latencies.
async fn latency(bus: &Bus, knobs: &Knobs, report: &Report, size: usize, rate: u64) -> Result<()> {
    let total = rate * knobs.seconds.as_secs();
    let probe = LatencyProbe::new(total);
    let handler = {
        let probe = probe.clone();
        move |event: Payment, _ctx: Context| {
            probe.handle(event.seq, event.sent_at_micros);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let spec = SubscriptionSpec::event_type(Payment::EVENT_TYPE, "bench-latency").concurrency(8);
    let subscription = bus.subscribe_with(spec, handler).await?;
    warm_up(&probe, |seq| async move {
        bus.publish(&Payment::sized(seq, size)).await?;
        Ok(())
    })
    .await?;
    let publish = Arc::new(Latencies::new());
    let events = prepared(total, size);
    let mut tick = ticker(rate);
    let mut tasks = Vec::with_capacity(events.len());
    for event in events {
        tick.tick().await;
        let (bus, publish) = (bus.clone(), publish.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = bus.publish(&event.stamped()).await;
            publish.record(started.elapsed());
            result
        }));
    }
    for task in tasks {
        task.await??;
    }
    probe.clock.wait("Bento latency subscription").await?;
    subscription.shutdown().await?;
    report.latencies("e2e", size, rate, &probe.end_to_end);
    report.latencies("publish", size, rate, &publish);
    Ok(())
}
