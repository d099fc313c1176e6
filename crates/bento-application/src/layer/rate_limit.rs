//! Rate limits: at most so many messages per period reach the handler.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::time::Instant;
use tower_layer::Layer;

use crate::{Context, EnvelopeHandler, Outcome};

/// Lets at most `count` messages per `period` into the handler inside, evenly spaced (a
/// message waits for its slot; it is not failed), so a subscription does not overrun a
/// downstream API. One layer value is one budget: every subscription it is added to shares it.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    budget: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    interval: Duration,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimitLayer {
    /// At most `count` messages per `period` (`count` of 0 counts as 1).
    pub fn new(count: u32, period: Duration) -> Self {
        Self {
            budget: Arc::new(Budget {
                interval: period / count.max(1),
                next_free: Mutex::new(None),
            }),
        }
    }
}

impl Budget {
    /// Reserves the next free slot and returns when it starts.
    fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut next_free = self.next_free.lock();
        let slot = next_free.map_or(now, |free| free.max(now));
        *next_free = Some(slot + self.interval);
        slot
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner: Arc::new(inner),
            budget: self.budget.clone(),
        }
    }
}

/// The handler a [`RateLimitLayer`] wraps around another.
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: Arc<S>,
    budget: Arc<Budget>,
}

impl<S: EnvelopeHandler> EnvelopeHandler for RateLimit<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let slot = self.budget.reserve();
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::time::sleep_until(slot).await;
            inner.handle(ctx).await
        })
    }
}
