//! Broker deduplication and Bento's inbox on the real broker: a publisher restart loses
//! nothing, and a republished envelope (same id) is handled once by an `Idempotent` handler.
//! Each test enables deduplication on a fresh namespace `public/<unique>`.

mod common;

use std::collections::HashSet;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bento_application::{
    Bus, Context, HandlerError, Idempotent, Inbox, MessageBus, PublishOptions, SubscriptionSpec,
};
use bento_codec::Codecs;
use bento_domain::{DomainEvent, Envelope, MessageId};
use bento_pulsar::PulsarBus;
use bento_pulsar::admin::PulsarAdmin;
use futures::StreamExt;
use parking_lot::Mutex;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, SubType, TokioExecutor};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl DomainEvent for Ping {
    const EVENT_TYPE: &'static str = "dedup.ping";
    const AGGREGATE_TYPE: &'static str = "ping";
    fn aggregate_id(&self) -> String {
        self.n.to_string()
    }
}

/// A fresh namespace with broker deduplication on, and the configuration of buses in it.
async fn dedup_namespace(what: &str) -> bento_pulsar::PulsarConfig {
    common::share_broker();
    let url = common::admin_url();
    let admin = PulsarAdmin::from_url(&url)
        .unwrap_or_else(|e| panic!("BENTO_TEST_PULSAR_ADMIN_URL `{url}` is unusable: {e}"));
    let name = common::unique(what);
    let namespace = format!("public/{name}");
    admin.create_namespace(&namespace).await.unwrap_or_else(|e| {
        panic!("creating {namespace} at {url} failed ({e}); start the broker with `cargo xtask dev-env up pulsar`")
    });
    admin
        .set_deduplication(&namespace, true)
        .await
        .unwrap_or_else(|e| panic!("enabling deduplication on {namespace}: {e}"));
    assert_eq!(
        admin.deduplication(&namespace).await.ok().flatten(),
        Some(true)
    );
    let mut config = common::config();
    config.namespace = name;
    config
}

/// Every message id on `topic`, read from the start with the raw client.
async fn stored_ids(bus: &PulsarBus, topic: &str, expected: usize) -> Vec<String> {
    let client: pulsar::Pulsar<TokioExecutor> =
        pulsar::Pulsar::builder(common::pulsar_url(), TokioExecutor)
            .build()
            .await
            .unwrap_or_else(|e| panic!("raw client: {e}"));
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(bus.topic_name(topic))
        .with_subscription(common::unique("reader"))
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap_or_else(|e| panic!("raw reader: {e}"));
    let mut ids = Vec::new();
    // Wait for the expected ones, then a little longer for any extra.
    loop {
        let patience = if ids.len() < expected {
            common::PATIENCE
        } else {
            Duration::from_secs(2)
        };
        match tokio::time::timeout(patience, consumer.next()).await {
            Ok(Some(Ok(message))) => {
                let id = message
                    .metadata()
                    .properties
                    .iter()
                    .find(|p| p.key == bento_application::wire::MESSAGE_ID)
                    .map(|p| p.value.clone())
                    .unwrap_or_default();
                ids.push(id);
                let _ = consumer.ack(&message).await;
            }
            _ => break,
        }
    }
    ids
}

