//! The relay: publishes committed outbox rows in `seq` order, marks them after the broker's
//! receipt, one process at a time.
//!
//! Why nothing is skipped: the relay keeps no position. Every round it reads the oldest rows
//! still unmarked and marks exactly the rows the broker took, so a row that becomes visible
//! late (its transaction committed after a later `seq` was published) is read in the next
//! round. Why order per key holds: per ordering key, `seq` order is commit order (SQLite has
//! one writer; on PostgreSQL a unit of work takes its key's advisory lock before its rows get
//! their `seq`), one relay publishes at a time, and each batch is published in `seq` order and
//! republished whole if any of it failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bento_application::{Bus, Codec, PublishOptions};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::database::{Dialect, OutboxDatabase};
use crate::row::now_millis;

/// What the units of work of one process share with the relay running in it.
#[derive(Debug, Default)]
pub(crate) struct LocalRelay {
    /// Wakes the relay as soon as a unit of work committed.
    pub(crate) committed: Notify,
    /// Whether a relay of this process publishes the outbox now. Its units of work then wake it
    /// through `committed` and need not send PostgreSQL's `NOTIFY`, which costs every commit
    /// a round trip and serialises committing transactions on the server.
    leading: AtomicBool,
}

impl LocalRelay {
    /// Whether relays in other processes must be told about a commit.
    pub(crate) fn others_need_notice(&self) -> bool {
        !self.leading.load(Ordering::Acquire)
    }
}

/// The lease name of the relay on SQLite.
const LEASE: &str = "bento-outbox-relay";

/// How the relay works. The defaults suit most services.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Rows read and published per round.
    pub batch_size: usize,
    /// How often the relay looks for rows when nothing woke it (commits in this process, and
    /// on PostgreSQL in every process, wake it at once).
    pub poll_interval: Duration,
    /// How long published rows are kept before cleanup deletes them.
    pub retention: Duration,
    /// On SQLite, how long a relay's lease lasts without renewal: after a crash, another relay
    /// takes over within this time. PostgreSQL's lock ends with the session instead.
    pub lease_ttl: Duration,
    /// The longest wait between attempts while the broker or the database fails.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retention: Duration::from_secs(3600),
            lease_ttl: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RelayConfig {
    /// This configuration with `batch_size` rows per round.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// This configuration polling every `interval`.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// This configuration keeping published rows for `retention`.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// This configuration with SQLite leases lasting `ttl`.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// This configuration backing off at most `max` between failed attempts.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }
}

/// What the relay did so far, for metrics and health checks.
#[derive(Debug, Default)]
pub struct RelayStats {
    published: AtomicU64,
    publish_failures: AtomicU64,
    corrupt_rows: AtomicU64,
    last_lag_ms: AtomicI64,
    leader: AtomicBool,
}

/// A copy of [`RelayStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelaySnapshot {
    /// Events the broker took from this relay.
    pub published: u64,
    /// Rounds whose publish failed (they are retried).
    pub publish_failures: u64,
    /// Rows that could not be read back as envelopes; they stay in the table, marked, for
    /// inspection.
    pub corrupt_rows: u64,
    /// Milliseconds from the commit of the newest row of the last batch to the broker's
    /// receipt.
    pub last_lag_ms: i64,
    /// Whether this relay is the one publishing.
    pub leader: bool,
}

impl RelayStats {
    /// The current values.
    pub fn snapshot(&self) -> RelaySnapshot {
        RelaySnapshot {
            published: self.published.load(Ordering::Relaxed),
            publish_failures: self.publish_failures.load(Ordering::Relaxed),
            corrupt_rows: self.corrupt_rows.load(Ordering::Relaxed),
            last_lag_ms: self.last_lag_ms.load(Ordering::Relaxed),
            leader: self.leader.load(Ordering::Relaxed),
        }
    }
}

/// A running relay. Dropping it stops it; [`Relay::shutdown`] also waits for the round in
/// progress.
#[derive(Debug)]
pub struct Relay {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<RelayStats>,
}

