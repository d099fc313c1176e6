//! RustStream on Pulsar (`ruststream-pulsar`): the same typed events published through its
//! publisher ([`Pulsar::IN_FLIGHT`] publishes in flight) to a typed `#[subscriber]` with eight
//! workers. The runs are `ruststream_broker`'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use ruststream_pulsar::PulsarPublisher;
use ruststream_pulsar::prelude::*;

use crate::Knobs;
use crate::measure::PATIENCE;
use crate::ruststream_broker::{RsBroker, Scope, Target, topic};
use crate::ruststream_side::{RsPayment, publish_to};

#[subscriber(
    PulsarSubscription::new(topic(), "bench").subscription_type(SubscriptionType::Shared),
    start_at(PulsarPosition::earliest()),
    workers(8)
)]
async fn handle(
    event: &RsPayment,
    ctx: &mut Context<'_, PulsarContext, Arc<Target>>,
) -> HandlerOutcome {
    ctx.state().record(event);
    HandlerOutcome::ack()
}

/// RustStream's Pulsar broker.
pub(crate) struct Pulsar;

impl RsBroker for Pulsar {
    const NAME: &'static str = "Pulsar";
    /// With more, the `pulsar` producer under RustStream's publisher answers `SlowDown` (its
    /// queue is not set to block when full) and the publish fails.
    const IN_FLIGHT: usize = 100;
    type Registration = PulsarBroker;
    type Publisher = PulsarPublisher;

    async fn connect(knobs: &Knobs, _name: &str) -> Result<(PulsarBroker, PulsarPublisher)> {
        let broker = PulsarBroker::new(knobs.pulsar_url.clone());
        let publisher = broker.publisher();
        Ok((broker, publisher))
    }

    fn include(scope: &mut Scope<Self>) {
        scope.include(handle);
    }

    /// The `pulsar` producer under RustStream's publisher answers `SlowDown` when its
    /// connection's send queue is full, where it could wait; a service would wait and publish
    /// again, and so does this side (for up to [`PATIENCE`]), rather than failing its run.
    async fn publish(publisher: &PulsarPublisher, name: &str, event: &RsPayment) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match publish_to(publisher, name, event).await {
                Err(error)
                    if error.to_string().contains("SlowDown") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                published => return published,
            }
        }
    }
}
