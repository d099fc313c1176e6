//! TLS, token authentication and OAuth2 client credentials against the real dev-env broker.
//!
//! The dev-env Pulsar serves TLS on extra ports with a certificate signed by its own CA, and
//! checks tokens signed with its HMAC secret key (clients without credentials still get in, as
//! the `anonymous` role, so the other tests need none). These tests mint their tokens with that
//! key (`BENTO_TEST_PULSAR_TOKEN_SECRET`) and trust that CA (`BENTO_TEST_PULSAR_CA_CERT`); the
//! OAuth2 tests run a small authorization server of their own that hands out such tokens.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bento_application::{BusError, MessageBus, PublishOptions, SubscriptionSpec};
use bento_domain::Envelope;
use bento_pulsar::{AuthConfig, PulsarAdmin, PulsarBus, PulsarConfig, TlsConfig};
use bento_testkit::Collector;
use common::{PATIENCE, unique};

/// The subject (Pulsar role) of the tokens these tests mint.
const SUBJECT: &str = "bento-test";

/// Connect timeout of the tests that expect a failure: they must give up within it.
const SHORT_TIMEOUT_MS: u64 = 3_000;
/// How much longer than [`SHORT_TIMEOUT_MS`] giving up may take: the connection's teardown on
/// a loaded machine. 3 s + 4 s stays below the 10 s default timeout, so a connect that ignored
/// `connect_timeout_ms` still fails the bound.
const SLACK_MS: u64 = 4_000;

/// The dev-env home: `BENTO_DEV_ENV_HOME`, else `target/dev-env` in the workspace.
fn dev_env_home() -> PathBuf {
    std::env::var_os("BENTO_DEV_ENV_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::workspace_root().join("target/dev-env"))
}

/// The broker's TLS service URL: `BENTO_TEST_PULSAR_TLS_URL`, else the dev-env default.
fn tls_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_TLS_URL")
        .unwrap_or_else(|_| "pulsar+ssl://localhost:6651".into())
}

/// The broker's HTTPS admin URL: `BENTO_TEST_PULSAR_HTTPS_URL`, else the dev-env default.
fn https_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_HTTPS_URL").unwrap_or_else(|_| "https://localhost:8443".into())
}

/// A file of the dev-env's security material, named by `variable` or found in the dev-env home;
/// panics with how to create it when it does not exist.
fn security_file(variable: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| dev_env_home().join("pulsar/security").join(name));
    assert!(
        path.is_file(),
        "{} does not exist (from {variable} or the dev-env home). These tests need the dev-env \
         broker with TLS and token authentication: start it with `cargo xtask dev-env up pulsar`, \
         or run everything with `cargo xtask test`.",
        path.display()
    );
    path
}

/// The CA that signed the broker's certificate.
fn ca_cert() -> PathBuf {
    security_file("BENTO_TEST_PULSAR_CA_CERT", "ca.cert.pem")
}

/// The HMAC key the broker checks tokens with.
fn token_secret() -> Vec<u8> {
    let path = security_file("BENTO_TEST_PULSAR_TOKEN_SECRET", "token-secret.key");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// An HS256 JWT for `subject`, valid for an hour, signed with `key`.
fn mint_token(subject: &str, key: &[u8]) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        iat: u64,
        exp: u64,
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub: subject,
            iat: now,
            exp: now + 3600,
        },
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("signing a JWT")
}

/// The test configuration on the TLS URL, trusting the dev-env CA.
fn tls_config() -> PulsarConfig {
    PulsarConfig {
        service_url: tls_url(),
        admin_url: https_url(),
        tls: TlsConfig {
            trust_cert_path: Some(ca_cert()),
            ..TlsConfig::default()
        },
        ..common::config()
    }
}

/// Connects with `config` and expects a failure within [`SHORT_TIMEOUT_MS`] (plus slack);
/// returns the error.
async fn expect_refused(mut config: PulsarConfig, why: &str) -> BusError {
    common::share_broker();
    config.connect_timeout_ms = SHORT_TIMEOUT_MS;
    let started = Instant::now();
    let result = PulsarBus::connect(config).await;
    let took = started.elapsed();
    let error = match result {
        Ok(bus) => {
            let _ = bus.close().await;
            panic!("connecting succeeded although {why}");
        }
        Err(error) => error,
    };
    assert!(
        took < Duration::from_millis(SHORT_TIMEOUT_MS + SLACK_MS),
        "gave up after {took:?}, the connect timeout is {SHORT_TIMEOUT_MS} ms ({why}): {error}"
    );
    eprintln!("refused after {took:?} ({why}): {error}");
    error
}

