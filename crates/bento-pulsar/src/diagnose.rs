//! Why a connection failed, when the pulsar crate does not say.
//!
//! The crate reports a refused TLS handshake and a refused authentication of its first
//! connection alike, as "fatal error when connecting to the Pulsar server" (it only logs the
//! cause). After such a failure the bus repeats the handshake itself, once, with the same
//! settings: TCP, then TLS for `pulsar+ssl://`, then the protocol's `CONNECT` with the
//! configured credentials, and reports what the TLS library or the broker answered.
//!
//! It also names the two mistakes the client reports only as a timeout or a fatal error: a
//! port where nothing listens ("connection refused"), and a plaintext `pulsar://` URL pointed
//! at a port that speaks TLS.

use bytes::BytesMut;
use pulsar::message::proto::{self, ServerError, base_command::Type as CommandType};
use pulsar::message::{Codec, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use crate::config::PulsarConfig;

/// The cause of a failed connection to `config.service_url`, when the handshake shows one:
/// nothing listening, a TLS port behind a plaintext URL, a TLS error, credentials that could
/// not be obtained, or the broker's refusal. `None` when the handshake gets as far as
/// `CONNECTED` or fails in a way that says no more than the client's own error.
pub(crate) async fn connect_failure(config: &PulsarConfig) -> Option<String> {
    let (tls, host, port) = endpoint(&config.service_url)?;
    let stream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(stream) => stream,
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Some(format!(
                "connection refused by {host}:{port}: nothing listens there (is the broker \
                 running, and is this its port?)"
            ));
        }
        Err(_) => return None,
    };
    if !tls {
        return match handshake(stream, config).await {
            Answer::Refused(why) => Some(why),
            Answer::Connected => None,
            Answer::Nothing if speaks_tls(&host, port).await => Some(format!(
                "{host}:{port} speaks TLS but the service URL is plaintext: use \
                 `pulsar+ssl://{host}:{port}` (and `tls.trust_cert_path` for the broker's CA)"
            )),
            Answer::Nothing => None,
        };
    }
    let connector = match tls_connector(config) {
        Ok(connector) => connector,
        Err(why) => return Some(why),
    };
    match connector.connect(&host, stream).await {
        Ok(stream) => match handshake(stream, config).await {
            Answer::Refused(why) => Some(why),
            Answer::Connected | Answer::Nothing => None,
        },
        Err(error) => Some(format!(
            "the TLS handshake with {host}:{port} failed: {error}{}",
            if config.tls.trust_cert_path.is_none() && !config.tls.allow_insecure {
                " (tls.trust_cert_path is not set, so only the system's CA certificates are \
                 trusted)"
            } else {
                ""
            }
        )),
    }
}

/// TLS, host and port of the first broker of a `pulsar://` or `pulsar+ssl://` URL.
fn endpoint(url: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) = match url.strip_prefix("pulsar+ssl://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("pulsar://")?),
    };
    let authority = rest.split(['/', ',']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = if tls { 6651 } else { 6650 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((tls, host.to_owned(), port))
}

/// A TLS connector configured like the pulsar crate configures its own.
fn tls_connector(config: &PulsarConfig) -> Result<tokio_native_tls::TlsConnector, String> {
    let tls = &config.tls;
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &tls.trust_cert_path {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read tls.trust_cert_path `{}`: {e}", path.display()))?;
        let certificates = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| {
            format!(
                "tls.trust_cert_path `{}` holds no readable PEM certificate: {e}",
                path.display()
            )
        })?;
        for certificate in certificates {
            builder.add_root_certificate(certificate);
        }
    }
    builder.danger_accept_invalid_hostnames(tls.allow_insecure || !tls.hostname_verification);
    builder.danger_accept_invalid_certs(tls.allow_insecure);
    builder
        .build()
        .map(tokio_native_tls::TlsConnector::from)
        .map_err(|e| format!("cannot set up TLS: {e}"))
}

/// Whether `host:port` completes a TLS handshake (any certificate accepted: this only asks
/// whether the port speaks TLS).
async fn speaks_tls(host: &str, port: u16) -> bool {
    let Ok(stream) = TcpStream::connect((host, port)).await else {
        return false;
    };
    let Ok(connector) = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
    else {
        return false;
    };
    tokio_native_tls::TlsConnector::from(connector)
        .connect(host, stream)
        .await
        .is_ok()
}

