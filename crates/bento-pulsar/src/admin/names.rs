//! Namespace and topic names as the admin API wants them in its paths.

use std::fmt;

use super::AdminError;

/// A namespace: `tenant/namespace`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName {
    /// The tenant.
    pub tenant: String,
    /// The namespace within the tenant.
    pub namespace: String,
}

impl NamespaceName {
    /// Parses `tenant/namespace`.
    pub fn parse(name: &str) -> Result<Self, AdminError> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            [tenant, namespace] => Ok(Self {
                tenant: segment(tenant, name, "tenant")?,
                namespace: segment(namespace, name, "namespace")?,
            }),
            _ => Err(AdminError::invalid(
                format!("namespace `{name}`"),
                "must be <tenant>/<namespace>",
            )),
        }
    }

    /// `tenant/namespace`, each part percent-encoded for a URL path.
    pub(crate) fn path(&self) -> String {
        format!("{}/{}", encode(&self.tenant), encode(&self.namespace))
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.namespace)
    }
}

/// Whether a topic keeps its messages (`persistent://`) or not (`non-persistent://`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TopicDomain {
    /// Messages are stored until acknowledged (or longer, per retention).
    Persistent,
    /// Messages go only to the consumers connected at the time.
    NonPersistent,
}

impl TopicDomain {
    /// `persistent` or `non-persistent`, as in the scheme and in admin paths.
    pub fn as_str(&self) -> &'static str {
        match self {
            TopicDomain::Persistent => "persistent",
            TopicDomain::NonPersistent => "non-persistent",
        }
    }
}

/// A fully qualified topic: `persistent://tenant/namespace/topic`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    /// Persistent or not.
    pub domain: TopicDomain,
    /// The namespace the topic lives in.
    pub namespace: NamespaceName,
    /// The topic's own name (for a partition: `name-partition-<n>`).
    pub local: String,
}

impl TopicName {
    /// Parses a topic name the way the bus names topics: a full `persistent://t/ns/x` or
    /// `non-persistent://t/ns/x` as is, `t/ns/x` as persistent, and a plain `x` in
    /// `default_namespace`.
    pub fn parse(name: &str, default_namespace: &NamespaceName) -> Result<Self, AdminError> {
        let invalid = |why: &str| AdminError::invalid(format!("topic `{name}`"), why);
        let (domain, path) = match name.split_once("://") {
            Some(("persistent", path)) => (TopicDomain::Persistent, path),
            Some(("non-persistent", path)) => (TopicDomain::NonPersistent, path),
            Some(_) => {
                return Err(invalid(
                    "the scheme must be persistent:// or non-persistent://",
                ));
            }
            None => (TopicDomain::Persistent, name),
        };
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [local] if !name.contains("://") => Ok(Self {
                domain,
                namespace: default_namespace.clone(),
                local: segment(local, name, "topic")?,
            }),
            [tenant, namespace, local] => Ok(Self {
                domain,
                namespace: NamespaceName {
                    tenant: segment(tenant, name, "tenant")?,
                    namespace: segment(namespace, name, "namespace")?,
                },
                local: segment(local, name, "topic")?,
            }),
            _ => Err(invalid(
                "must be a plain name, <tenant>/<namespace>/<topic> or persistent://<tenant>/<namespace>/<topic>",
            )),
        }
    }

    /// `persistent/tenant/namespace/topic`, percent-encoded, as in `/admin/v2/<this>/...`.
    pub(crate) fn path(&self) -> String {
        format!(
            "{}/{}/{}",
            self.domain.as_str(),
            self.namespace.path(),
            encode(&self.local)
        )
    }

    /// `tenant/namespace/topic`, percent-encoded, as in `/admin/v2/schemas/<this>/...`.
    pub(crate) fn schema_path(&self) -> String {
        format!("{}/{}", self.namespace.path(), encode(&self.local))
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}/{}",
            self.domain.as_str(),
            self.namespace,
            self.local
        )
    }
}

fn segment(part: &str, whole: &str, what: &str) -> Result<String, AdminError> {
    if part.trim().is_empty() {
        return Err(AdminError::invalid(
            format!("`{whole}`"),
            format!("the {what} name is empty"),
        ));
    }
    Ok(part.to_owned())
}

/// Percent-encodes `segment` for one URL path segment (everything but RFC 3986 unreserved
/// characters).
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_ns() -> NamespaceName {
        NamespaceName {
            tenant: "public".into(),
            namespace: "default".into(),
        }
    }

    #[test]
    fn topic_names_like_the_bus() -> Result<(), AdminError> {
        let ns = default_ns();
        let plain = TopicName::parse("orders", &ns)?;
        assert_eq!(plain.to_string(), "persistent://public/default/orders");
        assert_eq!(plain.path(), "persistent/public/default/orders");
        let short = TopicName::parse("acme/sales/orders", &ns)?;
        assert_eq!(short.to_string(), "persistent://acme/sales/orders");
        let full = TopicName::parse("non-persistent://a/b/c", &ns)?;
        assert_eq!(full.path(), "non-persistent/a/b/c");
        assert_eq!(full.schema_path(), "a/b/c");
        let odd = TopicName::parse("a/b/x:y=z%1 2", &ns)?;
        assert_eq!(odd.path(), "persistent/a/b/x%3Ay%3Dz%251%202");
        assert!(TopicName::parse("kafka://a/b/c", &ns).is_err());
        assert!(TopicName::parse("a/b", &ns).is_err());
        assert!(TopicName::parse("persistent://x", &ns).is_err());
        assert!(TopicName::parse("a//c", &ns).is_err());
        assert!(TopicName::parse("", &ns).is_err());
        Ok(())
    }

    #[test]
    fn namespace_names() {
        assert_eq!(
            NamespaceName::parse("acme/sales").map(|n| n.to_string()),
            Ok("acme/sales".into())
        );
        assert!(NamespaceName::parse("acme").is_err());
        assert!(NamespaceName::parse("a/b/c").is_err());
        assert!(NamespaceName::parse("/b").is_err());
    }
}
