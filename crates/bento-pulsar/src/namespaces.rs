//! Missing tenants and namespaces, created through the admin API before first use
//! (`create_namespaces = true`).
//!
//! Pulsar creates topics on first use but not the tenant and namespace they live in; a publish
//! into a namespace that does not exist is refused. With the option on, the bus creates both
//! the first time it publishes or subscribes to a topic of theirs, once per namespace.

use std::collections::HashSet;

use parking_lot::Mutex;

use crate::admin::{AdminError, PulsarAdmin};
use crate::config::PulsarConfig;

/// Creates the namespaces of the topics the bus uses, when configured to.
pub(crate) struct Namespaces {
    /// The admin client, or why there is none; `None` when the option is off.
    admin: Option<Result<PulsarAdmin, String>>,
    /// Namespaces known to exist (`tenant/namespace`).
    ensured: Mutex<HashSet<String>>,
}

impl Namespaces {
    pub(crate) fn new(config: &PulsarConfig) -> Self {
        let admin = config
            .create_namespaces
            .then(|| PulsarAdmin::new(config).map_err(|e| e.to_string()));
        Self {
            admin,
            ensured: Mutex::new(HashSet::new()),
        }
    }

    /// Makes sure the tenant and namespace of `topic` (a full `persistent://t/ns/name`) exist;
    /// does nothing when the option is off or they were seen before.
    pub(crate) async fn ensure(&self, topic: &str) -> Result<(), String> {
        let Some(admin) = &self.admin else {
            return Ok(());
        };
        let Some(namespace) = namespace_of(topic) else {
            return Ok(());
        };
        if self.ensured.lock().contains(namespace) {
            return Ok(());
        }
        let admin = admin.as_ref().map_err(|why| {
            format!("cannot create namespace `{namespace}`: no admin client ({why})")
        })?;
        let (tenant, _) = namespace.split_once('/').unwrap_or((namespace, ""));
        let created = |result: Result<(), AdminError>| match result {
            Ok(()) => Ok(()),
            Err(error) if error.is_conflict() => Ok(()),
            Err(error) => Err(error),
        };
        created(admin.create_tenant(tenant, &[]).await)
            .and(created(admin.create_namespace(namespace).await))
            .map_err(|error| {
                format!(
                    "could not create namespace `{namespace}` through the admin API at {} \
                     (create_namespaces): {error}",
                    admin.url()
                )
            })?;
        tracing::info!(%namespace, "namespace ready");
        self.ensured.lock().insert(namespace.to_owned());
        Ok(())
    }
}

/// `tenant/namespace` of a full topic name, `None` for anything else.
fn namespace_of(topic: &str) -> Option<&str> {
    let rest = topic
        .strip_prefix("persistent://")
        .or_else(|| topic.strip_prefix("non-persistent://"))?;
    let mut slashes = rest.match_indices('/').map(|(at, _)| at);
    let _end_of_tenant = slashes.next()?;
    let end_of_namespace = slashes.next()?;
    Some(&rest[..end_of_namespace])
}

#[cfg(test)]
mod tests {
    use super::namespace_of;

    #[test]
    fn namespace_of_full_names() {
        assert_eq!(
            namespace_of("persistent://acme/orders/placed"),
            Some("acme/orders")
        );
        assert_eq!(namespace_of("non-persistent://a/b/c"), Some("a/b"));
        assert_eq!(namespace_of("persistent://acme/orders"), None);
        assert_eq!(namespace_of("placed"), None);
    }
}
