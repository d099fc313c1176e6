//! The publishers of a scenario: each owns the keys `k` with `k % publishers == p` and
//! publishes their events in order, each one retried until the broker acknowledges it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bento_application::{Bus, PublishOptions};
use bento_domain::Envelope;
use bento_runtime::Bento;

use crate::report::Event;

/// How long one event may keep failing before its publisher gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// The publishers, and what they counted so far.
pub(crate) struct Publishing {
    pub(crate) acked: Arc<AtomicU64>,
    pub(crate) retries: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicBool>,
    pub(crate) acked_after_restart: Arc<AtomicU64>,
    restarted: Arc<AtomicBool>,
    acked_list: Arc<std::sync::Mutex<Vec<u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What one publisher counts into, shared with [`Publishing`].
#[derive(Clone)]
struct Counters {
    acked: Arc<AtomicU64>,
    retries: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    acked_after_restart: Arc<AtomicU64>,
    restarted: Arc<AtomicBool>,
    acked_list: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Publishing {
    /// Starts `publishers` tasks publishing `events` events to `topic` through `bento`'s bus.
    pub(crate) fn start(bento: &Bento, topic: &str, events: u64, publishers: u64) -> Self {
        let counters = Counters {
            acked: Arc::default(),
            retries: Arc::default(),
            failed: Arc::default(),
            acked_after_restart: Arc::default(),
            restarted: Arc::default(),
            acked_list: Arc::default(),
        };
        let tasks = (0..publishers)
            .map(|p| {
                let (bus, topic, counters) = (bento.bus(), topic.to_string(), counters.clone());
                tokio::spawn(async move {
                    let mut index = p;
                    while index < events {
                        if !publish_one(&bus, &topic, index, &counters).await {
                            counters.failed.store(true, Ordering::Relaxed);
                            return;
                        }
                        index += publishers;
                    }
                })
            })
            .collect();
        let Counters {
            acked,
            retries,
            failed,
            acked_after_restart,
            restarted,
            acked_list,
        } = counters;
        Self {
            acked,
            retries,
            failed,
            acked_after_restart,
            restarted,
            acked_list,
            tasks,
        }
    }

    /// From now on, acknowledged publishes count as after the broker's restart too.
    pub(crate) fn mark_restart(&self) {
        self.restarted.store(true, Ordering::Relaxed);
    }

    /// Whether every publisher finished.
    pub(crate) fn done(&self) -> bool {
        self.tasks.iter().all(|t| t.is_finished())
    }

    /// The indexes of the events the broker acknowledged.
    pub(crate) fn acked_events(&self) -> Vec<u64> {
        self.acked_list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Publishes event `index` until the broker acknowledges it (`true`) or it kept failing for
/// [`GIVE_UP_AFTER`] (`false`), counting retries and the acknowledgement.
async fn publish_one<C: bento_application::Codec>(
    bus: &Bus<C>,
    topic: &str,
    index: u64,
    counters: &Counters,
) -> bool {
    let event = Event { index };
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        let envelope = Envelope::new("bento.chaos.event", 1, "text/plain", event.payload())
            .with_aggregate("chaos", event.key().to_string())
            // A raw envelope has no ordering key unless given one (the typed bus sets the
            // aggregate id): without it, Kafka spreads a key's events over every partition.
            .with_ordering_key(event.key().to_string());
        match bus
            .publish_envelopes(vec![envelope], PublishOptions::default().to_topic(topic))
            .await
        {
            Ok(()) => break,
            Err(error) => {
                let n = counters.retries.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 50 == 1 {
                    eprintln!(
                        "    publish of event {index} failed ({n} failures so far), retrying: {error}"
                    );
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    counters
        .acked_list
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(index);
    counters.acked.fetch_add(1, Ordering::Relaxed);
    if counters.restarted.load(Ordering::Relaxed) {
        counters.acked_after_restart.fetch_add(1, Ordering::Relaxed);
    }
    true
}
