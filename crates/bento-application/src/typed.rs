use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use bento_domain::{DomainEvent, Envelope, MessageId, RecordedEvent};

use crate::contract::ContractLog;
use crate::declarations::Declarations;
use crate::layer::{BoxHandler, IntoBoxed, Layer, Layers};
use crate::publish::{BusPublisher, PublishLayers, publish_to};
use crate::registry::Registry;
use crate::{
    BoxPublisher, BusError, Codec, Context, Contract, EnvelopeHandler, Handler, MessageBus,
    MessageContract, Publication, PublishOptions, ReceiveContract, Router, Source, Subscriber,
    Subscription, SubscriptionSpec,
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
/// let subscription = bus.subscribe("welcome-email", send_welcome_email).await?;
/// bus.publish(&UserCreated { id: "u-1".into() }).await?;
/// subscription.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Bus<C> {
    inner: Arc<dyn MessageBus>,
    codec: Arc<C>,
    /// Around every subscription made through this bus, outside the subscription's own.
    layers: Layers,
    /// Around the backend's publish.
    publish_layers: PublishLayers,
    /// The backend inside `publish_layers`, built once.
    publisher: BoxPublisher,
    /// The subscriptions made through this bus and its clones.
    registry: Arc<Registry>,
    /// The schemas of the event types this bus encoded, declared before their first publish.
    declarations: Arc<Declarations>,
    /// What this bus and its clones were used to send and read: the service's contract.
    contract: Arc<ContractLog>,
}

