//! Request/reply over any backend: the request carries a reply-to topic and its own id; the
//! responder publishes the reply there with that id; the requester matches it and wakes the
//! caller, or gives up after the timeout.
//!
//! The requester reads its reply topic through a shared subscription (a kind every backend
//! supports) named uniquely per requester instance, so no other consumer competes for its
//! replies: requesters that share a reply topic each read every reply and keep their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bento_domain::{DomainEvent, Envelope};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::{
    Bus, BusError, Codec, Context, HandlerError, PublishOptions, RetryPolicy, Subscription,
    SubscriptionKind, SubscriptionSpec, wire,
};

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Envelope>>>>;

/// Sends requests and awaits their replies on a reply topic of its own.
pub struct Requester<C: Codec> {
    bus: Bus<C>,
    reply_topic: String,
    subscription_name: String,
    waiting: Waiters,
    subscription: Option<Subscription>,
}

impl<C: Codec> std::fmt::Debug for Requester<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("reply_topic", &self.reply_topic)
            .field("subscription", &self.subscription_name)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Requester<C> {
    /// Starts listening for replies on `reply_topic`, e.g. `<service>.replies.<instance id>`.
    ///
    /// Replies are read through a [`SubscriptionKind::Shared`] subscription named
    /// `bento-requester-<uuid>`, new for each requester, so it works on every backend and
    /// nothing else consumes this requester's replies. Requesters may share a reply topic: each
    /// then reads every reply on it and ignores those it did not ask for. The subscription
    /// starts at the end of the topic: replies published before `start` returned are not seen.
    ///
    /// On brokers the subscription (Pulsar: with its retry topic; Kafka: its consumer groups)
    /// stays behind when the requester stops; see `docs/handlers.md`.
    pub async fn start(bus: &Bus<C>, reply_topic: impl Into<String>) -> Result<Self, BusError> {
        let reply_topic = reply_topic.into();
        let subscription_name = format!("bento-requester-{}", uuid::Uuid::now_v7().simple());
        let waiting: Waiters = Arc::default();
        let handler = {
            let waiting = waiting.clone();
            move |ctx: Context| {
                let reply = ctx.envelope();
                let waiter = reply
                    .headers
                    .get(wire::REQUEST_ID)
                    .and_then(|id| waiting.lock().remove(id));
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(reply.clone());
                    }
                    // The caller gave up (timeout) or another instance asked: nothing to do.
                    None => tracing::debug!(message_id = %reply.id, "reply nobody waits for"),
                }
                std::future::ready(Ok::<(), HandlerError>(()))
            }
        };
        // The handler never fails, so the subscription needs no retries (and, on Kafka, no
        // retry topics of its own).
        let spec = SubscriptionSpec::topic(&reply_topic, subscription_name.clone())
            .kind(SubscriptionKind::Shared)
            .retry(RetryPolicy::none());
        let subscription = bus.subscribe_envelopes(spec, handler).await?;
        Ok(Self {
            bus: bus.clone(),
            reply_topic,
            subscription_name,
            waiting,
            subscription: Some(subscription),
        })
    }

    /// The topic replies come back on.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// The name of the subscription this requester reads its replies through.
    pub fn subscription_name(&self) -> &str {
        &self.subscription_name
    }

    /// Publishes `request` to its event type's topic and waits up to `timeout` for a reply of
    /// type `R`.
    pub async fn request<Q: DomainEvent, R: DomainEvent>(
        &self,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, BusError> {
        self.send(request, PublishOptions::default(), timeout).await
    }

    /// Like [`Requester::request`], but publishes `request` to `topic` (where a responder
    /// subscribed with [`SubscriptionSpec::topic`] reads it).
    pub async fn request_to<Q: DomainEvent, R: DomainEvent>(
        &self,
        topic: impl Into<String>,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, BusError> {
        self.send(request, PublishOptions::default().to_topic(topic), timeout)
            .await
    }

    async fn send<Q: DomainEvent, R: DomainEvent>(
        &self,
        request: &Q,
        options: PublishOptions,
        timeout: Duration,
    ) -> Result<R, BusError> {
        let envelope = self
            .bus
            .envelope(request)?
            .with_header(wire::REPLY_TO, self.reply_topic.clone());
        let request_id = envelope.id.to_string();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(request_id.clone(), tx);
        if let Err(error) = self.bus.publish_one(envelope, options).await {
            self.waiting.lock().remove(&request_id);
            return Err(error);
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(BusError::Closed),
            Err(_) => {
                self.waiting.lock().remove(&request_id);
                return Err(BusError::Timeout {
                    operation: format!(
                        "request `{}` {request_id} waiting for a `{}` reply on `{}`",
                        Q::EVENT_TYPE,
                        R::EVENT_TYPE,
                        self.reply_topic
                    ),
                    after: timeout,
                });
            }
        };
        if reply.event_type != R::EVENT_TYPE {
            return Err(BusError::backend(
                self.bus.message_bus().backend(),
                format!("request `{}` {request_id}", Q::EVENT_TYPE),
                format!(
                    "got a `{}` reply, expected `{}`",
                    reply.event_type,
                    R::EVENT_TYPE
                ),
            ));
        }
        Ok(self.bus.codec().decode_envelope(&reply)?)
    }

    /// Stops listening for replies.
    pub async fn shutdown(mut self) -> Result<(), BusError> {
        match self.subscription.take() {
            Some(subscription) => subscription.shutdown().await,
            None => Ok(()),
        }
    }
}

impl<C: Codec> Bus<C> {
    /// Answers requests of type `Q` with replies of type `R` computed by `responder`, per
    /// `spec`. The reply goes to the request's reply-to topic, caused by the request.
    pub async fn respond<Q, R, F, Fut>(
        &self,
        spec: SubscriptionSpec,
        responder: F,
    ) -> Result<Subscription, BusError>
    where
        Q: DomainEvent,
        R: DomainEvent,
        F: Fn(Q, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let bus = self.clone();
        let responder = Arc::new(responder);
        let handler = move |request: Q, ctx: Context| {
            let (bus, responder) = (bus.clone(), responder.clone());
            async move {
                let Some(reply_to) = ctx.header(wire::REPLY_TO).map(str::to_owned) else {
                    return Err(HandlerError::permanent(format!(
                        "request `{}` has no `{}` header",
                        Q::EVENT_TYPE,
                        wire::REPLY_TO
                    )));
                };
                let reply = responder(request, ctx.clone()).await?;
                let envelope = bus
                    .envelope(&reply)?
                    .caused_by(ctx.envelope())
                    .with_header(wire::REQUEST_ID, ctx.message_id().to_string());
                bus.publish_one(envelope, PublishOptions::default().to_topic(reply_to))
                    .await?;
                Ok(())
            }
        };
        self.subscribe_with(spec, handler).await
    }
}
