//! The dispatcher: the engine behind every subscription, whatever the backend.
//!
//! A backend turns its consumer into a stream of [`Delivery`]s, each with a [`Settle`] that
//! knows how to acknowledge, retry or dead-letter that message on that broker, and calls
//! [`spawn`]. The dispatcher then:
//! - runs the subscription's handler stack (its layers, retry, panic catching, timeout, the
//!   handler: see [`crate::layer`]) on each message;
//! - runs up to `concurrency` handlers at once, but never two messages with the same ordering
//!   key at once, and those in arrival order;
//! - settles each message as the stack's [`Outcome`] says: acknowledges it, asks the backend
//!   to redeliver it after the delay, or dead-letters it with the reason, without holding up
//!   other messages;
//! - on shutdown stops pulling, lets in-flight handlers finish and releases the rest.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Ready;
use std::hash::BuildHasher as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bento_domain::Envelope;
use futures::future::{BoxFuture, Either};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tracing::Span;

use crate::layer::panic;
use crate::layer::retry::{self, Policy};
use crate::layer::{BoxHandler, Layer, Layers, RetryLayer, TimeoutLayer};
use crate::observer::{Watch, in_span, instrumented};
use crate::subscription::{Closer, SettleFailureHook};
use crate::{
    BusError, Context, DeadLetter, DeadLetterPolicy, DeliveryObserver, EnvelopeHandler, Outcome,
    Subscription, SubscriptionSpec, wire,
};

/// One message handed to the dispatcher by a backend.
pub struct Delivery {
    /// The message (shared, so a backend's [`Settle`] can keep it for a redelivery).
    pub envelope: Arc<Envelope>,
    /// 1 on first delivery; counts every redelivery and retry.
    pub attempt: u32,
    /// How to settle it on the broker.
    pub settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.envelope.id)
            .field("event_type", &self.envelope.event_type)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// How a backend settles one message. Exactly one method is called, once.
///
/// Every method must keep the at-least-once promise: e.g. `retry` and `dead_letter` store the
/// new message before acknowledging the original, so a crash in between means a redelivery,
/// never a loss.
#[async_trait]
pub trait Settle: Send + 'static {
    /// The handler succeeded: the message is done.
    ///
    /// Not async: a backend hands the acknowledgement to its consumer and returns (any broker
    /// round trip happens behind it), so the path every handled message takes builds no future.
    fn ack(self: Box<Self>) -> Result<(), BusError>;

    /// The handler failed and may succeed later: deliver `envelope` again as attempt
    /// `next_attempt`, not before `delay` has passed.
    async fn retry(
        self: Box<Self>,
        envelope: &Envelope,
        next_attempt: u32,
        delay: Duration,
    ) -> Result<(), BusError>;

    /// The message cannot be handled: store `dead_letter` (the original plus failure headers)
    /// on `topic`, then settle the original.
    async fn dead_letter(
        self: Box<Self>,
        dead_letter: Envelope,
        topic: &str,
    ) -> Result<(), BusError>;

    /// The message was not handled (shutdown, or it is no longer this consumer's): give it
    /// back for redelivery.
    async fn release(self: Box<Self>) -> Result<(), BusError>;

    /// The broker's own id for the message, kept on dead letters. Asked only when a message
    /// is dead-lettered, so a backend formats it then and not for every delivery.
    fn broker_id(&self) -> Option<String> {
        None
    }

    /// Whether the message may still be handled here. A backend whose consumer lost the
    /// message's partition since delivering it (a Kafka rebalance) answers `false`: the
    /// dispatcher then releases it unhandled, and the partition's new owner handles it.
    fn is_current(&self) -> bool {
        true
    }
}

/// Settings of one running dispatcher, taken from the subscription's spec.
#[derive(Clone)]
pub struct DispatchSettings {
    /// The topic read, as the backend names it.
    pub topic: Arc<str>,
    /// The subscription name.
    pub subscription: Arc<str>,
    /// Most handlers at once.
    pub concurrency: usize,
    /// Dead-letter policy.
    pub dead_letter: DeadLetterPolicy,
    /// The dead-letter topic, as the backend names it.
    pub dead_letter_topic: String,
    /// The layers, retry policy and timeout the handler runs in.
    stack: Stack,
    /// Told of every message that could not be settled.
    on_settle_failure: Option<SettleFailureHook>,
    /// Told of every delivery and its outcome, from outside the stack.
    observer: Option<Arc<dyn DeliveryObserver>>,
}

impl std::fmt::Debug for DispatchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchSettings")
            .field("topic", &self.topic)
            .field("subscription", &self.subscription)
            .field("concurrency", &self.concurrency)
            .field("dead_letter", &self.dead_letter)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("stack", &self.stack)
            .finish_non_exhaustive()
    }
}

