//! Checking a configuration: each mistake is reported with the full key at fault.

use super::PulsarConfig;
use crate::error::{ConfigError, invalid};
use crate::topics;

impl PulsarConfig {
    /// Checks every setting; the error names the offending key in full, e.g.
    /// `messaging.pulsar.service_url: must start with pulsar:// or pulsar+ssl://`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.service_url;
        let Some(rest) = url
            .strip_prefix("pulsar://")
            .or_else(|| url.strip_prefix("pulsar+ssl://"))
        else {
            return Err(invalid(
                "service_url",
                format!("must start with pulsar:// or pulsar+ssl:// (got `{url}`)"),
            ));
        };
        if rest.trim_end_matches('/').is_empty() {
            return Err(invalid("service_url", "names no host"));
        }
        if !(self.admin_url.starts_with("http://") || self.admin_url.starts_with("https://")) {
            return Err(invalid(
                "admin_url",
                format!(
                    "must start with http:// or https:// (got `{}`)",
                    self.admin_url
                ),
            ));
        }
        topics::check_segment(&self.tenant).map_err(|why| invalid("tenant", why))?;
        topics::check_segment(&self.namespace).map_err(|why| invalid("namespace", why))?;
        for (event_type, topic) in &self.topics.event_types {
            topics::check_topic(topic)
                .map_err(|why| invalid(format!("topics.event_types.\"{event_type}\""), why))?;
        }
        if let Some(shared) = &self.topics.shared {
            topics::check_topic(shared).map_err(|why| invalid("topics.shared", why))?;
        }
        self.validate_auth()?;
        more_than_zero("connect_timeout_ms", self.connect_timeout_ms)?;
        more_than_zero("operation_timeout_ms", self.operation_timeout_ms)?;
        let producer = &self.producer;
        if producer.batching {
            if producer.batch_max_messages < 2 {
                return Err(invalid(
                    "producer.batch_max_messages",
                    "must be at least 2 when batching is on",
                ));
            }
            more_than_zero("producer.batch_max_bytes", producer.batch_max_bytes)?;
            if producer.batch_max_delay_ms == 0 {
                return Err(invalid(
                    "producer.batch_max_delay_ms",
                    "must be more than 0 when batching is on (a lone message would wait forever)",
                ));
            }
        }
        more_than_zero(
            "producer.max_pending_messages",
            producer.max_pending_messages,
        )?;
        more_than_zero(
            "consumer.receiver_queue_size",
            self.consumer.receiver_queue_size,
        )?;
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let methods = [
            auth.token.is_some(),
            auth.token_file.is_some(),
            auth.oauth2.is_some(),
        ];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(invalid(
                "auth",
                "set only one of token, token_file and oauth2",
            ));
        }
        if auth.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid("auth.token", "is empty"));
        }
        if let Some(oauth2) = &auth.oauth2 {
            if !cfg!(feature = "oauth2") {
                return Err(invalid(
                    "auth.oauth2",
                    "needs bento-pulsar built with its `oauth2` cargo feature",
                ));
            }
            if !(oauth2.issuer_url.starts_with("http://")
                || oauth2.issuer_url.starts_with("https://"))
            {
                return Err(invalid(
                    "auth.oauth2.issuer_url",
                    "must be an http:// or https:// URL",
                ));
            }
            match (
                &oauth2.client_id,
                &oauth2.client_secret,
                &oauth2.credentials_url,
            ) {
                (Some(_), Some(_), None) => {}
                (None, None, Some(url)) if url.starts_with("file:") || url.starts_with("data:") => {
                }
                (None, None, Some(_)) => {
                    return Err(invalid(
                        "auth.oauth2.credentials_url",
                        "must be a file: or data: URL",
                    ));
                }
                _ => {
                    return Err(invalid(
                        "auth.oauth2",
                        "set client_id and client_secret, or credentials_url alone",
                    ));
                }
            }
            // Creating namespaces goes through the admin REST API, whose client takes a token
            // only: refused here rather than failing at the first publish.
            if self.create_namespaces {
                return Err(invalid(
                    "create_namespaces",
                    "needs the admin API, which Bento's admin client cannot call with \
                     auth.oauth2 (it takes auth.token or auth.token_file); create the tenant and \
                     namespace beforehand and turn create_namespaces off",
                ));
            }
        }
        Ok(())
    }
}

/// Refuses a zero `value` for `key`.
fn more_than_zero<T: Default + PartialEq>(key: &str, value: T) -> Result<(), ConfigError> {
    if value == T::default() {
        Err(invalid(key, "must be more than 0"))
    } else {
        Ok(())
    }
}
