//! Orders and shipping, two services joined by events that are never lost and never acted on
//! twice: the orders service stores each order and its `OrderPlaced` event in one database
//! transaction (the transactional outbox), a relay publishes the event after the commit, and
//! the shipping service handles it behind a durable inbox, writing the shipment in the same
//! transaction that records the message.
//!
//! SQLite by default (two files in a temporary directory); PostgreSQL, Pulsar or Kafka by
//! configuration, with the same code:
//!
//! ```text
//! cargo run --example orders
//! BENTO_OUTBOX__DATABASE_URL=postgres://bento@127.0.0.1:5433/bento \
//!     cargo run --example orders --features postgres
//! BENTO_MESSAGING__BACKEND=pulsar cargo run --example orders
//! cargo run --example orders -- --asyncapi     # its AsyncAPI document, no broker needed
//! ```
//!
//! Two more modes run each service on its own, for crash drills:
//! `orders place <N>` places orders 1 to N (resuming after the last one stored), then waits
//! until the relay published them; `orders ship` ships until SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use bento_examples::orders::{
    OrderPlaced, Placement, create_order_tables, create_shipping_tables, place_order, ship_order,
    shipments,
};
use bento_runtime::prelude::*;
use bento_runtime::sqlx::{Outbox, sqlx};
use bento_runtime::{Config, InboxConfig, OutboxConfig};

