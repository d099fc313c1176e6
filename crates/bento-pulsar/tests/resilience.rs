//! The broker crashes in the middle of a stream: every publish that returned `Ok` is consumed
//! at least once, and the consumer resumes by itself.
//!
//! Kills the dev-env broker (`xtask dev-env kill pulsar`) and starts it again (`xtask dev-env
//! up pulsar`), so it holds the Pulsar broker lock exclusively: the other Pulsar test binaries
//! hold it shared and wait, and this one waits for them.

mod common;

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bento_application::{Context, HandlerError, MessageBus, PublishOptions, SubscriptionSpec};
use bento_domain::Envelope;
use bento_observability::readiness::ReadinessProbe;

const MESSAGES: usize = 10_000;
/// The broker is killed once this many publishes have been confirmed.
const KILL_AFTER: usize = 3_000;
/// Publishing tasks.
const PUBLISHERS: usize = 16;

/// Runs the dev-env xtask: `$BENTO_XTASK_BIN` (set by `cargo xtask test`), else the built
/// `target/debug/xtask`, else `cargo run -p xtask` in a target directory of its own (the
/// workspace's is locked by the `cargo test` running us).
fn xtask(args: &[&str]) {
    let root = common::workspace_root();
    let mut command = match std::env::var_os("BENTO_XTASK_BIN") {
        Some(bin) => Command::new(bin),
        None => {
            let built = bento_testkit::broker_lock::path("pulsar")
                .with_file_name("debug")
                .join("xtask");
            if built.exists() {
                Command::new(built)
            } else {
                let mut cargo =
                    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                let own_target: PathBuf =
                    bento_testkit::broker_lock::path("pulsar").with_file_name("xtask-for-tests");
                cargo
                    .args(["run", "--quiet", "-p", "xtask", "--target-dir"])
                    .arg(own_target)
                    .arg("--");
                cargo
            }
        }
    };
    let status = command
        .args(args)
        .current_dir(&root)
        .status()
        .unwrap_or_else(|e| panic!("running `xtask {}`: {e}", args.join(" ")));
    assert!(
        status.success(),
        "`xtask {}` failed with {status}",
        args.join(" ")
    );
}

