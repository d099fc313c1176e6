//! Apache Pulsar standalone: install from Maven Central, configure for loopback, start, probe.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::config::{Broker, LOOPBACK, Layout, Ports};
use crate::download::{self, maven, maven_artifact_dir, remove_path};
use crate::prereq::{self, Tool};
use crate::probe;
use crate::process;
use crate::security::{self, SecurityFiles};
use crate::versions::{MAVEN_DEPENDENCY_PLUGIN, PULSAR_ARTIFACT, PULSAR_VERSION};

/// JVM heap and direct memory, sized for a 2-core development machine.
pub const PULSAR_MEM: &str = "-Xms256m -Xmx768m -XX:MaxDirectMemorySize=512m";

/// JVM garbage collector settings for 2 cores.
pub const PULSAR_GC: &str =
    "-XX:+UseG1GC -XX:MaxGCPauseMillis=50 -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1";

/// Makes sure the Pulsar distribution is unpacked under the dev-env home; returns its directory.
pub fn install(layout: &Layout) -> Result<PathBuf> {
    let dist = layout.pulsar_dist();
    if download::installed(&dist, PULSAR_VERSION) {
        return Ok(dist);
    }
    prereq::ensure(&[Tool::Maven])?;
    println!(
        "installing Apache Pulsar {PULSAR_VERSION} into {} (first time only)",
        dist.display()
    );
    let tarball = fetch(layout)?;
    if let Err(err) = download::extract_tar_gz(&tarball, &dist, PULSAR_VERSION) {
        eprintln!("warning: {err:#}\n  deleting the cached copy and downloading it again");
        remove_path(&tarball)?;
        if let Some(cached) = maven_artifact_dir(PULSAR_ARTIFACT) {
            remove_path(&cached)?;
        }
        let tarball = fetch(layout)?;
        download::extract_tar_gz(&tarball, &dist, PULSAR_VERSION)?;
    }
    remove_path(&tarball)?;
    Ok(dist)
}

/// Copies the tarball out of the local Maven repository (downloading it into there if needed).
fn fetch(layout: &Layout) -> Result<PathBuf> {
    let dir = layout.downloads();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!(
        "pulsar-server-distribution-{PULSAR_VERSION}-bin.tar.gz"
    ));
    remove_path(&file)?;
    let args = [
        format!("{MAVEN_DEPENDENCY_PLUGIN}:copy"),
        format!("-Dartifact={PULSAR_ARTIFACT}"),
        format!("-DoutputDirectory={}", dir.display()),
    ];
    maven(
        &args,
        &dir,
        "downloading Pulsar (about 250 MB)",
        maven_artifact_dir(PULSAR_ARTIFACT),
    )?;
    ensure!(
        file.exists(),
        "Maven finished but {} is missing",
        file.display()
    );
    Ok(file)
}

/// Name of the loopback network interface.
fn loopback_interface() -> &'static str {
    if cfg!(target_os = "macos") {
        "lo0"
    } else {
        "lo"
    }
}

/// Settings applied on top of the distribution's `conf/standalone.conf`.
fn overrides(ports: &Ports, security: &SecurityFiles) -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("bindAddress", LOOPBACK.to_string()),
        ("bindAddresses", String::new()),
        ("advertisedAddress", LOOPBACK.to_string()),
        ("brokerServicePort", ports.pulsar.to_string()),
        ("webServicePort", ports.pulsar_http.to_string()),
        ("clusterName", "standalone".to_string()),
        // Namespaces that need deduplication turn it on themselves.
        ("brokerDeduplicationEnabled", "false".to_string()),
        ("delayedDeliveryEnabled", "true".to_string()),
        ("allowAutoTopicCreation", "true".to_string()),
        ("allowAutoTopicCreationType", "non-partitioned".to_string()),
        ("acknowledgmentAtBatchIndexLevelEnabled", "true".to_string()),
        // A producer without a schema is refused on a topic that has one, as production
        // clusters should refuse it (docs/pulsar.md, "One topic, one encoding"); namespaces
        // created later (by tests, or `create_namespaces`) inherit it.
        ("isSchemaValidationEnforced", "true".to_string()),
        // Topics must not vanish between the steps of a slow test.
        ("brokerDeleteInactiveTopicsEnabled", "false".to_string()),
        // The embedded bookie reads this file too. Without these it binds 0.0.0.0 on a random port.
        ("listeningInterface", loopback_interface().to_string()),
        ("allowLoopback", "true".to_string()),
        ("allowEphemeralPorts", "true".to_string()),
        // The bookie turns read-only, and every publish fails with "Not enough non-faulty
        // bookies", once its disk is 95% full; a developer's disk (or a CI volume) often is,
        // while the test data needs little. A ratio is the only knob, and on a large volume
        // even 99.5% leaves gigabytes unused, so refuse writes only when the disk is really
        // full; `up` checks for enough free space before it starts the broker.
        ("diskUsageThreshold", "0.9999".to_string()),
        ("diskUsageWarnThreshold", "0.9998".to_string()),
        ("diskUsageLwmThreshold", "0.9998".to_string()),
    ];
    settings.extend(tls_and_auth(ports, security));
    settings
}

