//! Every pinned version of the development environment, in one place.
//!
//! `deploy/docker/compose.dev.yaml` repeats the image tags; a unit test keeps them in sync.

/// Apache Pulsar version (4.0.x LTS) run by the development environment.
pub const PULSAR_VERSION: &str = "4.0.8";

/// Maven coordinates of the Pulsar server distribution tarball.
pub const PULSAR_ARTIFACT: &str = "org.apache.pulsar:pulsar-server-distribution:4.0.8:tar.gz:bin";

/// Docker image used for Pulsar in docker mode.
pub const PULSAR_IMAGE: &str = "apachepulsar/pulsar:4.0.8";

/// Apache Kafka version run by the development environment.
pub const KAFKA_VERSION: &str = "4.1.1";

/// Scala binary version of the Kafka broker artifact (`kafka_<scala>`).
pub const KAFKA_SCALA_VERSION: &str = "2.13";

/// Log4j version Kafka 4.1.1 is built with; its SLF4J binding is not a Maven dependency of the
/// broker, so it is added explicitly (otherwise the broker logs nothing).
pub const KAFKA_LOG4J_VERSION: &str = "2.24.3";

/// Docker image used for Kafka in docker mode.
pub const KAFKA_IMAGE: &str = "apache/kafka:4.1.1";

/// Maven plugin used to fetch artifacts (pinned so every machine runs the same one).
pub const MAVEN_DEPENDENCY_PLUGIN: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1";

/// PostgreSQL major version of the dev-env database. It is not downloaded: the server comes from
/// the machine's packages (Debian's [`POSTGRES_DEBIAN_PACKAGE`]), and a cluster can only be run by
/// the major version that created it.
pub const POSTGRES_MAJOR: u32 = 15;

/// [`POSTGRES_MAJOR`] as text, for `dev-env status` and the state file.
pub const POSTGRES_VERSION: &str = "15";

/// Debian package with the PostgreSQL server programs (`/usr/lib/postgresql/15/bin`).
pub const POSTGRES_DEBIAN_PACKAGE: &str = "postgresql-15";

/// Apicurio Registry, the dev-env schema registry (`deploy/registry/pom.xml` names the same
/// version: of those whose application jar Maven Central serves here, the newest whose modules
/// are all served too).
pub const APICURIO_VERSION: &str = "2.4.2.Final";

/// Oldest Java major version both brokers support.
pub const MIN_JAVA_MAJOR: u32 = 17;

/// toxiproxy (`github.com/Shopify/toxiproxy/v2`), built with `go install` by `cargo xtask chaos`
/// for the network faults of the chaos suite. v2.5.0 is the newest the Go module proxy serves
/// here; its server command is the package `cmd/server`.
pub const TOXIPROXY_VERSION: &str = "v2.5.0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_and_images_agree_with_versions() {
        assert!(PULSAR_ARTIFACT.contains(&format!(":{PULSAR_VERSION}:")));
        assert!(PULSAR_IMAGE.ends_with(&format!(":{PULSAR_VERSION}")));
        assert!(KAFKA_IMAGE.ends_with(&format!(":{KAFKA_VERSION}")));
    }

    #[test]
    fn postgres_version_and_package_agree_with_the_major() {
        assert_eq!(POSTGRES_VERSION, POSTGRES_MAJOR.to_string());
        assert_eq!(
            POSTGRES_DEBIAN_PACKAGE,
            format!("postgresql-{POSTGRES_MAJOR}")
        );
    }

    #[test]
    fn compose_file_uses_the_pinned_images() {
        let path = crate::config::workspace_root().join("deploy/docker/compose.dev.yaml");
        let compose = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for image in [PULSAR_IMAGE, KAFKA_IMAGE] {
            assert!(
                compose.contains(&format!("image: {image}")),
                "{} must use image {image} (see xtask/src/versions.rs)",
                path.display()
            );
        }
    }
}
