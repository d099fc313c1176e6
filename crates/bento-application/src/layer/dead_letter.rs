//! Dead letters on sight: failures that no retry can cure skip the retries.

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tower_layer::Layer;

use crate::{Context, EnvelopeHandler, FailureKind, HandlerError, Outcome};

/// Sends the failures `poison` picks straight to the dead-letter topic (as
/// [`FailureKind::Permanent`]), whatever the retry policy would have done: an error type the
/// handler's dependencies raise for bad data, a message from a tenant that was deleted. Other
/// outcomes pass unchanged. It works at any place in the stack; among a subscription's layers
/// it overrides the retry decision.
///
/// ```
/// # use bento_application::layer::DeadLetterLayer;
/// # use bento_application::SubscriptionSpec;
/// let spec = SubscriptionSpec::named("billing").layer(DeadLetterLayer::when(|error| {
///     error.source().is_some_and(|source| source.is::<std::num::ParseIntError>())
/// }));
/// ```
#[derive(Clone)]
pub struct DeadLetterLayer {
    poison: Arc<dyn Fn(&HandlerError) -> bool + Send + Sync>,
}

impl std::fmt::Debug for DeadLetterLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterLayer").finish_non_exhaustive()
    }
}

impl DeadLetterLayer {
    /// Dead-letters at once every retryable failure for which `poison` says `true`.
    pub fn when(poison: impl Fn(&HandlerError) -> bool + Send + Sync + 'static) -> Self {
        Self {
            poison: Arc::new(poison),
        }
    }
}

impl<S> Layer<S> for DeadLetterLayer {
    type Service = DeadLetterOnSight<S>;

    fn layer(&self, inner: S) -> DeadLetterOnSight<S> {
        DeadLetterOnSight {
            inner,
            poison: self.poison.clone(),
        }
    }
}

/// The handler a [`DeadLetterLayer`] wraps around another.
pub struct DeadLetterOnSight<S> {
    inner: S,
    poison: Arc<dyn Fn(&HandlerError) -> bool + Send + Sync>,
}

impl<S: EnvelopeHandler> EnvelopeHandler for DeadLetterOnSight<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let poison = self.poison.clone();
        Box::pin(self.inner.handle(ctx).map(move |outcome| match outcome {
            Outcome::Retry { error, .. } if poison(&error) => Outcome::DeadLetter {
                failure: FailureKind::Permanent,
                error,
            },
            other => other,
        }))
    }
}
