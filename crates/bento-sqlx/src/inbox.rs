//! The durable inbox: a message's effects happen once, however often it is delivered.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use bento_application::{Context, EnvelopeHandler, HandlerError, Outcome};
use futures::future::BoxFuture;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tower_layer::Layer;

use crate::database::{Dialect, OutboxDatabase};
use crate::outbox::{begin, missing_table_or};
use crate::row::now_millis;
use crate::{SqlError, pool};

/// Connections a durable inbox opens when it connects by URL.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Records, in the handler's own database transaction, which messages each subscription
/// handled: the handler's writes and the record commit together, so a message delivered again
/// (a crash before the ack, a relay publishing twice, a replay) has its effects once.
///
/// Add [`DurableInbox::layer`] to a subscription (or to the whole bus); the handler writes
/// through the [`InboxTransaction`] it finds in its context.
///
/// ```no_run
/// # use bento_application::{Context, HandlerError};
/// # use bento_sqlx::{DurableInbox, InboxTransaction};
/// # #[derive(serde::Deserialize)] struct OrderPlaced { id: String }
/// async fn reserve_stock(event: OrderPlaced, ctx: Context) -> Result<(), HandlerError> {
///     let transaction = InboxTransaction::<sqlx::Sqlite>::of(&ctx)?;
///     let mut conn = transaction.lock().await?;
///     sqlx::query("INSERT INTO reservations (order_id) VALUES ($1)")
///         .bind(&event.id)
///         .execute(&mut *conn)
///         .await?;
///     Ok(())
/// }
/// ```
pub struct DurableInbox<DB: OutboxDatabase> {
    pool: sqlx::Pool<DB>,
    dialect: Dialect,
}

impl<DB: OutboxDatabase> Clone for DurableInbox<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            dialect: self.dialect,
        }
    }
}

impl<DB: OutboxDatabase> std::fmt::Debug for DurableInbox<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableInbox")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl<DB: OutboxDatabase> DurableInbox<DB> {
    /// Connects to `url` (`sqlite://file.db`, created if missing, or `postgres://...`).
    pub async fn connect(url: &str) -> Result<Self, SqlError> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`DurableInbox::connect`] with a pool of at most `max_connections` connections.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        let (pool, dialect) =
            pool::connect::<DB>("inbox.database_url", url, max_connections.max(1)).await?;
        Ok(Self::with_pool(pool, dialect))
    }

    /// A durable inbox over a pool the service already has (so that handlers write to the
    /// service's database).
    pub fn with_pool(pool: sqlx::Pool<DB>, dialect: Dialect) -> Self {
        Self { pool, dialect }
    }

    /// Creates Bento's tables, or brings them up to date (the same migrations as the outbox's).
    pub async fn migrate(&self) -> Result<(), SqlError> {
        DB::migrate(&self.pool)
            .await
            .map_err(|source| SqlError::Migrate { source })
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The layer that runs each handler inside a transaction recording its message.
    pub fn layer(&self) -> DurableInboxLayer<DB> {
        DurableInboxLayer {
            inbox: self.clone(),
        }
    }

    /// Whether `subscription` handled `message_id` (and its transaction committed).
    pub async fn contains(&self, subscription: &str, message_id: &str) -> Result<bool, SqlError> {
        let mut transaction = begin(&self.pool, self.dialect).await?;
        // A claim that is rolled back: true when the row was not there.
        let fresh = DB::claim_message(&mut transaction, subscription, message_id, now_millis())
            .await
            .map_err(|source| missing_table_or("reading the inbox", source))?;
        let _ = transaction.rollback().await;
        Ok(!fresh)
    }

    /// Deletes the records of messages handled longer ago than `retention`; returns how many.
    /// A message delivered again after that is handled again, so keep it longer than any
    /// redelivery or replay can take.
    pub async fn forget_older_than(&self, retention: Duration) -> Result<u64, SqlError> {
        let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(SqlError::database("cleaning up the inbox"))?;
        DB::delete_handled_before(&mut conn, now_millis().saturating_sub(retention))
            .await
            .map_err(|source| missing_table_or("cleaning up the inbox", source))
    }

    /// Runs [`DurableInbox::forget_older_than`] every `retention / 10` (at most hourly) until
    /// the returned task is aborted.
    pub fn spawn_cleanup(&self, retention: Duration) -> tokio::task::JoinHandle<()> {
        let inbox = self.clone();
        let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                if let Err(error) = inbox.forget_older_than(retention).await {
                    tracing::warn!(%error, "durable inbox: cleanup failed");
                }
            }
        })
    }
}

/// 200 ms doubling per attempt, at most 30 s: the wait after the inbox's own database failed.
fn database_backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(8);
    Duration::from_millis(200 << exponent).min(Duration::from_secs(30))
}

/// The transaction a [`DurableInboxLayer`] opened for the delivery being handled. It commits
/// when the handler acknowledges, and rolls back otherwise.
pub struct InboxTransaction<DB: OutboxDatabase> {
    slot: Arc<Mutex<Option<sqlx::Transaction<'static, DB>>>>,
}

impl<DB: OutboxDatabase> Clone for InboxTransaction<DB> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
        }
    }
}

impl<DB: OutboxDatabase> std::fmt::Debug for InboxTransaction<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxTransaction").finish_non_exhaustive()
    }
}