/// What the dispatcher wraps around the handler.
#[derive(Clone)]
struct Stack {
    layers: Layers,
    retry: Arc<dyn Policy>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("layers", &self.layers)
            .field("max_attempts", &self.retry.max_attempts())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Stack {
    /// Whether `process` applies the retry policy and catches panics itself, rather than a
    /// retry layer in the stack: when no layer sits outside retry to see its decisions, which
    /// saves a boxed future per message. `DispatchSettings::wrap` and `process` both ask here.
    fn retries_in_dispatcher(&self) -> bool {
        self.layers.is_empty()
    }
}

impl DispatchSettings {
    /// The settings of a subscription per `spec`, reading `topic` and dead-lettering to
    /// `dead_letter_topic` (both as the backend names them).
    pub fn new(topic: &str, spec: SubscriptionSpec, dead_letter_topic: String) -> Self {
        Self {
            topic: topic.into(),
            subscription: spec.name.into(),
            concurrency: spec.concurrency.max(1),
            dead_letter: spec.dead_letter,
            dead_letter_topic,
            stack: Stack {
                layers: spec.layers,
                retry: spec.retry,
                timeout: spec.timeout,
            },
            on_settle_failure: spec.on_settle_failure,
            observer: spec.observer,
        }
    }

    /// `handler` in the subscription's stack: its layers, then retry, panic catching and the
    /// timeout, the handler innermost.
    fn wrap(&self, handler: BoxHandler) -> BoxHandler {
        let Stack {
            layers,
            retry,
            timeout,
        } = &self.stack;
        let handler = match timeout {
            Some(deadline) => Arc::new(TimeoutLayer::new(*deadline).layer(handler)),
            None => handler,
        };
        if self.stack.retries_in_dispatcher() {
            return handler;
        }
        // Retry with panic catching inside it, in one future (`CatchPanicLayer` fused in).
        let handler = Arc::new(
            RetryLayer::shared(retry.clone())
                .catching_panics()
                .layer(handler),
        );
        layers.wrap(handler)
    }
}

/// Starts dispatching `deliveries` to `handler`; `closer` runs after the dispatcher stopped.
pub fn spawn<S>(
    deliveries: S,
    handler: Arc<dyn EnvelopeHandler>,
    settings: DispatchSettings,
    closer: Option<Closer>,
) -> Subscription
where
    S: Stream<Item = Delivery> + Send + Unpin + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let name = settings.subscription.to_string();
    let handler = settings.wrap(handler);
    let task = tokio::spawn(async move {
        run(deliveries, handler, Arc::new(settings), stop_rx).await;
        done_tx.send_replace(true);
    });
    Subscription::new(name, stop_tx, done_rx, task, closer)
}

/// Messages that may wait, received but not started, behind a busy key, per unit of
/// concurrency; beyond that the dispatcher stops pulling until keys free up.
const QUEUED_PER_SLOT: usize = 64;

async fn run<S>(
    deliveries: S,
    handler: Arc<dyn EnvelopeHandler>,
    settings: Arc<DispatchSettings>,
    mut stop: watch::Receiver<bool>,
) where
    S: Stream<Item = Delivery> + Unpin,
{
    let seen = stop.clone();
    // Built once: re-creating a watch future on every message costs more than handling it.
    let stop_requested = async move {
        while stop.changed().await.is_ok() {
            if *stop.borrow() {
                return;
            }
        }
        // The stop signal is gone without a stop: run on until the stream ends.
        std::future::pending::<()>().await;
    };
    tokio::pin!(stop_requested);
    let stop = StopRequest {
        requested: stop_requested,
        seen,
    };
    if settings.concurrency <= 1 {
        run_one_at_a_time(deliveries, handler, settings, stop).await;
    } else {
        run_concurrently(deliveries, handler, settings, stop).await;
    }
}

/// A subscription's stop request, as the dispatch loops watch it.
struct StopRequest<'a, F> {
    /// Completes once a stop is requested. Polled only when there is nothing else to do: each
    /// poll of a waiting watch future takes the signal's lock, once per message when it was
    /// polled between messages.
    requested: std::pin::Pin<&'a mut F>,
    /// The same signal, looked at between messages by its version (an atomic load).
    seen: watch::Receiver<bool>,
}

impl<F> StopRequest<'_, F> {
    /// Whether a stop was requested since the last look.
    fn came(&mut self) -> bool {
        matches!(self.seen.has_changed(), Ok(true)) && *self.seen.borrow_and_update()
    }
}

