//! The outbox and the durable inbox, built from `[outbox]` and `[inbox]`.

use crate::{Config, RuntimeError};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use enabled::Stores;

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
pub use disabled::Stores;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod enabled {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use bento_codec::Codecs;
    use bento_observability::Metrics;
    use bento_sqlx::{DurableInbox, Outbox, Relay, RelayConfig, RelaySnapshot, RelayStats};
    use prometheus::{Gauge, IntCounter, IntGauge, Opts};
    use sqlx::Any;

    use super::{Config, RuntimeError};
    use crate::{Bus, InboxConfig, OutboxConfig};

    /// A week: longer than any redelivery or replay is expected to take.
    const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

    /// The service's outbox, its relay once started, and its durable inbox.
    #[derive(Debug, Default)]
    pub struct Stores {
        outbox: Option<(Outbox<Any, Codecs>, OutboxConfig)>,
        relay: OnceLock<Relay>,
        /// The relay's counters once it runs, for the metrics task.
        relay_stats: Arc<OnceLock<Arc<RelayStats>>>,
        inbox: Option<DurableInbox<Any>>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Stores {
        pub async fn open(config: &Config, bus: &Bus) -> Result<Self, RuntimeError> {
            let mut stores = Self::default();
            if let Some(settings) = &config.outbox {
                let outbox = Outbox::connect_with(
                    &settings.database_url,
                    bus.clone(),
                    settings.max_connections,
                )
                .await?;
                if settings.migrate {
                    outbox.migrate().await?;
                }
                stores.outbox = Some((outbox, settings.clone()));
            }
            if let Some(settings) = &config.inbox {
                stores.inbox = Some(Self::open_inbox(settings, stores.outbox.as_ref()).await?);
            }
            Ok(stores)
        }

        async fn open_inbox(
            settings: &InboxConfig,
            outbox: Option<&(Outbox<Any, Codecs>, OutboxConfig)>,
        ) -> Result<DurableInbox<Any>, RuntimeError> {
            let inbox = match (&settings.database_url, outbox) {
                (Some(url), _) => DurableInbox::connect(url).await?,
                // The outbox's pool: a handler's writes and the events it records share it.
                (None, Some((outbox, _))) => {
                    DurableInbox::with_pool(outbox.pool().clone(), outbox.dialect())
                }
                (None, None) => {
                    return Err(RuntimeError::Config(
                        "`inbox.database_url` is missing, and there is no `[outbox]` whose \
                         database the inbox could share"
                            .to_string(),
                    ));
                }
            };
            if settings.migrate.unwrap_or(true) {
                inbox.migrate().await?;
            }
            Ok(inbox)
        }

        /// Starts inbox cleanup and the outbox metrics; called once the runtime is up.
        pub fn start(
            &mut self,
            config: &Config,
            metrics: Option<&Metrics>,
        ) -> Result<(), RuntimeError> {
            if let (Some(inbox), Some(settings)) = (&self.inbox, &config.inbox) {
                let retention = settings
                    .retention_secs
                    .map_or(DEFAULT_INBOX_RETENTION, Duration::from_secs);
                self.tasks.push(inbox.spawn_cleanup(retention));
            }
            if let (Some((outbox, _)), Some(metrics)) = (&self.outbox, metrics) {
                let gauges = OutboxMetrics::register(metrics)?;
                self.tasks
                    .push(gauges.spawn(outbox.clone(), self.relay_stats.clone()));
            }
            Ok(())
        }

        /// The outbox; its relay starts with the first call (so that it publishes through
        /// every publish layer the service added).
        pub fn outbox(&self, bus: &Bus) -> Result<Outbox<Any, Codecs>, RuntimeError> {
            let (outbox, settings) = self.outbox.as_ref().ok_or_else(|| {
                RuntimeError::Config(
                    "the service has no outbox: add an `[outbox]` section with a \
                     `database_url` (or BENTO_OUTBOX__DATABASE_URL)"
                        .to_string(),
                )
            })?;
            if settings.relay {
                let relay = self
                    .relay
                    .get_or_init(|| outbox.relay_through(bus.clone(), relay_config(settings)));
                let _ = self.relay_stats.set(relay.stats_handle());
            }
            Ok(outbox.clone())
        }

        /// What the relay did so far, if it runs.
        pub fn relay_stats(&self) -> Option<RelaySnapshot> {
            self.relay.get().map(Relay::stats)
        }

        pub fn inbox(&self) -> Result<&DurableInbox<Any>, RuntimeError> {
            self.inbox.as_ref().ok_or_else(|| {
                RuntimeError::Config(
                    "the service has no durable inbox: add an `[inbox]` section (it shares the \
                     outbox's database unless it names its own `database_url`)"
                        .to_string(),
                )
            })
        }

        /// Stops the relay after its round in progress, and the inbox cleanup.
        pub async fn shutdown(mut self) {
            for task in self.tasks.drain(..) {
                task.abort();
            }
            if let Some(relay) = self.relay.take() {
                relay.shutdown().await;
            }
        }
    }

    /// The outbox's state as Prometheus metrics, read every [`OutboxMetrics::EVERY`].
    struct OutboxMetrics {
        depth: IntGauge,
        oldest_age: Gauge,
        relay_lag: Gauge,
        published: IntCounter,
        publish_failures: IntCounter,
        leader: IntGauge,
    }

    impl OutboxMetrics {
        const EVERY: Duration = Duration::from_secs(1);

        fn register(metrics: &Metrics) -> Result<Self, RuntimeError> {
            let registry = metrics.registry();
            let fail = |e: prometheus::Error| {
                RuntimeError::Config(format!("registering the outbox metrics: {e}"))
            };
            let gauges = Self {
                depth: IntGauge::with_opts(Opts::new(
                    "bento_outbox_depth",
                    "Committed events the relay has not published yet.",
                ))
                .map_err(fail)?,
                oldest_age: Gauge::with_opts(Opts::new(
                    "bento_outbox_oldest_age_seconds",
                    "Age of the oldest event waiting in the outbox (0 when none waits).",
                ))
                .map_err(fail)?,
                relay_lag: Gauge::with_opts(Opts::new(
                    "bento_outbox_relay_lag_seconds",
                    "From the commit of the newest event of the relay's last batch to the \
                     broker's receipt.",
                ))
                .map_err(fail)?,
                published: IntCounter::with_opts(Opts::new(
                    "bento_outbox_published_total",
                    "Events this process's relay published.",
                ))
                .map_err(fail)?,
                publish_failures: IntCounter::with_opts(Opts::new(
                    "bento_outbox_publish_failures_total",
                    "Relay rounds whose publish failed (their events are published again).",
                ))
                .map_err(fail)?,
                leader: IntGauge::with_opts(Opts::new(
                    "bento_outbox_relay_leader",
                    "1 while this process's relay is the one publishing.",
                ))
                .map_err(fail)?,
            };
            registry
                .register(Box::new(gauges.depth.clone()))
                .map_err(fail)?;
            registry
                .register(Box::new(gauges.oldest_age.clone()))
                .map_err(fail)?;
            registry
                .register(Box::new(gauges.relay_lag.clone()))
                .map_err(fail)?;
            registry
                .register(Box::new(gauges.published.clone()))
                .map_err(fail)?;
            registry
                .register(Box::new(gauges.publish_failures.clone()))
                .map_err(fail)?;
            registry
                .register(Box::new(gauges.leader.clone()))
                .map_err(fail)?;
            Ok(gauges)
        }

        fn spawn(
            self,
            outbox: Outbox<Any, Codecs>,
            relay: Arc<OnceLock<Arc<RelayStats>>>,
        ) -> tokio::task::JoinHandle<()> {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Self::EVERY);
                loop {
                    ticks.tick().await;
                    if let Ok(backlog) = outbox.backlog().await {
                        self.depth
                            .set(i64::try_from(backlog.depth).unwrap_or(i64::MAX));
                        let age_ms = backlog.oldest_age_ms.unwrap_or(0);
                        #[allow(clippy::cast_precision_loss)]
                        self.oldest_age.set(age_ms as f64 / 1000.0);
                    }
                    if let Some(stats) = relay.get() {
                        self.record(stats.snapshot());
                    }
                }
            })
        }

        fn record(&self, relay: RelaySnapshot) {
            #[allow(clippy::cast_precision_loss)]
            self.relay_lag.set(relay.last_lag_ms.max(0) as f64 / 1000.0);
            self.published
                .inc_by(relay.published.saturating_sub(self.published.get()));
            self.publish_failures.inc_by(
                relay
                    .publish_failures
                    .saturating_sub(self.publish_failures.get()),
            );
            self.leader.set(i64::from(relay.leader));
        }
    }

    fn relay_config(settings: &OutboxConfig) -> RelayConfig {
        RelayConfig::default()
            .batch_size(settings.batch_size)
            .poll_interval(Duration::from_millis(settings.poll_interval_ms))
            .retention(Duration::from_secs(settings.retention_secs))
            .lease_ttl(Duration::from_millis(settings.lease_ttl_ms))
            .max_backoff(Duration::from_millis(settings.max_backoff_ms))
    }
}

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
mod disabled {
    use super::{Config, RuntimeError};
    use crate::Bus;

    /// Nothing: neither database feature is compiled in.
    #[derive(Debug, Default)]
    pub struct Stores;

    impl Stores {
        pub async fn open(config: &Config, _bus: &Bus) -> Result<Self, RuntimeError> {
            let section = if config.outbox.is_some() {
                "outbox"
            } else if config.inbox.is_some() {
                "inbox"
            } else {
                return Ok(Self);
            };
            Err(RuntimeError::StoreNotCompiled { section })
        }

        pub fn start(
            &mut self,
            _config: &Config,
            _metrics: Option<&bento_observability::Metrics>,
        ) -> Result<(), RuntimeError> {
            Ok(())
        }

        pub async fn shutdown(self) {}
    }
}
