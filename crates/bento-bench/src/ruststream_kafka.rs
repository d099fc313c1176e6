//! RustStream on Kafka (`ruststream-rdkafka`): the same typed events published through its
//! publisher ([`Kafka::IN_FLIGHT`] publishes in flight) to a typed `#[subscriber]` with eight
//! workers, on topics of Bento's partition count. The runs are `ruststream_broker`'s.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use ruststream_rdkafka::context::KafkaContext;
use ruststream_rdkafka::prelude::*;
use ruststream_rdkafka::{KafkaPublisher, StartOffset};

use crate::Knobs;
use crate::ruststream_broker::{RsBroker, Scope, Target, topic};
use crate::ruststream_side::{RsPayment, publish_to};

#[subscriber(
    KafkaTopic::new(topic()).group(format!("{}-group", topic())).start(StartOffset::Earliest),
    workers(8)
)]
async fn handle(
    event: &RsPayment,
    ctx: &mut Context<'_, KafkaContext, Arc<Target>>,
) -> HandlerOutcome {
    ctx.state().record(event);
    HandlerOutcome::ack()
}

/// RustStream's Kafka broker.
pub(crate) struct Kafka;

impl RsBroker for Kafka {
    const NAME: &'static str = "Kafka";
    /// As many as the raw rdkafka side keeps.
    const IN_FLIGHT: usize = 10 * crate::WINDOW;
    type Registration = KafkaBroker;
    type Publisher = KafkaPublisher;

    /// Creates the topic with Bento's partition count.
    async fn connect(knobs: &Knobs, name: &str) -> Result<(KafkaBroker, KafkaPublisher)> {
        crate::raw_kafka::create_topic(knobs, name).await?;
        let publisher = KafkaBroker::new([knobs.kafka_bootstrap.clone()])
            .connect()
            .await
            .map_err(|e| anyhow!("connecting RustStream's Kafka publisher: {e}"))?
            .publisher(Publish::default());
        Ok((KafkaBroker::new([knobs.kafka_bootstrap.clone()]), publisher))
    }

    fn include(scope: &mut Scope<Self>) {
        scope.include(handle);
    }

    async fn publish(publisher: &KafkaPublisher, name: &str, event: &RsPayment) -> Result<()> {
        publish_to(publisher, name, event).await
    }
}
