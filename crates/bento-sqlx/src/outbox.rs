//! The transactional outbox: events are rows in the business transaction, published after.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bento_application::domain::{AggregateRoot, DomainEvent, Envelope, MessageId};
use bento_application::{Bus, Codec, Context, RecordedEvents, UnitOfWorkError};

use crate::database::{Dialect, OutboxDatabase};
use crate::relay::{LocalRelay, Relay, RelayConfig};
use crate::row::{NewRow, now_millis};
use crate::{SqlError, pool};

/// Connections an outbox opens when it connects by URL.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Events stored in the same database transaction as the business data, then published by a
/// [`Relay`]: a crash or a broker outage between the commit and the publish loses nothing.
///
/// `DB` is the sqlx driver the service writes with: `sqlx::Sqlite`, `sqlx::Postgres`, or
/// `sqlx::Any` to pick the database by configuration.
///
/// ```no_run
/// # use bento_application::{Bus, Codec};
/// # use bento_sqlx::Outbox;
/// # async fn demo<C: Codec>(bus: Bus<C>) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = Outbox::<sqlx::Sqlite, _>::connect("sqlite://orders.db", bus).await?;
/// outbox.migrate().await?;
/// let relay = outbox.relay(Default::default());
///
/// let mut work = outbox.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES ($1)")
///     .bind("o-1")
///     .execute(&mut *work)
///     .await?;
/// // work.collect(&mut order) or work.record(OrderPlaced { .. })
/// work.commit().await?;
/// # relay.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Outbox<DB: OutboxDatabase, C> {
    pool: sqlx::Pool<DB>,
    dialect: Dialect,
    bus: Bus<C>,
    /// This process's relay: woken at each commit, and whether it leads.
    local: Arc<LocalRelay>,
    url: Option<String>,
}

impl<DB: OutboxDatabase, C> Clone for Outbox<DB, C> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            dialect: self.dialect,
            bus: self.bus.clone(),
            local: self.local.clone(),
            url: self.url.clone(),
        }
    }
}

impl<DB: OutboxDatabase, C> std::fmt::Debug for Outbox<DB, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl<DB: OutboxDatabase, C: Codec> Outbox<DB, C> {
    /// Connects to `url` (`sqlite://file.db`, created if missing, or `postgres://...`);
    /// events are encoded with `bus`'s codec and the relay publishes through `bus`.
    pub async fn connect(url: &str, bus: Bus<C>) -> Result<Self, SqlError> {
        Self::connect_with(url, bus, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`Outbox::connect`] with a pool of at most `max_connections` connections.
    pub async fn connect_with(
        url: &str,
        bus: Bus<C>,
        max_connections: u32,
    ) -> Result<Self, SqlError> {
        let (pool, dialect) =
            pool::connect::<DB>("outbox.database_url", url, max_connections.max(1)).await?;
        let mut outbox = Self::with_pool(pool, dialect, bus);
        outbox.url = Some(url.to_string());
        Ok(outbox)
    }

    /// An outbox over a pool the service already has (the one its repositories use).
    pub fn with_pool(pool: sqlx::Pool<DB>, dialect: Dialect, bus: Bus<C>) -> Self {
        Self {
            pool,
            dialect,
            bus,
            local: Arc::default(),
            url: None,
        }
    }

    /// Creates Bento's tables, or brings them up to date. Safe to run from several processes
    /// at once; the history is kept in `_bento_migrations`, apart from the service's own.
    pub async fn migrate(&self) -> Result<(), SqlError> {
        DB::migrate(&self.pool)
            .await
            .map_err(|source| SqlError::Migrate { source })
    }

    /// The pool, for the service's reads and for writes outside a unit of work.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The dialect of the database.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Starts a unit of work: a database transaction for the service's writes, and the events
    /// to store with them.
    pub async fn begin(&self) -> Result<OutboxWork<DB, C>, SqlError> {
        let transaction = begin(&self.pool, self.dialect).await?;
        Ok(OutboxWork {
            transaction: Some(transaction),
            outbox: self.clone(),
            events: RecordedEvents::default(),
        })
    }

    /// Stores envelopes through a transaction the caller owns (a durable inbox's, in a
    /// handler): they are published once that transaction commits, and never if it rolls back.
    pub async fn store(
        &self,
        conn: &mut DB::Connection,
        envelopes: &[Envelope],
    ) -> Result<(), SqlError> {
        let rows: Vec<NewRow> = envelopes.iter().map(NewRow::from_envelope).collect();
        DB::insert_rows(conn, &rows, self.local.others_need_notice())
            .await
            .map_err(SqlError::database(format!(
                "storing {} outbox row(s)",
                rows.len()
            )))?;
        self.local.committed.notify_one();
        Ok(())
    }

    /// Starts the relay that publishes committed events in this process. Several processes may
    /// each run one: one at a time publishes, the others stand by.
    pub fn relay(&self, config: RelayConfig) -> Relay {
        self.relay_through(self.bus.clone(), config)
    }

    /// Starts the relay publishing through `bus` (the same backend with the publish layers the
    /// service added after this outbox was made).
    pub fn relay_through(&self, bus: Bus<C>, config: RelayConfig) -> Relay {
        Relay::start(
            self.pool.clone(),
            self.dialect,
            bus,
            self.local.clone(),
            self.url.clone(),
            config,
        )
    }

    /// Events waiting for the relay, and how long the oldest has waited.
    pub async fn backlog(&self) -> Result<Backlog, SqlError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(SqlError::database("reading the outbox backlog"))?;
        let (depth, oldest) = DB::pending_stats(&mut conn)
            .await
            .map_err(|source| missing_table_or("reading the outbox backlog", source))?;
        Ok(Backlog {
            depth: u64::try_from(depth).unwrap_or(0),
            oldest_age_ms: oldest.map(|at| u64::try_from(now_millis() - at).unwrap_or(0)),
        })
    }
}

