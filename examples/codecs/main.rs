//! Events in Avro and Protobuf: `UserCreated` as Avro with a schema derived from the Rust type,
//! `OrderShipped` as Protobuf generated from `proto/shipping.proto`. Both schemas are declared
//! to the backend at start-up (on Pulsar they land in its schema registry, on Kafka in the
//! configured Confluent-compatible one; an incompatible change fails here rather than at the
//! first message).
//!
//! The other examples publish `UserCreated` as JSON, and a topic holds one encoding (on Pulsar
//! a JSON event is refused on a topic of Avro records), so this example's events go to topics
//! of their own, `codecs-example.<event type>`, unless the configuration maps them elsewhere.
//!
//! ```text
//! cargo run --example codecs
//! BENTO_MESSAGING__BACKEND=pulsar cargo run --example codecs --features pulsar
//! # on Kafka with a Confluent-compatible schema registry (the dev-env's: `cargo xtask dev-env
//! # up all`): schemas registered under <topic>-value, records in Confluent's wire format
//! BENTO_MESSAGING__BACKEND=kafka \
//!   BENTO_MESSAGING__KAFKA__SCHEMA_REGISTRY__URL=http://127.0.0.1:8081/apis/ccompat/v7 \
//!   cargo run --example codecs --features kafka
//! cargo run --example codecs -- --asyncapi     # its AsyncAPI document, no broker needed
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bento_examples::shipping::{OrderShipped, order_shipped_codec};
use bento_examples::users::UserCreated;
use bento_runtime::prelude::*;
use bento_runtime::{AvroCodec, Config, Format};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("codecs example failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let bento = Bento::from_config(config()?).await?;
    let bus = bento.bus();
    bus.codec().register(AvroCodec::<UserCreated>::derived()?);
    bus.codec().register(order_shipped_codec());
    bus.declare::<UserCreated>().await?;
    bus.declare::<OrderShipped>().await?;
    if !bento.is_offline() {
        println!(
            "Codecs example on the `{}` backend: schemas declared",
            bus.message_bus().backend()
        );
    }

    let (tx, mut seen) = mpsc::unbounded_channel::<String>();
    let subscriptions = subscribe(&bus, tx).await?;
    if bento_examples::print_asyncapi_if_asked(&bento, "codecs")? {
        return Ok(());
    }

    bus.publish(&UserCreated {
        user_id: "u-7".into(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
    })
    .await?;
    bus.publish(&OrderShipped {
        order_id: "o-42".into(),
        carrier: "DHL".into(),
        parcel_ids: vec!["p-1".into(), "p-2".into()],
        shipped_at_ms: 1_795_000_000_000,
    })
    .await?;

    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await?
            .ok_or("handlers stopped")?;
        println!("  received {line}");
    }
    for subscription in subscriptions {
        subscription.shutdown().await?;
    }
    bento.shutdown().await?;
    Ok(())
}

/// bento.toml (or BENTO_CONFIG) and BENTO_ variables as usual, with this example's topics where
/// they say nothing else, `UserCreated` as Avro and `OrderShipped` as Protobuf.
fn config() -> Result<Config, Box<dyn std::error::Error>> {
    let path = std::env::var_os("BENTO_CONFIG").map_or_else(|| "bento.toml".into(), PathBuf::from);
    let topics = BTreeMap::from([
        (UserCreated::EVENT_TYPE, "codecs-example.users.user-created"),
        (
            OrderShipped::EVENT_TYPE,
            "codecs-example.shipping.order-shipped",
        ),
    ]);
    let figment = Config::figment(&path)
        .join(("messaging.pulsar.topics.event_types", &topics))
        .join(("messaging.kafka.topics", &topics));
    let mut config = Config::from_figment(figment)?;
    config
        .codec
        .event_types
        .insert(UserCreated::EVENT_TYPE.into(), Format::Avro.into());
    config
        .codec
        .event_types
        .insert(OrderShipped::EVENT_TYPE.into(), Format::Protobuf.into());
    Ok(config)
}

/// What a handler saw: the event type, its encoding, its size and the decoded event.
fn describe(event: &impl std::fmt::Debug, ctx: &Context) -> String {
    format!(
        "{} ({}, {} bytes): {event:?}",
        ctx.event_type(),
        ctx.envelope().content_type,
        ctx.envelope().payload.len()
    )
}

/// One subscription to each event type; each handler sends [`describe`]'s line to `tx`.
async fn subscribe(
    bus: &Bus,
    tx: mpsc::UnboundedSender<String>,
) -> Result<[Subscription; 2], BusError> {
    let users = {
        let tx = tx.clone();
        move |event: UserCreated, ctx: Context| {
            let _ = tx.send(describe(&event, &ctx));
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let shipments = move |event: OrderShipped, ctx: Context| {
        let _ = tx.send(describe(&event, &ctx));
        async { Ok::<(), HandlerError>(()) }
    };
    Ok([
        bus.subscribe_with(
            SubscriptionSpec::event_type(UserCreated::EVENT_TYPE, "codecs-example.users"),
            users,
        )
        .await?,
        bus.subscribe_with(
            SubscriptionSpec::event_type(OrderShipped::EVENT_TYPE, "codecs-example.shipments"),
            shipments,
        )
        .await?,
    ])
}
