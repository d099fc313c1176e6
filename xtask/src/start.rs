//! `dev-env up`: install, start, wait until ready, report where the brokers and PostgreSQL run.

use std::fs;
use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::{Broker, LOOPBACK, Layout, Ports};
use crate::devenv::{DevEnv, health, owned, stop_native};
use crate::prereq::{self, Tool};
use crate::process::{self, is_alive};
use crate::progress::{self, Heartbeat};
use crate::security::SecurityFiles;
use crate::state::{Mode, State};
use crate::{docker, kafka, postgres, pulsar, registry};

fn port_env(broker: Broker, name: &str) -> &'static str {
    match (broker, name) {
        (Broker::Pulsar, "broker") => "BENTO_PULSAR_PORT",
        (Broker::Pulsar, "http") => "BENTO_PULSAR_HTTP_PORT",
        (Broker::Pulsar, "tls") => "BENTO_PULSAR_TLS_PORT",
        (Broker::Pulsar, "https") => "BENTO_PULSAR_HTTPS_PORT",
        (Broker::Pulsar, _) => "BENTO_PULSAR_BOOKIE_PORT",
        (Broker::Kafka, "broker") => "BENTO_KAFKA_PORT",
        (Broker::Kafka, _) => "BENTO_KAFKA_CONTROLLER_PORT",
        (Broker::Postgres, _) => "BENTO_POSTGRES_PORT",
        (Broker::Registry, _) => "BENTO_REGISTRY_PORT",
    }
}

fn ensure_ports_free(broker: Broker, ports: &Ports) -> Result<()> {
    for (name, port) in ports.of(broker) {
        if process::port_open(port) {
            bail!(
                "{broker}: port {port} ({name}) on {LOOPBACK} is already in use by a process xtask did not start; \
                 stop it or pick another port with {}=<port>",
                port_env(broker, name)
            );
        }
    }
    Ok(())
}

/// A broker `up` is waiting for.
pub struct Pending {
    /// Which broker.
    pub broker: Broker,
    /// Its ports.
    pub ports: Ports,
    /// The process, when this xtask started it (to notice an early exit).
    pub child: Option<Child>,
    /// Its pid (native mode).
    pub pid: Option<u32>,
    /// Size of its log file when it was started (native mode).
    pub log_offset: u64,
}