/// What the outbox holds that is not published yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Rows waiting.
    pub depth: u64,
    /// Milliseconds since the oldest waiting row was committed; `None` when nothing waits.
    pub oldest_age_ms: Option<u64>,
}

/// Begins a transaction that takes SQLite's write lock at once: a deferred one that reads
/// first could not upgrade later when another writer got in between.
pub(crate) async fn begin<DB: OutboxDatabase>(
    pool: &sqlx::Pool<DB>,
    dialect: Dialect,
) -> Result<sqlx::Transaction<'static, DB>, SqlError> {
    let begun = match dialect {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Dialect::Postgres => pool.begin().await,
    };
    begun.map_err(SqlError::database("beginning a transaction"))
}

/// A missing Bento table is worth its own message: the migrations did not run.
pub(crate) fn missing_table_or(operation: &str, source: sqlx::Error) -> SqlError {
    let text = source.to_string();
    let missing = ["bento_outbox", "bento_inbox", "bento_leases"]
        .into_iter()
        .find(|table| {
            text.contains(table)
                && (text.contains("no such table") || text.contains("does not exist"))
        });
    match missing {
        Some(table) => SqlError::MissingTable { table, source },
        None => SqlError::Database {
            operation: operation.to_string(),
            source,
        },
    }
}

/// One business operation: the service writes through it (it dereferences to the database
/// connection inside the transaction), aggregates' events are collected into it, and
/// [`OutboxWork::commit`] stores the events in the same transaction and commits. Dropping it
/// rolls everything back.
pub struct OutboxWork<DB: OutboxDatabase, C> {
    transaction: Option<sqlx::Transaction<'static, DB>>,
    outbox: Outbox<DB, C>,
    events: RecordedEvents,
}

impl<DB: OutboxDatabase, C> std::fmt::Debug for OutboxWork<DB, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWork")
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl<DB: OutboxDatabase, C: Codec> OutboxWork<DB, C> {
    /// Marks every event of this unit as caused by the message handled in `ctx`.
    pub fn caused_by(&mut self, ctx: &Context) -> &mut Self {
        self.events.caused_by(ctx);
        self
    }

    /// Takes the events `aggregate` recorded so far.
    pub fn collect(&mut self, aggregate: &mut impl AggregateRoot) -> &mut Self {
        self.events.collect(aggregate);
        self
    }

    /// Adds an event that no aggregate recorded.
    pub fn record<E: DomainEvent>(&mut self, event: E) -> &mut Self {
        self.events.record(event);
        self
    }

    /// Adds an envelope built already (its id is kept).
    pub fn record_envelope(&mut self, envelope: Envelope) -> &mut Self {
        self.events.record_envelope(envelope);
        self
    }

    /// Events this unit will store.
    pub fn pending(&self) -> usize {
        self.events.len()
    }

    /// Encodes the events, stores them in the transaction, commits, and wakes the relay.
    /// Returns the events' ids. Encoding comes first, so a bad event fails the work before
    /// anything is written; after `Ok`, the events will be published even if this process
    /// dies the next instant.
    pub async fn commit(mut self) -> Result<Vec<MessageId>, UnitOfWorkError> {
        let envelopes = self.events.encode(&self.outbox.bus)?;
        let ids = envelopes.iter().map(|e| e.id).collect();
        let Some(mut transaction) = self.transaction.take() else {
            return Ok(Vec::new());
        };
        if !envelopes.is_empty() {
            let rows: Vec<NewRow> = envelopes.iter().map(NewRow::from_envelope).collect();
            let notify = self.outbox.local.others_need_notice();
            DB::insert_rows(&mut transaction, &rows, notify)
                .await
                .map_err(|source| UnitOfWorkError::Commit {
                    source: Box::new(missing_table_or("storing the events in the outbox", source)),
                })?;
        }
        transaction
            .commit()
            .await
            .map_err(|source| UnitOfWorkError::Commit {
                source: Box::new(source),
            })?;
        self.outbox.local.committed.notify_one();
        Ok(ids)
    }

    /// Rolls the transaction back: none of the writes and none of the events remain.
    pub async fn rollback(mut self) -> Result<(), UnitOfWorkError> {
        self.events.clear();
        if let Some(transaction) = self.transaction.take() {
            transaction
                .rollback()
                .await
                .map_err(|source| UnitOfWorkError::Rollback {
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }
}

impl<DB: OutboxDatabase, C> Deref for OutboxWork<DB, C> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match &self.transaction {
            Some(transaction) => transaction,
            // Only commit and rollback take it, and both consume the work.
            None => unreachable!("an outbox work's transaction is present until it ends"),
        }
    }
}

impl<DB: OutboxDatabase, C> DerefMut for OutboxWork<DB, C> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match &mut self.transaction {
            Some(transaction) => transaction,
            None => unreachable!("an outbox work's transaction is present until it ends"),
        }
    }
}
