//! OAuth2 client-credentials authentication (cargo feature `oauth2`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulsar::authentication::Authentication;
use pulsar::authentication::oauth2::{OAuth2Authentication, OAuth2Params};

use crate::config::OAuth2Config;

/// The pulsar crate's OAuth2 provider for `config` (validated: either a credentials URL, or
/// a client id and secret, which are passed inline as a `data:` URL).
pub(crate) fn provider(config: &OAuth2Config) -> Box<dyn Authentication> {
    OAuth2Authentication::client_credentials(OAuth2Params {
        issuer_url: config.issuer_url.clone(),
        credentials_url: credentials_url(config),
        audience: config.audience.clone(),
        scope: config.scope.clone(),
    })
}

/// The configured credentials URL, or the client id and secret as a `data:` URL of a JSON key
/// file.
fn credentials_url(config: &OAuth2Config) -> String {
    match (
        &config.credentials_url,
        &config.client_id,
        &config.client_secret,
    ) {
        (Some(url), _, _) => url.clone(),
        (None, id, secret) => {
            let key = serde_json::json!({
                "client_id": id.as_deref().unwrap_or_default(),
                "client_secret": secret.as_deref().unwrap_or_default(),
            });
            format!(
                "data:application/json;base64,{}",
                STANDARD.encode(key.to_string())
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_credentials_become_a_base64_data_url() {
        let config = OAuth2Config {
            issuer_url: "https://auth.example.com".into(),
            client_id: Some("bento".into()),
            client_secret: Some("hunter2".into()),
            ..OAuth2Config::default()
        };
        let url = credentials_url(&config);
        let encoded = url
            .strip_prefix("data:application/json;base64,")
            .unwrap_or_else(|| panic!("a base64 data URL: {url}"));
        let decoded = STANDARD
            .decode(encoded)
            .unwrap_or_else(|e| panic!("standard base64 ({e}): {encoded}"));
        let key: serde_json::Value =
            serde_json::from_slice(&decoded).unwrap_or_else(|e| panic!("JSON ({e})"));
        assert_eq!(key["client_id"], "bento");
        assert_eq!(key["client_secret"], "hunter2");

        let file = OAuth2Config {
            credentials_url: Some("file:///run/secrets/oauth2.json".into()),
            client_id: None,
            client_secret: None,
            ..config
        };
        assert_eq!(credentials_url(&file), "file:///run/secrets/oauth2.json");
    }
}
