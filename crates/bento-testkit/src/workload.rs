//! The end-to-end workload the in-memory benchmarks share: typed publish -> JSON encode -> bus
//! -> dispatcher -> JSON decode -> typed handler -> ack, one subscription, 64 ordering keys.
//!
//! [`Workload::start`] subscribes a counting handler on any [`MessageBus`];
//! [`Workload::run`] publishes rounds of [`EVENTS_PER_ROUND`] events from a task on the given
//! runtime, like a service's own code would, and times them until the last one is handled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bento_application::{Bus, Context, HandlerError, MessageBus, SubscriptionSpec};
use bento_codec::Json;
use bento_domain::DomainEvent;
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// Events published and handled in one round.
pub const EVENTS_PER_ROUND: u64 = 100_000;
/// Events per `publish_all` call, and the size of the set of distinct events published.
pub const BATCH: usize = 500;

/// The small event the workload publishes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tick {
    /// Sequence number within the set of events.
    pub id: u64,
    /// Aggregate id and ordering key (one of 64).
    pub key: String,
}

impl DomainEvent for Tick {
    const EVENT_TYPE: &'static str = "bench.tick";
    const AGGREGATE_TYPE: &'static str = "ticker";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

/// How the publisher hands events to the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishMode {
    /// `Bus::publish_all` with [`BATCH`] events a call.
    Batches,
    /// `Bus::publish`, one event a call.
    OneByOne,
}

impl PublishMode {
    /// Both modes, batches first.
    pub const ALL: [PublishMode; 2] = [PublishMode::Batches, PublishMode::OneByOne];

    /// The name of the bus method used: `publish_all` or `publish`.
    pub fn name(self) -> &'static str {
        match self {
            PublishMode::Batches => "publish_all",
            PublishMode::OneByOne => "publish",
        }
    }
}

/// A subscription with a counting handler on one bus, and the events to publish to it.
pub struct Workload {
    bus: Bus<Json>,
    handled: Arc<AtomicU64>,
    done: Arc<Notify>,
    events: Arc<Vec<Tick>>,
}

impl Workload {
    /// Subscribes the counting handler on `bus` with `concurrency`; it stays subscribed for as
    /// long as the process runs.
    pub async fn start(bus: Arc<dyn MessageBus>, concurrency: usize) -> Self {
        let bus = Bus::new(bus, Json);
        let handled = Arc::new(AtomicU64::new(0));
        let done = Arc::new(Notify::new());
        let handler = {
            let (handled, done) = (handled.clone(), done.clone());
            move |tick: Tick, _ctx: Context| {
                let n = handled.fetch_add(1, Ordering::Relaxed) + 1;
                if n % EVENTS_PER_ROUND == 0 {
                    done.notify_one();
                }
                std::hint::black_box(tick);
                std::future::ready(Ok::<(), HandlerError>(()))
            }
        };
        let spec = SubscriptionSpec::event_type(Tick::EVENT_TYPE, "bench").concurrency(concurrency);
        // Benchmarks measure until the process ends: the subscription is never shut down.
        std::mem::forget(bus.subscribe_with(spec, handler).await);
        let events = (0..BATCH as u64)
            .map(|id| Tick {
                id,
                key: format!("key-{}", id % 64),
            })
            .collect();
        Self {
            bus,
            handled,
            done,
            events: Arc::new(events),
        }
    }

    /// Publishes `rounds` rounds of [`EVENTS_PER_ROUND`] events with `mode` from a task on
    /// `runtime`, each round waiting until its last event is handled; the time all took.
    ///
    /// # Panics
    ///
    /// When the publishing task fails, or when the handler saw a number of events that is not
    /// a whole number of rounds (an event lost or handled twice).
    pub fn run(&self, runtime: &Runtime, mode: PublishMode, rounds: u64) -> Duration {
        let (bus, done, events) = (self.bus.clone(), self.done.clone(), self.events.clone());
        let elapsed = runtime.block_on(async move {
            tokio::spawn(async move {
                let start = Instant::now();
                for _ in 0..rounds {
                    let notified = done.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let mut sent = 0;
                    while sent < EVENTS_PER_ROUND {
                        match mode {
                            PublishMode::Batches => {
                                bus.publish_all(&events).await.ok();
                            }
                            PublishMode::OneByOne => {
                                for event in events.iter() {
                                    bus.publish(event).await.ok();
                                }
                            }
                        }
                        sent += BATCH as u64;
                    }
                    notified.await;
                }
                start.elapsed()
            })
            .await
        });
        assert_eq!(
            self.handled.load(Ordering::Relaxed) % EVENTS_PER_ROUND,
            0,
            "every event published was handled exactly once"
        );
        elapsed.unwrap_or_else(|e| panic!("publisher task failed: {e}"))
    }
}
