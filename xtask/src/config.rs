//! Where the development environment lives, which services it knows and which loopback ports they use.
//!
//! "Broker" in xtask means any service of the development environment: the two message brokers
//! and PostgreSQL, which is started, stopped, killed and reset the same way.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::versions;

/// Environment variable that overrides where broker installs, data and logs live.
pub const HOME_ENV: &str = "BENTO_DEV_ENV_HOME";

/// The only address the brokers listen on and advertise.
pub const LOOPBACK: &str = "127.0.0.1";

/// The PostgreSQL superuser `initdb` creates (the cluster's only role).
pub const POSTGRES_USER: &str = "bento";

/// The database created in the dev-env cluster, for the tests.
pub const POSTGRES_DATABASE: &str = "bento";

/// A service the development environment can run: a message broker, or PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Broker {
    /// Apache Pulsar standalone (broker, bookie and metadata store in one JVM).
    Pulsar,
    /// Apache Kafka in KRaft combined mode (broker and controller in one JVM).
    Kafka,
    /// PostgreSQL server from the machine's packages, with a private cluster (always native).
    Postgres,
    /// Apicurio Registry with its Confluent-compatible API, for Kafka's schemas: a Quarkus
    /// application built from Maven Central (`deploy/registry`), in-memory (always native).
    Registry,
}

impl Broker {
    /// Every service, in start order.
    pub const ALL: [Broker; 4] = [
        Broker::Pulsar,
        Broker::Kafka,
        Broker::Postgres,
        Broker::Registry,
    ];

    /// Lower-case name used in paths, state files and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Broker::Pulsar => "pulsar",
            Broker::Kafka => "kafka",
            Broker::Postgres => "postgres",
            Broker::Registry => "registry",
        }
    }

    /// The pinned version of this broker (for PostgreSQL only the major version is pinned).
    pub fn version(self) -> &'static str {
        match self {
            Broker::Pulsar => versions::PULSAR_VERSION,
            Broker::Kafka => versions::KAFKA_VERSION,
            Broker::Postgres => versions::POSTGRES_VERSION,
            Broker::Registry => versions::APICURIO_VERSION,
        }
    }

    /// Strings of which one is in the command line of the broker's process (the launcher script or
    /// the JVM it becomes), used to make sure a recorded pid still belongs to the broker.
    pub fn process_markers(self) -> &'static [&'static str] {
        match self {
            Broker::Pulsar => &["PulsarStandaloneStarter", "pulsar standalone"],
            Broker::Kafka => &["kafka.Kafka"],
            // The postmaster keeps its command line (only its children retitle themselves).
            Broker::Postgres => &["postgres -D"],
            Broker::Registry => &[crate::registry::PROCESS_MARKER],
        }
    }

    /// Name of the service in `deploy/docker/compose.dev.yaml`; `None` for PostgreSQL and the
    /// registry, which have none and always run natively.
    pub fn service(self) -> Option<&'static str> {
        match self {
            Broker::Pulsar | Broker::Kafka => Some(self.name()),
            Broker::Postgres | Broker::Registry => None,
        }
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Loopback ports of every service; each can be set by a flag or an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct Ports {
    /// Pulsar binary protocol port.
    #[arg(
        long = "pulsar-port",
        value_name = "PORT",
        env = "BENTO_PULSAR_PORT",
        default_value_t = 6650,
        global = true
    )]
    pub pulsar: u16,
    /// Pulsar HTTP (admin REST) port.
    #[arg(
        long = "pulsar-http-port",
        value_name = "PORT",
        env = "BENTO_PULSAR_HTTP_PORT",
        default_value_t = 8080,
        global = true
    )]
    pub pulsar_http: u16,
    /// Port of the bookie embedded in Pulsar standalone.
    #[arg(
        long = "pulsar-bookie-port",
        value_name = "PORT",
        env = "BENTO_PULSAR_BOOKIE_PORT",
        default_value_t = 3181,
        global = true
    )]
    pub pulsar_bookie: u16,
    /// Pulsar binary protocol port with TLS (`pulsar+ssl://`).
    #[arg(
        long = "pulsar-tls-port",
        value_name = "PORT",
        env = "BENTO_PULSAR_TLS_PORT",
        default_value_t = 6651,
        global = true
    )]
    #[serde(default = "default_pulsar_tls")]
    pub pulsar_tls: u16,
    /// Pulsar HTTPS (admin REST with TLS) port.
    #[arg(
        long = "pulsar-https-port",
        value_name = "PORT",
        env = "BENTO_PULSAR_HTTPS_PORT",
        default_value_t = 8443,
        global = true
    )]
    #[serde(default = "default_pulsar_https")]
    pub pulsar_https: u16,
    /// Kafka client (PLAINTEXT) port.
    #[arg(
        long = "kafka-port",
        value_name = "PORT",
        env = "BENTO_KAFKA_PORT",
        default_value_t = 9092,
        global = true
    )]
    pub kafka: u16,
    /// Kafka KRaft controller port.
    #[arg(
        long = "kafka-controller-port",
        value_name = "PORT",
        env = "BENTO_KAFKA_CONTROLLER_PORT",
        default_value_t = 9093,
        global = true
    )]
    pub kafka_controller: u16,
    /// PostgreSQL port: 5433, next to PostgreSQL's usual 5432, so that a system server (which
    /// Debian's package starts on 5432) and the dev-env one can run side by side.
    #[arg(
        long = "postgres-port",
        value_name = "PORT",
        env = "BENTO_POSTGRES_PORT",
        default_value_t = 5433,
        global = true
    )]
    #[serde(default = "default_postgres")]
    pub postgres: u16,
    /// Schema registry HTTP port (8081, the Confluent registry's usual one).
    #[arg(
        long = "registry-port",
        value_name = "PORT",
        env = "BENTO_REGISTRY_PORT",
        default_value_t = 8081,
        global = true
    )]
    #[serde(default = "default_registry")]
    pub registry: u16,
}

