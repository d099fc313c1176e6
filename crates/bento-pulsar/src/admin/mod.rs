//! [`PulsarAdmin`]: a client of Pulsar's admin REST API (v2), for tools and tests that manage
//! tenants, namespaces, topics, subscriptions and schemas.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bento_pulsar::admin::AdminError> {
//! use bento_pulsar::PulsarConfig;
//! use bento_pulsar::admin::{Position, PulsarAdmin, ResetTo};
//!
//! let admin = PulsarAdmin::new(&PulsarConfig::default())?; // admin_url, token, TLS, timeouts
//! admin.create_tenant("acme", &[]).await?;                  // all clusters
//! admin.create_namespace("acme/orders").await?;
//! admin.create_topic("acme/orders/created", 0).await?;      // not partitioned
//! admin.create_subscription("acme/orders/created", "audit", Position::Earliest).await?;
//! let stats = admin.topic_stats("acme/orders/created").await?;
//! println!("backlog: {}", stats.subscriptions["audit"].msg_backlog);
//! admin.reset_cursor("acme/orders/created", "audit", ResetTo::Earliest).await?;
//! # Ok(()) }
//! ```
//!
//! Topic names are read as the bus reads them: a plain name lives in the configured tenant and
//! namespace, `tenant/ns/topic` is persistent, and a full `persistent://` or
//! `non-persistent://` name is kept. Every failure is an [`AdminError`] naming the call; one the
//! broker refused carries its HTTP status and message.

mod error;
mod names;
mod types;

use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::AdminError;
pub use names::{NamespaceName, TopicDomain, TopicName};
pub use types::{
    ConsumerStats, NamespacePolicies, Position, PublisherStats, ResetTo, Retention,
    SchemaCompatibility, SchemaInfo, SchemaUpload, SubscriptionStats, TenantInfo, TopicStats,
};

use crate::config::{CONFIG_PREFIX, PulsarConfig};
use error::{broker_message, chain};
use names::encode;
use types::{PartitionedMetadata, SchemaVersions};

const API: &str = "/admin/v2";

/// A client of the Pulsar admin REST API. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct PulsarAdmin {
    http: reqwest::Client,
    /// The admin URL without a trailing `/`, e.g. `http://127.0.0.1:8080`.
    base: String,
    /// Where plain topic names live.
    default_namespace: NamespaceName,
}

impl std::fmt::Debug for PulsarAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token lives in the client's default headers, marked sensitive; never shown.
        f.debug_struct("PulsarAdmin")
            .field("url", &without_credentials(&self.base))
            .field("default_namespace", &self.default_namespace.to_string())
            .finish_non_exhaustive()
    }
}

fn config_error(key: &str, reason: impl Into<String>) -> AdminError {
    AdminError::invalid(format!("{CONFIG_PREFIX}.{key}"), reason)
}