impl<C> Clone for Bus<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            codec: self.codec.clone(),
            layers: self.layers.clone(),
            publish_layers: self.publish_layers.clone(),
            publisher: self.publisher.clone(),
            registry: self.registry.clone(),
            declarations: self.declarations.clone(),
            contract: self.contract.clone(),
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
            publisher: Arc::new(BusPublisher::new(inner.clone())),
            declarations: Arc::new(Declarations::new(inner.as_ref())),
            inner,
            codec: Arc::new(codec),
            layers: Layers::new(),
            publish_layers: PublishLayers::new(),
            registry: Arc::default(),
            contract: Arc::default(),
        }
    }

    /// This bus with `layer` around the handler stack of every subscription made through it
    /// (inside the layers added before, outside each subscription's own; see
    /// [`crate::layer`]). Clones made before do not get it.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxHandler> + Send + Sync + 'static,
        L::Service: IntoBoxed<BoxHandler>,
    {
        self.layers.push(layer);
        self
    }

    /// This bus with `layer` around every publish made through it (inside the publish layers
    /// added before): tracing, metrics, tenant stamping, an outbox. See [`crate::Publisher`].
    pub fn publish_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxPublisher> + Send + Sync + 'static,
        L::Service: IntoBoxed<BoxPublisher>,
    {
        self.publish_layers.push(layer);
        self.publisher = self
            .publish_layers
            .wrap(Arc::new(BusPublisher::new(self.inner.clone())));
        self
    }

    /// Publishes envelopes already built, in order, through the publish layers.
    pub async fn publish_envelopes(
        &self,
        envelopes: Vec<Envelope>,
        options: PublishOptions,
    ) -> Result<(), BusError> {
        self.declarations
            .declare_for(self.inner.as_ref(), &envelopes)
            .await?;
        let publication = Publication { envelopes, options };
        if self.publish_layers.is_empty() {
            // No layer to run: straight to the backend, without boxing a future.
            return publish_to(&*self.inner, publication).await;
        }
        self.publisher.publish(publication).await
    }

    /// Publishes one envelope through the publish layers.
    ///
    /// Not async: with no publish layer and no schema to declare, the backend's own future is
    /// the whole publish, and the envelope moves once, into it.
    pub(crate) fn publish_one(
        &self,
        envelope: Envelope,
        options: PublishOptions,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        if self.publish_layers.is_empty() && !self.declarations.may_declare() {
            return self.inner.publish(envelope, options);
        }
        Box::pin(self.publish_envelopes(vec![envelope], options))
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
    ///
    /// On a backend with a schema registry, the first envelope of each event type also notes
    /// the type's schema (from the codec), which the first publish of the type declares.
    pub fn envelope<E: DomainEvent>(&self, event: &E) -> Result<Envelope, BusError> {
        let encoded = self.codec.encode(event)?;
        self.declarations
            .note(E::EVENT_TYPE, || self.codec.schema::<E>())?;
        if !self.contract.knows(E::EVENT_TYPE) {
            let codec = self.codec.clone();
            self.contract.send(
                E::EVENT_TYPE,
                self.inner.topic_for(E::EVENT_TYPE),
                E::VERSION,
                E::AGGREGATE_TYPE,
                Some(encoded.content_type.to_string()),
                Arc::new(move || codec.schema::<E>()),
            );
        }
        Ok(Envelope::for_event(
            event,
            encoded.content_type,
            encoded.payload,
        ))
    }

    /// Encodes an event recorded by an aggregate into a new envelope.
    /// Its schema is noted as with [`Bus::envelope`].
    pub fn recorded_envelope(&self, event: &dyn RecordedEvent) -> Result<Envelope, BusError> {
        let encoded = self.codec.encode_recorded(event)?;
        self.declarations
            .note(event.event_type(), || self.codec.recorded_schema(event))?;
        if !self.contract.knows(event.event_type()) {
            self.contract.send_known(
                event.event_type(),
                self.inner.topic_for(event.event_type()),
                event.version(),
                event.aggregate_type(),
                Some(encoded.content_type.to_string()),
                self.codec.recorded_schema(event),
            );
        }
        Ok(Envelope::for_event(
            event,
            encoded.content_type,
            encoded.payload,
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
        self.publish_one(envelope, options).await?;
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
        self.publish_one(envelope, PublishOptions::default())
            .await?;
        Ok(id)
    }

    /// Publishes several events of one type in one batch, in order.
    pub async fn publish_all<E: DomainEvent>(&self, events: &[E]) -> Result<(), BusError> {
        let envelopes = events
            .iter()
            .map(|event| self.envelope(event))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish_envelopes(envelopes, PublishOptions::default())
            .await
    }

    /// Registers `E`'s schema (from the codec) with the backend's schema registry now, so that
    /// an incompatible schema fails at start-up. A no-op where there is no schema or no
    /// registry.
    ///
    /// Publishing declares the schema of each event type before the first publish of the type
    /// anyway; declaring at start-up makes a mismatch fail before the service takes work.
    ///
    /// A declared type is also part of the service's [`Contract`] as one it sends.
    pub async fn declare<E: DomainEvent>(&self) -> Result<(), BusError> {
        if !self.contract.knows(E::EVENT_TYPE) {
            self.contract.send_known(
                E::EVENT_TYPE,
                self.inner.topic_for(E::EVENT_TYPE),
                E::VERSION,
                E::AGGREGATE_TYPE,
                None,
                self.codec.schema::<E>(),
            );
        }
        if !self.declarations.active() {
            return Ok(());
        }
        match self.codec.schema::<E>()? {
            Some(schema) => {
                self.inner.declare_schema(&schema).await?;
                self.declarations.declared(E::EVENT_TYPE, schema);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Subscribes `handler` (a typed handler, a router) as the shared subscription `name`, with
    /// concurrency 1 and default policies. A typed handler reads its event type's topic.
    ///
    /// Consumers with the same subscription name share its messages, so the name is the
    /// subscription's identity: renaming it starts a new subscription from the end of the topic.
    pub async fn subscribe<M, S>(
        &self,
        name: impl Into<String>,
        handler: S,
    ) -> Result<Subscription, BusError>
    where
        S: Subscriber<C, M>,
    {
        self.subscribe_with(SubscriptionSpec::named(name), handler)
            .await
    }

    /// Subscribes `handler` (a typed handler, a router) per `spec`. A spec made with
    /// [`SubscriptionSpec::named`] reads the topic of the handler's event type.
    pub async fn subscribe_with<M, S>(
        &self,
        spec: SubscriptionSpec,
        handler: S,
    ) -> Result<Subscription, BusError>
    where
        S: Subscriber<C, M>,
    {
        let mut spec = spec;
        if spec.source.is_unnamed() {
            let event_type = handler.event_type().ok_or_else(|| BusError::Subscribe {
                topic: String::new(),
                subscription: spec.name.clone(),
                source: ("a router reads several event types: name its topic with \
                         SubscriptionSpec::topic"
                    .to_owned())
                .into(),
            })?;
            spec.source = Source::EventType(event_type.to_owned());
        }
        if spec.schema.is_none() && self.declarations.active() {
            spec.schema = handler.schema(&self.codec)?;
        }
        let messages = handler.messages(&self.codec);
        let handler = handler.into_handler(&self.codec);
        self.subscribe_noted(spec, handler, Some(messages)).await
    }

    /// Subscribes an untyped handler per `spec`, which names what it reads.
    pub async fn subscribe_envelopes(
        &self,
        spec: SubscriptionSpec,
        handler: impl EnvelopeHandler,
    ) -> Result<Subscription, BusError> {
        self.subscribe_noted(spec, handler.boxed(), None).await
    }

    /// Subscribes, noting the subscription in the contract with `messages` (for an untyped
    /// handler: the event type it was subscribed to, if any).
    async fn subscribe_noted(
        &self,
        spec: SubscriptionSpec,
        handler: BoxHandler,
        messages: Option<Vec<MessageContract>>,
    ) -> Result<Subscription, BusError> {
        let mut spec = spec;
        if spec.source.is_unnamed() {
            return Err(BusError::Subscribe {
                topic: String::new(),
                subscription: spec.name.clone(),
                source: "an untyped handler has no event type to take the topic from: name it \
                         with SubscriptionSpec::topic or SubscriptionSpec::event_type"
                    .into(),
            });
        }
        let registration = self
            .registry
            .claim(&spec.name, spec.competing)
            .map_err(|reason| BusError::Subscribe {
                topic: spec
                    .source
                    .topic(|event_type| self.inner.topic_for(event_type)),
                subscription: spec.name.clone(),
                source: reason.into(),
            })?;
        let topic = spec
            .source
            .topic(|event_type| self.inner.topic_for(event_type));
        let messages = messages.unwrap_or_else(|| match &spec.source {
            Source::EventType(event_type) => vec![MessageContract {
                schema: spec.schema.clone(),
                ..MessageContract::named(event_type.clone())
            }],
            Source::Topic(_) => Vec::new(),
        });
        let receive = ReceiveContract {
            dead_letter_topic: spec.dead_letter.topic_for(&topic, &spec.name),
            subscription: spec.name.clone(),
            topic,
            kind: spec.kind,
            messages,
        };
        spec.layers.wrapped_in(&self.layers);
        let mut subscription = self.inner.subscribe(spec, handler).await?;
        self.contract.receive(receive);
        self.registry.attach(&registration, subscription.control());
        subscription.hold(Box::new(registration));
        Ok(subscription)
    }

    /// Stops every subscription made through this bus (and its clones) that still runs, and
    /// waits up to `grace` for their in-flight handlers; messages not finished by then are
    /// redelivered later. Their handles' own `shutdown` then only closes the consumers.
    pub async fn shutdown_subscriptions(&self, grace: Duration) -> Result<(), BusError> {
        match self.registry.stop_all(grace).await {
            0 => Ok(()),
            running => Err(BusError::Timeout {
                operation: format!("stopping {running} subscription(s)"),
                after: grace,
            }),
        }
    }

    /// What this bus (and its clones) was used to send and read so far: the event types it
    /// declared ([`Bus::declare`]) or encoded for a publish, with their topics, and the
    /// subscriptions made through it. Schemas of published types are asked of the codec now.
    /// `bento-asyncapi` turns it into an AsyncAPI document.
    pub fn contract(&self) -> Contract {
        self.contract.snapshot(self.inner.backend())
    }

    /// A router for several event types on one subscription; add routes with
    /// [`TypedRouter::route`] and subscribe it with [`Bus::subscribe_with`].
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

    /// Wraps every route added so far in `layer`; see [`Router::route_layer`].
    pub fn route_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxHandler>,
        L::Service: EnvelopeHandler,
    {
        self.router = self.router.route_layer(layer);
        self
    }

    /// The event types routed so far.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.router.event_types()
    }

    /// The finished router.
    pub fn build(self) -> Router {
        self.router
    }
}