// State files written before the TLS ports existed lack them.
fn default_pulsar_tls() -> u16 {
    Ports::default().pulsar_tls
}

fn default_pulsar_https() -> u16 {
    Ports::default().pulsar_https
}

// State files written before PostgreSQL joined lack its port.
fn default_postgres() -> u16 {
    Ports::default().postgres
}

// State files written before the registry joined lack its port.
fn default_registry() -> u16 {
    Ports::default().registry
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            pulsar: 6650,
            pulsar_http: 8080,
            pulsar_bookie: 3181,
            pulsar_tls: 6651,
            pulsar_https: 8443,
            kafka: 9092,
            kafka_controller: 9093,
            postgres: 5433,
            registry: 8081,
        }
    }
}

impl Ports {
    /// Ports from the `BENTO_*_PORT` environment variables, defaults where unset or unparsable.
    pub fn from_env() -> Self {
        fn port(name: &str, default: u16) -> u16 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        }
        let d = Ports::default();
        Ports {
            pulsar: port("BENTO_PULSAR_PORT", d.pulsar),
            pulsar_http: port("BENTO_PULSAR_HTTP_PORT", d.pulsar_http),
            pulsar_bookie: port("BENTO_PULSAR_BOOKIE_PORT", d.pulsar_bookie),
            pulsar_tls: port("BENTO_PULSAR_TLS_PORT", d.pulsar_tls),
            pulsar_https: port("BENTO_PULSAR_HTTPS_PORT", d.pulsar_https),
            kafka: port("BENTO_KAFKA_PORT", d.kafka),
            kafka_controller: port("BENTO_KAFKA_CONTROLLER_PORT", d.kafka_controller),
            postgres: port("BENTO_POSTGRES_PORT", d.postgres),
            registry: port("BENTO_REGISTRY_PORT", d.registry),
        }
    }

    /// The named ports a service listens on.
    pub fn of(&self, broker: Broker) -> Vec<(&'static str, u16)> {
        match broker {
            Broker::Pulsar => {
                vec![
                    ("broker", self.pulsar),
                    ("http", self.pulsar_http),
                    ("bookie", self.pulsar_bookie),
                    ("tls", self.pulsar_tls),
                    ("https", self.pulsar_https),
                ]
            }
            Broker::Kafka => vec![
                ("broker", self.kafka),
                ("controller", self.kafka_controller),
            ],
            Broker::Postgres => vec![("postgres", self.postgres)],
            Broker::Registry => vec![("http", self.registry)],
        }
    }

    /// `pulsar://127.0.0.1:<port>`: the Pulsar service URL.
    pub fn pulsar_url(&self) -> String {
        format!("pulsar://{LOOPBACK}:{}", self.pulsar)
    }

    /// `http://127.0.0.1:<port>`: the Pulsar admin REST URL.
    pub fn pulsar_admin_url(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.pulsar_http)
    }

    /// `pulsar+ssl://localhost:<port>`: the Pulsar service URL with TLS (the broker
    /// certificate names `localhost` and `127.0.0.1`).
    pub fn pulsar_tls_url(&self) -> String {
        format!("pulsar+ssl://localhost:{}", self.pulsar_tls)
    }

    /// `https://localhost:<port>`: the Pulsar admin REST URL with TLS.
    pub fn pulsar_https_url(&self) -> String {
        format!("https://localhost:{}", self.pulsar_https)
    }

    /// `127.0.0.1:<port>`: the Kafka bootstrap servers.
    pub fn kafka_bootstrap(&self) -> String {
        format!("{LOOPBACK}:{}", self.kafka)
    }

    /// `http://127.0.0.1:<port>/apis/ccompat/v7`: the schema registry's Confluent-compatible
    /// API, what a Confluent client takes as its registry URL.
    pub fn registry_url(&self) -> String {
        format!("http://{LOOPBACK}:{}/apis/ccompat/v7", self.registry)
    }

    /// `postgres://bento@127.0.0.1:<port>/bento`: the dev-env database, as its superuser (no
    /// password: the cluster trusts every connection, and listens on loopback only).
    pub fn postgres_url(&self) -> String {
        format!(
            "postgres://{}@{LOOPBACK}:{}/{}",
            POSTGRES_USER, self.postgres, POSTGRES_DATABASE
        )
    }
}

