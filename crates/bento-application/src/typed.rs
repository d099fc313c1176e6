use std::sync::Arc;

use bento_domain::{DomainEvent, Envelope, MessageId, RecordedEvent};

use crate::handler::Typed;
use crate::{
    BusError, Codec, Context, Encoded, EnvelopeHandler, Handler, MessageBus, PublishOptions,
    Router, Subscription, SubscriptionSpec,
};

/// The typed face of a [`MessageBus`]: publish events, subscribe handlers.
///
/// Cheap to clone; every clone shares the backend and the codec.
///
/// ```
/// # use bento_application::*;
/// # async fn demo<C: Codec>(bus: Bus<C>) -> Result<(), BusError> {
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct UserCreated { id: String }
/// # impl bento_application::domain::DomainEvent for UserCreated {
/// #     const EVENT_TYPE: &'static str = "users.user-created";
/// #     const AGGREGATE_TYPE: &'static str = "user";
/// #     fn aggregate_id(&self) -> String { self.id.clone() }
/// # }
/// async fn send_welcome_email(event: UserCreated, _ctx: Context) -> Result<(), HandlerError> {
///     Ok(())
/// }
/// let subscription = bus.subscribe::<UserCreated, _>(send_welcome_email).await?;
/// bus.publish(&UserCreated { id: "u-1".into() }).await?;
/// subscription.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Bus<C> {
    inner: Arc<dyn MessageBus>,
    codec: Arc<C>,
}

impl<C> Clone for Bus<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            codec: self.codec.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Bus<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("backend", &self.inner.backend())
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Bus<C> {
    /// A typed bus over `inner`, encoding with `codec`.
    pub fn new(inner: Arc<dyn MessageBus>, codec: C) -> Self {
        Self {
            inner,
            codec: Arc::new(codec),
        }
    }

    /// The untyped port underneath.
    pub fn message_bus(&self) -> &Arc<dyn MessageBus> {
        &self.inner
    }

    /// The codec.
    pub fn codec(&self) -> &Arc<C> {
        &self.codec
    }

    /// Encodes `event` into a new envelope (new id, now, aggregate, ordering key).
    pub fn envelope<E: DomainEvent>(&self, event: &E) -> Result<Envelope, BusError> {
        let encoded = self.codec.encode(event)?;
        Ok(wrap(
            encoded,
            E::EVENT_TYPE,
            E::VERSION,
            E::AGGREGATE_TYPE,
            event.aggregate_id(),
            event.ordering_key(),
        ))
    }

    /// Encodes an event recorded by an aggregate into a new envelope.
    pub fn recorded_envelope(&self, event: &dyn RecordedEvent) -> Result<Envelope, BusError> {
        let encoded = self.codec.encode_recorded(event)?;
        Ok(wrap(
            encoded,
            event.event_type(),
            event.version(),
            event.aggregate_type(),
            event.aggregate_id(),
            event.ordering_key(),
        ))
    }

    /// Publishes one event; returns its message id once the backend has stored it.
    pub async fn publish<E: DomainEvent>(&self, event: &E) -> Result<MessageId, BusError> {
        self.publish_with(event, PublishOptions::default()).await
    }

    /// Publishes one event with options (a delay, an explicit topic).
    pub async fn publish_with<E: DomainEvent>(
        &self,
        event: &E,
        options: PublishOptions,
    ) -> Result<MessageId, BusError> {
        let envelope = self.envelope(event)?;
        let id = envelope.id;
        self.inner.publish(envelope, options).await?;
        Ok(id)
    }

    /// Publishes an event caused by the message being handled in `ctx`: same correlation id and
    /// tenant, causation id = that message's id.
    pub async fn publish_caused_by<E: DomainEvent>(
        &self,
        event: &E,
        ctx: &Context,
    ) -> Result<MessageId, BusError> {
        let envelope = self.envelope(event)?.caused_by(ctx.envelope());
        let id = envelope.id;
        self.inner
            .publish(envelope, PublishOptions::default())
            .await?;
        Ok(id)
    }

    /// Publishes several events of one type in one batch, in order.
    pub async fn publish_all<E: DomainEvent>(&self, events: &[E]) -> Result<(), BusError> {
        let envelopes = events
            .iter()
            .map(|event| self.envelope(event))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner
            .publish_batch(envelopes, PublishOptions::default())
            .await
    }

    /// Registers `E`'s schema (from the codec) with the backend's schema registry, so that an
    /// incompatible schema fails at start-up. A no-op where there is no schema or no registry.
    pub async fn declare<E: DomainEvent>(&self) -> Result<(), BusError> {
        match self.codec.schema::<E>() {
            Some(schema) => self.inner.declare_schema(&schema).await,
            None => Ok(()),
        }
    }

    /// Subscribes `handler` to events of type `E`, with a shared subscription named after the
    /// handler's type (for an `async fn`, its path), concurrency 1 and default policies.
    ///
    /// Services with several instances should name their subscriptions explicitly with
    /// [`Bus::subscribe_with`], so that a rename of the function does not start a new one.
    pub async fn subscribe<E, H>(&self, handler: H) -> Result<Subscription, BusError>
    where
        E: DomainEvent,
        H: Handler<E>,
    {
        let spec = SubscriptionSpec::event_type(E::EVENT_TYPE, default_subscription_name::<H>());
        self.subscribe_with::<E, H>(spec, handler).await
    }

    /// Subscribes `handler` to events of type `E` per `spec`.
    pub async fn subscribe_with<E, H>(
        &self,
        spec: SubscriptionSpec,
        handler: H,
    ) -> Result<Subscription, BusError>
    where
        E: DomainEvent,
        H: Handler<E>,
    {
        let mut spec = spec;
        if spec.schema.is_none() {
            spec.schema = self.codec.schema::<E>();
        }
        let typed = Typed::<E, H, C>::new(handler, self.codec.clone());
        self.inner.subscribe(spec, Arc::new(typed)).await
    }

    /// Subscribes an untyped handler (or a [`Router`]) per `spec`.
    pub async fn subscribe_envelopes(
        &self,
        spec: SubscriptionSpec,
        handler: impl EnvelopeHandler,
    ) -> Result<Subscription, BusError> {
        self.inner.subscribe(spec, Arc::new(handler)).await
    }

    /// A router for several event types on one subscription; add routes with
    /// [`Router::route`] and subscribe it with [`Bus::subscribe_envelopes`].
    pub fn router(&self) -> TypedRouter<C> {
        TypedRouter {
            router: Router::default(),
            codec: self.codec.clone(),
        }
    }
}

