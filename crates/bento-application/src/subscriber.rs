//! What a subscription can run: typed handlers, routers, handlers with state.

use std::future::Future;
use std::sync::Arc;

use bento_domain::DomainEvent;

use crate::handler::Typed;
use crate::layer::BoxHandler;
use crate::typed::TypedRouter;
use crate::{
    Codec, CodecError, Context, Handler, HandlerError, MessageContract, Router, SchemaDefinition,
};

/// Anything [`crate::Bus::subscribe`] accepts: a typed handler (an `async fn(Event, Context)`,
/// or one [`with_state`]), a [`Router`] or a [`TypedRouter`]. `M` only tells the impls apart;
/// it is always inferred.
pub trait Subscriber<C, M>: Send + 'static {
    /// The event type it handles, when it handles one: a subscription named with
    /// [`crate::SubscriptionSpec::named`] reads that event type's topic.
    fn event_type(&self) -> Option<&'static str>;

    /// The schema of what it reads, from `codec`, for backends with a registry to check.
    fn schema(&self, codec: &C) -> Result<Option<SchemaDefinition>, CodecError>;

    /// The handler the subscription's stack wraps.
    fn into_handler(self, codec: &Arc<C>) -> BoxHandler;

    /// The event types it reads, as the service's [`crate::Contract`] describes them (by
    /// default: [`Subscriber::event_type`], by name only).
    fn messages(&self, codec: &C) -> Vec<MessageContract> {
        let _ = codec;
        self.event_type()
            .map(MessageContract::named)
            .into_iter()
            .collect()
    }
}

/// Marks the [`Subscriber`] impl of typed handlers of `E`.
#[derive(Debug)]
pub struct HandlesEvent<E>(std::marker::PhantomData<fn() -> E>);

/// Marks the [`Subscriber`] impl of routers.
#[derive(Debug)]
pub struct Routes;

impl<C, E, H> Subscriber<C, HandlesEvent<E>> for H
where
    C: Codec,
    E: DomainEvent,
    H: Handler<E>,
{
    fn event_type(&self) -> Option<&'static str> {
        Some(E::EVENT_TYPE)
    }

    fn schema(&self, codec: &C) -> Result<Option<SchemaDefinition>, CodecError> {
        codec.schema::<E>()
    }

    fn into_handler(self, codec: &Arc<C>) -> BoxHandler {
        Arc::new(Typed::<E, H, C>::new(self, codec.clone()))
    }

    fn messages(&self, codec: &C) -> Vec<MessageContract> {
        let (schema, schema_error) = match codec.schema::<E>() {
            Ok(schema) => (schema, None),
            Err(error) => (None, Some(error.to_string())),
        };
        vec![MessageContract {
            event_type: E::EVENT_TYPE.to_owned(),
            version: Some(E::VERSION),
            aggregate_type: Some(E::AGGREGATE_TYPE.to_owned()),
            content_type: None,
            schema,
            schema_error,
        }]
    }
}

impl<C> Subscriber<C, Routes> for Router {
    fn event_type(&self) -> Option<&'static str> {
        None
    }

    fn schema(&self, _codec: &C) -> Result<Option<SchemaDefinition>, CodecError> {
        Ok(None)
    }

    fn into_handler(self, _codec: &Arc<C>) -> BoxHandler {
        Arc::new(self)
    }

    fn messages(&self, _codec: &C) -> Vec<MessageContract> {
        let mut event_types: Vec<&str> = self.event_types().collect();
        event_types.sort_unstable();
        event_types
            .into_iter()
            .map(MessageContract::named)
            .collect()
    }
}

impl<C: Codec> Subscriber<C, Routes> for TypedRouter<C> {
    fn event_type(&self) -> Option<&'static str> {
        None
    }

    fn schema(&self, _codec: &C) -> Result<Option<SchemaDefinition>, CodecError> {
        Ok(None)
    }

    fn into_handler(self, _codec: &Arc<C>) -> BoxHandler {
        Arc::new(self.build())
    }

    fn messages(&self, codec: &C) -> Vec<MessageContract> {
        let _ = codec;
        let mut event_types: Vec<&str> = self.event_types().collect();
        event_types.sort_unstable();
        event_types
            .into_iter()
            .map(MessageContract::named)
            .collect()
    }
}

/// A handler's share of the service's state, as [`with_state`] hands it in (a database pool,
/// an HTTP client, a repository): cloned for each message, so make it cheap to clone.
#[derive(Clone, Copy, Debug, Default)]
pub struct State<S>(pub S);

/// A handler that takes [`State`] first: `async fn(State<S>, Event, Context)`.
///
/// ```
/// # use bento_application::{Context, HandlerError, State, with_state};
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct UserCreated { email: String }
/// #[derive(Clone)]
/// struct Mailer { from: String }
///
/// async fn send_welcome_email(
///     State(mailer): State<Mailer>,
///     event: UserCreated,
///     _ctx: Context,
/// ) -> Result<(), HandlerError> {
///     println!("{} -> {}", mailer.from, event.email);
///     Ok(())
/// }
///
/// let handler = with_state(Mailer { from: "hello@example.com".into() }, send_welcome_email);
/// ```
pub fn with_state<S, F>(state: S, handler: F) -> WithState<S, F> {
    WithState { state, handler }
}

/// A handler given its state; see [`with_state`].
#[derive(Clone, Debug)]
pub struct WithState<S, F> {
    state: S,
    handler: F,
}

impl<E, S, F, Fut> Handler<E> for WithState<S, F>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(State<S>, E, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, event: E, ctx: Context) -> Fut {
        (self.handler)(State(self.state.clone()), event, ctx)
    }
}