/// Starts the brokers (idempotent), waits until they are ready and prints where they run.
pub fn up(env: &DevEnv, brokers: &[Broker]) -> Result<()> {
    let started = Instant::now();
    // PostgreSQL has no compose service: it runs natively beside brokers in either mode.
    let composed: Vec<Broker> = brokers
        .iter()
        .copied()
        .filter(|b| b.service().is_some())
        .collect();
    let docker_mode = !composed.is_empty() && env.mode_for_up(&composed) == Mode::Docker;
    let (in_docker, native): (Vec<Broker>, Vec<Broker>) = brokers
        .iter()
        .partition(|b| docker_mode && b.service().is_some());
    let mut pending = Vec::new();
    if !in_docker.is_empty() {
        pending.extend(docker::up(env, &in_docker)?);
    }
    if !native.is_empty() {
        pending.extend(up_native(env, &native)?);
    }
    let started_pulsar: Vec<(Ports, u64)> = pending
        .iter()
        .filter(|p| p.broker == Broker::Pulsar && p.child.is_some())
        .map(|p| (p.ports, p.log_offset))
        .collect();
    wait_ready(env, pending)?;
    for (ports, log_offset) in started_pulsar {
        fix_pulsar_registration_loop(env, ports, log_offset)?;
    }
    if brokers.contains(&Broker::Pulsar) {
        let ports = State::load(&env.layout, Broker::Pulsar).map_or(env.ports, |s| s.ports);
        pulsar::enforce_schema_validation(&ports)?;
        println!(
            "pulsar: schema validation enforced on {}",
            pulsar::NAMESPACES.join(", ")
        );
    }
    println!(
        "dev-env up finished in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    print_summary(env, brokers);
    Ok(())
}

fn up_native(env: &DevEnv, brokers: &[Broker]) -> Result<Vec<Pending>> {
    let mut tools = Vec::new();
    if brokers.iter().any(|&b| b != Broker::Postgres) {
        tools.push(Tool::Java);
    }
    if brokers.contains(&Broker::Postgres) {
        tools.push(Tool::Postgres);
    }
    if brokers.contains(&Broker::Registry) {
        tools.push(Tool::Maven);
    }
    prereq::ensure(&tools)?;
    let layout = &env.layout;
    let mut pending = Vec::new();
    let mut to_start = Vec::new();
    for &broker in brokers {
        let mut ports = env.ports;
        if let Some(state) = State::load(layout, broker) {
            if state.mode == Mode::Docker {
                bail!(
                    "{broker} was started in docker mode; run `cargo xtask dev-env down {broker}` first"
                );
            }
            if let Some(pid) = state.pid.filter(|&pid| owned(broker, pid)) {
                if state.ports.of(broker) != env.ports.of(broker) {
                    println!(
                        "{broker}: note: running with the ports it was started with, not the ones requested now"
                    );
                }
                match health(broker, &state.ports) {
                    Ok(()) => println!(
                        "{broker}: already running (pid {pid}, up {}s) and healthy",
                        state.uptime_secs()
                    ),
                    Err(_) => {
                        println!(
                            "{broker}: already running (pid {pid}) but not ready yet; waiting for it"
                        );
                        pending.push(Pending {
                            broker,
                            ports: state.ports,
                            child: None,
                            pid: Some(pid),
                            log_offset: 0,
                        });
                    }
                }
                continue;
            }
            println!(
                "{broker}: its previous process is gone; starting it again with its data and ports"
            );
            ports = state.ports;
            State::remove(layout, broker)?;
        }
        ensure_ports_free(broker, &ports)?;
        to_start.push((broker, ports));
    }
    // Install everything first so a failed download starts nothing.
    let mut pulsar_dist = None;
    for &(broker, _) in &to_start {
        crate::disk::ensure_room(broker.name(), &layout.home)?;
        match broker {
            Broker::Pulsar => pulsar_dist = Some(pulsar::install(layout)?),
            Broker::Kafka => {
                kafka::install(layout)?;
            }
            // No download: the cluster itself (initdb on the first start, ownership).
            Broker::Postgres => postgres::prepare(layout)?,
            Broker::Registry => {
                registry::install(layout)?;
            }
        }
    }
    for (broker, ports) in to_start {
        pending.push(spawn(layout, broker, ports, pulsar_dist.as_deref())?);
    }
    Ok(pending)
}

/// Configures and starts one installed broker, records its state; returns what to wait for.
fn spawn(
    layout: &Layout,
    broker: Broker,
    ports: Ports,
    pulsar_dist: Option<&Path>,
) -> Result<Pending> {
    let log = layout.log_file(broker);
    let log_offset = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let child = match (broker, pulsar_dist) {
        (Broker::Pulsar, Some(dist)) => {
            let conf = pulsar::configure(layout, dist, &ports)?;
            pulsar::spawn(layout, dist, &conf, &ports)?
        }
        (Broker::Pulsar, None) => bail!("Pulsar is not installed"),
        (Broker::Kafka, _) => {
            let (server, log4j) = kafka::configure(layout, &ports)?;
            kafka::format_storage(layout, &server, &log4j)?;
            kafka::spawn(layout, &server, &log4j)?
        }
        (Broker::Postgres, _) => postgres::spawn(layout, &ports)?,
        (Broker::Registry, _) => registry::spawn(layout, &ports)?,
    };
    let pid = child.id();
    State::new(broker, Mode::Native, Some(pid), ports, Some(log.clone())).save(layout)?;
    println!(
        "{broker}: started {broker} {} (pid {pid}), log: {}",
        broker.version(),
        log.display()
    );
    Ok(Pending {
        broker,
        ports,
        child: Some(child),
        pid: Some(pid),
        log_offset,
    })
}

/// Pulsar 4.0 standalone sometimes comes back from an unclean exit (SIGKILL) with its bookie
/// stuck in a registration loop (`Lock on resource /ledgers/available/... was invalidated`, many
/// times a second), during which ledgers fail with "Not enough non-faulty bookies". A clean
/// restart ends it, so `up` does one when it sees the loop.
fn fix_pulsar_registration_loop(env: &DevEnv, ports: Ports, log_offset: u64) -> Result<()> {
    let log = env.layout.log_file(Broker::Pulsar);
    if !pulsar::registration_loop(&log, log_offset) {
        return Ok(());
    }
    println!(
        "pulsar: its bookie is stuck re-registering after an unclean exit; restarting it cleanly"
    );
    stop_native(env, Broker::Pulsar)?;
    let dist = env.layout.pulsar_dist();
    let again = spawn(&env.layout, Broker::Pulsar, ports, Some(&dist))?;
    let offset = again.log_offset;
    wait_ready(env, vec![again])?;
    if pulsar::registration_loop(&log, offset) {
        println!(
            "warning: pulsar's bookie still loops; see {}",
            log.display()
        );
    }
    Ok(())
}

fn start_timeout(broker: Broker) -> Duration {
    match broker {
        Broker::Pulsar => Duration::from_secs(300),
        Broker::Kafka => Duration::from_secs(180),
        // Seconds normally; crash recovery replays the WAL written since the last checkpoint.
        Broker::Postgres => Duration::from_secs(120),
        // Some 10 s on a 2-core machine.
        Broker::Registry => Duration::from_secs(120),
    }
}

/// Polls every pending broker until it is healthy; fails (and stops it) if it dies or times out.
pub fn wait_ready(env: &DevEnv, mut pending: Vec<Pending>) -> Result<()> {
    let names: Vec<&str> = pending.iter().map(|p| p.broker.name()).collect();
    if pending.is_empty() {
        return Ok(());
    }
    let mut beat = Heartbeat::new(format!("waiting for {}", names.join(" and ")));
    let mut reasons: Vec<String> = vec![String::new(); pending.len()];
    while !pending.is_empty() {
        progress::check_interrupted()?;
        let mut i = 0;
        while i < pending.len() {
            let p = &mut pending[i];
            let exited = match (&mut p.child, p.pid) {
                (Some(child), _) => child
                    .try_wait()
                    .context("checking the broker process")?
                    .map(|s| s.to_string()),
                (None, Some(pid)) if !is_alive(pid) => Some("gone".to_string()),
                _ => None,
            };
            if let Some(how) = exited {
                let broker = p.broker;
                State::remove(&env.layout, broker)?;
                print_log_tail(env, broker, 40);
                bail!(
                    "{broker} exited during startup ({how}); log: {}",
                    env.layout.log_file(broker).display()
                );
            }
            match health(p.broker, &p.ports) {
                Ok(()) => {
                    println!("  {} is ready ({}s)", p.broker, beat.elapsed().as_secs());
                    beat.touch();
                    if let Some(mut child) = pending.remove(i).child {
                        // Reap it whenever it ends, for as long as this process lives (all of
                        // `cargo xtask test`): a killed broker must not linger as a zombie, which
                        // PostgreSQL, finding its pid alive, would take for a running server.
                        thread::spawn(move || {
                            let _ = child.wait();
                        });
                    }
                    reasons.remove(i);
                    continue;
                }
                Err(reason) => reasons[i] = format!("{}: {}", p.broker, short_reason(&reason)),
            }
            if beat.elapsed() > start_timeout(p.broker) {
                let broker = p.broker;
                print_log_tail(env, broker, 40);
                eprintln!(
                    "{broker} did not become ready in {}s",
                    start_timeout(broker).as_secs()
                );
                if p.pid.is_some() {
                    stop_native(env, broker)?;
                }
                bail!(
                    "{broker} did not become ready; log: {}",
                    env.layout.log_file(broker).display()
                );
            }
            i += 1;
        }
        beat.tick(|| reasons.join("; "));
        thread::sleep(Duration::from_millis(1000));
    }
    Ok(())
}

/// The gist of a readiness failure for the progress line.
fn short_reason(reason: &str) -> String {
    if reason.contains("Connection refused") {
        "not listening yet".to_string()
    } else {
        reason.to_string()
    }
}

fn print_log_tail(env: &DevEnv, broker: Broker, lines: usize) {
    let path = env.layout.log_file(broker);
    if let Ok(text) = fs::read_to_string(&path) {
        eprintln!("--- last {lines} lines of {} ---", path.display());
        let all: Vec<&str> = text.lines().collect();
        for line in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{line}");
        }
        eprintln!("---");
    }
}

