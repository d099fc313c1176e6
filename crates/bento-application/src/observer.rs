//! Observers: told when each delivery of a subscription starts and how it ended, from outside
//! its whole stack, without wrapping it.
//!
//! A layer that only watches (metrics, a consumer span) could be written as a layer, but a
//! layer wraps the stack's future in one of its own: a boxed future per delivery, and a
//! subscription with any layer at all runs its retry policy as a layer too, a second one. An
//! observer is called by the dispatcher instead, before the stack and with the outcome it
//! settles, and costs neither. It sees what an outermost layer would: the final outcome (a
//! retry with its delay, a dead letter with its reason, a panic as a failure), once per
//! delivery.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;

use bento_domain::Envelope;
use futures::future::{BoxFuture, Either};
use tower_layer::Layer;
use tracing::Span;
use tracing::instrument::{Instrument as _, Instrumented};

use crate::{Context, EnvelopeHandler, Outcome};

/// What an observer keeps of one delivery from its start to its end.
#[derive(Debug)]
pub struct Observation {
    /// The span the delivery's stack runs in, entered whenever the stack is polled;
    /// [`Span::none`] for none.
    pub span: Span,
    /// A reading the observer takes at the start (a clock's, for a latency), handed back at
    /// the end.
    pub mark: u64,
}

impl Observation {
    /// An observation with no span.
    pub fn marked(mark: u64) -> Self {
        Self {
            span: Span::none(),
            mark,
        }
    }
}

/// Watches every delivery of a subscription: [`SubscriptionSpec::observe`](crate::SubscriptionSpec::observe)
/// installs one outside the whole stack. `bento-observability` counts and traces deliveries
/// this way; a service adds behaviour with a [layer](crate::layer) instead.
///
/// ```
/// # use std::sync::atomic::{AtomicU64, Ordering};
/// # use bento_application::{Context, DeliveryObserver, Observation, Outcome, SubscriptionSpec};
/// # use bento_application::domain::Envelope;
/// /// Counts the deliveries that ended in a dead letter.
/// #[derive(Default)]
/// struct DeadLetters(AtomicU64);
///
/// impl DeliveryObserver for DeadLetters {
///     fn started(&self, _ctx: &Context) -> Observation {
///         Observation::marked(0)
///     }
///
///     fn finished(&self, _envelope: &Envelope, _observation: Observation, outcome: Option<&Outcome>) {
///         if matches!(outcome, Some(Outcome::DeadLetter { .. })) {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let spec = SubscriptionSpec::event_type("orders.order-placed", "billing")
///     .observe(DeadLetters::default());
/// ```
pub trait DeliveryObserver: Send + Sync + 'static {
    /// A delivery of `ctx` starts: called before the stack's outermost layer is.
    fn started(&self, ctx: &Context) -> Observation;

    /// The delivery of `envelope` ended with `outcome`, the one the dispatcher settles; `None`
    /// when it was abandoned (the subscription stopped waiting for it, or a layer outside the
    /// panic layer panicked).
    fn finished(&self, envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>);
}

impl<T: DeliveryObserver + ?Sized> DeliveryObserver for Arc<T> {
    fn started(&self, ctx: &Context) -> Observation {
        (**self).started(ctx)
    }

    fn finished(&self, envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>) {
        (**self).finished(envelope, observation, outcome);
    }
}

/// An observer as a layer: where the dispatcher calls a subscription's first observer from
/// outside the whole stack, this one sits wherever it is stacked, and costs the boxed future
/// per delivery any layer does. [`SubscriptionSpec::observe`](crate::SubscriptionSpec::observe)
/// puts a second observer in this way, just outside the subscription's layers;
/// `bento-observability`'s `MetricsLayer` and `TraceLayer` are observers stacked this way.
///
/// Stacked outside the retry layer (any service or subscription layer is), it sees final
/// outcomes, once per delivery, as the subscription's observer does.
#[derive(Clone)]
pub struct ObserverLayer {
    observer: Arc<dyn DeliveryObserver>,
}

impl ObserverLayer {
    /// A layer telling `observer` of every delivery that passes through it.
    pub fn new(observer: impl DeliveryObserver) -> Self {
        Self::shared(Arc::new(observer))
    }

    /// A layer telling an observer shared with others.
    pub fn shared(observer: Arc<dyn DeliveryObserver>) -> Self {
        Self { observer }
    }
}

impl std::fmt::Debug for ObserverLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ObserverLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            observer: self.observer.clone(),
        }
    }
}

/// A handler stack watched by an [`ObserverLayer`].
pub struct Observed<S> {
    inner: S,
    observer: Arc<dyn DeliveryObserver>,
}

impl<S> std::fmt::Debug for Observed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl<S: EnvelopeHandler> EnvelopeHandler for Observed<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let mut watch = Watch::start(self.observer.clone(), ctx.shared_envelope().clone(), &ctx);
        let handling = in_span(watch.span(), || self.inner.handle(ctx));
        let handling = instrumented(watch.span(), handling);
        Box::pin(async move {
            let outcome = handling.await;
            watch.finish(&outcome);
            outcome
        })
    }
}

/// Runs `f` in `span`, if there is one.
pub(crate) fn in_span<T>(span: Option<&Span>, f: impl FnOnce() -> T) -> T {
    match span {
        Some(span) => span.in_scope(f),
        None => f(),
    }
}

/// `future`, polled in `span` if there is one (no future of its own otherwise).
pub(crate) fn instrumented<F: Future>(
    span: Option<&Span>,
    future: F,
) -> Either<Instrumented<F>, F> {
    match span {
        Some(span) => Either::Left(future.instrument(span.clone())),
        None => Either::Right(future),
    }
}

/// One delivery being watched: ends with the outcome, or as abandoned if dropped before.
/// Holds the observer and the envelope as `O` and `E`: owned by a layer's future, borrowed by
/// the dispatcher's.
pub(crate) struct Watch<O: Borrow<dyn DeliveryObserver>, E: Borrow<Envelope>> {
    observer: O,
    envelope: E,
    observation: Option<Observation>,
}

impl<O: Borrow<dyn DeliveryObserver>, E: Borrow<Envelope>> Watch<O, E> {
    /// Tells `observer` that the delivery of `ctx` (whose envelope `envelope` is) starts.
    pub(crate) fn start(observer: O, envelope: E, ctx: &Context) -> Self {
        let observation = observer.borrow().started(ctx);
        Self {
            observer,
            envelope,
            observation: Some(observation),
        }
    }

    /// The span the stack runs in, if the observer made one.
    pub(crate) fn span(&self) -> Option<&Span> {
        self.observation
            .as_ref()
            .map(|observation| &observation.span)
            .filter(|span| !span.is_disabled())
    }

    /// Tells the observer how the delivery ended.
    pub(crate) fn finish(&mut self, outcome: &Outcome) {
        if let Some(observation) = self.observation.take() {
            self.observer
                .borrow()
                .finished(self.envelope.borrow(), observation, Some(outcome));
        }
    }
}

impl<O: Borrow<dyn DeliveryObserver>, E: Borrow<Envelope>> Drop for Watch<O, E> {
    fn drop(&mut self) {
        if let Some(observation) = self.observation.take() {
            self.observer
                .borrow()
                .finished(self.envelope.borrow(), observation, None);
        }
    }
}