/// One at a time: each message is handled inline, without the bookkeeping of the concurrent
/// path. Order is arrival order; a stop request is seen between messages.
async fn run_one_at_a_time<S, F>(
    mut deliveries: S,
    handler: Arc<dyn EnvelopeHandler>,
    settings: Arc<DispatchSettings>,
    mut stop: StopRequest<'_, F>,
) where
    S: Stream<Item = Delivery> + Unpin,
    F: std::future::Future<Output = ()>,
{
    loop {
        if stop.came() {
            return;
        }
        tokio::select! {
            biased;
            next = deliveries.next() => match next {
                Some(delivery) => {
                    process(delivery, handler.clone(), settings.clone(), None).await;
                }
                None => return,
            },
            () = &mut stop.requested => return,
        }
    }
}

/// Up to `concurrency` handlers at once, never two of one ordering key, each key's messages
/// in arrival order.
async fn run_concurrently<S, F>(
    mut deliveries: S,
    handler: Arc<dyn EnvelopeHandler>,
    settings: Arc<DispatchSettings>,
    mut stop: StopRequest<'_, F>,
) where
    S: Stream<Item = Delivery> + Unpin,
    F: std::future::Future<Output = ()>,
{
    let concurrency = settings.concurrency;
    let max_queued = concurrency * QUEUED_PER_SLOT;
    let mut in_flight = FuturesUnordered::new();
    // Keys with a handler in flight, and the messages waiting behind it in arrival order.
    // Keyed by a hash of the ordering key: no copy of the key per message. Two keys that
    // collide (64 bits) are merely serialized together, never reordered, so a fast seeded
    // hash serves (SipHash was a percent of a Kafka consumer's time).
    let key_hasher = foldhash::fast::RandomState::default();
    let mut busy: HashMap<u64, VecDeque<Delivery>, _> =
        HashMap::with_hasher(foldhash::fast::RandomState::default());
    let mut queued = 0usize;
    let mut stopping = false;
    let mut source_done = false;
    loop {
        if !stopping && stop.came() {
            stopping = true;
        }
        let can_pull =
            !stopping && !source_done && in_flight.len() < concurrency && queued < max_queued;
        if in_flight.is_empty() && !can_pull {
            break;
        }
        tokio::select! {
            biased;
            Some(key) = in_flight.next(), if !in_flight.is_empty() => {
                let Some(key) = key else { continue };
                let Entry::Occupied(mut waiting) = busy.entry(key) else { continue };
                match waiting.get_mut().pop_front() {
                    Some(next) if !stopping => {
                        queued -= 1;
                        in_flight.push(Box::pin(process(next, handler.clone(), settings.clone(), Some(key))));
                    }
                    Some(next) => {
                        queued -= 1;
                        waiting.get_mut().push_front(next);
                    }
                    None => {
                        waiting.remove();
                    }
                }
            },
            next = deliveries.next(), if can_pull => match next {
                None => source_done = true,
                Some(delivery) => {
                    let key = delivery.envelope.ordering_key.as_ref().map(|k| key_hasher.hash_one(k));
                    if let Some(waiting) = key.and_then(|key| busy.get_mut(&key)) {
                        waiting.push_back(delivery);
                        queued += 1;
                    } else {
                        // Polled once here first: a handler that finishes without waiting
                        // (one that counts, maps or writes to memory) is settled before it
                        // ever joins `in_flight`, which would cost it a task of its own, a
                        // wake-up and a second turn of this loop. One that waits joins it and
                        // is polled there again, with its own waker.
                        let mut handling =
                            Box::pin(process(delivery, handler.clone(), settings.clone(), key));
                        if futures::poll!(handling.as_mut()).is_pending() {
                            if let Some(key) = key {
                                busy.insert(key, VecDeque::new());
                            }
                            in_flight.push(handling);
                        }
                    }
                }
            },
            () = &mut stop.requested, if !stopping => stopping = true,
        }
    }
    for delivery in busy.into_values().flatten() {
        if let Err(error) = delivery.settle.release().await {
            tracing::warn!(%error, subscription = %settings.subscription, "could not release a message at shutdown; it will be redelivered");
        }
    }
}

