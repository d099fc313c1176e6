//! Timeouts: a handler that takes too long fails, and is retried.

use std::time::Duration;

use futures::future::BoxFuture;
use tower_layer::Layer;

use crate::{Context, EnvelopeHandler, HandlerError, Outcome};

/// Gives the handler inside at most `deadline` per message; past it, the handler's future is
/// dropped and the delivery fails with a retryable error, so the retry policy decides what
/// comes next. Set it per subscription with [`crate::SubscriptionSpec::timeout`].
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    deadline: Duration,
}

impl TimeoutLayer {
    /// At most `deadline` per message.
    pub fn new(deadline: Duration) -> Self {
        Self { deadline }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            deadline: self.deadline,
        }
    }
}

/// The handler a [`TimeoutLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    deadline: Duration,
}

impl<S: EnvelopeHandler> EnvelopeHandler for Timeout<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let deadline = self.deadline;
        let handling = tokio::time::timeout(deadline, self.inner.handle(ctx));
        Box::pin(async move {
            handling.await.unwrap_or_else(|_| {
                Outcome::retry(HandlerError::retryable(format!(
                    "handler did not finish within {deadline:?}"
                )))
            })
        })
    }
}
