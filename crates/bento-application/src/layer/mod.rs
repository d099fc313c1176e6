//! Layers: behaviour added around a subscription's handler, tower style.
//!
//! A handler stack is a chain of [`EnvelopeHandler`]s, each a context in and an [`Outcome`]
//! out. A [`Layer`] (tower's trait) wraps one handler into another: it may look at the
//! message, call the inner handler or not, and change the outcome it returns. Retry, panic
//! catching, timeouts, deduplication, rate limits, metrics and tracing are all layers; the
//! dispatcher only keeps order, bounds concurrency and settles the outcome it gets.
//!
//! # Order
//!
//! The stack a subscription runs, from the outside in (the outer layer sees the message first
//! and the outcome last):
//!
//! 0. the subscription's observer ([`crate::SubscriptionSpec::observe`]), outside the stack
//!    rather than a layer of it: observability's tracing and metrics;
//! 1. the service's layers ([`crate::Bus::layer`], `Bento::builder().layer(..)`);
//! 2. the subscription's layers ([`crate::SubscriptionSpec::layer`]), in the order added;
//! 3. [`RetryLayer`] with the subscription's retry policy: a retryable failure gets its delay,
//!    or becomes a dead letter once attempts are exhausted;
//! 4. [`CatchPanicLayer`]: a panic becomes a retryable failure, here and nowhere else;
//! 5. [`TimeoutLayer`], if the subscription sets [`crate::SubscriptionSpec::timeout`];
//! 6. the handler: a typed handler, or a [`crate::Router`] and its routes' own layers.
//!
//! The observer and the layers above the retry layer see final outcomes (a retry with its delay, a dead letter
//! with its reason, a panic as a failure whose [`crate::HandlerError::is_panic`] is true),
//! exactly once per delivery. Layers below it see what the handler said.

mod crash;
mod dead_letter;
mod inbox;
pub(crate) mod panic;
mod rate_limit;
pub mod retry;
mod timeout;

use std::fmt;
use std::sync::Arc;

pub use crate::observer::{Observed, ObserverLayer};
pub use crash::{CrashGuard, CrashGuardLayer};
pub use dead_letter::{DeadLetterLayer, DeadLetterOnSight};
pub use inbox::{InboxLayer, InboxService};
pub use panic::{CatchPanic, CatchPanicLayer};
pub use rate_limit::{RateLimit, RateLimitLayer};
pub use retry::{Retry, RetryLayer};
pub use timeout::{Timeout, TimeoutLayer};
pub use tower_layer::{Layer, LayerFn, layer_fn};

use crate::EnvelopeHandler;

/// A handler behind a pointer, as layers wrap and return it.
pub type BoxHandler = Arc<dyn EnvelopeHandler>;

/// A service that a list of [`Layers`] can hold: a layer's output is boxed into `B` to fit.
pub trait IntoBoxed<B> {
    /// `self`, boxed.
    fn boxed(self) -> B;
}

impl<H: EnvelopeHandler> IntoBoxed<BoxHandler> for H {
    fn boxed(self) -> BoxHandler {
        Arc::new(self)
    }
}

/// A layer with its service type erased, so layers of different types fit in one list.
trait ErasedLayer<B>: Send + Sync + 'static {
    fn wrap(&self, inner: B) -> B;
    fn name(&self) -> &'static str;
}

impl<L, B> ErasedLayer<B> for L
where
    L: Layer<B> + Send + Sync + 'static,
    L::Service: IntoBoxed<B>,
{
    fn wrap(&self, inner: B) -> B {
        self.layer(inner).boxed()
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<L>()
    }
}

/// An ordered list of layers around handlers ([`BoxHandler`], the default) or publishers
/// ([`crate::BoxPublisher`]); the first added is the outermost.
///
/// ```
/// # use std::time::Duration;
/// # use bento_application::layer::{Layers, RateLimitLayer, TimeoutLayer};
/// let layers = Layers::new()
///     .layer(RateLimitLayer::new(100, Duration::from_secs(1)))
///     .layer(TimeoutLayer::new(Duration::from_secs(5)));
/// assert_eq!(layers.len(), 2);
/// ```
pub struct Layers<B = BoxHandler> {
    outermost_first: Vec<Arc<dyn ErasedLayer<B>>>,
}

impl<B> Clone for Layers<B> {
    fn clone(&self) -> Self {
        Self {
            outermost_first: self.outermost_first.clone(),
        }
    }
}

impl<B> Default for Layers<B> {
    fn default() -> Self {
        Self {
            outermost_first: Vec::new(),
        }
    }
}

impl<B: 'static> fmt::Debug for Layers<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.outermost_first.iter().map(|layer| layer.name()))
            .finish()
    }
}

impl<B: 'static> Layers<B> {
    /// No layers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `layer` inside the layers already there.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<B> + Send + Sync + 'static,
        L::Service: IntoBoxed<B>,
    {
        self.push(layer);
        self
    }

    /// Adds `layer` inside the layers already there.
    pub fn push<L>(&mut self, layer: L)
    where
        L: Layer<B> + Send + Sync + 'static,
        L::Service: IntoBoxed<B>,
    {
        self.outermost_first.push(Arc::new(layer));
    }

    /// Adds `layer` outside the layers already there.
    pub fn push_outermost<L>(&mut self, layer: L)
    where
        L: Layer<B> + Send + Sync + 'static,
        L::Service: IntoBoxed<B>,
    {
        self.outermost_first.insert(0, Arc::new(layer));
    }

    /// Puts `outer`'s layers outside these.
    pub fn wrapped_in(&mut self, outer: &Layers<B>) {
        if outer.is_empty() {
            return;
        }
        let inner = std::mem::replace(&mut self.outermost_first, outer.outermost_first.clone());
        self.outermost_first.extend(inner);
    }

    /// How many layers there are.
    pub fn len(&self) -> usize {
        self.outermost_first.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.outermost_first.is_empty()
    }

    /// `service` inside every layer, the first added outermost.
    pub fn wrap(&self, service: B) -> B {
        self.outermost_first
            .iter()
            .rev()
            .fold(service, |inner, layer| layer.wrap(inner))
    }
}
