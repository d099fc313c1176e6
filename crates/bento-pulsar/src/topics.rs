//! Topic naming: plain names into `persistent://<tenant>/<namespace>/<topic>`, event types to
//! topics, retry topics.

use std::collections::BTreeMap;

use crate::config::PulsarConfig;

/// Checks a tenant or namespace name.
pub(crate) fn check_segment(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    match name.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!(
            "`{name}` contains `{c}`; use letters, digits and - _ . = :"
        )),
        None => Ok(()),
    }
}

/// Checks a topic given in the configuration: a plain name, `tenant/namespace/topic`, or a full
/// `persistent://` / `non-persistent://` name.
pub(crate) fn check_topic(topic: &str) -> Result<(), String> {
    let path = match topic.split_once("://") {
        Some(("persistent" | "non-persistent", path)) => path,
        Some((scheme, _)) => {
            return Err(format!(
                "`{topic}`: the scheme must be persistent:// or non-persistent://, not {scheme}://"
            ));
        }
        None if topic.contains('/') => topic,
        None => return check_segment(topic).map_err(|why| format!("topic name {why}")),
    };
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{topic}` must be <tenant>/<namespace>/<topic>"));
    }
    parts.iter().try_for_each(|part| check_segment(part))
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | ':' | '%')
}

/// Maps names and event types to full topic names, per the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    tenant: String,
    namespace: String,
    event_types: BTreeMap<String, String>,
    shared: Option<String>,
    tenant_from_envelope: bool,
}

impl Topics {
    pub(crate) fn new(config: &PulsarConfig) -> Self {
        Self {
            tenant: config.tenant.clone(),
            namespace: config.namespace.clone(),
            event_types: config.topics.event_types.clone(),
            shared: config.topics.shared.clone(),
            tenant_from_envelope: config.tenant_from_envelope,
        }
    }

    /// The full name of `name`: as is if it has a scheme, `persistent://` added to
    /// `tenant/namespace/topic`, otherwise placed in `tenant` (or the configured one) and the
    /// configured namespace.
    pub(crate) fn full(&self, name: &str, tenant: Option<&str>) -> String {
        if name.contains("://") {
            name.to_owned()
        } else if name.contains('/') {
            format!("persistent://{name}")
        } else {
            let tenant = tenant.unwrap_or(&self.tenant);
            format!("persistent://{tenant}/{}/{name}", self.namespace)
        }
    }

    /// The topic name (maybe plain) `event_type` is published to.
    fn name_for(&self, event_type: &str) -> String {
        match (self.event_types.get(event_type), &self.shared) {
            (Some(topic), _) => topic.clone(),
            (None, Some(shared)) => shared.clone(),
            (None, None) => event_type.to_owned(),
        }
    }

    /// The full topic `event_type` is published to, in the configured tenant.
    pub(crate) fn for_event_type(&self, event_type: &str) -> String {
        self.full(&self.name_for(event_type), None)
    }

    /// Where to publish an envelope of `event_type` and `tenant`, given an explicit `topic`.
    pub(crate) fn for_publish(
        &self,
        event_type: &str,
        tenant: Option<&str>,
        topic: Option<&str>,
    ) -> String {
        let name = match topic {
            Some(topic) => topic.to_owned(),
            None => self.name_for(event_type),
        };
        let tenant = if self.tenant_from_envelope {
            tenant.filter(|t| !t.is_empty())
        } else {
            None
        };
        self.full(&name, tenant)
    }

    /// Whether several event types are configured onto the full topic `topic`, so that a
    /// subscriber of one type must skip the others.
    pub(crate) fn is_shared(&self, topic: &str) -> bool {
        let shared = self
            .shared
            .as_deref()
            .is_some_and(|shared| self.full(shared, None) == topic);
        let mapped = self
            .event_types
            .values()
            .filter(|t| self.full(t, None) == topic)
            .count();
        shared || mapped > 1
    }
}