impl PulsarAdmin {
    /// A client for `config.admin_url`, with the configuration's token (`auth.token` or
    /// `auth.token_file`, sent as a bearer token), TLS options (for `https://`), tenant and
    /// namespace (for plain topic names) and timeouts (`connect_timeout_ms` to connect,
    /// `operation_timeout_ms` per call). Nothing is sent yet.
    ///
    /// `auth.oauth2` is not supported by this client and is refused with an error.
    pub fn new(config: &PulsarConfig) -> Result<Self, AdminError> {
        let url = config.admin_url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(config_error(
                "admin_url",
                format!(
                    "must start with http:// or https:// (got `{}`)",
                    without_credentials(url)
                ),
            ));
        }
        let default_namespace = NamespaceName {
            tenant: config.tenant.clone(),
            namespace: config.namespace.clone(),
        };
        let mut headers = HeaderMap::new();
        if let Some(token) = token(config)? {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                config_error(
                    "auth.token",
                    "contains characters not allowed in an HTTP header",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout())
            .timeout(config.operation_timeout())
            .user_agent(concat!("bento-pulsar-admin/", env!("CARGO_PKG_VERSION")));
        let tls = &config.tls;
        if tls.allow_insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let mut trusted = Vec::new();
        if let Some(path) = &tls.trust_cert_path {
            let pem = std::fs::read(path).map_err(|e| {
                config_error(
                    "tls.trust_cert_path",
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
            trusted = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                config_error(
                    "tls.trust_cert_path",
                    format!(
                        "`{}` holds no readable PEM certificate: {e}",
                        path.display()
                    ),
                )
            })?;
        }
        if !tls.hostname_verification && !tls.allow_insecure {
            // The TLS library checks names against the trusted certificates only, then.
            if trusted.is_empty() {
                return Err(config_error(
                    "tls.hostname_verification",
                    "false needs tls.trust_cert_path for the admin client (the certificates \
                     to trust without checking the host name)",
                ));
            }
            builder = builder
                .tls_certs_only(trusted)
                .tls_danger_accept_invalid_hostnames(true);
        } else {
            for certificate in trusted {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| {
            config_error(
                "admin_url",
                format!("cannot build an HTTP client: {}", chain(&e)),
            )
        })?;
        Ok(Self {
            http,
            base: url.to_owned(),
            default_namespace,
        })
    }

    /// A client for the admin API at `url` (e.g. `http://127.0.0.1:8080`), without
    /// authentication, with the default timeouts and `public/default` for plain topic names.
    pub fn from_url(url: &str) -> Result<Self, AdminError> {
        Self::new(&PulsarConfig {
            admin_url: url.to_owned(),
            ..PulsarConfig::default()
        })
    }

    /// The admin URL this client calls.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The full name of `topic` as this client reads it (see the module documentation).
    pub fn topic_name(&self, topic: &str) -> Result<TopicName, AdminError> {
        TopicName::parse(topic, &self.default_namespace)
    }

    // ---------------------------------------------------------------- clusters and tenants

    /// Names of the clusters of this Pulsar instance.
    pub async fn clusters(&self) -> Result<Vec<String>, AdminError> {
        self.get_json(format!("{API}/clusters")).await
    }

    /// Names of all tenants.
    pub async fn tenants(&self) -> Result<Vec<String>, AdminError> {
        let mut tenants: Vec<String> = self.get_json(format!("{API}/tenants")).await?;
        tenants.sort();
        Ok(tenants)
    }

    /// A tenant's settings.
    pub async fn tenant(&self, tenant: &str) -> Result<TenantInfo, AdminError> {
        self.get_json(format!("{API}/tenants/{}", segment(tenant, "tenant")?))
            .await
    }

    /// Creates `tenant`, allowed on `allowed_clusters` (all clusters of the instance if
    /// empty). An existing tenant is an error with status 409.
    pub async fn create_tenant(
        &self,
        tenant: &str,
        allowed_clusters: &[String],
    ) -> Result<(), AdminError> {
        let path = format!("{API}/tenants/{}", segment(tenant, "tenant")?);
        let clusters = if allowed_clusters.is_empty() {
            self.clusters().await?
        } else {
            allowed_clusters.to_vec()
        };
        let info = TenantInfoBody {
            allowed_clusters: clusters,
            admin_roles: Vec::new(),
        };
        self.send(Method::PUT, path, Some(&info)).await.map(drop)
    }

    /// Deletes `tenant`; it must have no namespaces left (else 409).
    pub async fn delete_tenant(&self, tenant: &str) -> Result<(), AdminError> {
        let path = format!("{API}/tenants/{}", segment(tenant, "tenant")?);
        self.send(Method::DELETE, path, None::<&()>).await.map(drop)
    }

    // ---------------------------------------------------------------- namespaces

    /// Namespaces of `tenant`, as `tenant/namespace`.
    pub async fn namespaces(&self, tenant: &str) -> Result<Vec<String>, AdminError> {
        let mut namespaces: Vec<String> = self
            .get_json(format!("{API}/namespaces/{}", segment(tenant, "tenant")?))
            .await?;
        namespaces.sort();
        Ok(namespaces)
    }

    /// Creates `namespace` (`tenant/namespace`). An existing one is an error with status 409.
    pub async fn create_namespace(&self, namespace: &str) -> Result<(), AdminError> {
        let path = format!("{API}/namespaces/{}", ns(namespace)?.path());
        self.send(Method::PUT, path, None::<&()>).await.map(drop)
    }

    /// Deletes `namespace`; with `force`, its topics too (else it must be empty, or 409).
    pub async fn delete_namespace(&self, namespace: &str, force: bool) -> Result<(), AdminError> {
        let path = format!(
            "{API}/namespaces/{}{}",
            ns(namespace)?.path(),
            if force { "?force=true" } else { "" }
        );
        self.send(Method::DELETE, path, None::<&()>).await.map(drop)
    }

    /// Whether broker-side deduplication is on for `namespace` (`None`: not set there).
    pub async fn deduplication(&self, namespace: &str) -> Result<Option<bool>, AdminError> {
        self.get_optional(self.ns_policy(namespace, "deduplication")?)
            .await
    }

    /// Turns broker-side deduplication on or off for `namespace`.
    pub async fn set_deduplication(&self, namespace: &str, on: bool) -> Result<(), AdminError> {
        let path = self.ns_policy(namespace, "deduplication")?;
        self.send(Method::POST, path, Some(&on)).await.map(drop)
    }

    /// The retention of acknowledged messages in `namespace` (`None`: not set there).
    pub async fn retention(&self, namespace: &str) -> Result<Option<Retention>, AdminError> {
        self.get_optional(self.ns_policy(namespace, "retention")?)
            .await
    }

    /// Sets the retention of acknowledged messages in `namespace`.
    pub async fn set_retention(
        &self,
        namespace: &str,
        retention: Retention,
    ) -> Result<(), AdminError> {
        let path = self.ns_policy(namespace, "retention")?;
        self.send(Method::POST, path, Some(&retention))
            .await
            .map(drop)
    }

    /// The message time-to-live of `namespace`, in seconds (`None`: not set there).
    pub async fn message_ttl(&self, namespace: &str) -> Result<Option<i64>, AdminError> {
        self.get_optional(self.ns_policy(namespace, "messageTTL")?)
            .await
    }

    /// Sets the message time-to-live of `namespace`: unacknowledged messages older than
    /// `seconds` expire (0: never).
    pub async fn set_message_ttl(&self, namespace: &str, seconds: u32) -> Result<(), AdminError> {
        let path = self.ns_policy(namespace, "messageTTL")?;
        self.send(Method::POST, path, Some(&seconds))
            .await
            .map(drop)
    }

    /// The schema compatibility strategy of `namespace`.
    pub async fn schema_compatibility(
        &self,
        namespace: &str,
    ) -> Result<SchemaCompatibility, AdminError> {
        Ok(self
            .get_optional(self.ns_policy(namespace, "schemaCompatibilityStrategy")?)
            .await?
            .unwrap_or(SchemaCompatibility::Undefined))
    }

    /// Sets the schema compatibility strategy of `namespace`.
    pub async fn set_schema_compatibility(
        &self,
        namespace: &str,
        strategy: &SchemaCompatibility,
    ) -> Result<(), AdminError> {
        let path = self.ns_policy(namespace, "schemaCompatibilityStrategy")?;
        self.send(Method::PUT, path, Some(strategy)).await.map(drop)
    }

    /// Deduplication, retention, TTL and schema compatibility of `namespace`, in one go.
    pub async fn namespace_policies(
        &self,
        namespace: &str,
    ) -> Result<NamespacePolicies, AdminError> {
        let (deduplication, retention, message_ttl_seconds, schema_compatibility) = futures::try_join!(
            self.deduplication(namespace),
            self.retention(namespace),
            self.message_ttl(namespace),
            self.schema_compatibility(namespace),
        )?;
        Ok(NamespacePolicies {
            deduplication,
            retention,
            message_ttl_seconds,
            schema_compatibility,
        })
    }

    fn ns_policy(&self, namespace: &str, policy: &str) -> Result<String, AdminError> {
        Ok(format!(
            "{API}/namespaces/{}/{policy}",
            ns(namespace)?.path()
        ))
    }

    // ---------------------------------------------------------------- topics

    /// Persistent topics of `namespace`, full names, sorted: partitioned topics by their own
    /// name (not their `-partition-<n>` parts), and the other topics.
    pub async fn topics(&self, namespace: &str) -> Result<Vec<String>, AdminError> {
        let namespace = ns(namespace)?;
        let (all, partitioned) = futures::try_join!(
            self.get_json::<Vec<String>>(format!("{API}/persistent/{}", namespace.path())),
            self.partitioned_topics_of(&namespace),
        )?;
        let mut topics: Vec<String> = all
            .into_iter()
            .filter(|topic| !partitioned.iter().any(|p| partition_of(topic, p)))
            .chain(partitioned.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        Ok(topics)
    }

    /// Partitioned persistent topics of `namespace`, full names.
    pub async fn partitioned_topics(&self, namespace: &str) -> Result<Vec<String>, AdminError> {
        self.partitioned_topics_of(&ns(namespace)?).await
    }

    async fn partitioned_topics_of(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Vec<String>, AdminError> {
        self.get_json(format!("{API}/persistent/{}/partitioned", namespace.path()))
            .await
    }

    /// Creates `topic`: partitioned with `partitions` partitions, or not partitioned if 0.
    /// An existing topic is an error with status 409.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), AdminError> {
        let topic = self.topic_name(topic)?;
        if partitions == 0 {
            let path = format!("{API}/{}", topic.path());
            self.send(Method::PUT, path, None::<&()>).await.map(drop)
        } else {
            let path = format!("{API}/{}/partitions", topic.path());
            self.send(Method::PUT, path, Some(&partitions))
                .await
                .map(drop)
        }
    }

    /// Partitions of `topic` (0: not partitioned). A topic that does not exist is a 404.
    pub async fn partitions(&self, topic: &str) -> Result<u32, AdminError> {
        let topic = self.topic_name(topic)?;
        self.partitions_of(&topic).await
    }

    async fn partitions_of(&self, topic: &TopicName) -> Result<u32, AdminError> {
        let path = format!("{API}/{}/partitions", topic.path());
        let metadata: PartitionedMetadata = self.get_json(path).await?;
        Ok(metadata.partitions)
    }

    /// Deletes `topic` (all partitions of a partitioned one); with `force`, even while
    /// producers or consumers are connected and subscriptions exist.
    pub async fn delete_topic(&self, topic: &str, force: bool) -> Result<(), AdminError> {
        let topic = self.topic_name(topic)?;
        let partitioned = self.partitions_of(&topic).await? > 0;
        let path = format!(
            "{API}/{}{}{}",
            topic.path(),
            if partitioned { "/partitions" } else { "" },
            if force { "?force=true" } else { "" }
        );
        self.send(Method::DELETE, path, None::<&()>).await.map(drop)
    }

    /// Statistics of `topic` (for a partitioned topic, of all partitions together): rates,
    /// storage, and each subscription's backlog.
    pub async fn topic_stats(&self, topic: &str) -> Result<TopicStats, AdminError> {
        let topic = self.topic_name(topic)?;
        let partitions = self.partitions_of(&topic).await?;
        let path = if partitions > 0 {
            format!("{API}/{}/partitioned-stats", topic.path())
        } else {
            format!("{API}/{}/stats", topic.path())
        };
        let mut stats: TopicStats = self.get_json(path).await?;
        stats.partitions = partitions;
        Ok(stats)
    }

    // ---------------------------------------------------------------- subscriptions

    /// Names of the subscriptions of `topic`, sorted.
    pub async fn subscriptions(&self, topic: &str) -> Result<Vec<String>, AdminError> {
        let topic = self.topic_name(topic)?;
        let mut subscriptions: Vec<String> = self
            .get_json(format!("{API}/{}/subscriptions", topic.path()))
            .await?;
        subscriptions.sort();
        Ok(subscriptions)
    }

    /// Creates the durable subscription `subscription` on `topic`, its cursor at `position`.
    /// An existing subscription is an error with status 409.
    pub async fn create_subscription(
        &self,
        topic: &str,
        subscription: &str,
        position: Position,
    ) -> Result<(), AdminError> {
        let path = self.subscription_path(topic, subscription, "")?;
        match position {
            Position::Latest => self.send(Method::PUT, path, None::<&()>).await.map(drop),
            Position::Earliest => {
                let earliest = MessageIdBody {
                    ledger_id: -1,
                    entry_id: -1,
                    partition_index: -1,
                };
                self.send(Method::PUT, path, Some(&earliest))
                    .await
                    .map(drop)
            }
        }
    }

    /// Moves the cursor of `subscription` on `topic`: to the oldest stored message, or to the
    /// first message published at or after a time. Messages after the new position are
    /// delivered again (connected consumers are disconnected by the broker and reconnect).
    pub async fn reset_cursor(
        &self,
        topic: &str,
        subscription: &str,
        to: ResetTo,
    ) -> Result<(), AdminError> {
        let millis = match to {
            ResetTo::Earliest => 0,
            ResetTo::Time(at) => at.timestamp_millis().max(0),
        };
        let path =
            self.subscription_path(topic, subscription, &format!("/resetcursor/{millis}"))?;
        self.send(Method::POST, path, None::<&()>).await.map(drop)
    }

    /// Acknowledges the next `count` messages of `subscription` without delivering them.
    pub async fn skip(
        &self,
        topic: &str,
        subscription: &str,
        count: u64,
    ) -> Result<(), AdminError> {
        let path = self.subscription_path(topic, subscription, &format!("/skip/{count}"))?;
        self.send(Method::POST, path, None::<&()>).await.map(drop)
    }

    /// Acknowledges every message of `subscription`'s backlog without delivering them.
    pub async fn skip_all(&self, topic: &str, subscription: &str) -> Result<(), AdminError> {
        let path = self.subscription_path(topic, subscription, "/skip_all")?;
        self.send(Method::POST, path, None::<&()>).await.map(drop)
    }

    /// Deletes `subscription` from `topic`; with `force`, even while consumers are connected
    /// (they are disconnected), else that is an error.
    pub async fn delete_subscription(
        &self,
        topic: &str,
        subscription: &str,
        force: bool,
    ) -> Result<(), AdminError> {
        let query = if force { "?force=true" } else { "" };
        let path = self.subscription_path(topic, subscription, query)?;
        self.send(Method::DELETE, path, None::<&()>).await.map(drop)
    }

    fn subscription_path(
        &self,
        topic: &str,
        subscription: &str,
        rest: &str,
    ) -> Result<String, AdminError> {
        let topic = self.topic_name(topic)?;
        Ok(format!(
            "{API}/{}/subscription/{}{rest}",
            topic.path(),
            segment(subscription, "subscription")?
        ))
    }

    // ---------------------------------------------------------------- schemas

    /// The latest schema of `topic`. A topic without a schema is a 404 (`Schema not found`).
    pub async fn schema(&self, topic: &str) -> Result<SchemaInfo, AdminError> {
        let topic = self.topic_name(topic)?;
        self.get_json(format!("{API}/schemas/{}/schema", topic.schema_path()))
            .await
    }

    /// Version `version` of `topic`'s schema.
    pub async fn schema_version(
        &self,
        topic: &str,
        version: u64,
    ) -> Result<SchemaInfo, AdminError> {
        let topic = self.topic_name(topic)?;
        self.get_json(format!(
            "{API}/schemas/{}/schema/{version}",
            topic.schema_path()
        ))
        .await
    }

    /// Every version of `topic`'s schema, oldest first (empty when it has none).
    pub async fn schema_versions(&self, topic: &str) -> Result<Vec<SchemaInfo>, AdminError> {
        let topic = self.topic_name(topic)?;
        let versions: SchemaVersions = self
            .get_json(format!("{API}/schemas/{}/schemas", topic.schema_path()))
            .await?;
        let mut versions = versions.get_schema_responses;
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    /// Registers a schema on `topic` (a new version if it differs from the latest, checked
    /// against the namespace's compatibility strategy).
    pub async fn upload_schema(
        &self,
        topic: &str,
        schema: &SchemaUpload,
    ) -> Result<(), AdminError> {
        let topic = self.topic_name(topic)?;
        let path = format!("{API}/schemas/{}/schema", topic.schema_path());
        self.send(Method::POST, path, Some(schema)).await.map(drop)
    }

    // ---------------------------------------------------------------- HTTP

    /// Sends one call; the body of a success, or an [`AdminError`] naming the call.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<Vec<u8>, AdminError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let connection = |error: reqwest::Error| {
            let reason = if error.is_timeout() {
                format!("no answer in time: {}", chain(&error))
            } else {
                chain(&error)
            };
            AdminError::Connection {
                method: method.to_string(),
                url: without_credentials(&url),
                reason: reason.replace(&url, &without_credentials(&url)),
            }
        };
        let response = request.send().await.map_err(connection)?;
        let status = response.status();
        let body = response.bytes().await.map_err(connection)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(AdminError::Status {
                method: method.to_string(),
                path,
                status: status.as_u16(),
                message: broker_message(status.as_u16(), &body),
            })
        }
    }

    /// GETs `path` and reads its JSON body.
    async fn get_json<T: DeserializeOwned>(&self, path: String) -> Result<T, AdminError> {
        let body = self.send(Method::GET, path.clone(), None::<&()>).await?;
        decode(&path, &body)
    }

    /// GETs `path` and reads its JSON body; an empty body or `null` (a policy not set) is
    /// `None`.
    async fn get_optional<T: DeserializeOwned>(
        &self,
        path: String,
    ) -> Result<Option<T>, AdminError> {
        let body = self.send(Method::GET, path.clone(), None::<&()>).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        decode(&path, &body)
    }
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        let shown: String = String::from_utf8_lossy(body).chars().take(200).collect();
        AdminError::Decode {
            method: "GET".into(),
            path: path.to_owned(),
            reason: format!("{e} (body: {shown})"),
        }
    })
}

