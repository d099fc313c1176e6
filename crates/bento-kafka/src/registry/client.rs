//! The few calls of the Confluent schema registry API the backend makes, over reqwest.

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::SchemaRegistryConfig;

/// The media type of the registry's API.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Confluent's error code for an incompatible schema (with HTTP 409).
const INCOMPATIBLE: u16 = 409;

/// Why a registration failed.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// The registry refused the schema as incompatible with the subject's versions; its reason.
    Incompatible(String),
    /// Anything else: unreachable, another refusal (an invalid schema), an unexpected answer.
    Failed(String),
}

/// A schema as the registry holds it.
#[derive(Clone, Debug, Deserialize)]
pub struct RegisteredSchema {
    /// `AVRO` (also when the registry leaves the field out), `JSON` or `PROTOBUF`.
    #[serde(rename = "schemaType", default = "avro")]
    pub schema_type: String,
    /// The schema text.
    pub schema: String,
}

fn avro() -> String {
    "AVRO".into()
}

/// One version of a subject.
#[derive(Clone, Debug, Deserialize)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// Its version number.
    pub version: i64,
    /// The schema's global id (what framed records carry).
    pub id: u32,
    /// `AVRO`, `JSON` or `PROTOBUF`.
    #[serde(rename = "schemaType", default = "avro")]
    pub schema_type: String,
    /// The schema text.
    pub schema: String,
}

/// A client of one registry.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client of the registry `config` names.
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout())
            .build()
            .map_err(|e| format!("cannot build the registry's HTTP client: {e}"))?;
        let credentials = (!config.username.is_empty())
            .then(|| (config.username.clone(), config.password.clone()));
        Ok(Self {
            http,
            base: config.url.trim().trim_end_matches('/').to_owned(),
            credentials,
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, MEDIA_TYPE);
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Sends `request`, returns the status and the JSON body (`Null` for an empty one).
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(StatusCode, Value), String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("{what}: the registry at {} did not answer: {e}", self.base))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{what}: reading the registry's answer: {e}"))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, body))
    }

    /// Registers `schema` (of `schema_type`: `AVRO`, `JSON`, `PROTOBUF`) under `subject`, or
    /// finds it there; its global id.
    pub(crate) async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<u32, RegisterError> {
        let what = format!("registering a schema under subject `{subject}`");
        let body = json!({ "schemaType": schema_type, "schema": schema });
        let request = self
            .request(
                reqwest::Method::POST,
                &format!("/subjects/{}/versions", encode(subject)),
            )
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(body.to_string());
        let (status, answer) = self
            .call(request, &what)
            .await
            .map_err(RegisterError::Failed)?;
        if status.is_success() {
            return answer
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    RegisterError::Failed(format!("{what}: the answer has no id: {answer}"))
                });
        }
        let message = error_message(&answer);
        if status.as_u16() == INCOMPATIBLE {
            Err(RegisterError::Incompatible(message))
        } else {
            Err(RegisterError::Failed(format!(
                "{what}: HTTP {status}: {message}"
            )))
        }
    }

    /// Sets the compatibility level of `subject`.
    pub(crate) async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), String> {
        let what = format!("setting the compatibility of subject `{subject}` to {level}");
        let request = self
            .request(
                reqwest::Method::PUT,
                &format!("/config/{}", encode(subject)),
            )
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(json!({ "compatibility": level }).to_string());
        let (status, answer) = self.call(request, &what).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{what}: HTTP {status}: {}", error_message(&answer)))
        }
    }

    /// The compatibility level the registry applies to `subject` (its own, else the global
    /// one), when it tells.
    pub(crate) async fn compatibility(&self, subject: &str) -> Option<String> {
        for path in [format!("/config/{}", encode(subject)), "/config".to_owned()] {
            let request = self.request(reqwest::Method::GET, &path);
            if let Ok((status, answer)) = self.call(request, "reading a compatibility level").await
                && status.is_success()
                && let Some(level) = answer
                    .get("compatibilityLevel")
                    .or_else(|| answer.get("compatibility"))
                    .and_then(Value::as_str)
            {
                return Some(level.to_owned());
            }
        }
        None
    }

    /// The schema with global id `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<RegisteredSchema, String> {
        let what = format!("reading schema id {id}");
        let request = self.request(reqwest::Method::GET, &format!("/schemas/ids/{id}"));
        let (status, answer) = self.call(request, &what).await?;
        if !status.is_success() {
            return Err(format!("{what}: HTTP {status}: {}", error_message(&answer)));
        }
        serde_json::from_value(answer).map_err(|e| format!("{what}: unexpected answer: {e}"))
    }

    /// Every subject.
    pub async fn subjects(&self) -> Result<Vec<String>, String> {
        let what = "listing the subjects";
        let (status, answer) = self
            .call(self.request(reqwest::Method::GET, "/subjects"), what)
            .await?;
        if !status.is_success() {
            return Err(format!("{what}: HTTP {status}: {}", error_message(&answer)));
        }
        serde_json::from_value(answer).map_err(|e| format!("{what}: unexpected answer: {e}"))
    }

    /// The latest version of `subject`; `None` when the subject has none.
    pub async fn latest(&self, subject: &str) -> Result<Option<SubjectVersion>, String> {
        let what = format!("reading the latest version of subject `{subject}`");
        self.get_found(
            &format!("/subjects/{}/versions/latest", encode(subject)),
            &what,
        )
        .await
    }

    /// GETs `path` and reads its JSON answer; `None` when the registry answers 404.
    async fn get_found<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Option<T>, String> {
        let (status, answer) = self
            .call(self.request(reqwest::Method::GET, path), what)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("{what}: HTTP {status}: {}", error_message(&answer)));
        }
        serde_json::from_value(answer)
            .map(Some)
            .map_err(|e| format!("{what}: unexpected answer: {e}"))
    }
}

impl RegistryClient {
    /// The version numbers of `subject`, oldest first; empty when the subject does not exist.
    pub async fn versions(&self, subject: &str) -> Result<Vec<i64>, String> {
        let what = format!("listing the versions of subject `{subject}`");
        let versions = self
            .get_found(&format!("/subjects/{}/versions", encode(subject)), &what)
            .await?;
        Ok(versions.unwrap_or_default())
    }

    /// Version `version` of `subject`; `None` when there is no such version.
    pub async fn version(
        &self,
        subject: &str,
        version: i64,
    ) -> Result<Option<SubjectVersion>, String> {
        let what = format!("reading version {version} of subject `{subject}`");
        self.get_found(
            &format!("/subjects/{}/versions/{version}", encode(subject)),
            &what,
        )
        .await
    }
}

/// The `message` of the registry's error body, else the body itself.
fn error_message(answer: &Value) -> String {
    answer
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| answer.to_string())
}

/// `subject` as one path segment.
fn encode(subject: &str) -> String {
    let mut encoded = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(
            encode("users.user-created-value"),
            "users.user-created-value"
        );
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn error_bodies_give_their_message() {
        let body =
            json!({ "error_code": 409, "message": "Schema being registered is incompatible" });
        assert_eq!(
            error_message(&body),
            "Schema being registered is incompatible"
        );
        assert_eq!(error_message(&Value::String("down".into())), "\"down\"");
    }
}
