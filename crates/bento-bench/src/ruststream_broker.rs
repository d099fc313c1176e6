//! What RustStream's Kafka and Pulsar sides share: the subscriber's state, the service they
//! start, and the throughput and latency runs. Each side says how it connects to its broker,
//! which subscriber it adds and how it publishes ([`RsBroker`]); one process runs one side.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, anyhow};
use futures::StreamExt;
use ruststream::runtime::{BrokerRegistration, BrokerScope, Identity, PublishIdentity, RunningApp};

use crate::event::{Payment, prepared};
use crate::measure::{Clock, Latencies, LatencyProbe, ticker, warm_up};
use crate::ruststream_side::{RsPayment, start_app};
use crate::{Knobs, Report};

/// The topic the subscriber of the next service reads (the subscriber's attribute is evaluated
/// when the service is built).
static TOPIC: Mutex<String> = Mutex::new(String::new());

/// The topic of the service being built, for the `#[subscriber]` attributes.
pub(crate) fn topic() -> String {
    TOPIC.lock().map(|t| t.clone()).unwrap_or_default()
}

/// What the handler reports to: a plain count, or a latency probe.
#[derive(Debug)]
pub struct Target {
    clock: Arc<Clock>,
    probe: Option<Arc<LatencyProbe>>,
}

impl Target {
    /// Called by the subscriber for each event.
    pub(crate) fn record(&self, event: &RsPayment) {
        match &self.probe {
            Some(probe) => probe.handle(event.seq, event.sent_at_micros),
            None => self.clock.tick(),
        }
    }
}

/// RustStream on one broker.
pub(crate) trait RsBroker: 'static {
    /// The broker's name in messages: `Kafka`, `Pulsar`.
    const NAME: &'static str;
    /// Publishes in flight during a throughput run.
    const IN_FLIGHT: usize;
    /// The broker a service is started on.
    type Registration: BrokerRegistration;
    /// The broker's publisher.
    type Publisher: Clone + Send + Sync + 'static;

    /// The broker for a service on topic `name` (made ready for it), and a publisher.
    async fn connect(knobs: &Knobs, name: &str) -> Result<(Self::Registration, Self::Publisher)>;

    /// Adds the side's subscriber, on [`topic`], to a service.
    fn include(scope: &mut Scope<Self>);

    /// Publishes `event` to topic `name`.
    fn publish(
        publisher: &Self::Publisher,
        name: &str,
        event: &RsPayment,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Where a service of broker `B` adds its subscribers.
pub(crate) type Scope<B> = BrokerScope<
    <<B as RsBroker>::Registration as BrokerRegistration>::Broker,
    Identity,
    (),
    Arc<Target>,
    PublishIdentity,
>;

/// A started service on `name`: with the subscriber when `target` is given, else publisher only.
async fn service<B: RsBroker>(
    knobs: &Knobs,
    name: &str,
    target: Option<Arc<Target>>,
) -> Result<(RunningApp, B::Publisher)> {
    if let Ok(mut current) = TOPIC.lock() {
        current.clear();
        current.push_str(name);
    }
    let subscribe = target.is_some();
    let state = target.unwrap_or_else(|| {
        Arc::new(Target {
            clock: Clock::new(1),
            probe: None,
        })
    });
    let (broker, publisher) = B::connect(knobs, name).await?;
    let running = start_app(broker, state, |scope| {
        if subscribe {
            B::include(scope);
        }
    })
    .await?;
    Ok((running, publisher))
}

/// Every measurement of RustStream's side on broker `B`.
pub(crate) async fn run<B: RsBroker>(knobs: &Knobs, report: &Report) -> Result<()> {
    for &size in &knobs.sizes {
        let name = knobs.topic(&format!("rs-{size}"));
        let events: Vec<RsPayment> = prepared(knobs.events, size)
            .into_iter()
            .map(RsPayment::from)
            .collect();
        let (running, publisher) = service::<B>(knobs, &name, None).await?;
        let started = Instant::now();
        let sends = futures::stream::iter(&events)
            .map(|event| B::publish(&publisher, &name, event))
            .buffer_unordered(B::IN_FLIGHT);
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
        let (running, _) = service::<B>(knobs, &name, Some(target)).await?;
        clock
            .wait(&format!("RustStream {} subscriber", B::NAME))
            .await?;
        report.emit("consume", size, None, "msg/s", clock.rate());
        running.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    }
    let size = knobs.sizes.first().copied().unwrap_or(1024);
    for &rate in &knobs.rates {
        latency::<B>(knobs, report, size, rate).await?;
    }
    Ok(())
}

async fn latency<B: RsBroker>(
    knobs: &Knobs,
    report: &Report,
    size: usize,
    rate: u64,
) -> Result<()> {
    let name = knobs.topic(&format!("rs-latency-{rate}"));
    let total = rate * knobs.seconds.as_secs();
    let probe = LatencyProbe::new(total);
    let target = Arc::new(Target {
        clock: Clock::new(1),
        probe: Some(probe.clone()),
    });
    let (running, publisher) = service::<B>(knobs, &name, Some(target)).await?;
    warm_up(&probe, |seq| {
        let (publisher, name) = (&publisher, &name);
        async move { B::publish(publisher, name, &Payment::sized(seq, size).into()).await }
    })
    .await?;
    let publish_latency = Arc::new(Latencies::new());
    let mut tick = ticker(rate);
    let mut tasks = Vec::with_capacity(total as usize);
    for event in prepared(total, size) {
        tick.tick().await;
        let (publisher, name, latencies) =
            (publisher.clone(), name.clone(), publish_latency.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = B::publish(&publisher, &name, &event.stamped().into()).await;
            latencies.record(started.elapsed());
            result
        }));
    }
    for task in tasks {
        task.await??;
    }
    probe
        .clock
        .wait(&format!("RustStream {} latency subscriber", B::NAME))
        .await?;
    running.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    report.latencies("e2e", size, rate, &probe.end_to_end);
    report.latencies("publish", size, rate, &publish_latency);
    Ok(())
}
