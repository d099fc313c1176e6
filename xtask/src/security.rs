//! TLS and token-authentication material of the dev-env Pulsar: a self-signed CA, a broker
//! certificate for `localhost` and `127.0.0.1`, and the HMAC secret key that signs tokens.
//!
//! Generated once per dev-env home (under `pulsar/security/`) and kept across `down`, `reset`
//! and `cargo xtask test`, so a client configured with the CA keeps working.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

use crate::config::Layout;

/// Length of the token signing key in bytes (HS256 wants at least 32).
pub const SECRET_KEY_LEN: usize = 32;

/// The files of the dev-env Pulsar's TLS and token authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityFiles {
    /// The directory holding them.
    pub dir: PathBuf,
    /// PEM certificate of the self-signed CA: what clients trust (`tls.trust_cert_path`).
    pub ca_cert: PathBuf,
    /// PEM certificate of the broker, signed by the CA, for `localhost` and `127.0.0.1`.
    pub broker_cert: PathBuf,
    /// PKCS#8 PEM private key of the broker certificate (the format Pulsar reads).
    pub broker_key: PathBuf,
    /// The raw HMAC-SHA256 secret key the broker validates tokens with (`tokenSecretKey`).
    pub token_secret: PathBuf,
}

impl SecurityFiles {
    /// Where the files live under `layout` (whether or not they exist yet).
    pub fn at(layout: &Layout) -> Self {
        let dir = layout.pulsar_security();
        SecurityFiles {
            ca_cert: dir.join("ca.cert.pem"),
            broker_cert: dir.join("broker.cert.pem"),
            broker_key: dir.join("broker.key-pk8.pem"),
            token_secret: dir.join("token-secret.key"),
            dir,
        }
    }

    fn all(&self) -> [&Path; 4] {
        [
            &self.ca_cert,
            &self.broker_cert,
            &self.broker_key,
            &self.token_secret,
        ]
    }

    /// Whether every file exists.
    pub fn complete(&self) -> bool {
        self.all().iter().all(|p| p.is_file())
    }
}

/// The security files under `layout`, generated when any of them is missing.
pub fn ensure(layout: &Layout) -> Result<SecurityFiles> {
    let files = SecurityFiles::at(layout);
    if files.complete() {
        return Ok(files);
    }
    fs::create_dir_all(&files.dir).with_context(|| format!("creating {}", files.dir.display()))?;
    let generated = generate().context("generating the dev-env CA and broker certificate")?;
    write(&files.ca_cert, generated.ca_cert.as_bytes(), false)?;
    write(&files.broker_cert, generated.broker_cert.as_bytes(), false)?;
    write(&files.broker_key, generated.broker_key.as_bytes(), true)?;
    write(&files.token_secret, &random_bytes(SECRET_KEY_LEN)?, true)?;
    println!(
        "pulsar: generated a CA, a broker certificate and a token secret key in {}",
        files.dir.display()
    );
    Ok(files)
}

/// PEM texts of a freshly generated CA and broker certificate.
struct Generated {
    ca_cert: String,
    broker_cert: String,
    broker_key: String,
}

fn generate() -> Result<Generated> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "Bento dev-env CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "Bento development");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = date_time_ymd(2025, 1, 1);
    ca.not_after = date_time_ymd(2125, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let broker_key = KeyPair::generate()?;
    let mut broker =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    broker
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    broker
        .distinguished_name
        .push(DnType::OrganizationName, "Bento development");
    broker.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    broker.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    broker.use_authority_key_identifier_extension = true;
    broker.not_before = date_time_ymd(2025, 1, 1);
    broker.not_after = date_time_ymd(2125, 1, 1);
    let broker_cert = broker.signed_by(&broker_key, &issuer)?;
    Ok(Generated {
        ca_cert: ca_cert.pem(),
        broker_cert: broker_cert.pem(),
        // `serialize_pem` writes PKCS#8 (`BEGIN PRIVATE KEY`).
        broker_key: broker_key.serialize_pem(),
    })
}

/// `len` bytes from the operating system's random source.
fn random_bytes(len: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes)
}

/// Writes `contents` to `path` (through a temporary file); `secret` files are readable by their
/// owner only.
fn write(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", tmp.display()))?;
    }
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_keeps_the_files() {
        let home =
            std::env::temp_dir().join(format!("bento-xtask-security-{}", std::process::id()));
        let layout = Layout { home: home.clone() };
        let files = ensure(&layout).expect("generating");
        assert!(files.complete());
        let ca = fs::read_to_string(&files.ca_cert).expect("CA");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let key = fs::read_to_string(&files.broker_key).expect("key");
        assert!(
            key.starts_with("-----BEGIN PRIVATE KEY-----"),
            "PKCS#8: {key}"
        );
        let secret = fs::read(&files.token_secret).expect("secret");
        assert_eq!(secret.len(), SECRET_KEY_LEN);
        assert_ne!(secret, vec![0; SECRET_KEY_LEN]);

        let again = ensure(&layout).expect("second call");
        assert_eq!(again, files);
        assert_eq!(
            fs::read(&files.token_secret).expect("secret"),
            secret,
            "kept"
        );
        assert_eq!(fs::read_to_string(&files.ca_cert).expect("CA"), ca, "kept");
        let _ = fs::remove_dir_all(home);
    }
}
