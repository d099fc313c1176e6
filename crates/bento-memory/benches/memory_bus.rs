//! End-to-end throughput of the in-memory bus: typed publish -> JSON encode -> bus ->
//! dispatcher -> JSON decode -> typed handler -> ack, at concurrency 1 and 8.
//!
//! `cargo bench -p bento-memory --bench memory_bus`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bento_application::{Bus, Context, HandlerError, SubscriptionSpec};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_memory::MemoryBus;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    id: u64,
    key: String,
}

impl DomainEvent for Tick {
    const EVENT_TYPE: &'static str = "bench.tick";
    const AGGREGATE_TYPE: &'static str = "ticker";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

const EVENTS_PER_ITERATION: u64 = 100_000;
const BATCH: usize = 500;

struct Rig {
    bus: Bus<Json>,
    handled: Arc<AtomicU64>,
    done: Arc<Notify>,
    events: Arc<Vec<Tick>>,
}

async fn rig(concurrency: usize) -> Rig {
    let bus = Bus::new(Arc::new(MemoryBus::default()), Json);
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let handler = {
        let (handled, done) = (handled.clone(), done.clone());
        move |tick: Tick, _ctx: Context| {
            let n = handled.fetch_add(1, Ordering::Relaxed) + 1;
            if n % EVENTS_PER_ITERATION == 0 {
                done.notify_one();
            }
            std::hint::black_box(tick);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let spec = SubscriptionSpec::event_type(Tick::EVENT_TYPE, "bench").concurrency(concurrency);
    // Kept running for the whole benchmark.
    std::mem::forget(bus.subscribe_with::<Tick, _>(spec, handler).await);
    let events = Arc::new(
        (0..BATCH as u64)
            .map(|id| Tick {
                id,
                key: format!("key-{}", id % 64),
            })
            .collect(),
    );
    Rig {
        bus,
        handled,
        done,
        events,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("tokio runtime: {error}"),
    };
    let mut group = c.benchmark_group("memory_bus_end_to_end");
    group.throughput(Throughput::Elements(EVENTS_PER_ITERATION));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for concurrency in [1usize, 8] {
        let rig = runtime.block_on(rig(concurrency));
        for mode in ["publish_all", "publish"] {
            group.bench_function(
                BenchmarkId::new(mode, format!("concurrency-{concurrency}")),
                |b| {
                    b.iter_custom(|iterations| {
                        // The publisher runs as a task on the runtime's two workers, like a
                        // service's own code would, not on the benchmark's thread.
                        let (bus, done, events) =
                            (rig.bus.clone(), rig.done.clone(), rig.events.clone());
                        let elapsed = runtime.block_on(async move {
                            tokio::spawn(async move {
                                let start = Instant::now();
                                for _ in 0..iterations {
                                    let notified = done.notified();
                                    tokio::pin!(notified);
                                    notified.as_mut().enable();
                                    let mut sent = 0;
                                    while sent < EVENTS_PER_ITERATION {
                                        if mode == "publish_all" {
                                            bus.publish_all(&events).await.ok();
                                        } else {
                                            for event in events.iter() {
                                                bus.publish(event).await.ok();
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
                            rig.handled.load(Ordering::Relaxed) % EVENTS_PER_ITERATION,
                            0
                        );
                        elapsed.unwrap_or_else(|e| panic!("publisher task failed: {e}"))
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