/// The workspace root (the parent of the `xtask` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where installs, data and logs live: `$BENTO_DEV_ENV_HOME`, else `target/dev-env` in the workspace.
pub fn dev_env_home() -> PathBuf {
    match std::env::var_os(HOME_ENV) {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            std::path::absolute(&dir).unwrap_or(dir)
        }
        _ => workspace_root().join("target").join("dev-env"),
    }
}

/// The `java` to run: `$JAVA_HOME/bin/java` when set, else `java` from `PATH`.
pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if !home.is_empty() && Path::new(&home).join("bin/java").exists() => {
            Path::new(&home).join("bin/java")
        }
        _ => PathBuf::from("java"),
    }
}

/// File layout under the development environment home.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The home directory itself.
    pub home: PathBuf,
}

impl Layout {
    /// The layout under [`dev_env_home`].
    pub fn from_env() -> Self {
        Layout {
            home: dev_env_home(),
        }
    }

    /// Everything belonging to one broker.
    pub fn broker_dir(&self, broker: Broker) -> PathBuf {
        self.home.join(broker.name())
    }

    /// The broker's data (wiped by `reset` and at the start of `cargo xtask test`).
    pub fn data_dir(&self, broker: Broker) -> PathBuf {
        self.broker_dir(broker).join("data")
    }

    /// The broker's log directory.
    pub fn logs_dir(&self, broker: Broker) -> PathBuf {
        self.broker_dir(broker).join("logs")
    }

    /// The broker's main log file (its stdout and stderr).
    pub fn log_file(&self, broker: Broker) -> PathBuf {
        self.logs_dir(broker).join(format!("{}.log", broker.name()))
    }

    /// Generated configuration files.
    pub fn conf_dir(&self, broker: Broker) -> PathBuf {
        self.broker_dir(broker).join("conf")
    }

    /// The state file written while the broker runs (pid, ports, version, mode).
    pub fn state_file(&self, broker: Broker) -> PathBuf {
        self.broker_dir(broker).join("state.json")
    }

    /// The extracted Pulsar distribution (`bin/`, `lib/`, `conf/`).
    pub fn pulsar_dist(&self) -> PathBuf {
        self.broker_dir(Broker::Pulsar).join("dist")
    }

    /// The dev-env Pulsar's CA, broker certificate and token secret key (kept by `reset`).
    pub fn pulsar_security(&self) -> PathBuf {
        self.broker_dir(Broker::Pulsar).join("security")
    }

    /// The directory of PostgreSQL's Unix socket and its lock file (not `/var/run/postgresql`,
    /// which belongs to the system's server and may not exist).
    pub fn postgres_run(&self) -> PathBuf {
        self.broker_dir(Broker::Postgres).join("run")
    }

    /// The Kafka jars (broker and command-line tools with their dependencies).
    pub fn kafka_libs(&self) -> PathBuf {
        self.broker_dir(Broker::Kafka).join("libs")
    }

    /// The schema registry's built Quarkus application (`quarkus-app/`), kept by `reset`.
    pub fn registry_build(&self) -> PathBuf {
        self.broker_dir(Broker::Registry).join("build")
    }

    /// Scratch space for downloads.
    pub fn downloads(&self) -> PathBuf {
        self.home.join("downloads")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_without_the_tls_ports_still_load() {
        // As written by brokers started before the TLS ports existed.
        let old = r#"{"pulsar": 6650, "pulsar_http": 8080, "pulsar_bookie": 3181,
                      "kafka": 9092, "kafka_controller": 9093}"#;
        let ports: Ports = serde_json::from_str(old).expect("an old state file parses");
        assert_eq!(ports, Ports::default());
        assert_eq!(ports.pulsar_tls_url(), "pulsar+ssl://localhost:6651");
        assert_eq!(ports.pulsar_https_url(), "https://localhost:8443");
    }

    #[test]
    fn postgres_url_names_the_user_port_and_database() {
        let ports = Ports {
            postgres: 15433,
            ..Ports::default()
        };
        assert_eq!(
            ports.postgres_url(),
            "postgres://bento@127.0.0.1:15433/bento"
        );
        assert_eq!(Ports::default().of(Broker::Postgres), [("postgres", 5433)]);
    }

    #[test]
    fn only_the_brokers_have_a_compose_service() {
        assert_eq!(Broker::Pulsar.service(), Some("pulsar"));
        assert_eq!(Broker::Kafka.service(), Some("kafka"));
        assert_eq!(Broker::Postgres.service(), None);
        assert_eq!(Broker::Registry.service(), None);
    }
}
