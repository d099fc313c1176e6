//! Request/reply over any backend: the request carries a reply-to topic and its own id; the
//! responder publishes the reply there with that id; the requester matches it and wakes the
//! caller, or gives up after the timeout.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bento_domain::{DomainEvent, Envelope};
use tokio::sync::oneshot;

use crate::{
    Bus, BusError, Codec, Context, HandlerError, PublishOptions, Subscription, SubscriptionKind,
    SubscriptionSpec, wire,
};

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Envelope>>>>;

/// Sends requests and awaits their replies on a reply topic of its own.
pub struct Requester<C: Codec> {
    bus: Bus<C>,
    reply_topic: String,
    waiting: Waiters,
    subscription: Option<Subscription>,
}

impl<C: Codec> std::fmt::Debug for Requester<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("reply_topic", &self.reply_topic)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Requester<C> {
    /// Starts listening for replies on `reply_topic`, which should be unique to this
    /// requester instance (e.g. `<service>.replies.<instance id>`).
    pub async fn start(bus: &Bus<C>, reply_topic: impl Into<String>) -> Result<Self, BusError> {
        let reply_topic = reply_topic.into();
        let waiting: Waiters = Arc::default();
        let handler = {
            let waiting = waiting.clone();
            move |ctx: Context| {
                let reply = ctx.envelope();
                let waiter = reply
                    .headers
                    .get(wire::REQUEST_ID)
                    .and_then(|id| lock(&waiting).remove(id));
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
        let spec = SubscriptionSpec::topic(&reply_topic, format!("{reply_topic}.requester"))
            .kind(SubscriptionKind::Exclusive);
        let subscription = bus.subscribe_envelopes(spec, handler).await?;
        Ok(Self {
            bus: bus.clone(),
            reply_topic,
            waiting,
            subscription: Some(subscription),
        })
    }

    /// The topic replies come back on.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// Publishes `request` and waits up to `timeout` for a reply of type `R`.
    pub async fn request<Q: DomainEvent, R: DomainEvent>(
        &self,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, BusError> {
        let envelope = self
            .bus
            .envelope(request)?
            .with_header(wire::REPLY_TO, self.reply_topic.clone());
        let request_id = envelope.id.to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(request_id.clone(), tx);
        if let Err(error) = self
            .bus
            .message_bus()
            .publish(envelope, PublishOptions::default())
            .await
        {
            lock(&self.waiting).remove(&request_id);
            return Err(error);
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(BusError::Closed),
            Err(_) => {
                lock(&self.waiting).remove(&request_id);
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
            return Err(BusError::Other(format!(
                "request `{}` {request_id} got a `{}` reply, expected `{}`",
                Q::EVENT_TYPE,
                reply.event_type,
                R::EVENT_TYPE
            )));
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

fn lock(
    waiting: &Waiters,
) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Envelope>>> {
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
                bus.message_bus()
                    .publish(envelope, PublishOptions::default().to_topic(reply_to))
                    .await?;
                Ok(())
            }
        };
        self.subscribe_with::<Q, _>(spec, handler).await
    }
}
