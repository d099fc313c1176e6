//! Schemas: reading the versions of a topic's schema and registering new ones.

use reqwest::Method;

use super::types::SchemaVersions;
use super::{API, AdminError, PulsarAdmin, SchemaInfo, SchemaUpload};

impl PulsarAdmin {
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
}
