//! Docker mode: the same brokers from `deploy/docker/compose.dev.yaml` (PostgreSQL has no service
//! there and runs natively in either mode).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{Broker, workspace_root};
use crate::devenv::DevEnv;
use crate::kafka;
use crate::process::{output_with_timeout, run_checked};
use crate::start::Pending;
use crate::state::{Mode, State};

/// Compose project name, so containers and volumes are easy to find (`bento-dev-*`).
pub const PROJECT: &str = "bento-dev";

/// Whether a Docker engine answers (`docker info` succeeds within 15 seconds).
pub fn engine_available() -> bool {
    let mut cmd = Command::new("docker");
    cmd.arg("info").stdin(Stdio::null());
    matches!(output_with_timeout(cmd, Duration::from_secs(15)), Ok(out) if out.status.success())
}

/// The compose service of `broker`; an error for PostgreSQL, which has none.
fn service(broker: Broker) -> Result<&'static str> {
    broker.service().with_context(|| {
        format!("{broker} has no service in deploy/docker/compose.dev.yaml; it runs natively")
    })
}

/// `docker compose -f deploy/docker/compose.dev.yaml -p bento-dev`, with the ports in its env.
fn compose(env: &DevEnv) -> Command {
    let mut cmd = Command::new("docker");
    cmd.arg("compose")
        .arg("-f")
        .arg(workspace_root().join("deploy/docker/compose.dev.yaml"))
        .args(["-p", PROJECT])
        .env("BENTO_PULSAR_PORT", env.ports.pulsar.to_string())
        .env("BENTO_PULSAR_HTTP_PORT", env.ports.pulsar_http.to_string())
        .env("BENTO_PULSAR_TLS_PORT", env.ports.pulsar_tls.to_string())
        .env(
            "BENTO_PULSAR_HTTPS_PORT",
            env.ports.pulsar_https.to_string(),
        )
        .env(
            "BENTO_PULSAR_SECURITY_DIR",
            crate::security::SecurityFiles::at(&env.layout).dir,
        )
        .env("BENTO_KAFKA_PORT", env.ports.kafka.to_string())
        .env(
            "BENTO_KAFKA_CONTROLLER_PORT",
            env.ports.kafka_controller.to_string(),
        );
    cmd
}

/// Starts the containers (existing volumes are kept) and records them as running in docker mode.
pub fn up(env: &DevEnv, brokers: &[Broker]) -> Result<Vec<Pending>> {
    println!(
        "docker mode: starting {}",
        brokers
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if brokers.contains(&Broker::Kafka) {
        // Tests drive Kafka's command-line tools from these jars, whatever runs the broker.
        crate::prereq::ensure(&[crate::prereq::Tool::Java])?;
        kafka::install(&env.layout)?;
    }
    if brokers.contains(&Broker::Pulsar) {
        // The container mounts them: TLS certificates and the token key, as in native mode.
        crate::security::ensure(&env.layout)?;
    }
    let services = brokers
        .iter()
        .map(|&b| service(b))
        .collect::<Result<Vec<_>>>()?;
    let mut cmd = compose(env);
    cmd.args(["up", "-d"]).args(services);
    run_checked(
        cmd,
        "`docker compose up` (needs a running Docker engine and Docker Compose v2)",
    )?;
    let mut pending = Vec::new();
    for &broker in brokers {
        State::new(broker, Mode::Docker, None, env.ports, None).save(&env.layout)?;
        pending.push(Pending {
            broker,
            ports: env.ports,
            child: None,
            pid: None,
            log_offset: 0,
        });
    }
    Ok(pending)
}

/// Stops and removes a broker's container (its volume stays).
pub fn down(env: &DevEnv, broker: Broker) -> Result<()> {
    let mut cmd = compose(env);
    cmd.args(["rm", "--stop", "--force", service(broker)?]);
    run_checked(cmd, "docker compose rm")?;
    State::remove(&env.layout, broker)
}

/// SIGKILLs a broker's container (its volume stays; `up` starts it again).
pub fn kill(env: &DevEnv, broker: Broker) -> Result<()> {
    let mut cmd = compose(env);
    cmd.args(["kill", "-s", "SIGKILL", service(broker)?]);
    run_checked(cmd, "docker compose kill")
}

/// Shows a container's log.
pub fn logs(env: &DevEnv, broker: Broker, follow: bool, lines: usize) -> Result<()> {
    let mut cmd = compose(env);
    cmd.args(["logs", "--tail", &lines.to_string()]);
    if follow {
        cmd.arg("--follow");
    }
    cmd.arg(service(broker)?);
    run_checked(cmd, "docker compose logs")
}

/// Removes containers and their volumes.
pub fn reset(env: &DevEnv) -> Result<()> {
    let mut cmd = compose(env);
    cmd.args(["down", "--volumes", "--remove-orphans"]);
    run_checked(cmd, "docker compose down")?;
    for broker in Broker::ALL.into_iter().filter(|b| b.service().is_some()) {
        State::remove(&env.layout, broker)?;
    }
    Ok(())
}
