//! Orders: an aggregate whose event is stored with it in one database transaction (the
//! outbox), and a shipping handler whose effects happen once per event (the durable inbox).
//!
//! The SQL is portable: the same statements run on SQLite and on PostgreSQL, so the service
//! switches database by configuration (`BENTO_OUTBOX__DATABASE_URL`).

use bento_application::{Context, HandlerError, UnitOfWorkError};
use bento_domain::{AggregateRoot, DomainEvent, EventRecorder, MessageId};
use bento_runtime::Codecs;
use bento_runtime::sqlx::sqlx::{self, Any};
use bento_runtime::sqlx::{InboxTransaction, Outbox};
use serde::{Deserialize, Serialize};

/// The largest order the risk check lets through, in cents.
pub const RISK_LIMIT_CENTS: i64 = 10_000;

/// An order was placed (and its row committed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// Its number in the stream of commands that placed it.
    pub number: i64,
    /// What it costs.
    pub amount_cents: i64,
}

impl DomainEvent for OrderPlaced {
    const EVENT_TYPE: &'static str = "orders.order-placed";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

/// The order aggregate.
#[derive(Debug)]
pub struct Order {
    id: String,
    number: i64,
    amount_cents: i64,
    events: EventRecorder,
}

impl Order {
    /// Places order `number`, recording [`OrderPlaced`].
    pub fn place(number: i64, amount_cents: i64) -> Self {
        let id = format!("order-{number:06}");
        let mut order = Self {
            id: id.clone(),
            number,
            amount_cents,
            events: EventRecorder::default(),
        };
        order.events.record(OrderPlaced {
            order_id: id,
            number,
            amount_cents,
        });
        order
    }
}

impl AggregateRoot for Order {
    fn events(&mut self) -> &mut EventRecorder {
        &mut self.events
    }
}

/// The orders service's tables (Bento's own come with `[outbox] migrate = true`).
pub async fn create_order_tables(outbox: &Outbox<Any, Codecs>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS orders (\
         id TEXT PRIMARY KEY, number BIGINT NOT NULL UNIQUE, amount_cents BIGINT NOT NULL)",
    )
    .execute(outbox.pool())
    .await?;
    Ok(())
}

/// How placing an order ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// Stored, and its event will be published.
    Placed(MessageId),
    /// Refused by the risk check: neither the row nor the event remains.
    Refused,
}

/// Why placing an order failed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// A statement failed.
    #[error("storing the order failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The unit of work failed.
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
    /// No outbox could be opened.
    #[error(transparent)]
    Outbox(#[from] bento_runtime::sqlx::SqlError),
}

/// The `PlaceOrder` use case: stores the order, runs the risk check against what is stored,
/// and commits the order and its event together, or neither.
pub async fn place_order(
    outbox: &Outbox<Any, Codecs>,
    number: i64,
    amount_cents: i64,
) -> Result<Placement, PlaceError> {
    let mut order = Order::place(number, amount_cents);
    let mut work = outbox.begin().await?;
    sqlx::query("INSERT INTO orders (id, number, amount_cents) VALUES ($1, $2, $3)")
        .bind(order.id.clone())
        .bind(order.number)
        .bind(order.amount_cents)
        .execute(&mut *work)
        .await?;
    let stored: i64 = sqlx::query_scalar("SELECT amount_cents FROM orders WHERE id = $1")
        .bind(order.id.clone())
        .fetch_one(&mut *work)
        .await?;
    if stored > RISK_LIMIT_CENTS {
        work.rollback().await?;
        return Ok(Placement::Refused);
    }
    work.collect(&mut order);
    let ids = work.commit().await?;
    Ok(Placement::Placed(ids[0]))
}

/// The shipping service's table. No unique key on purpose: a second effect of one event would
/// show as a second row.
pub async fn create_shipping_tables(pool: &sqlx::Pool<Any>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS shipments (order_id TEXT NOT NULL, message_id TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Ships an order: writes the shipment through the durable inbox's transaction, so that the
/// shipment and the record of this message commit together.
pub async fn ship_order(event: OrderPlaced, ctx: Context) -> Result<(), HandlerError> {
    let transaction = InboxTransaction::<Any>::of(&ctx)?;
    let mut conn = transaction.lock().await?;
    sqlx::query("INSERT INTO shipments (order_id, message_id) VALUES ($1, $2)")
        .bind(event.order_id)
        .bind(ctx.message_id().to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Shipments per order, as the shipping service stored them.
pub async fn shipments(pool: &sqlx::Pool<Any>) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT order_id, COUNT(*) FROM shipments GROUP BY order_id ORDER BY order_id")
        .fetch_all(pool)
        .await
}
