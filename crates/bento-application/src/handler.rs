use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bento_domain::{DomainEvent, Envelope, MessageId};
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::layer::{BoxHandler, Layer};
use crate::{Codec, Extensions, HandlerError, Outcome};

/// What a handler knows about the message it is handling, besides the event itself.
#[derive(Clone, Debug)]
pub struct Context {
    envelope: Arc<Envelope>,
    attempt: u32,
    topic: Arc<str>,
    subscription: Arc<str>,
    extensions: Extensions,
}

impl Context {
    /// A context for one delivery of `envelope`.
    pub fn new(
        envelope: Arc<Envelope>,
        attempt: u32,
        topic: Arc<str>,
        subscription: Arc<str>,
    ) -> Self {
        Self {
            envelope,
            attempt,
            topic,
            subscription,
            extensions: Extensions::default(),
        }
    }

    /// This context with `value` among its extensions: how a layer hands the handlers inside
    /// it something it opened for this delivery, such as a database transaction.
    #[must_use]
    pub fn with_extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The extension of type `T` a layer outside put in, if any.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.get()
    }

    /// Every extension.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The whole envelope, payload included.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The envelope, shared.
    pub(crate) fn shared_envelope(&self) -> &Arc<Envelope> {
        &self.envelope
    }

    /// The message id.
    pub fn message_id(&self) -> MessageId {
        self.envelope.id
    }

    /// The event type name.
    pub fn event_type(&self) -> &str {
        &self.envelope.event_type
    }

    /// The correlation id (the message's own id if it started the conversation).
    pub fn correlation_id(&self) -> std::borrow::Cow<'_, str> {
        self.envelope.correlation_id()
    }

    /// The id of the message that caused this one.
    pub fn causation_id(&self) -> Option<&str> {
        self.envelope.causation_id.as_deref()
    }

    /// The tenant.
    pub fn tenant(&self) -> Option<&str> {
        self.envelope.tenant.as_deref()
    }

    /// One header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.envelope.headers.get(name).map(String::as_str)
    }

    /// When the event happened.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.envelope.occurred_at
    }

    /// 1 on the first delivery, 2 on the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The topic the message was read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The subscription handling it.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }
}

/// A typed event handler: usually a plain `async fn(Event, Context) -> Result<(), HandlerError>`.
///
/// ```
/// # use bento_application::{Context, HandlerError};
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct UserCreated { email: String }
/// async fn send_welcome_email(event: UserCreated, ctx: Context) -> Result<(), HandlerError> {
///     println!("welcome {} (message {})", event.email, ctx.message_id());
///     Ok(())
/// }
/// ```
pub trait Handler<E>: Send + Sync + 'static {
    /// The future the handler returns.
    type Future: Future<Output = Result<(), HandlerError>> + Send + 'static;

    /// Handles one event.
    fn call(&self, event: E, ctx: Context) -> Self::Future;
}

impl<E, F, Fut> Handler<E> for F
where
    F: Fn(E, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, event: E, ctx: Context) -> Fut {
        self(event, ctx)
    }
}

/// The untyped handler a subscription runs: a [`Context`] in, an [`Outcome`] out.
///
/// Typed handlers are wrapped into one by [`crate::Bus::subscribe`], layers wrap one into
/// another ([`crate::layer`]), and the dispatcher settles the outcome the outermost returns.
/// Implement it directly to work with raw envelopes (a dead-letter inspector, a bridge); a
/// closure `Fn(Context) -> impl Future<Output = R>` is one, for `R` a `Result<(),
/// HandlerError>` or an [`Outcome`].
pub trait EnvelopeHandler: Send + Sync + 'static {
    /// Handles one message.
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome>;
}

impl<F, Fut> EnvelopeHandler for F
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Into<Outcome>,
{
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        Box::pin(self(ctx).map(Into::into))
    }
}

impl<H: EnvelopeHandler + ?Sized> EnvelopeHandler for Arc<H> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        (**self).handle(ctx)
    }
}

/// Decodes the payload as `E` with codec `C` and calls a typed handler.
pub(crate) struct Typed<E, H, C> {
    handler: H,
    codec: Arc<C>,
    _event: PhantomData<fn() -> E>,
}

impl<E, H, C> Typed<E, H, C> {
    pub(crate) fn new(handler: H, codec: Arc<C>) -> Self {
        Self {
            handler,
            codec,
            _event: PhantomData,
        }
    }
}

impl<E, H, C> EnvelopeHandler for Typed<E, H, C>
where
    E: DomainEvent,
    H: Handler<E>,
    C: Codec,
{
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let envelope = ctx.envelope();
        if envelope.event_type != E::EVENT_TYPE {
            let error = HandlerError::unknown_event_type(&envelope.event_type);
            return Box::pin(std::future::ready(Outcome::dead_letter(error)));
        }
        match self.codec.decode_envelope::<E>(envelope) {
            Ok(event) => Box::pin(self.handler.call(event, ctx).map(Outcome::from)),
            Err(error) => {
                let error = HandlerError::undecodable(&error).with_source(error);
                Box::pin(std::future::ready(Outcome::dead_letter(error)))
            }
        }
    }
}

/// Routes messages of several event types, read from one subscription, to one handler each.
///
/// Build it with [`crate::Bus::router`]. A message of a type with no route is dead-lettered.
#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<String, BoxHandler>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("event_types", &self.routes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Router {
    /// Adds an untyped route for `event_type`.
    pub fn route_envelopes(
        mut self,
        event_type: impl Into<String>,
        handler: Arc<dyn EnvelopeHandler>,
    ) -> Self {
        self.routes.insert(event_type.into(), handler);
        self
    }

    /// Adds a typed route for `E`, decoded with `codec`.
    pub fn route<E: DomainEvent, H: Handler<E>, C: Codec>(self, codec: Arc<C>, handler: H) -> Self {
        self.route_envelopes(
            E::EVENT_TYPE,
            Arc::new(Typed::<E, H, C>::new(handler, codec)),
        )
    }

    /// Wraps every route added so far in `layer` (like axum's `route_layer`): it sees the
    /// messages of those event types only, inside the subscription's retry and panic layers.
    pub fn route_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxHandler>,
        L::Service: EnvelopeHandler,
    {
        for handler in self.routes.values_mut() {
            *handler = Arc::new(layer.layer(handler.clone()));
        }
        self
    }

    /// The event types this router handles.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }
}

impl EnvelopeHandler for Router {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        match self.routes.get(ctx.event_type()) {
            Some(handler) => handler.handle(ctx),
            None => {
                let error = HandlerError::unknown_event_type(ctx.event_type());
                Box::pin(std::future::ready(Outcome::dead_letter(error)))
            }
        }
    }
}