/// TLS on extra ports, and token authentication that still lets clients without credentials
/// in (as the `anonymous` role, with authorization off), so that plain clients keep working
/// while clients with a token are checked for real.
fn tls_and_auth(ports: &Ports, security: &SecurityFiles) -> Vec<(&'static str, String)> {
    let path = |p: &Path| p.display().to_string();
    vec![
        ("brokerServicePortTls", ports.pulsar_tls.to_string()),
        ("webServicePortTls", ports.pulsar_https.to_string()),
        ("tlsCertificateFilePath", path(&security.broker_cert)),
        ("tlsKeyFilePath", path(&security.broker_key)),
        ("tlsTrustCertsFilePath", path(&security.ca_cert)),
        ("tlsAllowInsecureConnection", "false".to_string()),
        ("tlsRequireTrustedClientCertOnConnect", "false".to_string()),
        ("authenticationEnabled", "true".to_string()),
        (
            "authenticationProviders",
            "org.apache.pulsar.broker.authentication.AuthenticationProviderToken".to_string(),
        ),
        (
            "tokenSecretKey",
            format!("file://{}", path(&security.token_secret)),
        ),
        ("anonymousUserRole", "anonymous".to_string()),
        ("authorizationEnabled", "false".to_string()),
    ]
}

/// Rewrites `key=value` lines of a Java properties file, appending keys it does not have.
pub fn apply_properties(original: &str, overrides: &[(&str, String)]) -> String {
    let mut seen = vec![false; overrides.len()];
    let mut out = String::with_capacity(original.len() + 256);
    for line in original.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match key.and_then(|k| overrides.iter().position(|(o, _)| *o == k)) {
            Some(i) if !line.trim_start().starts_with('#') => {
                out.push_str(&format!("{}={}\n", overrides[i].0, overrides[i].1));
                seen[i] = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str("\n# Added by cargo xtask dev-env\n");
    for ((key, value), seen) in overrides.iter().zip(seen) {
        if !seen {
            out.push_str(&format!("{key}={value}\n"));
        }
    }
    out
}

/// Writes the standalone configuration for `ports`; returns its path.
pub fn configure(layout: &Layout, dist: &Path, ports: &Ports) -> Result<PathBuf> {
    let template = dist.join("conf/standalone.conf");
    let original =
        fs::read_to_string(&template).with_context(|| format!("reading {}", template.display()))?;
    let conf_dir = layout.conf_dir(Broker::Pulsar);
    fs::create_dir_all(&conf_dir).with_context(|| format!("creating {}", conf_dir.display()))?;
    let conf = conf_dir.join("standalone.conf");
    let security = security::ensure(layout)?;
    fs::write(
        &conf,
        apply_properties(&original, &overrides(ports, &security)),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    Ok(conf)
}

/// Starts `pulsar standalone` detached; data goes to the broker's data directory.
pub fn spawn(layout: &Layout, dist: &Path, conf: &Path, ports: &Ports) -> Result<Child> {
    let data = layout.data_dir(Broker::Pulsar);
    fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let mut cmd = Command::new(dist.join("bin/pulsar"));
    cmd.arg("standalone")
        .args(["--no-functions-worker", "--no-stream-storage"])
        .arg("--bookkeeper-dir")
        .arg(data.join("bookkeeper"))
        .arg("--metadata-dir")
        .arg(data.join("metadata"))
        .arg("--bookkeeper-port")
        .arg(ports.pulsar_bookie.to_string())
        .current_dir(&data)
        .env("PULSAR_STANDALONE_CONF", conf)
        .env("PULSAR_MEM", PULSAR_MEM)
        .env("PULSAR_GC", PULSAR_GC)
        .env("PULSAR_LOG_DIR", layout.logs_dir(Broker::Pulsar));
    process::spawn_detached(cmd, &layout.log_file(Broker::Pulsar))
}

/// `Ok` when the admin API lists the `standalone` cluster and `public/default`, the binary port
/// answers CONNECT and the broker's health check (a produce/consume round trip) passes;
/// otherwise what is not ready yet.
pub fn health(ports: &Ports) -> Result<(), String> {
    let admin = ports.pulsar_admin_url();
    let get = |path: &str| -> Result<String, String> {
        match probe::http_get(&format!("{admin}{path}")) {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(format!("GET {path} answered {status}: {}", body.trim())),
            Err(err) => Err(format!("{err:#}")),
        }
    };
    let clusters = get("/admin/v2/clusters")?;
    let clusters: Vec<String> =
        serde_json::from_str(&clusters).map_err(|e| format!("cluster list {clusters:?}: {e}"))?;
    if clusters != ["standalone"] {
        return Err(format!(
            "clusters are {clusters:?}, expected [\"standalone\"]"
        ));
    }
    let namespaces = get("/admin/v2/namespaces/public")?;
    if !namespaces.contains("public/default") {
        return Err("namespace public/default does not exist yet".to_string());
    }
    probe::pulsar_connect(
        &format!("{LOOPBACK}:{}", ports.pulsar),
        Duration::from_secs(5),
    )
    .map_err(|e| format!("binary port {}: {e:#}", ports.pulsar))?;
    // The broker's own check: produce and consume on a heartbeat topic. It fails while the
    // bookie is not writable yet (e.g. right after a restart), which the checks above miss.
    let check = get("/admin/v2/brokers/health?topicVersion=V2").map_err(|e| explain_bookie(&e))?;
    if check.trim() != "ok" {
        return Err(format!("broker health check answered {check:?}"));
    }
    Ok(())
}

/// The namespaces the dev-env broker comes with, for services to use.
pub const NAMESPACES: &[&str] = &["public/default"];

/// Sets `schemaValidationEnforced` on [`NAMESPACES`], as `pulsar-admin namespaces
/// set-schema-validation-enforced` does: a producer without a schema is refused on a topic
/// that has one. The broker-wide setting in `overrides` does the same for every namespace,
/// but only once the broker restarts with it; the namespace policy takes effect at once, on a
/// broker started before the setting was added too. Idempotent.
pub fn enforce_schema_validation(ports: &Ports) -> Result<()> {
    for namespace in NAMESPACES {
        let url = format!(
            "{}/admin/v2/namespaces/{namespace}/schemaValidationEnforced",
            ports.pulsar_admin_url()
        );
        let (status, body) = probe::http_post_json(&url, "true")?;
        ensure!(
            (200..300).contains(&status),
            "setting schemaValidationEnforced on {namespace}: POST {url} answered {status}: {}",
            body.trim()
        );
    }
    Ok(())
}

/// Adds what the disk looks like to a health failure caused by a bookie that takes no writes:
/// the broker only says "Not enough non-faulty bookies", and a full disk is the usual cause.
fn explain_bookie(reason: &str) -> String {
    if !reason.contains("non-faulty bookies") {
        return reason.to_string();
    }
    let disk = crate::disk::Usage::of(&crate::config::dev_env_home())
        .map_or_else(|e| format!("unknown ({e:#})"), |u| u.describe());
    format!("the bookie takes no writes yet (disk: {disk})")
}

/// Whether the log, from byte `offset` on, shows the bookie registration loop Pulsar can fall
/// into after an unclean exit (a clean start logs at most a few of these lines).
pub fn registration_loop(log: &Path, offset: u64) -> bool {
    let Ok(bytes) = fs::read(log) else {
        return false;
    };
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let loops = text
        .lines()
        .filter(|l| {
            l.contains("Lock on resource /ledgers/available/") && l.contains("was invalidated")
        })
        .count();
    loops >= 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_replaced_or_appended() {
        let original = "# comment\na=1\n#b=2\nc = 3\n";
        let out = apply_properties(
            original,
            &[("a", "9".into()), ("b", "8".into()), ("c", "7".into())],
        );
        assert!(out.contains("\na=9\n"));
        assert!(out.contains("#b=2\n"));
        assert!(out.contains("\nb=8\n"));
        assert!(out.contains("\nc=7\n"));
        assert!(!out.contains("a=1"));
    }
}