/// Restarts the broker if the test ends (or panics) while it is down.
struct BrokerGuard {
    down: Arc<AtomicBool>,
    _lock: File,
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        if self.down.load(Ordering::SeqCst) {
            eprintln!("restarting the Pulsar broker the test left down");
            xtask(&["dev-env", "up", "pulsar"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_crash_loses_no_confirmed_message_and_the_consumer_resumes() {
    let lock = bento_testkit::broker_lock::open("pulsar");
    lock.lock()
        .expect("taking the Pulsar broker lock (exclusive)");
    let down = Arc::new(AtomicBool::new(false));
    let _guard = BrokerGuard {
        down: down.clone(),
        _lock: lock,
    };

    let mut config = common::config();
    config.operation_timeout_ms = 5_000;
    let bus = Arc::new(common::connect(config).await);
    let probe = ReadinessProbe::start(bus.clone()).await;
    probe.wait_for(200, Duration::from_secs(10)).await;
    let topic = common::unique("crash");

    let consumed: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (consumed, deliveries) = (consumed.clone(), deliveries.clone());
        move |ctx: Context| {
            let text = String::from_utf8_lossy(&ctx.envelope().payload).into_owned();
            let seq = text.parse::<usize>();
            deliveries.fetch_add(1, Ordering::Relaxed);
            if let (Ok(seq), Ok(mut consumed)) = (seq, consumed.lock()) {
                consumed.insert(seq);
            }
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let sub = bus
        .subscribe(
            SubscriptionSpec::topic(&topic, common::unique("survivor")).concurrency(8),
            Arc::new(handler),
        )
        .await
        .expect("subscribe");

    let confirmed = Arc::new(AtomicUsize::new(0));
    let failed_attempts = Arc::new(AtomicUsize::new(0));
    // Several publishers, each publishing the next number and retrying it until the broker
    // confirms it, so that a few publishes are in flight when the broker dies.
    let next = Arc::new(AtomicUsize::new(0));
    let stored: Arc<Mutex<Vec<usize>>> = Arc::default();
    let started = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (bus, topic, next, stored) = (bus.clone(), topic.clone(), next.clone(), stored.clone());
            let (confirmed, failed_attempts) = (confirmed.clone(), failed_attempts.clone());
            tokio::spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= MESSAGES {
                        return;
                    }
                    let deadline = Instant::now() + Duration::from_secs(240);
                    loop {
                        let envelope = Envelope::new("bento.it.crash", 1, "text/plain", seq.to_string().into_bytes());
                        match bus.publish(envelope, PublishOptions::default().to_topic(&topic)).await {
                            Ok(()) => break,
                            Err(error) => {
                                let failures = failed_attempts.fetch_add(1, Ordering::Relaxed) + 1;
                                if failures % 10 == 1 {
                                    eprintln!("publish {seq} failed ({failures} failures so far), retrying: {error}");
                                }
                                assert!(Instant::now() < deadline, "publish {seq} kept failing for 4 minutes: {error}");
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                        }
                    }
                    stored.lock().expect("stored list").push(seq);
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    while confirmed.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(
            !publishers.iter().any(|p| p.is_finished()),
            "a publisher stopped early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let consumed_before_kill = consumed.lock().map(|c| c.len()).unwrap_or(0);
    let killed_at = Instant::now();
    down.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(|| xtask(&["dev-env", "kill", "pulsar"]))
        .await
        .expect("kill");
    let confirmed_at_kill = confirmed.load(Ordering::Relaxed);
    // Readiness follows the broker: not ready within 10 s of its death, ready again once it is
    // back, with nothing in the service restarted.
    let noticed = probe.wait_for(503, Duration::from_secs(10)).await;
    eprintln!("/health/ready answered 503 {noticed:?} after the kill");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| xtask(&["dev-env", "up", "pulsar"]))
        .await
        .expect("up");
    down.store(false, Ordering::SeqCst);
    let recovered = probe.wait_for(200, Duration::from_secs(30)).await;
    eprintln!("/health/ready answered 200 again {recovered:?} after the broker was up");
    eprintln!(
        "broker killed after {confirmed_at_kill} confirmed publishes ({consumed_before_kill} consumed), back after {:?}",
        killed_at.elapsed()
    );

    for publisher in publishers {
        tokio::time::timeout(Duration::from_secs(300), publisher)
            .await
            .expect("the publishers finished within 5 minutes of the restart")
            .expect("publisher task");
    }
    let stored = stored.lock().expect("stored list").clone();
    eprintln!(
        "{} publishes confirmed after {:?}",
        stored.len(),
        started.elapsed()
    );
    assert_eq!(stored.len(), MESSAGES);
    assert!(
        failed_attempts.load(Ordering::Relaxed) > 0,
        "the crash was felt by the publisher"
    );

    let deadline = Instant::now() + Duration::from_secs(180);
    let missing = loop {
        let missing: Vec<usize> = {
            let consumed = consumed.lock().expect("consumed set");
            stored
                .iter()
                .copied()
                .filter(|seq| !consumed.contains(seq))
                .collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "{} confirmed message(s) never consumed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let after_restart: usize = stored
        .iter()
        .filter(|seq| **seq >= confirmed_at_kill + PUBLISHERS)
        .count();
    assert!(
        after_restart > 0,
        "messages were published after the restart"
    );
    eprintln!(
        "all {MESSAGES} confirmed messages consumed ({} deliveries, {} duplicates); {} failed publish attempts retried",
        deliveries.load(Ordering::Relaxed),
        deliveries.load(Ordering::Relaxed).saturating_sub(MESSAGES),
        failed_attempts.load(Ordering::Relaxed)
    );
    sub.shutdown().await.expect("shutdown");
    bus.close().await.expect("close");
}