fn envelope(n: u32) -> Envelope {
    Envelope::new(
        "dedup.ping",
        1,
        "application/json",
        format!("{{\"n\":{n}}}").into_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_restart_loses_nothing_with_broker_deduplication() -> TestResult {
    let config = dedup_namespace("dedup-restart").await;
    let topic = common::unique("restart");
    let mut sent = Vec::new();
    for round in 0..3 {
        // A new bus each round: a restarted service, with fresh producers.
        let bus = common::bus_with(config.clone()).await;
        for n in 0..5 {
            let envelope = envelope(round * 10 + n);
            sent.push(envelope.id.to_string());
            bus.publish(envelope, PublishOptions::default().to_topic(&topic))
                .await?;
        }
        bus.close().await?;
    }
    let bus = common::bus_with(config.clone()).await;
    let stored = stored_ids(&bus, &topic, sent.len()).await;
    assert_eq!(
        stored, sent,
        "every publish of every restart is stored once, in order"
    );

    // The control: a producer that reuses a name starts again at sequence id 0, and the
    // broker (deduplication on) drops its messages. This is why Bento names producers
    // uniquely; it also shows deduplication is really on for the namespace.
    let raw_topic = bus.topic_name(&common::unique("reused-name"));
    let client: pulsar::Pulsar<TokioExecutor> =
        pulsar::Pulsar::builder(common::pulsar_url(), TokioExecutor)
            .build()
            .await?;
    for round in 0..2u32 {
        let mut producer = client
            .producer()
            .with_topic(&raw_topic)
            .with_name("always-the-same")
            .build()
            .await?;
        for n in 0..3u32 {
            let message = pulsar::producer::Message {
                payload: format!("{round}-{n}").into_bytes(),
                properties: [(
                    bento_application::wire::MESSAGE_ID.to_owned(),
                    format!("{round}-{n}"),
                )]
                .into(),
                ..Default::default()
            };
            producer.send_non_blocking(message).await?.await?;
        }
        producer.close().await?;
    }
    let raw = stored_ids(&bus, &raw_topic, 3).await;
    assert_eq!(
        raw,
        ["0-0", "0-1", "0-2"],
        "the broker dropped the reused name's second run as duplicates"
    );
    bus.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_envelope_is_handled_once_by_an_idempotent_handler() -> TestResult {
    let config = dedup_namespace("dedup-inbox").await;
    let pulsar = common::bus_with(config).await;
    let bus = Bus::new(Arc::new(pulsar.clone()), Codecs::default());

    let handled: Arc<Mutex<Vec<MessageId>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<MessageId>>> = Arc::default();
    let inbox = Inbox::with_capacity(1000);
    let handler = {
        let handled = handled.clone();
        move |_event: Ping, ctx: Context| {
            handled.lock().push(ctx.message_id());
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let once = bus
        .subscribe_with(
            SubscriptionSpec::event_type(Ping::EVENT_TYPE, "idempotent"),
            Idempotent::new(handler, inbox.clone()),
        )
        .await?;
    // A second subscription sees what the broker delivers, without the inbox.
    let all = bus
        .subscribe_with(SubscriptionSpec::event_type(Ping::EVENT_TYPE, "all"), {
            let delivered = delivered.clone();
            move |_event: Ping, ctx: Context| {
                delivered.lock().push(ctx.message_id());
                std::future::ready(Ok::<(), HandlerError>(()))
            }
        })
        .await?;

    let first = bus.envelope(&Ping { n: 1 })?;
    let other = bus.envelope(&Ping { n: 2 })?;
    // The same envelope twice (an outbox relay that crashed before marking it sent), then
    // another; the broker stores all three: its deduplication is by producer sequence id,
    // and the republish is a new send.
    for envelope in [first.clone(), first.clone(), other.clone()] {
        pulsar.publish(envelope, PublishOptions::default()).await?;
    }
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while delivered.lock().len() < 3 || handled.lock().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries: {:?}, handled: {:?}",
            delivered.lock(),
            handled.lock()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a wrongly handled duplicate the time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = delivered.lock().clone();
    let handled = handled.lock().clone();
    assert_eq!(
        delivered,
        [first.id, first.id, other.id],
        "the broker delivered the duplicate"
    );
    assert_eq!(handled, [first.id, other.id], "the inbox handled it once");
    assert_eq!(
        handled.iter().collect::<HashSet<_>>().len(),
        2,
        "no id handled twice"
    );
    assert!(inbox.contains(&first.id) && inbox.contains(&other.id));
    once.shutdown().await?;
    all.shutdown().await?;
    pulsar.close().await?;
    Ok(())
}