/// A [`Router`] builder that decodes with the bus's codec.
pub struct TypedRouter<C> {
    router: Router,
    codec: Arc<C>,
}

impl<C: Codec> TypedRouter<C> {
    /// Routes events of type `E` to `handler`.
    pub fn route<E: DomainEvent, H: Handler<E>>(mut self, handler: H) -> Self {
        self.router = self.router.route::<E, H, C>(self.codec.clone(), handler);
        self
    }

    /// The finished router.
    pub fn build(self) -> Router {
        self.router
    }
}

fn wrap(
    encoded: Encoded,
    event_type: &'static str,
    version: u32,
    aggregate_type: &'static str,
    aggregate_id: String,
    ordering_key: String,
) -> Envelope {
    let mut envelope = Envelope::new(event_type, version, encoded.content_type, encoded.payload)
        .with_aggregate(aggregate_type, aggregate_id);
    if !ordering_key.is_empty() {
        envelope.ordering_key = Some(ordering_key);
    }
    envelope
}

/// `my_service::handlers::send_welcome_email` becomes `my_service.handlers.send_welcome_email`.
fn default_subscription_name<H>() -> String {
    std::any::type_name::<H>()
        .replace("::", ".")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_subscription_name_is_the_function_path() {
        async fn send_welcome_email() {}
        fn name_of<H>(_: &H) -> String {
            super::default_subscription_name::<H>()
        }
        assert_eq!(
            name_of(&send_welcome_email),
            "bento_application.typed.tests.default_subscription_name_is_the_function_path.send_welcome_email"
        );
    }
}
