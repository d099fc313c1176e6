use std::sync::Arc;
use std::time::{Duration, Instant};

use bento_application::{Context, HandlerError, MessageBus, Subscription, SubscriptionSpec};
use bento_domain::Envelope;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// One message a [`Collector`] saw.
#[derive(Clone, Debug)]
pub struct Collected {
    /// The envelope.
    pub envelope: Envelope,
    /// Its delivery attempt.
    pub attempt: u32,
    /// When it arrived.
    pub at: Instant,
}

/// Records what a subscription receives, so a test can wait for it and inspect it.
#[derive(Clone, Default)]
pub struct Collector {
    seen: Arc<Mutex<Vec<Collected>>>,
    changed: Arc<Notify>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one message.
    pub fn record(&self, ctx: &Context) {
        let item = Collected {
            envelope: ctx.envelope().clone(),
            attempt: ctx.attempt(),
            at: Instant::now(),
        };
        self.seen.lock().push(item);
        self.changed.notify_waiters();
    }

    /// A handler that records every message and succeeds.
    pub fn handler(
        &self,
    ) -> impl Fn(Context) -> futures::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
    {
        let collector = self.clone();
        move |ctx: Context| {
            collector.record(&ctx);
            futures::future::ready(Ok(()))
        }
    }

    /// Subscribes a new collector to `bus` with `spec`, returning both. Panics, naming the
    /// subscription and the bus's error, if the bus refuses it.
    pub async fn subscribe(
        bus: &dyn MessageBus,
        spec: SubscriptionSpec,
    ) -> (Collector, Subscription) {
        let collector = Collector::new();
        let name = spec.name.clone();
        let subscription = bus
            .subscribe(spec, Arc::new(collector.handler()))
            .await
            .unwrap_or_else(|e| panic!("subscribing `{name}`: {e}"));
        (collector, subscription)
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Collected> {
        self.seen.lock().clone()
    }

    /// How many messages were seen.
    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.lock().is_empty()
    }

    /// Waits until at least `count` messages were seen, or panics after `patience` with what
    /// was seen.
    pub async fn wait_for(&self, count: usize, patience: Duration) -> Vec<Collected> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.changed.notified();
            let seen = self.len();
            if seen >= count {
                return self.seen();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let now = self.len();
                if now >= count {
                    return self.seen();
                }
                panic!("expected {count} message(s) within {patience:?}, got {now}");
            }
        }
    }
}
