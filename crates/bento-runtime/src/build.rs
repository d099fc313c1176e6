use std::sync::Arc;

use bento_application::MessageBus;
use bento_memory::{MemoryBus, MemoryConfig};

use crate::{BackendKind, Bus, Config, RuntimeError};

/// Builds the message bus `config` names.
pub async fn build_message_bus(config: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    match config.messaging.backend {
        BackendKind::Memory => Ok(Arc::new(MemoryBus::new(MemoryConfig {
            retain_per_topic: config.messaging.memory.retain_per_topic,
        }))),
        BackendKind::Pulsar => pulsar(config).await,
        BackendKind::Kafka => kafka(config).await,
    }
}

#[cfg(feature = "pulsar")]
async fn pulsar(config: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    let settings: bento_pulsar::PulsarConfig = config.backend_settings(BackendKind::Pulsar)?;
    settings
        .validate()
        .map_err(|error| RuntimeError::Config(error.to_string()))?;
    Ok(Arc::new(bento_pulsar::PulsarBus::connect(settings).await?))
}

#[cfg(feature = "kafka")]
async fn kafka(config: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    let settings: bento_kafka::KafkaConfig = config.backend_settings(BackendKind::Kafka)?;
    settings
        .validate()
        .map_err(|error| RuntimeError::Config(error.to_string()))?;
    Ok(Arc::new(bento_kafka::KafkaBus::connect(settings).await?))
}

#[cfg(not(feature = "pulsar"))]
async fn pulsar(_: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    Err(RuntimeError::BackendNotCompiled {
        backend: "pulsar",
        feature: "pulsar",
    })
}

#[cfg(not(feature = "kafka"))]
async fn kafka(_: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    Err(RuntimeError::BackendNotCompiled {
        backend: "kafka",
        feature: "kafka",
    })
}

/// A started Bento runtime: the configuration and the bus it built.
#[derive(Debug)]
pub struct Bento {
    config: Config,
    bus: Bus,
}

impl Bento {
    /// Loads the configuration (`bento.toml` and `BENTO_` variables) and builds the bus.
    pub async fn from_env() -> Result<Self, RuntimeError> {
        Self::from_config(Config::load()?).await
    }

    /// Builds the bus for an explicit configuration.
    pub async fn from_config(config: Config) -> Result<Self, RuntimeError> {
        let bus = Bus::new(build_message_bus(&config).await?, config.codec.codecs());
        tracing::info!(
            backend = config.messaging.backend.as_str(),
            "bento runtime started"
        );
        Ok(Self { config, bus })
    }

    /// The typed bus; clone it freely.
    pub fn bus(&self) -> Bus {
        self.bus.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Closes the bus (flushes producers). Shut subscriptions down first.
    pub async fn shutdown(self) -> Result<(), RuntimeError> {
        self.bus.message_bus().close().await?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[cfg(not(feature = "pulsar"))]
    #[tokio::test]
    async fn a_backend_not_compiled_in_names_its_feature() {
        let mut config = Config::default();
        config.messaging.backend = BackendKind::Pulsar;
        let error = Bento::from_config(config)
            .await
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("`pulsar` cargo feature"), "{error}");
    }

    #[cfg(feature = "pulsar")]
    #[test]
    fn a_bad_pulsar_setting_names_its_key_and_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BENTO_MESSAGING__BACKEND", "pulsar");
            jail.set_env(
                "BENTO_MESSAGING__PULSAR__SERVICE_URLL",
                "pulsar://typo:6650",
            );
            let config = Config::from_figment(Config::figment(std::path::Path::new("none.toml")))
                .map_err(|e| e.to_string())?;
            let error = config
                .backend_settings::<bento_pulsar::PulsarConfig>(BackendKind::Pulsar)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("service_urll"), "{error}");
            assert!(
                error.contains("BENTO_MESSAGING__PULSAR__SERVICE_URLL"),
                "{error}"
            );
            Ok(())
        });
    }

    #[tokio::test]
    async fn memory_is_the_default() -> Result<(), RuntimeError> {
        let bento = Bento::from_config(Config::default()).await?;
        assert_eq!(bento.bus().message_bus().backend(), "memory");
        Ok(())
    }
}
