//! The publish side of the stack: publishers and the layers around them.

use std::sync::Arc;

use bento_domain::Envelope;
use futures::future::BoxFuture;

use crate::layer::{IntoBoxed, Layers};
use crate::{BusError, MessageBus, PublishOptions};

/// Envelopes on their way to the backend, published together and in order.
#[derive(Clone, Debug)]
pub struct Publication {
    /// What is published (one envelope for a single publish).
    pub envelopes: Vec<Envelope>,
    /// How.
    pub options: PublishOptions,
}

/// Something that publishes: the backend at the bottom of the stack, and every publish layer
/// around it (tracing, metrics, tenant stamping, an outbox).
///
/// ```
/// # use bento_application::{BoxPublisher, BusError, Publication, Publisher};
/// # use bento_application::layer::Layer;
/// # use futures::future::BoxFuture;
/// /// Stamps every outgoing envelope with the service's tenant.
/// struct StampTenant<P> { inner: P, tenant: String }
///
/// impl<P: Publisher> Publisher for StampTenant<P> {
///     fn publish(&self, mut publication: Publication) -> BoxFuture<'static, Result<(), BusError>> {
///         for envelope in &mut publication.envelopes {
///             envelope.tenant.get_or_insert_with(|| self.tenant.clone());
///         }
///         self.inner.publish(publication)
///     }
/// }
///
/// struct StampTenantLayer(String);
///
/// impl<P> Layer<P> for StampTenantLayer {
///     type Service = StampTenant<P>;
///     fn layer(&self, inner: P) -> StampTenant<P> {
///         StampTenant { inner, tenant: self.0.clone() }
///     }
/// }
/// ```
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `publication`; resolves once the backend stored every envelope.
    fn publish(&self, publication: Publication) -> BoxFuture<'static, Result<(), BusError>>;
}

/// A publisher behind a pointer, as publish layers wrap and return it.
pub type BoxPublisher = Arc<dyn Publisher>;

impl<P: Publisher + ?Sized> Publisher for Arc<P> {
    fn publish(&self, publication: Publication) -> BoxFuture<'static, Result<(), BusError>> {
        (**self).publish(publication)
    }
}

impl<P: Publisher> IntoBoxed<BoxPublisher> for P {
    fn boxed(self) -> BoxPublisher {
        Arc::new(self)
    }
}

/// Layers around the backend's publish, the first added outermost.
pub type PublishLayers = Layers<BoxPublisher>;

/// The bottom of every publish stack: the backend itself.
pub(crate) struct BusPublisher {
    bus: Arc<dyn MessageBus>,
}

impl BusPublisher {
    pub(crate) fn new(bus: Arc<dyn MessageBus>) -> Self {
        Self { bus }
    }
}

impl Publisher for BusPublisher {
    fn publish(&self, publication: Publication) -> BoxFuture<'static, Result<(), BusError>> {
        let bus = self.bus.clone();
        Box::pin(async move { publish_to(&*bus, publication).await })
    }
}

/// Hands `publication` to `bus`: one envelope as a single publish, several as a batch.
pub(crate) async fn publish_to(
    bus: &dyn MessageBus,
    publication: Publication,
) -> Result<(), BusError> {
    let Publication {
        mut envelopes,
        options,
    } = publication;
    if envelopes.len() == 1
        && let Some(envelope) = envelopes.pop()
    {
        bus.publish(envelope, options).await
    } else {
        bus.publish_batch(envelopes, options).await
    }
}
