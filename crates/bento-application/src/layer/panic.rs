//! Panics: a handler that panics fails like one that returned a retryable error.

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tower_layer::Layer;

use crate::{Context, EnvelopeHandler, HandlerError, Outcome};

/// Turns a panic of the handler inside into [`Outcome::Retry`] with an error whose
/// [`HandlerError::is_panic`] is true, so the retry policy and the dead-letter topic treat it
/// like any other failure and the consumer keeps running. Every subscription has one, right
/// inside its retry layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The handler a [`CatchPanicLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S: EnvelopeHandler> EnvelopeHandler for CatchPanic<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        match call(&self.inner, ctx) {
            Ok(handling) => Box::pin(finish(handling)),
            Err(outcome) => Box::pin(std::future::ready(outcome)),
        }
    }
}

/// Calls `inner`, which may panic right away (decoding, a synchronous prelude): the panic is
/// then the outcome.
pub(crate) fn call<S: EnvelopeHandler + ?Sized>(
    inner: &S,
    ctx: Context,
) -> Result<BoxFuture<'static, Outcome>, Outcome> {
    std::panic::catch_unwind(AssertUnwindSafe(|| inner.handle(ctx)))
        .map_err(|panic| panicked(&*panic))
}

/// Runs a handler's future to its outcome; a panic while it runs is the outcome instead.
pub(crate) async fn finish(handling: BoxFuture<'static, Outcome>) -> Outcome {
    AssertUnwindSafe(handling)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| panicked(&*panic))
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> Outcome {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    Outcome::retry(HandlerError::panicked(detail))
}