/// The orders of the demo: the second is refused by the risk check.
const DEMO_ORDERS: [i64; 5] = [2_500, 25_000, 900, 4_000, 7_000];
/// How long the demo waits for the shipments.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> ExitCode {
    // `--asyncapi` (read by the runtime) prints the demo's AsyncAPI document instead.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != bento_runtime::asyncapi::ASYNCAPI_ARG)
        .collect();
    let run = match args.first().map(String::as_str) {
        None => demo().await,
        Some("place") => match args.get(1).and_then(|n| n.parse().ok()) {
            Some(count) => place(count).await,
            None => Err("usage: orders place <number of orders>".into()),
        },
        Some("ship") => ship().await,
        Some(other) => {
            Err(format!("unknown mode `{other}`: use no argument, `place <N>` or `ship`").into())
        }
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The configuration, with SQLite files in `dir` where it names no database.
fn config_with_defaults(dir: &std::path::Path) -> Result<Config> {
    let mut config = Config::load()?;
    config.outbox.get_or_insert_with(|| OutboxConfig {
        database_url: format!("sqlite://{}", dir.join("orders.db").display()),
        ..OutboxConfig::default()
    });
    let inbox = config.inbox.get_or_insert_with(InboxConfig::default);
    if inbox.database_url.is_none()
        && config
            .outbox
            .as_ref()
            .is_some_and(|o| o.database_url.starts_with("sqlite"))
    {
        // Two services, two databases.
        inbox.database_url = Some(format!("sqlite://{}", dir.join("shipping.db").display()));
    }
    Ok(config)
}

/// Where the demo keeps its SQLite files: a directory of its own per run (`per_run`), or one
/// shared by every run, so that `place` and `ship` started again find their data.
fn scratch_dir(per_run: bool) -> Result<std::path::PathBuf> {
    let name = if per_run {
        format!("bento-orders-{}", std::process::id())
    } else {
        "bento-orders".to_string()
    };
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn demo() -> Result {
    let dir = scratch_dir(true)?;
    let bento = Bento::from_config(config_with_defaults(&dir)?).await?;
    let backend = bento.config().messaging.backend.as_str();
    let outbox = bento.outbox()?;
    let inbox = bento.inbox()?;
    if !bento.is_offline() {
        println!(
            "Bento orders on the `{backend}` backend, outbox on {:?}",
            outbox.dialect()
        );
    }
    create_order_tables(&outbox).await?;
    create_shipping_tables(inbox.pool()).await?;
    let shipping = bento
        .bus()
        .subscribe_with(
            SubscriptionSpec::named("orders-demo.shipping").layer(inbox.layer()),
            ship_order,
        )
        .await?;
    if bento.is_offline() {
        // What the outbox relays, declared so that the contract names it.
        bento.bus().declare::<OrderPlaced>().await?;
        bento_examples::print_asyncapi_if_asked(&bento, "orders")?;
        shipping.shutdown().await?;
        return Ok(());
    }

    let placed = place_demo_orders(&outbox).await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while shipment_counts(inbox.pool(), &placed).await?.len() < placed.len() {
        if tokio::time::Instant::now() > deadline {
            return Err("the shipments did not arrive in time".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same event once more, as a crash before an acknowledgement would redeliver it.
    let (number, ..) = placed[0];
    publish_again(&bento, placed[0]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = shipment_counts(inbox.pool(), &placed).await?;
    println!(
        "order {number}: delivered again, shipped {} time(s) in all",
        counts[0]
    );
    println!(
        "Done: {} orders placed, {} refused, {} shipped, each once.",
        placed.len(),
        DEMO_ORDERS.len() - placed.len(),
        counts.iter().filter(|&&c| c == 1).count()
    );
    shipping.shutdown().await?;
    bento.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// An order the demo placed: its number, its amount in cents and its event's id.
type Placed = (i64, i64, MessageId);

/// Places [`DEMO_ORDERS`] after the highest number stored; returns those the risk check let
/// through.
async fn place_demo_orders(outbox: &Outbox<sqlx::Any, Codecs>) -> Result<Vec<Placed>> {
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM orders")
        .fetch_one(outbox.pool())
        .await?;
    let mut placed = Vec::new();
    for (number, amount) in (first..).zip(DEMO_ORDERS) {
        match place_order(outbox, number, amount).await? {
            Placement::Placed(id) => {
                println!("order {number}: placed ({amount} cents), event {id} stored with it");
                placed.push((number, amount, id));
            }
            Placement::Refused => println!(
                "order {number}: refused by the risk check ({amount} cents): no row, no event"
            ),
        }
    }
    Ok(placed)
}

/// How many shipments each of the `placed` orders that shipped has, in order-id order.
async fn shipment_counts(pool: &sqlx::Pool<sqlx::Any>, placed: &[Placed]) -> Result<Vec<i64>> {
    Ok(shipments(pool)
        .await?
        .into_iter()
        .filter(|(order, _)| {
            placed
                .iter()
                .any(|(n, ..)| *order == format!("order-{n:06}"))
        })
        .map(|(_, count)| count)
        .collect())
}

/// Publishes an order's `OrderPlaced` again, under the id of the event the outbox published.
async fn publish_again(bento: &Bento, (number, amount, id): Placed) -> Result {
    let mut again = bento.bus().envelope(&OrderPlaced {
        order_id: format!("order-{number:06}"),
        number,
        amount_cents: amount,
    })?;
    again.id = id;
    bento
        .bus()
        .publish_envelopes(vec![again], PublishOptions::default())
        .await?;
    Ok(())
}

/// Orders 1 to `count`: every tenth is refused. Resumes after the highest number stored, so
/// a run killed at any point and started again ends with the same orders.
async fn place(count: i64) -> Result {
    let dir = scratch_dir(false)?;
    let bento = Bento::from_config(config_with_defaults(&dir)?).await?;
    let outbox = bento.outbox()?;
    create_order_tables(&outbox).await?;
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM orders")
        .fetch_one(outbox.pool())
        .await?;
    println!("placing orders {first} to {count}");
    for number in first..=count {
        let amount = if number % 10 == 0 {
            50_000
        } else {
            1_000 + number % 500
        };
        place_order(&outbox, number, amount).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while outbox.backlog().await?.depth > 0 {
        if tokio::time::Instant::now() > deadline {
            return Err("the relay did not publish the backlog in time".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("placed up to {count}; the relay published everything");
    bento.shutdown().await?;
    Ok(())
}

/// Ships until SIGTERM or Ctrl-C.
async fn ship() -> Result {
    let dir = scratch_dir(false)?;
    let bento = Bento::from_config(config_with_defaults(&dir)?).await?;
    let inbox = bento.inbox()?;
    create_shipping_tables(inbox.pool()).await?;
    let shipping = bento
        .bus()
        .subscribe_with(
            SubscriptionSpec::named("orders.shipping")
                .concurrency(8)
                .layer(inbox.layer()),
            ship_order,
        )
        .await?;
    println!("shipping: ready");
    let signal = shutdown_signal().await;
    println!("{signal}: stopping");
    shipping.shutdown().await?;
    bento.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