impl<DB: OutboxDatabase> InboxTransaction<DB> {
    /// The transaction of the delivery `ctx` describes. Fails (permanently: retrying cannot
    /// help) when no durable inbox of this database type runs around the handler.
    pub fn of(ctx: &Context) -> Result<Self, HandlerError> {
        ctx.extension::<Self>().cloned().ok_or_else(|| {
            HandlerError::permanent(format!(
                "subscription `{}` has no durable inbox on {} around its handler: add \
                 `DurableInbox::layer()` to it",
                ctx.subscription(),
                DB::NAME
            ))
        })
    }

    /// Locks the transaction for a statement or several; the guard dereferences to the
    /// connection (`.execute(&mut *conn)`).
    pub async fn lock(&self) -> Result<InboxConnection<DB>, HandlerError> {
        let guard = self.slot.clone().lock_owned().await;
        if guard.is_none() {
            return Err(HandlerError::permanent(
                "the inbox transaction ended with its delivery: use it inside the handler only",
            ));
        }
        Ok(InboxConnection { guard })
    }
}

/// The connection of an [`InboxTransaction`], locked.
pub struct InboxConnection<DB: OutboxDatabase> {
    guard: OwnedMutexGuard<Option<sqlx::Transaction<'static, DB>>>,
}

impl<DB: OutboxDatabase> Deref for InboxConnection<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self.guard.as_ref() {
            Some(transaction) => transaction,
            None => unreachable!("checked when locked, and taken only after the handler"),
        }
    }
}

impl<DB: OutboxDatabase> DerefMut for InboxConnection<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self.guard.as_mut() {
            Some(transaction) => transaction,
            None => unreachable!("checked when locked, and taken only after the handler"),
        }
    }
}

/// Runs the handler inside a transaction that records the message; see [`DurableInbox`].
/// Every delivery gets a transaction of its own: an acknowledged one commits, a retried or
/// dead-lettered one rolls back (with the handler's writes).
pub struct DurableInboxLayer<DB: OutboxDatabase> {
    inbox: DurableInbox<DB>,
}

impl<DB: OutboxDatabase> Clone for DurableInboxLayer<DB> {
    fn clone(&self) -> Self {
        Self {
            inbox: self.inbox.clone(),
        }
    }
}

impl<DB: OutboxDatabase> std::fmt::Debug for DurableInboxLayer<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableInboxLayer").finish_non_exhaustive()
    }
}

impl<S, DB: OutboxDatabase> Layer<S> for DurableInboxLayer<DB> {
    type Service = DurableInboxService<S, DB>;

    fn layer(&self, inner: S) -> Self::Service {
        DurableInboxService {
            inner: Arc::new(inner),
            inbox: self.inbox.clone(),
        }
    }
}

/// The handler a [`DurableInboxLayer`] wraps around another.
pub struct DurableInboxService<S, DB: OutboxDatabase> {
    inner: Arc<S>,
    inbox: DurableInbox<DB>,
}

impl<S, DB: OutboxDatabase> Clone for DurableInboxService<S, DB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            inbox: self.inbox.clone(),
        }
    }
}

impl<S: EnvelopeHandler, DB: OutboxDatabase> EnvelopeHandler for DurableInboxService<S, DB> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let inner = self.inner.clone();
        let inbox = self.inbox.clone();
        Box::pin(async move {
            // The database failed, not the handler: come back after a pause that grows with
            // the attempts, as a retry policy would (this layer runs outside the retry layer).
            let pause = database_backoff(ctx.attempt());
            let retry = |what: &str, error: SqlError| Outcome::Retry {
                error: HandlerError::retryable(format!("durable inbox: {what}")).with_source(error),
                after: Some(pause),
            };
            let mut transaction = match begin(&inbox.pool, inbox.dialect).await {
                Ok(transaction) => transaction,
                Err(error) => return retry("no transaction", error),
            };
            let id = ctx.message_id().to_string();
            // Waits while another delivery of the same message holds the row, then finds it.
            let claimed =
                DB::claim_message(&mut transaction, ctx.subscription(), &id, now_millis())
                    .await
                    .map_err(|source| {
                        missing_table_or("recording the message in the inbox", source)
                    });
            match claimed {
                Ok(true) => {}
                Ok(false) => {
                    let _ = transaction.rollback().await;
                    tracing::debug!(message_id = %id, subscription = ctx.subscription(), "already handled; acknowledged without handling");
                    return Outcome::Ack;
                }
                Err(error) => return retry("recording the message failed", error),
            }
            let shared = InboxTransaction {
                slot: Arc::new(Mutex::new(Some(transaction))),
            };
            let outcome = inner.handle(ctx.with_extension(shared.clone())).await;
            let Some(transaction) = shared.slot.lock().await.take() else {
                return outcome;
            };
            match outcome {
                Outcome::Ack => match transaction.commit().await {
                    Ok(()) => Outcome::Ack,
                    Err(source) => retry(
                        "committing the handler's transaction failed",
                        SqlError::Database {
                            operation: "committing the handler's transaction".to_string(),
                            source,
                        },
                    ),
                },
                other => {
                    let _ = transaction.rollback().await;
                    other
                }
            }
        })
    }
}
