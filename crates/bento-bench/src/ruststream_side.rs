//! RustStream's side: the same typed events published through RustStream to typed handlers
//! (`#[subscriber]` functions) on its in-memory broker, at one worker and at eight; on Pulsar
//! and Kafka see `ruststream_pulsar` and `ruststream_kafka`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use ruststream::Publisher;
use ruststream::memory::prelude::*;
use ruststream::runtime::{
    BrokerRegistration, BrokerScope, Identity, PublishExt, PublishIdentity, RunningApp,
};
use serde::{Deserialize, Serialize};

use crate::event::Payment;
use crate::measure::Clock;
use crate::ruststream_kafka::Kafka;
use crate::ruststream_pulsar::Pulsar;
use crate::{Backend, Knobs, Report};

/// The name RustStream's subscribers listen on (its `#[subscriber]` takes a literal).
const NAME: &str = "bench.payment";

/// [`Payment`] as RustStream's typed publish wants it: the same fields, the same JSON.
#[derive(Debug, Clone, Serialize, Deserialize, Outgoing)]
pub(crate) struct RsPayment {
    pub(crate) seq: u64,
    account: String,
    pub(crate) sent_at_micros: u64,
    memo: String,
}

impl From<Payment> for RsPayment {
    fn from(p: Payment) -> Self {
        RsPayment {
            seq: p.seq,
            account: p.account,
            sent_at_micros: p.sent_at_micros,
            memo: p.memo,
        }
    }
}

#[subscriber("bench.payment")]
async fn one_worker(event: &RsPayment, ctx: &mut Context<'_, (), Arc<Clock>>) -> HandlerOutcome {
    std::hint::black_box(event);
    ctx.state().tick();
    HandlerOutcome::ack()
}

#[subscriber("bench.payment", workers(8))]
async fn eight_workers(event: &RsPayment, ctx: &mut Context<'_, (), Arc<Clock>>) -> HandlerOutcome {
    std::hint::black_box(event);
    ctx.state().tick();
    HandlerOutcome::ack()
}

/// Every measurement of RustStream's side on `backend`.
pub async fn run(backend: Backend, knobs: &Knobs, report: &Report) -> Result<()> {
    match backend {
        Backend::Pulsar => {
            return crate::ruststream_broker::run::<Pulsar>(knobs, report).await;
        }
        Backend::Kafka => return crate::ruststream_broker::run::<Kafka>(knobs, report).await,
        Backend::Memory => {}
    }
    for &size in &knobs.sizes {
        let events: Vec<RsPayment> = crate::event::prepared(knobs.events, size)
            .into_iter()
            .map(RsPayment::from)
            .collect();
        for concurrency in [1, 8] {
            let rate = publish_to_handler(&events, concurrency).await?;
            let metric = format!("publish-to-handler c={concurrency}");
            report.emit(&metric, size, None, "msg/s", rate);
        }
    }
    Ok(())
}

/// Starts a RustStream service on `broker` with application state `state`; `include` adds
/// its subscribers.
pub(crate) async fn start_app<R, S>(
    broker: R,
    state: S,
    include: impl FnOnce(&mut BrokerScope<R::Broker, Identity, (), S, PublishIdentity>),
) -> Result<RunningApp>
where
    R: BrokerRegistration,
    S: Send + Sync + 'static,
{
    RustStream::new(AppInfo::new("bench", "0.0.0"))
        .on_startup(async move |()| Ok::<_, Infallible>(state))
        .with_broker(broker, include)
        .start()
        .await
        .map_err(|e| anyhow!("starting the RustStream service: {e}"))
}

/// Publishes `event` to `name` through a broker's publisher.
pub(crate) async fn publish_to<P: Publisher>(
    publisher: &P,
    name: &str,
    event: &RsPayment,
) -> Result<()> {
    publisher
        .message(event)
        .to(name)
        .publish()
        .await
        .map_err(|e| anyhow!("RustStream publish to `{name}`: {e}"))
}

/// Publishes `events` one by one (RustStream's publisher has no batch call) to a typed handler
/// with `concurrency` workers: events/s from the first publish until all are handled.
async fn publish_to_handler(events: &[RsPayment], concurrency: usize) -> Result<f64> {
    let clock = Clock::new(events.len() as u64);
    let broker = MemoryBroker::new();
    let running = start_app(broker.clone(), clock.clone(), |b| {
        if concurrency == 1 {
            b.include(one_worker);
        } else {
            b.include(eight_workers);
        }
    })
    .await?;
    let publisher = broker.publisher();
    let started = Instant::now();
    for event in events {
        publisher
            .message(event)
            .to(NAME)
            .publish()
            .await
            .map_err(|e| anyhow!("RustStream publish: {e}"))?;
    }
    clock.wait("RustStream in-memory handler").await?;
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    drop(running);
    Ok(rate)
}
