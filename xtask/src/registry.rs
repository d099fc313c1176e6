//! The schema registry: Apicurio Registry built once from `deploy/registry` into the dev-env
//! home (Maven's downloads cached in `~/.m2`), run on loopback, probed on its Confluent API.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::config::{self, Broker, Layout, Ports, workspace_root};
use crate::download::{self, MARKER, maven, remove_path};
use crate::prereq::{self, Tool};
use crate::probe;
use crate::process;
use crate::versions::APICURIO_VERSION;

/// A system property on the registry's command line that tells its JVM from any other.
pub const PROCESS_MARKER: &str = "-Dbento.devenv=registry";

/// JVM options of the registry, sized for a 2-core development machine.
const REGISTRY_JVM_OPTS: &[&str] = &[
    "-Xms64m",
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
];

/// The Maven project that assembles the registry.
fn project() -> PathBuf {
    workspace_root().join("deploy").join("registry")
}

/// The files of the project whose change calls for a new build.
const PROJECT_FILES: &[&str] = &["pom.xml", "src/main/resources/application.properties"];

/// What the install marker records: the version and a digest of the project's files, so that
/// an edited pom or configuration is built again and an unchanged one is reused.
fn install_id(project: &Path) -> Result<String> {
    let mut digest = Fnv64::new();
    for file in PROJECT_FILES {
        let path = project.join(file);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        digest.write(file.as_bytes());
        digest.write(&bytes);
    }
    Ok(format!("apicurio {APICURIO_VERSION} {:016x}", digest.0))
}

/// FNV-1a, 64 bits: a digest that stays the same across Rust releases.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The runnable jar of a build in `dir`.
fn runner(dir: &Path) -> PathBuf {
    dir.join("quarkus-app").join("quarkus-run.jar")
}

/// Makes sure the registry is built (first time, or after `deploy/registry` changed); returns
/// its build directory.
pub fn install(layout: &Layout) -> Result<PathBuf> {
    let build = layout.registry_build();
    let project = project();
    let id = install_id(&project)?;
    if download::installed(&build, &id) && runner(&build).exists() {
        return Ok(build);
    }
    prereq::ensure(&[Tool::Java, Tool::Maven])?;
    println!(
        "building Apicurio Registry {APICURIO_VERSION} into {} (first time only)",
        build.display()
    );
    let tmp = layout.broker_dir(Broker::Registry).join(".build-tmp");
    remove_path(&tmp)?;
    let args = [
        "package".to_string(),
        format!("-Dregistry.build.dir={}", tmp.display()),
    ];
    maven(&args, &project, "building the schema registry", None)?;
    ensure!(
        runner(&tmp).exists(),
        "Maven finished but {} is missing",
        runner(&tmp).display()
    );
    fs::write(tmp.join(MARKER), format!("{id}\n")).context("writing the install marker")?;
    remove_path(&build)?;
    fs::rename(&tmp, &build)
        .with_context(|| format!("moving {} to {}", tmp.display(), build.display()))?;
    Ok(build)
}

/// Starts the registry detached, on loopback at the registry port.
pub fn spawn(layout: &Layout, ports: &Ports) -> Result<Child> {
    let dir = layout.broker_dir(Broker::Registry);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Command::new(config::java());
    cmd.arg(PROCESS_MARKER)
        .args(REGISTRY_JVM_OPTS)
        .arg(format!("-Dquarkus.http.port={}", ports.registry))
        .arg(format!("-Dquarkus.http.host={}", config::LOOPBACK))
        .arg(format!("-Djava.io.tmpdir={}", dir.display()))
        .arg("-jar")
        .arg(runner(&layout.registry_build()))
        .current_dir(&dir);
    process::spawn_detached(cmd, &layout.log_file(Broker::Registry))
}

/// `Ok` when the Confluent API lists the subjects; otherwise why not.
pub fn health(ports: &Ports) -> Result<(), String> {
    let url = format!("{}/subjects", ports.registry_url());
    match probe::http_get_timeout(&url, Duration::from_secs(3)) {
        Ok((200, body)) if body.trim_start().starts_with('[') => Ok(()),
        Ok((status, body)) => Err(format!(
            "GET {url} answered {status}: {}",
            body.chars().take(200).collect::<String>()
        )),
        Err(err) => Err(format!("{err:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_id_follows_the_project_files() {
        let dir = std::env::temp_dir().join(format!("bento-registry-id-{}", std::process::id()));
        fs::create_dir_all(dir.join("src/main/resources")).expect("a scratch project");
        fs::write(dir.join("pom.xml"), "<project/>").expect("a pom");
        fs::write(dir.join("src/main/resources/application.properties"), "a=1")
            .expect("a configuration");
        let first = install_id(&dir).expect("an id");
        assert_eq!(first, install_id(&dir).expect("the same id"));
        fs::write(dir.join("src/main/resources/application.properties"), "a=2")
            .expect("an edited configuration");
        assert_ne!(first, install_id(&dir).expect("another id"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_registry_url_is_the_confluent_api_on_loopback() {
        let ports = Ports {
            registry: 18081,
            ..Ports::default()
        };
        assert_eq!(
            ports.registry_url(),
            "http://127.0.0.1:18081/apis/ccompat/v7"
        );
        assert_eq!(Ports::default().of(Broker::Registry), [("http", 8081)]);
    }
}
