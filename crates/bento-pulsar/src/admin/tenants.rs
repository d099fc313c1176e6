//! Clusters and tenants.

use reqwest::Method;
use serde::Serialize;

use super::{API, AdminError, PulsarAdmin, TenantInfo, segment};

impl PulsarAdmin {
    /// The broker's runtime configuration: every setting's name and value, as text.
    pub async fn broker_configuration(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, AdminError> {
        self.get_json(format!("{API}/brokers/configuration/runtime"))
            .await
    }

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
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantInfoBody {
    allowed_clusters: Vec<String>,
    admin_roles: Vec<String>,
}