fn print_summary(env: &DevEnv, brokers: &[Broker]) {
    for &broker in brokers {
        let Some(state) = State::load(&env.layout, broker) else {
            continue;
        };
        let p = &state.ports;
        let pid = state.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
        println!("{broker} {} ({}{pid}):", state.version, state.mode.name());
        match broker {
            Broker::Pulsar => {
                println!("  service URL  {}", p.pulsar_url());
                println!("  admin URL    {}", p.pulsar_admin_url());
                println!("  TLS URL      {}", p.pulsar_tls_url());
                println!("  HTTPS URL    {}", p.pulsar_https_url());
                let files = SecurityFiles::at(&env.layout);
                println!("  CA cert      {}", files.ca_cert.display());
                println!("  token secret {}", files.token_secret.display());
                if state.mode == Mode::Native && !process::port_open(p.pulsar_tls) {
                    println!(
                        "  note: nothing listens on the TLS port {}: this broker was started \
                         before TLS and token authentication were configured; restart it with \
                         `cargo xtask dev-env down pulsar` and `up pulsar`",
                        p.pulsar_tls
                    );
                }
            }
            Broker::Kafka => println!("  bootstrap    {}", p.kafka_bootstrap()),
            Broker::Postgres => println!("  URL          {}", p.postgres_url()),
            Broker::Registry => println!("  URL          {}", p.registry_url()),
        }
        if state.mode == Mode::Native {
            println!("  data         {}", env.layout.data_dir(broker).display());
            println!("  log          {}", env.layout.log_file(broker).display());
        }
    }
    println!("for tests:");
    for (key, value) in crate::test::test_env(&env.layout, &env.ports) {
        println!("  export {key}={value}");
    }
}