impl Relay {
    pub(crate) fn start<DB: OutboxDatabase, C: Codec>(
        pool: sqlx::Pool<DB>,
        dialect: Dialect,
        bus: Bus<C>,
        local: Arc<LocalRelay>,
        url: Option<String>,
        config: RelayConfig,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(RelayStats::default());
        let worker = Worker {
            pool,
            dialect,
            bus,
            local,
            leading: false,
            url,
            config,
            stats: stats.clone(),
            stopped,
            holder: uuid::Uuid::now_v7().to_string(),
            lock: None,
            lease_renewed: None,
            last_cleanup: Instant::now(),
        };
        Self {
            stop,
            task: Some(tokio::spawn(worker.run())),
            stats,
        }
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelaySnapshot {
        self.stats.snapshot()
    }

    /// The live counters, to export as metrics.
    pub fn stats_handle(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Stops the relay after the round in progress and releases its lease or lock.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Why a round ended early.
enum Round {
    /// Published a batch; go again at once.
    Published,
    /// Nothing to do: wait for a wake-up.
    Idle,
    /// Another relay publishes: stand by.
    NotLeader,
    /// The broker or the database failed: back off.
    Failed,
}

struct Worker<DB: OutboxDatabase, C> {
    pool: sqlx::Pool<DB>,
    dialect: Dialect,
    bus: Bus<C>,
    local: Arc<LocalRelay>,
    /// Whether this relay set `local.leading`.
    leading: bool,
    url: Option<String>,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    stopped: watch::Receiver<bool>,
    /// This relay's name in the SQLite lease.
    holder: String,
    /// On PostgreSQL, the session holding the relay's advisory lock.
    lock: Option<DB::Connection>,
    lease_renewed: Option<Instant>,
    last_cleanup: Instant,
}

impl<DB: OutboxDatabase, C: Codec> Worker<DB, C> {
    async fn run(mut self) {
        let mut wakeups = Wakeups::new(self.dialect, self.url.as_deref()).await;
        let mut failures = 0_u32;
        while !*self.stopped.borrow() {
            let round = self.round().await;
            let pause = match round {
                Round::Published => {
                    failures = 0;
                    continue;
                }
                Round::Idle => {
                    failures = 0;
                    self.cleanup().await;
                    self.config.poll_interval
                }
                Round::NotLeader => self.config.poll_interval.max(Duration::from_secs(1)),
                Round::Failed => {
                    failures = failures.saturating_add(1);
                    backoff(failures, self.config.max_backoff)
                }
            };
            let woken = matches!(round, Round::Idle);
            tokio::select! {
                () = self.local.committed.notified(), if woken => {}
                () = wakeups.next(), if woken => {}
                () = tokio::time::sleep(pause) => {}
                _ = self.stopped.changed() => {}
            }
        }
        self.release().await;
    }

    /// One round: make sure this relay leads, read a batch, publish it, mark it.
    async fn round(&mut self) -> Round {
        match self.lead().await {
            Ok(true) => {}
            Ok(false) => return Round::NotLeader,
            Err(error) => {
                tracing::warn!(%error, "outbox relay: checking its leadership failed");
                return Round::Failed;
            }
        }
        let mut conn = match self.pool.acquire().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "outbox relay: no database connection");
                return Round::Failed;
            }
        };
        let limit = i64::try_from(self.config.batch_size).unwrap_or(i64::MAX);
        let rows = match DB::fetch_pending(&mut conn, limit).await {
            Ok(rows) if rows.is_empty() => return Round::Idle,
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "outbox relay: reading the outbox failed");
                return Round::Failed;
            }
        };
        let mut envelopes = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        let mut corrupt = Vec::new();
        for row in &rows {
            match row.envelope() {
                Ok(envelope) => {
                    envelopes.push(envelope);
                    seqs.push(row.seq);
                }
                Err(error) => {
                    tracing::error!(%error, "outbox relay: a row cannot be published; it is marked and kept");
                    corrupt.push(row.seq);
                }
            }
        }
        if !corrupt.is_empty() {
            // Marked at time 0: never published, and kept by cleanup (which deletes only rows
            // published at a real time), there to be looked at.
            if DB::mark_published(&mut conn, &corrupt, 0).await.is_err() {
                return Round::Failed;
            }
            self.stats
                .corrupt_rows
                .fetch_add(corrupt.len() as u64, Ordering::Relaxed);
        }
        let newest = rows.iter().map(|r| r.created_at).max().unwrap_or_default();
        let count = envelopes.len();
        if count > 0 {
            if let Err(error) = self
                .bus
                .publish_envelopes(envelopes, PublishOptions::default())
                .await
            {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, rows = count, "outbox relay: publishing failed; the rows stay and are published again");
                return Round::Failed;
            }
            if let Err(error) = DB::mark_published(&mut conn, &seqs, now_millis()).await {
                // The broker has them; they will be published once more, and a durable inbox
                // on the other side drops the copies.
                tracing::warn!(%error, rows = count, "outbox relay: marking published rows failed");
                return Round::Failed;
            }
        }
        self.stats
            .published
            .fetch_add(count as u64, Ordering::Relaxed);
        self.stats
            .last_lag_ms
            .store(now_millis() - newest, Ordering::Relaxed);
        Round::Published
    }

    /// Whether this relay may publish: the advisory lock on PostgreSQL (held by a session of
    /// its own, released by the server if the session dies), a renewed lease on SQLite.
    async fn lead(&mut self) -> Result<bool, sqlx::Error> {
        let leads = match self.dialect {
            Dialect::Postgres => self.hold_lock().await?,
            Dialect::Sqlite => self.renew_lease().await?,
        };
        self.set_leading(leads);
        Ok(leads)
    }

    fn set_leading(&mut self, leads: bool) {
        self.stats.leader.store(leads, Ordering::Relaxed);
        if leads != self.leading {
            self.leading = leads;
            self.local.leading.store(leads, Ordering::Release);
        }
    }

    async fn hold_lock(&mut self) -> Result<bool, sqlx::Error> {
        if let Some(lock) = &mut self.lock {
            if DB::ping(lock).await.is_ok() {
                return Ok(true);
            }
            // The session is gone, and the server released the lock with it.
            self.lock = None;
        }
        let mut conn = self.pool.acquire().await?.detach();
        if DB::try_relay_lock(&mut conn).await? {
            tracing::info!("outbox relay: this process now publishes the outbox");
            self.lock = Some(conn);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn renew_lease(&mut self) -> Result<bool, sqlx::Error> {
        let ttl = self.config.lease_ttl;
        if self.lease_renewed.is_some_and(|at| at.elapsed() < ttl / 3) {
            return Ok(true);
        }
        let mut conn = self.pool.acquire().await?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let held = DB::try_lease(&mut conn, LEASE, &self.holder, now_millis(), ttl_ms).await?;
        if held && self.lease_renewed.is_none() {
            tracing::info!("outbox relay: this process now publishes the outbox");
        }
        self.lease_renewed = held.then(Instant::now);
        Ok(held)
    }

    async fn release(&mut self) {
        self.set_leading(false);
        // Dropping the session releases the advisory lock.
        self.lock = None;
        if self.lease_renewed.take().is_some()
            && let Ok(mut conn) = self.pool.acquire().await
        {
            let _ = DB::release_lease(&mut conn, LEASE, &self.holder).await;
        }
    }

    /// Deletes rows published longer ago than the retention, at most once a minute.
    async fn cleanup(&mut self) {
        let every =
            (self.config.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        if self.last_cleanup.elapsed() < every {
            return;
        }
        self.last_cleanup = Instant::now();
        let retention = i64::try_from(self.config.retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis().saturating_sub(retention);
        if let Ok(mut conn) = self.pool.acquire().await {
            match DB::delete_published_before(&mut conn, cutoff).await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "outbox relay: published rows cleaned up"),
                Err(error) => tracing::warn!(%error, "outbox relay: cleanup failed"),
            }
        }
    }
}

/// 100 ms, doubling per failure, at most `max`.
fn backoff(failures: u32, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_millis(100u64 << exponent).min(max)
}

/// Commits in other processes: PostgreSQL's `NOTIFY bento_outbox`, sent by every unit of work
/// at commit. SQLite has none; its relay polls, and commits in its own process wake it.
enum Wakeups {
    #[cfg(feature = "postgres")]
    Listening(Box<sqlx::postgres::PgListener>),
    Polling,
}

impl Wakeups {
    #[cfg_attr(not(feature = "postgres"), allow(clippy::unused_async))]
    async fn new(dialect: Dialect, url: Option<&str>) -> Self {
        #[cfg(feature = "postgres")]
        if let (Dialect::Postgres, Some(url)) = (dialect, url) {
            match sqlx::postgres::PgListener::connect(url).await {
                Ok(mut listener) => match listener.listen("bento_outbox").await {
                    Ok(()) => return Self::Listening(Box::new(listener)),
                    Err(error) => {
                        tracing::warn!(%error, "outbox relay: LISTEN failed; polling instead")
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "outbox relay: no listener connection; polling instead")
                }
            }
        }
        let _ = (dialect, url);
        Self::Polling
    }

    /// Resolves at the next notification; never, when polling.
    async fn next(&mut self) {
        match self {
            #[cfg(feature = "postgres")]
            Self::Listening(listener) => {
                // The listener reconnects by itself; an error means it could not, for now.
                if listener.recv().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            Self::Polling => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(10);
        assert_eq!(backoff(1, max), Duration::from_millis(100));
        assert_eq!(backoff(2, max), Duration::from_millis(200));
        assert_eq!(backoff(5, max), Duration::from_millis(1600));
        assert_eq!(backoff(40, max), max);
    }
}