/// Publishes one message on a fresh topic and waits until a subscription of `bus` received it.
async fn round_trip(bus: &PulsarBus, what: &str) {
    let topic = unique(what);
    let collector = Collector::new();
    let subscription = bus
        .subscribe(
            SubscriptionSpec::topic(&topic, unique("sub")),
            Arc::new(collector.handler()),
        )
        .await
        .unwrap_or_else(|e| panic!("subscribing to {topic} ({what}): {e}"));
    let payload = format!("{what} over {}", bus.config().service_url);
    let envelope = Envelope::new(
        "bento.it.secure",
        1,
        "text/plain",
        payload.clone().into_bytes(),
    );
    let id = envelope.id;
    bus.publish(envelope, PublishOptions::default().to_topic(&topic))
        .await
        .unwrap_or_else(|e| panic!("publishing to {topic} ({what}): {e}"));
    let seen = collector.wait_for(1, PATIENCE).await;
    assert_eq!(seen.len(), 1, "exactly the one message: {seen:?}");
    assert_eq!(seen[0].envelope.id, id, "the message published");
    assert_eq!(seen[0].envelope.payload, payload.as_bytes());
    subscription
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutting down the subscription ({what}): {e}"));
    bus.close()
        .await
        .unwrap_or_else(|e| panic!("closing the bus ({what}): {e}"));
}