/// What the broker said to `CONNECT`.
enum Answer {
    /// `CONNECTED`.
    Connected,
    /// An error, or credentials that could not be obtained: why, in words.
    Refused(String),
    /// No Pulsar answer: the connection closed, or what came back is not Pulsar's protocol.
    Nothing,
}

/// Sends `CONNECT` with the configured credentials and reads the broker's answer.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    config: &PulsarConfig,
) -> Answer {
    match answer(&mut stream, config).await {
        Some(Ok(())) => Answer::Connected,
        Some(Err(why)) => Answer::Refused(why),
        None => Answer::Nothing,
    }
}

/// `handshake`, with `None` for no answer.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    config: &PulsarConfig,
) -> Option<Result<(), String>> {
    let (auth_method_name, auth_data) = match credentials(config).await {
        Ok(Some((name, data))) => (Some(name), Some(data)),
        Ok(None) => (None, None),
        Err(why) => return Some(Err(why)),
    };
    let connect = Message {
        command: proto::BaseCommand {
            r#type: CommandType::Connect as i32,
            connect: Some(proto::CommandConnect {
                auth_method_name,
                auth_data,
                client_version: format!("bento-pulsar-{}", env!("CARGO_PKG_VERSION")),
                protocol_version: Some(12),
                ..Default::default()
            }),
            ..Default::default()
        },
        payload: None,
    };
    let mut buffer = BytesMut::new();
    Codec.encode(connect, &mut buffer).ok()?;
    stream.write_all(&buffer).await.ok()?;
    stream.flush().await.ok()?;
    buffer.clear();
    let answer = loop {
        match Codec.decode(&mut buffer) {
            Ok(Some(message)) => break message.command,
            Ok(None) => {}
            Err(_) => return None, // not Pulsar's framing
        }
        if stream.read_buf(&mut buffer).await.ok()? == 0 {
            return None;
        }
    };
    let Some(error) = answer.error else {
        return Some(Ok(()));
    };
    let code = ServerError::try_from(error.error).ok();
    let message = error.message;
    Some(Err(match code {
        Some(ServerError::AuthenticationError) => {
            format!("authentication failed: the broker refused the credentials ({message})")
        }
        Some(code) => format!(
            "the broker refused the connection: {} ({message})",
            code.as_str_name()
        ),
        None => format!("the broker refused the connection ({message})"),
    }))
}

/// The configured credentials as the protocol carries them: method name and data.
async fn credentials(config: &PulsarConfig) -> Result<Option<(String, Vec<u8>)>, String> {
    let auth = &config.auth;
    let token = auth
        .read_token()
        .map_err(|e| format!("authentication failed: {e}"))?;
    if let Some(token) = token {
        return Ok(Some(("token".into(), token.into_bytes())));
    }
    #[cfg(feature = "oauth2")]
    if let Some(oauth2) = &auth.oauth2 {
        let mut provider = crate::oauth2::provider(oauth2);
        let obtained = async {
            provider.initialize().await?;
            provider.auth_data().await
        }
        .await;
        return match obtained {
            Ok(data) => Ok(Some((provider.auth_method_name(), data))),
            Err(error) => Err(format!(
                "authentication failed: no OAuth2 access token from {}: {error}",
                oauth2.issuer_url
            )),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints_of_service_urls() {
        assert_eq!(
            endpoint("pulsar://127.0.0.1:6650"),
            Some((false, "127.0.0.1".into(), 6650))
        );
        assert_eq!(
            endpoint("pulsar+ssl://broker.example/"),
            Some((true, "broker.example".into(), 6651))
        );
        assert_eq!(
            endpoint("pulsar://a:6650,b:6650"),
            Some((false, "a".into(), 6650))
        );
        assert_eq!(
            endpoint("pulsar+ssl://[::1]:7651"),
            Some((true, "::1".into(), 7651))
        );
        assert_eq!(endpoint("http://x:1"), None);
        assert_eq!(endpoint("pulsar://"), None);
    }
}
