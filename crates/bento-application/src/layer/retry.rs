//! Retry: when a failed message comes back, and when it stops coming back.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tower_layer::Layer;

use super::panic;
use crate::{Context, EnvelopeHandler, FailureKind, HandlerError, Outcome, RetryPolicy};

/// Decides whether a failed delivery gets another attempt, and after how long.
///
/// [`RetryPolicy`] (exponential backoff with jitter and a cap on attempts) is the default;
/// implement this trait for anything else: retry only some errors, follow a schedule, ask a
/// circuit breaker.
///
/// ```
/// # use std::time::Duration;
/// # use bento_application::{HandlerError, layer::retry::Policy};
/// /// Three attempts, a fixed minute apart.
/// struct EveryMinute;
///
/// impl Policy for EveryMinute {
///     fn retry(&self, attempt: u32, _error: &HandlerError) -> Option<Duration> {
///         (attempt < 3).then_some(Duration::from_secs(60))
///     }
///     fn max_attempts(&self) -> Option<u32> {
///         Some(3)
///     }
/// }
/// ```
pub trait Policy: Send + Sync + 'static {
    /// The delay before the next attempt of a message whose attempt `attempt` (1 for the first
    /// delivery) failed with the retryable `error`; `None` when it gets no more attempts and
    /// goes to the dead-letter topic. [`HandlerError::requested_delay`] says when the handler
    /// asked to be tried again.
    fn retry(&self, attempt: u32, error: &HandlerError) -> Option<Duration>;

    /// The most attempts this policy ever allows, if it is bounded. Backends that prepare a
    /// topic per retry (Kafka's retry tiers) size them by it.
    fn max_attempts(&self) -> Option<u32> {
        None
    }
}

impl Policy for RetryPolicy {
    fn retry(&self, attempt: u32, error: &HandlerError) -> Option<Duration> {
        self.allows_retry_after(attempt).then(|| {
            error
                .requested_delay()
                .unwrap_or_else(|| self.backoff(attempt))
        })
    }

    fn max_attempts(&self) -> Option<u32> {
        Some(self.max_attempts)
    }
}

/// Applies a retry [`Policy`] to the outcomes of the handler inside: a retry gets the
/// policy's delay, or becomes a dead letter ([`FailureKind::RetriesExhausted`]) once the policy
/// allows no more attempts. Other outcomes pass unchanged.
#[derive(Clone)]
pub struct RetryLayer {
    policy: Arc<dyn Policy>,
    catch_panics: bool,
}

impl std::fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer")
            .field("max_attempts", &self.policy.max_attempts())
            .finish()
    }
}

impl RetryLayer {
    /// Retries per `policy`.
    pub fn new(policy: impl Policy) -> Self {
        Self::shared(Arc::new(policy))
    }

    /// Retries per a policy shared with other subscriptions.
    pub fn shared(policy: Arc<dyn Policy>) -> Self {
        Self {
            policy,
            catch_panics: false,
        }
    }

    /// This layer with a [`crate::layer::CatchPanicLayer`] fused inside it: one future per
    /// delivery instead of two. Every subscription's stack uses it.
    pub(crate) fn catching_panics(mut self) -> Self {
        self.catch_panics = true;
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy.clone(),
            catch_panics: self.catch_panics,
        }
    }
}

/// The handler a [`RetryLayer`] wraps around another.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<dyn Policy>,
    catch_panics: bool,
}

impl<S: EnvelopeHandler> EnvelopeHandler for Retry<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let attempt = ctx.attempt();
        let policy = self.policy.clone();
        if !self.catch_panics {
            let handling = self.inner.handle(ctx);
            return Box::pin(async move { decide(&*policy, attempt, handling.await) });
        }
        match panic::call(&self.inner, ctx) {
            Ok(handling) => {
                Box::pin(async move { decide(&*policy, attempt, panic::finish(handling).await) })
            }
            Err(panicked) => Box::pin(std::future::ready(decide(&*policy, attempt, panicked))),
        }
    }
}

/// What `policy` makes of the `outcome` of attempt `attempt`: a retry gets its delay, or
/// becomes a dead letter once no attempt is left; anything else stays as it is.
pub(crate) fn decide(policy: &dyn Policy, attempt: u32, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Retry { error, .. } => match policy.retry(attempt, &error) {
            Some(delay) => Outcome::Retry {
                error,
                after: Some(delay),
            },
            None => Outcome::DeadLetter {
                failure: FailureKind::RetriesExhausted,
                error,
            },
        },
        decided => decided,
    }
}
