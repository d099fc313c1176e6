//! Namespaces and their policies: deduplication, retention, message TTL, schema compatibility.

use reqwest::Method;

use super::{
    API, AdminError, NamespacePolicies, PulsarAdmin, Retention, SchemaCompatibility, ns, segment,
};

impl PulsarAdmin {
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

    /// Whether `namespace` enforces schema validation (`schemaValidationEnforced`): a producer
    /// without a schema is refused on a topic that has one. `false` where the namespace says
    /// nothing (the broker's `isSchemaValidationEnforced` may still enforce it).
    pub async fn schema_validation_enforced(&self, namespace: &str) -> Result<bool, AdminError> {
        Ok(self
            .get_optional(self.ns_policy(namespace, "schemaValidationEnforced")?)
            .await?
            .unwrap_or(false))
    }

    /// Sets `schemaValidationEnforced` on `namespace` (as `pulsar-admin namespaces
    /// set-schema-validation-enforced` does).
    pub async fn set_schema_validation_enforced(
        &self,
        namespace: &str,
        enforced: bool,
    ) -> Result<(), AdminError> {
        let path = self.ns_policy(namespace, "schemaValidationEnforced")?;
        self.send(Method::POST, path, Some(&enforced))
            .await
            .map(drop)
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
}
