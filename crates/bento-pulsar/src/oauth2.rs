//! OAuth2 client-credentials authentication (cargo feature `oauth2`).

use pulsar::authentication::Authentication;
use pulsar::authentication::oauth2::{OAuth2Authentication, OAuth2Params};

use crate::config::OAuth2Config;

/// The pulsar crate's OAuth2 provider for `config` (validated: either a credentials URL, or
/// a client id and secret, which are passed inline as a `data:` URL).
pub(crate) fn provider(config: &OAuth2Config) -> Box<dyn Authentication> {
    let credentials_url = match (
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
                base64(key.to_string().as_bytes())
            )
        }
    };
    OAuth2Authentication::client_credentials(OAuth2Params {
        issuer_url: config.issuer_url.clone(),
        credentials_url,
        audience: config.audience.clone(),
        scope: config.scope.clone(),
    })
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{\"a\":1}"), "eyJhIjoxfQ==");
    }
}
