//! The broker is killed and restarted in the middle of a 10,000-record stream: every publish
//! the broker acknowledged is consumed at least once.
//!
//! Holds the broker lock exclusively (the other Kafka test binaries hold it shared), so it never
//! kills the broker under another test binary's feet.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bento_application::{Bus, Context, HandlerError, MessageBus, PublishOptions, SubscriptionSpec};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_observability::readiness::ReadinessProbe;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reading {
    n: u32,
}

impl DomainEvent for Reading {
    const EVENT_TYPE: &'static str = "bento.kafka-test.reading";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "sensor";
    fn aggregate_id(&self) -> String {
        format!("sensor-{}", self.n % 32)
    }
}

/// Runs `xtask dev-env <args>` from the workspace root: the binary `cargo xtask test` names in
/// `BENTO_XTASK_BIN`, else an already built one, else `cargo xtask`.
fn xtask(args: &[&str]) {
    let root = common::workspace_root();
    let built = root.join("target").join("debug").join("xtask");
    let mut command = match std::env::var_os("BENTO_XTASK_BIN").map(PathBuf::from) {
        Some(bin) => Command::new(bin),
        None if built.is_file() => Command::new(built),
        None => {
            let mut cargo =
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cargo.arg("xtask");
            cargo
        }
    };
    let output = command
        .arg("dev-env")
        .args(args)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("running xtask dev-env {args:?}: {e}"));
    assert!(
        output.status.success(),
        "xtask dev-env {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_stream_loses_nothing_acknowledged() {
    common::own_broker();
    let mut config = common::config();
    // Long enough for librdkafka to hold records through the outage and deliver them after.
    config.delivery_timeout_ms = 180_000;
    let kafka: Arc<dyn MessageBus> = Arc::new(common::connect(config).await);
    let probe = ReadinessProbe::start(kafka.clone()).await;
    probe.wait_for(200, Duration::from_secs(10)).await;
    let bus = Bus::new(kafka, Json);
    let topic = common::unique("resilience");

    let seen: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (seen, handled) = (seen.clone(), handled.clone());
        move |ctx: Context| {
            let (seen, handled) = (seen.clone(), handled.clone());
            async move {
                let reading: Reading = serde_json::from_slice(&ctx.envelope().payload)
                    .map_err(HandlerError::undecodable)?;
                if let Ok(mut seen) = seen.lock() {
                    seen.insert(reading.n);
                }
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(&topic, common::unique("group")).concurrency(8),
            handler,
        )
        .await
        .expect("subscribe");

    let total = 10_000u32;
    let acked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (bus, topic, acked, failed) =
            (bus.clone(), topic.clone(), acked.clone(), failed.clone());
        tokio::spawn(async move {
            let numbers: Vec<u32> = (0..total).collect();
            for chunk in numbers.chunks(100) {
                let sends = chunk.iter().map(|&n| {
                    let bus = bus.clone();
                    let topic = topic.clone();
                    async move {
                        let result = bus
                            .publish_with(
                                &Reading { n },
                                PublishOptions::default().to_topic(&topic),
                            )
                            .await;
                        (n, result)
                    }
                });
                for (n, result) in futures::future::join_all(sends).await {
                    match result {
                        Ok(_) => {
                            if let Ok(mut acked) = acked.lock() {
                                acked.push(n);
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                // Spread the stream over some seconds, so the outage falls in its middle.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let acked_count = || acked.lock().map(|a| a.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_count() < 3_000 {
        assert!(
            Instant::now() < deadline,
            "3,000 publishes not acknowledged in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_kill = handled.load(Ordering::SeqCst);
    tokio::task::spawn_blocking(|| xtask(&["kill", "kafka"]))
        .await
        .expect("kill");
    // Readiness follows the broker: not ready within 10 s of its death, ready again once it is
    // back, with nothing in the service restarted.
    let noticed = probe.wait_for(503, Duration::from_secs(10)).await;
    eprintln!("/health/ready answered 503 {noticed:?} after the kill");
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(|| xtask(&["up", "kafka"]))
        .await
        .expect("up");
    let recovered = probe.wait_for(200, Duration::from_secs(30)).await;
    eprintln!("/health/ready answered 200 again {recovered:?} after the broker was up");
    publisher.await.expect("publisher");

    let acked: HashSet<u32> = acked
        .lock()
        .map(|a| a.iter().copied().collect())
        .unwrap_or_default();
    assert!(
        acked.len() > 3_000,
        "publishing went on after the restart: {} acknowledged",
        acked.len()
    );
    let missing = || -> Vec<u32> {
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut missing: Vec<u32> = acked.difference(&seen).copied().collect();
        missing.sort_unstable();
        missing
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !missing().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing = missing();
    println!(
        "acknowledged {} of {total} (failed {}), handled {} (before the kill {before_kill}), missing {}",
        acked.len(),
        failed.load(Ordering::SeqCst),
        handled.load(Ordering::SeqCst),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged records never consumed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    sub.shutdown().await.expect("shutdown");
}
