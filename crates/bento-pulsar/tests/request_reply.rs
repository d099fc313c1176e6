//! Request/reply (`Bus::respond`, `Requester`) on the real broker.

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bento_application::{
    Bus, BusError, Context, HandlerError, MessageBus, Requester, SubscriptionKind, SubscriptionSpec,
};
use bento_codec::Codecs;
use bento_domain::DomainEvent;
use bento_pulsar::PulsarBus;
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct GetPrice {
    sku: String,
}

impl DomainEvent for GetPrice {
    const EVENT_TYPE: &'static str = "pricing.get-price";
    const AGGREGATE_TYPE: &'static str = "sku";
    fn aggregate_id(&self) -> String {
        self.sku.clone()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Price {
    sku: String,
    cents: u64,
}

impl DomainEvent for Price {
    const EVENT_TYPE: &'static str = "pricing.price";
    const AGGREGATE_TYPE: &'static str = "sku";
    fn aggregate_id(&self) -> String {
        self.sku.clone()
    }
}

/// A bus whose request topic is unique to this run.
async fn bus() -> (PulsarBus, Bus<Codecs>) {
    let mut config = common::config();
    config
        .topics
        .event_types
        .insert(GetPrice::EVENT_TYPE.into(), common::unique("get-price"));
    let pulsar = common::bus_with(config).await;
    let bus = Bus::new(Arc::new(pulsar.clone()), Codecs::default());
    (pulsar, bus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_gets_its_reply() -> TestResult {
    let (pulsar, bus) = bus().await;
    let responder = bus
        .respond::<GetPrice, Price, _, _>(
            SubscriptionSpec::event_type(GetPrice::EVENT_TYPE, "pricing")
                .kind(SubscriptionKind::Shared),
            |request: GetPrice, _ctx: Context| async move {
                Ok::<_, HandlerError>(Price {
                    cents: request.sku.len() as u64 * 100,
                    sku: request.sku,
                })
            },
        )
        .await?;
    let requester = Requester::start(&bus, common::unique("replies")).await?;
    for sku in ["a", "bbb", "cc"] {
        let price: Price = requester
            .request(&GetPrice { sku: sku.into() }, common::PATIENCE)
            .await?;
        assert_eq!(
            price,
            Price {
                sku: sku.into(),
                cents: sku.len() as u64 * 100
            }
        );
    }
    // Concurrent requests each get their own reply.
    let (xx, yyyy) = (
        GetPrice { sku: "xx".into() },
        GetPrice { sku: "yyyy".into() },
    );
    let (x, y) = tokio::join!(
        requester.request::<GetPrice, Price>(&xx, common::PATIENCE),
        requester.request::<GetPrice, Price>(&yyyy, common::PATIENCE),
    );
    assert_eq!(x?.cents, 200);
    assert_eq!(y?.cents, 400);
    requester.shutdown().await?;
    responder.shutdown().await?;
    pulsar.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_request_times_out_clearly() -> TestResult {
    let (pulsar, bus) = bus().await;
    let reply_topic = common::unique("replies");
    let requester = Requester::start(&bus, reply_topic.clone()).await?;
    let timeout = Duration::from_millis(800);
    let started = Instant::now();
    let error = requester
        .request::<GetPrice, Price>(
            &GetPrice {
                sku: "nobody".into(),
            },
            timeout,
        )
        .await
        .expect_err("nobody responds");
    let waited = started.elapsed();
    match &error {
        BusError::Timeout { operation, after } => {
            assert_eq!(*after, timeout);
            assert!(operation.contains(GetPrice::EVENT_TYPE), "{operation}");
            assert!(operation.contains(Price::EVENT_TYPE), "{operation}");
            assert!(operation.contains(&reply_topic), "{operation}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The upper bound only tells "gave up" from "hung": the request is published to the real
    // broker first, which on a loaded machine can take seconds, so allow it common::PATIENCE.
    assert!(
        waited >= timeout && waited < timeout + common::PATIENCE,
        "gave up after {waited:?}"
    );
    requester.shutdown().await?;
    pulsar.close().await?;
    Ok(())
}