/// The retry topic of `subscription` on the full topic `topic`: `<topic>-<subscription>-RETRY`,
/// next to the dead-letter topic's `-DLQ`. The subscription reads it (under its own name) along
/// with `topic`, so a message published there reaches that subscription alone.
pub fn retry_topic(topic: &str, subscription: &str) -> String {
    format!("{topic}-{subscription}-RETRY")
}

impl PulsarConfig {
    /// The full topic `event_type` is published to, as [`crate::PulsarBus`] built from this
    /// configuration names it, without connecting (for a service's contract, see
    /// `bento-asyncapi`).
    pub fn event_type_topic(&self, event_type: &str) -> String {
        Topics::new(self).for_event_type(event_type)
    }

    /// The full name of `topic` as [`crate::PulsarBus::topic_name`] gives it, without
    /// connecting.
    pub fn full_topic_name(&self, topic: &str) -> String {
        Topics::new(self).full(topic, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(edit: impl FnOnce(&mut PulsarConfig)) -> Topics {
        let mut config = PulsarConfig::default();
        edit(&mut config);
        Topics::new(&config)
    }

    #[test]
    fn plain_names_go_into_the_configured_namespace() {
        let t = topics(|c| {
            c.tenant = "acme".into();
            c.namespace = "orders".into();
        });
        assert_eq!(t.full("created", None), "persistent://acme/orders/created");
        assert_eq!(t.full("a/b/c", None), "persistent://a/b/c");
        assert_eq!(
            t.full("non-persistent://a/b/c", None),
            "non-persistent://a/b/c"
        );
        assert_eq!(
            t.for_event_type("users.user-created"),
            "persistent://acme/orders/users.user-created"
        );
    }

    #[test]
    fn event_types_map_to_their_topic_or_the_shared_one() {
        let t = topics(|c| {
            c.topics.event_types.insert("a".into(), "alpha".into());
            c.topics
                .event_types
                .insert("b".into(), "persistent://x/y/beta".into());
            c.topics.shared = Some("everything".into());
        });
        assert_eq!(t.for_event_type("a"), "persistent://public/default/alpha");
        assert_eq!(t.for_event_type("b"), "persistent://x/y/beta");
        assert_eq!(
            t.for_event_type("c"),
            "persistent://public/default/everything"
        );
        assert!(t.is_shared("persistent://public/default/everything"));
        assert!(!t.is_shared("persistent://public/default/alpha"));
    }

    #[test]
    fn two_types_on_one_topic_make_it_shared() {
        let t = topics(|c| {
            c.topics.event_types.insert("a".into(), "orders".into());
            c.topics.event_types.insert("b".into(), "orders".into());
        });
        assert!(t.is_shared("persistent://public/default/orders"));
        assert!(!t.is_shared("persistent://public/default/c"));
    }

    #[test]
    fn envelope_tenant_overrides_only_when_enabled() {
        let off = topics(|_| {});
        assert_eq!(
            off.for_publish("e", Some("acme"), None),
            "persistent://public/default/e"
        );
        let on = topics(|c| c.tenant_from_envelope = true);
        assert_eq!(
            on.for_publish("e", Some("acme"), None),
            "persistent://acme/default/e"
        );
        assert_eq!(
            on.for_publish("e", Some("acme"), Some("t")),
            "persistent://acme/default/t"
        );
        assert_eq!(
            on.for_publish("e", None, Some("t")),
            "persistent://public/default/t"
        );
        assert_eq!(
            on.for_publish("e", Some("acme"), Some("persistent://p/q/r")),
            "persistent://p/q/r"
        );
    }

    #[test]
    fn topic_checks() {
        assert!(check_topic("orders").is_ok());
        assert!(check_topic("persistent://a/b/c").is_ok());
        assert!(check_topic("a/b/c").is_ok());
        assert!(check_topic("kafka://a/b/c").is_err());
        assert!(check_topic("a/b").is_err());
        assert!(check_topic("").is_err());
        assert!(check_topic("has space").is_err());
        assert_eq!(
            retry_topic("persistent://a/b/c", "s"),
            "persistent://a/b/c-s-RETRY"
        );
    }
}
