//! End-to-end throughput of the in-memory bus: typed publish -> JSON encode -> bus ->
//! dispatcher -> JSON decode -> typed handler -> ack, at concurrency 1 and 8 (the workload of
//! `bento_testkit::workload`).
//!
//! `cargo bench -p bento-memory --bench memory_bus`

use std::sync::Arc;
use std::time::Duration;

use bento_memory::MemoryBus;
use bento_testkit::workload::{EVENTS_PER_ROUND, PublishMode, Workload};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

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
    group.throughput(Throughput::Elements(EVENTS_PER_ROUND));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for concurrency in [1usize, 8] {
        let workload =
            runtime.block_on(Workload::start(Arc::new(MemoryBus::default()), concurrency));
        for mode in PublishMode::ALL {
            group.bench_function(
                BenchmarkId::new(mode.name(), format!("concurrency-{concurrency}")),
                |b| b.iter_custom(|rounds| workload.run(&runtime, mode, rounds)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
