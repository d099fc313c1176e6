//! The outbox and the durable inbox, built from `[outbox]` and `[inbox]`.

use crate::{Config, RuntimeError};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use enabled::Stores;

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
pub use disabled::Stores;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod enabled {
    use std::sync::OnceLock;
    use std::time::Duration;

    use bento_codec::Codecs;
    use bento_sqlx::{DurableInbox, Outbox, Relay, RelayConfig, RelaySnapshot};
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
        inbox: Option<DurableInbox<Any>>,
        cleanup: Option<tokio::task::JoinHandle<()>>,
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

        /// Starts inbox cleanup; called once the runtime is up.
        pub fn start(&mut self, config: &Config) {
            if let (Some(inbox), Some(settings)) = (&self.inbox, &config.inbox) {
                let retention = settings
                    .retention_secs
                    .map_or(DEFAULT_INBOX_RETENTION, Duration::from_secs);
                self.cleanup = Some(inbox.spawn_cleanup(retention));
            }
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
                self.relay
                    .get_or_init(|| outbox.relay_through(bus.clone(), relay_config(settings)));
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
            if let Some(cleanup) = self.cleanup.take() {
                cleanup.abort();
            }
            if let Some(relay) = self.relay.take() {
                relay.shutdown().await;
            }
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

        pub fn start(&mut self, _config: &Config) {}

        pub async fn shutdown(self) {}
    }
}
