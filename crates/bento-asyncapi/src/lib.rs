//! # bento-asyncapi
//!
//! An [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0) document of
//! what a Bento service declares through its bus ([`bento_application::Bus::contract`]):
//!
//! - **channels**: the topics, as the configured backend names them (Pulsar's full
//!   `persistent://tenant/namespace/topic` names, Kafka's topic names), the dead-letter topics
//!   of the service's subscriptions included;
//! - **operations**: `send` for each event type it declared or published (and each
//!   subscription's dead letters), `receive` for each subscription;
//! - **messages**: one per event type, with its payload schema (the Avro schema of Avro events,
//!   JSON Schema for JSON events, the `.proto` of Protobuf events), Bento's envelope headers
//!   ([`bento_application::wire`]) as message headers, and the correlation id;
//! - **servers and bindings** for Pulsar and Kafka.
//!
//! ```
//! # use bento_asyncapi::{AsyncApi, Broker};
//! # let contract = bento_application::Contract::default();
//! let document = AsyncApi::new(contract, Broker::Memory)
//!     .title("users")
//!     .version("1.2.0")
//!     .to_value();
//! # assert_eq!(document.unwrap()["asyncapi"], "3.0.0");
//! ```
//!
//! `bento_runtime::Bento::asyncapi` fills in the broker from the configuration; `bento
//! asyncapi` prints a service's document. See `docs/asyncapi.md`.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod builder;
mod headers;
mod json_schema;
mod proto;
mod standalone;

pub use standalone::{json_schema_document, proto_file};

use builder::Builder;

use std::sync::Arc;

use bento_application::Contract;
use serde_json::Value;

/// The AsyncAPI version of the documents made here.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The Pulsar bindings version used (`bindingVersion`).
pub const PULSAR_BINDING_VERSION: &str = "0.1.0";

/// The Kafka bindings version used (`bindingVersion`).
pub const KAFKA_BINDING_VERSION: &str = "0.5.0";

/// AsyncAPI's schema format for Avro payloads.
pub const AVRO_SCHEMA_FORMAT: &str = "application/vnd.apache.avro;version=1.9.0";

/// Why a document could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncApiError {
    /// The document could not be written as JSON.
    #[error("cannot write the AsyncAPI document: {0}")]
    Json(#[from] serde_json::Error),
}

/// The broker a service runs on: the document's servers and bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broker {
    /// The in-memory bus: no server, no bindings.
    Memory,
    /// Apache Pulsar.
    Pulsar {
        /// `pulsar://host:port` or `pulsar+ssl://host:port`.
        service_url: String,
        /// The tenant topics are placed in.
        tenant: String,
        /// The namespace topics are placed in.
        namespace: String,
    },
    /// Apache Kafka.
    Kafka {
        /// `host:port[,host:port...]`.
        bootstrap_servers: String,
        /// Whether the connection uses TLS (`kafka-secure`).
        secure: bool,
    },
}

/// Maps a topic (as the bus noted it) to its full address on the broker.
pub type AddressFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Builds the AsyncAPI document of a [`Contract`].
#[derive(Clone)]
pub struct AsyncApi {
    contract: Contract,
    broker: Broker,
    title: String,
    version: String,
    description: Option<String>,
    address: AddressFn,
}

impl std::fmt::Debug for AsyncApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncApi")
            .field("title", &self.title)
            .field("version", &self.version)
            .field("broker", &self.broker)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

impl AsyncApi {
    /// The document of `contract` on `broker`, titled "Bento service", version `0.0.0`.
    pub fn new(contract: Contract, broker: Broker) -> Self {
        let address: AddressFn = match &broker {
            Broker::Pulsar {
                tenant, namespace, ..
            } => {
                let (tenant, namespace) = (tenant.clone(), namespace.clone());
                Arc::new(move |topic: &str| pulsar_full_name(topic, &tenant, &namespace))
            }
            _ => Arc::new(str::to_owned),
        };
        Self {
            contract,
            broker,
            title: "Bento service".into(),
            version: "0.0.0".into(),
            description: None,
            address,
        }
    }

    /// The document's title (`info.title`): the service's name.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The version of the service's API (`info.version`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// A description (`info.description`, CommonMark).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// How topics map to their addresses on the broker (by default: Pulsar names placed in the
    /// tenant and namespace, others as they are).
    pub fn address_with(
        mut self,
        address: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        self.address = Arc::new(address);
        self
    }

    /// The contract it describes.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// The document, pretty-printed JSON (which is YAML too).
    pub fn to_json_pretty(&self) -> Result<String, AsyncApiError> {
        Ok(serde_json::to_string_pretty(&self.to_value()?)?)
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Result<Value, AsyncApiError> {
        Ok(Builder::new(self).build())
    }
}

/// Pulsar's full name of `topic`, as the Pulsar backend places it.
fn pulsar_full_name(topic: &str, tenant: &str, namespace: &str) -> String {
    if topic.contains("://") {
        topic.to_owned()
    } else if topic.contains('/') {
        format!("persistent://{topic}")
    } else {
        format!("persistent://{tenant}/{namespace}/{topic}")
    }
}