// ------------------------------------------------------------------------------------- TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_dev_env_ca_round_trips() {
    let bus = common::bus_with(tls_config()).await;
    assert!(bus.config().service_url.starts_with("pulsar+ssl://"));
    round_trip(&bus, "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_ca_is_refused_naming_the_url_within_the_timeout() {
    // The CA must exist, so that this fails for the missing trust and not a missing broker.
    let _ = ca_cert();
    let url = tls_url();
    let config = PulsarConfig {
        tls: TlsConfig::default(), // the system's roots only
        ..tls_config()
    };
    let error = expect_refused(config, "the broker's CA is not trusted").await;
    let text = error.to_string();
    match &error {
        BusError::Connection {
            backend, address, ..
        } => {
            assert_eq!(*backend, "pulsar");
            assert_eq!(address, &url);
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(text.contains(&url), "the error names the URL: {text}");
    assert!(
        text.to_lowercase().contains("certificate"),
        "the error says the certificate was not accepted: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_url_on_the_tls_port_is_named() {
    let _ = ca_cert(); // the dev-env broker with its TLS port
    let tls = tls_url();
    let authority = tls
        .strip_prefix("pulsar+ssl://")
        .unwrap_or_else(|| panic!("unexpected TLS URL {tls}"));
    let url = format!("pulsar://{authority}");
    let config = PulsarConfig {
        service_url: url.clone(),
        ..common::config()
    };
    let text = expect_refused(config, "the port speaks TLS")
        .await
        .to_string();
    assert!(text.contains(&url), "the error names the URL: {text}");
    assert!(
        text.contains("speaks TLS but the service URL is plaintext")
            && text.contains(&format!(
                "use `pulsar+ssl://{}",
                authority.trim_end_matches('/')
            )),
        "the error says to use pulsar+ssl://: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_says_connection_refused() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"));
    let url = format!("pulsar://127.0.0.1:{port}");
    let config = PulsarConfig {
        service_url: url.clone(),
        ..common::config()
    };
    let text = expect_refused(config, "nothing listens on the port")
        .await
        .to_string();
    assert!(text.contains(&url), "the error names the URL: {text}");
    assert!(
        text.contains(&format!("connection refused by 127.0.0.1:{port}")),
        "the error says the connection was refused: {text}"
    );
}

// ----------------------------------------------------------------------------------- token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_tls_round_trips() {
    let config = PulsarConfig {
        auth: AuthConfig {
            token: Some(mint_token(SUBJECT, &token_secret())),
            ..AuthConfig::default()
        },
        ..tls_config()
    };
    let bus = common::bus_with(config).await;
    round_trip(&bus, "token-tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_round_trips() {
    let dir = std::env::temp_dir().join(unique("token-file"));
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    let path = dir.join("pulsar.jwt");
    // Surrounding whitespace, as editors and `echo` leave it, is ignored.
    std::fs::write(&path, format!("{}\n", mint_token(SUBJECT, &token_secret())))
        .expect("writing the token file");
    let config = PulsarConfig {
        auth: AuthConfig {
            token_file: Some(path),
            ..AuthConfig::default()
        },
        ..common::config()
    };
    let bus = common::bus_with(config).await;
    round_trip(&bus, "token-file").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_another_key_is_refused_as_authentication_failure() {
    let secret = token_secret();
    let other_key: Vec<u8> = secret.iter().map(|b| b ^ 0x5a).collect();
    for (name, base) in [("plain", common::config()), ("tls", tls_config())] {
        let url = base.service_url.clone();
        let config = PulsarConfig {
            auth: AuthConfig {
                token: Some(mint_token(SUBJECT, &other_key)),
                ..AuthConfig::default()
            },
            ..base
        };
        let error = expect_refused(config, "the token is signed with another key").await;
        let text = error.to_string();
        assert!(
            matches!(error, BusError::Connection { .. }),
            "{name}: {error:?}"
        );
        assert!(
            text.contains(&url),
            "{name}: the error names the URL: {text}"
        );
        assert!(
            text.contains("authentication"),
            "{name}: the error says authentication failed: {text}"
        );
    }
}

// ------------------------------------------------------------------------------- admin API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_client_works_over_https_with_the_ca_and_a_token() {
    common::share_broker();
    let config = PulsarConfig {
        auth: AuthConfig {
            token: Some(mint_token(SUBJECT, &token_secret())),
            ..AuthConfig::default()
        },
        ..tls_config()
    };
    let admin = PulsarAdmin::new(&config).expect("an admin client");
    assert!(admin.url().starts_with("https://"), "{}", admin.url());
    let clusters = admin
        .clusters()
        .await
        .unwrap_or_else(|e| panic!("GET clusters over {}: {e}", admin.url()));
    assert_eq!(clusters, ["standalone"]);
    let namespaces_tenants = admin.tenants().await.expect("tenants over https");
    assert!(
        namespaces_tenants.iter().any(|t| t == "public"),
        "{namespaces_tenants:?}"
    );

    // Without the CA, the system's roots do not accept the dev-env certificate.
    let untrusted = PulsarAdmin::new(&PulsarConfig {
        tls: TlsConfig::default(),
        connect_timeout_ms: SHORT_TIMEOUT_MS,
        ..config
    })
    .expect("an admin client");
    let started = Instant::now();
    let error = untrusted
        .clusters()
        .await
        .expect_err("the dev-env CA is not trusted");
    let text = error.to_string();
    eprintln!("admin client without the CA: {text}");
    assert!(
        text.contains(&https_url()),
        "the error names the URL: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(SHORT_TIMEOUT_MS + SLACK_MS),
        "took {:?}",
        started.elapsed()
    );
}

// ----------------------------------------------------------------------------------- OAuth2

#[cfg(feature = "oauth2")]
mod oauth2 {
    //! OAuth2 client credentials: the bus asks a local authorization server for an access
    //! token, which is a JWT signed with the broker's key, so the broker checks it for real.

    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Form, Json, Router};
    use base64::Engine;
    use bento_pulsar::OAuth2Config;
    use serde_json::json;

    use super::*;

    const CLIENT_ID: &str = "bento-test-client";
    const CLIENT_SECRET: &str = "s3cret+/=&value";

    /// What the authorization server knows and counts.
    struct Issuer {
        base: String,
        secret: Vec<u8>,
        /// Token requests with the right credentials.
        granted: AtomicUsize,
        /// Token requests refused, with why.
        refused: Mutex<Vec<String>>,
    }

    /// A running authorization server on 127.0.0.1; stops when dropped.
    struct Server {
        issuer: Arc<Issuer>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        async fn start(secret: Vec<u8>) -> Server {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binding the authorization server");
            let port = listener.local_addr().expect("its address").port();
            let issuer = Arc::new(Issuer {
                base: format!("http://127.0.0.1:{port}/"),
                secret,
                granted: AtomicUsize::new(0),
                refused: Mutex::new(Vec::new()),
            });
            let app = Router::new()
                .route("/.well-known/openid-configuration", get(discovery))
                .route("/jwks", get(|| async { Json(json!({ "keys": [] })) }))
                .route("/token", post(token))
                .with_state(issuer.clone());
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Server { issuer, task }
        }

        fn config(&self, client_secret: &str) -> OAuth2Config {
            OAuth2Config {
                issuer_url: self.issuer.base.clone(),
                client_id: Some(CLIENT_ID.into()),
                client_secret: Some(client_secret.into()),
                ..OAuth2Config::default()
            }
        }

        fn granted(&self) -> usize {
            self.issuer.granted.load(Ordering::SeqCst)
        }

        fn refused(&self) -> Vec<String> {
            self.issuer.refused.lock().expect("refusals lock").clone()
        }
    }

    async fn discovery(State(issuer): State<Arc<Issuer>>) -> Json<serde_json::Value> {
        let base = &issuer.base;
        Json(json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}authorize"),
            "token_endpoint": format!("{base}token"),
            "jwks_uri": format!("{base}jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": ["client_credentials"],
        }))
    }

    /// Client credentials from HTTP basic authentication or, else, from the form body.
    fn credentials(
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Option<(String, String)> {
        if let Some(basic) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (id, secret) = text.split_once(':')?;
            // RFC 6749 2.3.1: both are form-urlencoded inside the header.
            return Some((form_decode(id), form_decode(secret)));
        }
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    }

    /// Decodes one `application/x-www-form-urlencoded` value.
    fn form_decode(value: &str) -> String {
        let bytes = value.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() && value.is_char_boundary(i + 3) => {
                    match u8::from_str_radix(&value[i + 1..i + 3], 16) {
                        Ok(byte) => {
                            out.push(byte);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                other => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn token(
        State(issuer): State<Arc<Issuer>>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        let refuse = |status: StatusCode, error: &str, why: String| {
            issuer.refused.lock().expect("refusals lock").push(why);
            (status, Json(json!({ "error": error }))).into_response()
        };
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return refuse(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {:?}", form.get("grant_type")),
            );
        }
        match credentials(&headers, &form) {
            Some((id, secret)) if id == CLIENT_ID && secret == CLIENT_SECRET => {}
            Some((id, _)) => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    format!("wrong secret for client {id:?}"),
                );
            }
            None => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "no client credentials".into(),
                );
            }
        }
        issuer.granted.fetch_add(1, Ordering::SeqCst);
        Json(json!({
            "access_token": mint_token(SUBJECT, &issuer.secret),
            "token_type": "Bearer",
            "expires_in": 3600,
        }))
        .into_response()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_credentials_round_trip() {
        let server = Server::start(token_secret()).await;
        let config = PulsarConfig {
            auth: AuthConfig {
                oauth2: Some(server.config(CLIENT_SECRET)),
                ..AuthConfig::default()
            },
            ..common::config()
        };
        let bus = common::bus_with(config).await;
        assert!(
            server.granted() >= 1,
            "the bus fetched its token from the authorization server (refused: {:?})",
            server.refused()
        );
        round_trip(&bus, "oauth2").await;
        assert!(server.refused().is_empty(), "{:?}", server.refused());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_credentials_over_tls_round_trip() {
        let server = Server::start(token_secret()).await;
        let config = PulsarConfig {
            auth: AuthConfig {
                oauth2: Some(server.config(CLIENT_SECRET)),
                ..AuthConfig::default()
            },
            ..tls_config()
        };
        let bus = common::bus_with(config).await;
        round_trip(&bus, "oauth2-tls").await;
        assert!(server.granted() >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_client_secret_is_refused_as_authentication_failure() {
        let server = Server::start(token_secret()).await;
        let config = PulsarConfig {
            auth: AuthConfig {
                oauth2: Some(server.config("not-the-secret")),
                ..AuthConfig::default()
            },
            ..common::config()
        };
        let url = config.service_url.clone();
        let error = expect_refused(config, "the client secret is wrong").await;
        let text = error.to_string();
        assert!(matches!(error, BusError::Connection { .. }), "{error:?}");
        assert!(text.contains(&url), "the error names the URL: {text}");
        assert!(
            text.contains("authentication"),
            "the error says authentication failed: {text}"
        );
        assert!(
            text.contains("invalid_client"),
            "the error carries the authorization server's answer: {text}"
        );
        assert_eq!(server.granted(), 0);
        assert!(
            !server.refused().is_empty(),
            "the authorization server was asked"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_access_token_the_broker_does_not_accept_is_refused() {
        // The authorization server signs with another key: OAuth2 succeeds, the broker refuses.
        let other_key: Vec<u8> = token_secret().iter().map(|b| b ^ 0x5a).collect();
        let server = Server::start(other_key).await;
        let config = PulsarConfig {
            auth: AuthConfig {
                oauth2: Some(server.config(CLIENT_SECRET)),
                ..AuthConfig::default()
            },
            ..common::config()
        };
        let error = expect_refused(config, "the broker cannot verify the access token").await;
        let text = error.to_string();
        assert!(
            text.contains("authentication"),
            "the error says authentication failed: {text}"
        );
        assert!(server.granted() >= 1, "a token was issued");
    }
}