/// `url` without a `user:password@` part, for messages.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Whether `topic` is a partition (`<base>-partition-<n>`) of the partitioned topic `base`.
fn partition_of(topic: &str, base: &str) -> bool {
    topic
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix("-partition-"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn segment(name: &str, what: &str) -> Result<String, AdminError> {
    if name.trim().is_empty() || name.contains('/') {
        return Err(AdminError::invalid(
            format!("{what} `{name}`"),
            "must be a non-empty name without `/`",
        ));
    }
    Ok(encode(name))
}

fn ns(namespace: &str) -> Result<NamespaceName, AdminError> {
    NamespaceName::parse(namespace)
}

fn token(config: &PulsarConfig) -> Result<Option<String>, AdminError> {
    let auth = &config.auth;
    if auth.oauth2.is_some() {
        return Err(config_error(
            "auth.oauth2",
            "is not supported by the admin client; give it a token (auth.token or auth.token_file)",
        ));
    }
    auth.read_token()
        .map_err(|e| AdminError::invalid(e.key(), e.message()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantInfoBody {
    allowed_clusters: Vec<String>,
    admin_roles: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageIdBody {
    ledger_id: i64,
    entry_id: i64,
    partition_index: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_recognised() {
        assert!(partition_of(
            "persistent://a/b/t-partition-0",
            "persistent://a/b/t"
        ));
        assert!(partition_of(
            "persistent://a/b/t-partition-12",
            "persistent://a/b/t"
        ));
        assert!(!partition_of(
            "persistent://a/b/t-partition-x",
            "persistent://a/b/t"
        ));
        assert!(!partition_of(
            "persistent://a/b/t2-partition-0",
            "persistent://a/b/t"
        ));
        assert!(!partition_of("persistent://a/b/t", "persistent://a/b/t"));
    }

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        assert_eq!(
            without_credentials("https://admin:s3cret@pulsar:8443/admin/v2/tenants"),
            "https://pulsar:8443/admin/v2/tenants"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:8080/admin/v2/x@y"),
            "http://127.0.0.1:8080/admin/v2/x@y"
        );
    }

    #[test]
    fn bad_urls_and_names_are_refused_before_sending() {
        let error = PulsarAdmin::from_url("pulsar://127.0.0.1:6650").err();
        assert!(
            error
                .as_ref()
                .is_some_and(|e| e.to_string().starts_with("messaging.pulsar.admin_url:")),
            "{error:?}"
        );
        assert!(segment("a/b", "tenant").is_err());
        assert!(segment(" ", "tenant").is_err());
    }

    #[test]
    fn debug_never_shows_the_token() -> Result<(), AdminError> {
        let admin = PulsarAdmin::new(&PulsarConfig {
            auth: crate::AuthConfig {
                token: Some("secret-token-value".into()),
                ..crate::AuthConfig::default()
            },
            ..PulsarConfig::default()
        })?;
        let shown = format!("{admin:?}");
        assert!(!shown.contains("secret-token-value"), "{shown}");
        assert!(shown.contains("127.0.0.1:8080"), "{shown}");
        Ok(())
    }
}
