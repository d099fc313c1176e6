//! The configuration, read as services read it (`bento_runtime::Config`), and the backend
//! sections parsed into the adapters' own settings.

use std::path::{Path, PathBuf};

use bento_kafka::KafkaConfig;
use bento_pulsar::PulsarConfig;
use bento_runtime::{BackendKind, Config};

use crate::error::CliError;

/// Read when neither --config nor BENTO_CONFIG names a file (as `bento_runtime` does).
const DEFAULT_CONFIG_PATH: &str = "bento.toml";

/// The service configuration.
pub struct Loaded {
    /// The configuration as a service would see it.
    pub config: Config,
}

/// Reads the configuration: the file `path` (from `--config` or `BENTO_CONFIG`; it must
/// exist) or `bento.toml` in the working directory (optional), then `BENTO_*` variables. The
/// same sources and rules as `bento_runtime::Config::load`.
pub fn load(path: Option<&Path>) -> Result<Loaded, CliError> {
    let file = match path {
        Some(path) if !path.exists() => {
            return Err(CliError::Config(format!(
                "the configuration file {} (--config / BENTO_CONFIG) does not exist",
                path.display()
            )));
        }
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(DEFAULT_CONFIG_PATH),
    };
    // The runtime's error already says "invalid configuration"; `From` keeps its message only.
    let config = Config::from_figment(Config::figment(&file))?;
    Ok(Loaded { config })
}

impl Loaded {
    /// The configured backend.
    pub fn backend(&self) -> BackendKind {
        self.config.messaging.backend
    }

    /// `[messaging.pulsar]`, validated.
    pub fn pulsar(&self) -> Result<PulsarConfig, CliError> {
        let settings: PulsarConfig = self.config.backend_settings(BackendKind::Pulsar)?;
        settings
            .validate()
            .map_err(|e| CliError::Config(e.to_string()))?;
        Ok(settings)
    }

    /// `[messaging.kafka]`, validated.
    pub fn kafka(&self) -> Result<KafkaConfig, CliError> {
        let settings: KafkaConfig = self.config.backend_settings(BackendKind::Kafka)?;
        settings
            .validate()
            .map_err(|e| CliError::Config(e.to_string()))?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let error = load(Some(Path::new("/nonexistent/bento.toml"))).err();
        assert!(
            error
                .as_ref()
                .is_some_and(|e| e.to_string().contains("does not exist")),
            "{:?}",
            error.map(|e| e.to_string())
        );
    }

    #[test]
    fn sections_are_read_with_their_keys() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("bento-cli-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("bento.toml");
        std::fs::write(
            &file,
            "[messaging]\nbackend = \"pulsar\"\n[messaging.pulsar]\nadmin_url = \"http://admin:8080\"\n",
        )?;
        let loaded = load(Some(&file))?;
        assert_eq!(loaded.backend(), BackendKind::Pulsar);
        assert_eq!(loaded.pulsar()?.admin_url, "http://admin:8080");
        assert_eq!(
            loaded.kafka()?.bootstrap_servers,
            KafkaConfig::default().bootstrap_servers
        );
        std::fs::write(&file, "[messaging.pulsar]\nadmin_urll = \"x\"\n")?;
        let error = load(Some(&file))?.pulsar().err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("admin_urll")),
            "{error:?}"
        );
        std::fs::write(&file, "[messaging]\nbackend = \"carrier-pigeon\"\n")?;
        let error = load(Some(&file)).err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(
                |e| e.contains("backend") && e.matches("invalid configuration").count() == 1
            ),
            "names the key, says what it is once: {error:?}"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