/// Handles one delivery and settles it; yields back the hash of its ordering key, if it is
/// tracked, so the next message with that key can start.
///
/// Its future is allocated for every message, so every ending (ack, retry, dead letter, a
/// panic outside the stack) comes down to one settle future before the single await that
/// settles it: what only some messages need is not kept across that await, and the future
/// stays small.
async fn process(
    delivery: Delivery,
    handler: Arc<dyn EnvelopeHandler>,
    settings: Arc<DispatchSettings>,
    key: Option<u64>,
) -> Option<u64> {
    let Delivery {
        envelope,
        attempt,
        settle,
    } = delivery;
    if !settle.is_current() {
        tracing::debug!(message_id = %envelope.id, "message no longer this consumer's; released unhandled");
        if let Err(error) = settle.release().await {
            tracing::debug!(%error, "releasing a message that is no longer this consumer's failed");
        }
        return key;
    }
    let ctx = Context::new(
        envelope.clone(),
        attempt,
        settings.topic.clone(),
        settings.subscription.clone(),
    );
    // Watched from outside the whole stack; dropped unfinished, the delivery was abandoned.
    let mut watch = settings
        .observer
        .as_deref()
        .map(|observer| Watch::start(observer, &*envelope, &ctx));
    let stack = &settings.stack;
    let settling = if stack.retries_in_dispatcher() {
        // The handler as `DispatchSettings::wrap` left it: without the retry layer, applied
        // here, panics caught as that layer does.
        let handling = in_span(span_of(&watch), || panic::call(&*handler, ctx))
            .unwrap_or_else(|panicked| Box::pin(std::future::ready(panicked)));
        let handled = instrumented(span_of(&watch), panic::finish(handling)).await;
        let outcome = retry::decide(&*stack.retry, attempt, handled);
        if let Some(watch) = &mut watch {
            watch.finish(&outcome);
        }
        settlement(outcome, settle, &envelope, attempt, &settings)
    } else {
        // The stack's panic layer turns a handler's panic into an outcome. A layer outside it
        // that panics has no outcome to give: the message goes back to the broker, the
        // consumer lives on.
        let handling = in_span(span_of(&watch), || AssertUnwindSafe(handler.handle(ctx)));
        match instrumented(span_of(&watch), handling.catch_unwind()).await {
            Ok(outcome) => {
                if let Some(watch) = &mut watch {
                    watch.finish(&outcome);
                }
                settlement(outcome, settle, &envelope, attempt, &settings)
            }
            Err(_) => {
                drop(watch.take());
                tracing::error!(message_id = %envelope.id, subscription = %settings.subscription, "a layer outside the panic layer panicked; message released for redelivery");
                // A release that fails is only logged, as it was: the hook is told of failed
                // settlements (a retry, dead letter or acknowledgement not stored or sent).
                Settling::Right(Box::pin(async move {
                    if let Err(error) = settle.release().await {
                        tracing::warn!(%error, "could not release the message; the broker will redeliver it");
                    }
                    Ok(())
                }))
            }
        }
    };
    let settled = settling.await;
    if let Err(error) = settled {
        tracing::warn!(message_id = %envelope.id, %error, "could not settle message; the broker will redeliver it");
        if let Some(hook) = &settings.on_settle_failure {
            hook(&error);
        }
    }
    key
}

/// A delivery watched by its subscription's observer, the observer and envelope borrowed.
type Watching<'a> = Watch<&'a dyn DeliveryObserver, &'a Envelope>;

/// The span the stack of a delivery watched by `watch` runs in, if any.
fn span_of<'a>(watch: &'a Option<Watching<'_>>) -> Option<&'a Span> {
    watch.as_ref().and_then(Watch::span)
}

/// How a message is being settled: at once (an ack) or by the backend's future.
type Settling<'a> = Either<Ready<Result<(), BusError>>, BoxFuture<'a, Result<(), BusError>>>;

/// Settles `envelope` as `outcome` says.
fn settlement<'a>(
    outcome: Outcome,
    settle: Box<dyn Settle>,
    envelope: &'a Envelope,
    attempt: u32,
    settings: &'a DispatchSettings,
) -> Settling<'a> {
    match outcome {
        Outcome::Ack => Settling::Left(std::future::ready(settle.ack())),
        Outcome::Retry { error, after } => {
            let delay = after.unwrap_or_default();
            tracing::debug!(message_id = %envelope.id, event_type = %envelope.event_type, attempt, ?delay, %error, "handler failed, retrying");
            Settling::Right(settle.retry(envelope, attempt + 1, delay))
        }
        Outcome::DeadLetter { failure, error } => {
            let letter = DeadLetter {
                failure,
                reason: error.message().to_owned(),
                attempts: attempt,
                original_topic: settings.topic.to_string(),
                subscription: settings.subscription.to_string(),
                broker_message_id: settle.broker_id(),
            };
            tracing::warn!(message_id = %envelope.id, event_type = %envelope.event_type, attempt, failure = %letter.failure, %error, topic = %settings.dead_letter_topic, "dead-lettering message");
            let dead = wire::dead_letter_envelope(envelope, &letter, &settings.dead_letter);
            Settling::Right(settle.dead_letter(dead, &settings.dead_letter_topic))
        }
    }
}

#[cfg(test)]
mod tests;
