//! `cargo xtask dev-env`: start, inspect and stop the local brokers.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::{Action, DevEnvArgs, ModeArgs};
use crate::config::{Broker, LOOPBACK, Layout, Ports};
use crate::download::remove_path;
use crate::prereq::{self, Tool};
use crate::process::{self, is_alive};
use crate::progress::{self, Heartbeat};
use crate::state::{Mode, State};
use crate::{docker, kafka, pulsar};

/// What every dev-env operation needs: where things live, which ports, which mode.
#[derive(Debug, Clone)]
pub struct DevEnv {
    /// File layout under the dev-env home.
    pub layout: Layout,
    /// Ports for brokers started from now on.
    pub ports: Ports,
    /// Mode flags from the command line.
    pub mode: ModeArgs,
}

impl DevEnv {
    /// The environment for the given flags, at [`crate::config::dev_env_home`].
    pub fn new(mode: ModeArgs, ports: Ports) -> Self {
        DevEnv {
            layout: Layout::from_env(),
            ports,
            mode,
        }
    }

    /// The mode for starting `brokers`: forced by a flag, else that of a broker already started,
    /// else Docker when an engine answers, else native.
    fn mode_for_up(&self, brokers: &[Broker]) -> Mode {
        if self.mode.docker {
            return Mode::Docker;
        }
        if self.mode.native {
            return Mode::Native;
        }
        if let Some(state) = brokers.iter().find_map(|&b| State::load(&self.layout, b)) {
            return state.mode;
        }
        if docker::engine_available() {
            Mode::Docker
        } else {
            Mode::Native
        }
    }
}

/// Runs a `dev-env` subcommand.
pub fn run(args: DevEnvArgs) -> Result<()> {
    let env = DevEnv::new(args.mode, args.ports);
    match args.action {
        Action::Status => status(&env),
        Action::Logs {
            broker,
            follow,
            lines,
        } => logs(&env, broker, follow, lines),
        Action::Up { target } => {
            let _lock = lock(&env.layout)?;
            up(&env, &target.brokers())
        }
        Action::Down { target } => {
            let _lock = lock(&env.layout)?;
            down(&env, &target.brokers())
        }
        Action::Kill { broker } => {
            let _lock = lock(&env.layout)?;
            kill(&env, broker)
        }
        Action::Reset => {
            let _lock = lock(&env.layout)?;
            reset(&env)
        }
    }
}

/// Takes the dev-env lock, so that concurrent `up`/`down`/`kill`/`reset` (several test processes,
/// several terminals) run one after the other. Released when the returned file is dropped.
pub fn lock(layout: &Layout) -> Result<fs::File> {
    fs::create_dir_all(&layout.home)
        .with_context(|| format!("creating {}", layout.home.display()))?;
    let path = layout.home.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            println!(
                "waiting for another `cargo xtask dev-env` command to finish ({})",
                path.display()
            );
        }
        Err(fs::TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Whether `pid` is alive and still runs the broker (not a recycled pid).
fn owned(broker: Broker, pid: u32) -> bool {
    is_alive(pid)
        && process::cmdline(pid)
            .is_none_or(|cmd| broker.process_markers().iter().any(|m| cmd.contains(m)))
}

/// `Ok` when the broker answers like a ready broker; otherwise what is missing.
pub fn health(broker: Broker, ports: &Ports) -> Result<(), String> {
    match broker {
        Broker::Pulsar => pulsar::health(ports),
        Broker::Kafka => kafka::health(ports),
    }
}

fn port_env(broker: Broker, name: &str) -> &'static str {
    match (broker, name) {
        (Broker::Pulsar, "broker") => "BENTO_PULSAR_PORT",
        (Broker::Pulsar, "http") => "BENTO_PULSAR_HTTP_PORT",
        (Broker::Pulsar, _) => "BENTO_PULSAR_BOOKIE_PORT",
        (Broker::Kafka, "broker") => "BENTO_KAFKA_PORT",
        (Broker::Kafka, _) => "BENTO_KAFKA_CONTROLLER_PORT",
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
}

/// Starts the brokers (idempotent), waits until they are ready and prints where they run.
pub fn up(env: &DevEnv, brokers: &[Broker]) -> Result<()> {
    let started = Instant::now();
    let pending = match env.mode_for_up(brokers) {
        Mode::Docker => docker::up(env, brokers)?,
        Mode::Native => up_native(env, brokers)?,
    };
    wait_ready(env, pending)?;
    println!(
        "dev-env up finished in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    print_summary(env, brokers);
    Ok(())
}

fn up_native(env: &DevEnv, brokers: &[Broker]) -> Result<Vec<Pending>> {
    prereq::ensure(&[Tool::Java])?;
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
        match broker {
            Broker::Pulsar => pulsar_dist = Some(pulsar::install(layout)?),
            Broker::Kafka => {
                kafka::install(layout)?;
            }
        }
    }
    for (broker, ports) in to_start {
        let child = match (broker, &pulsar_dist) {
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
        };
        let pid = child.id();
        let log = layout.log_file(broker);
        State::new(broker, Mode::Native, Some(pid), ports, Some(log.clone())).save(layout)?;
        println!(
            "{broker}: started {} {} (pid {pid}), log: {}",
            broker,
            broker.version(),
            log.display()
        );
        pending.push(Pending {
            broker,
            ports,
            child: Some(child),
            pid: Some(pid),
        });
    }
    Ok(pending)
}

fn start_timeout(broker: Broker) -> Duration {
    match broker {
        Broker::Pulsar => Duration::from_secs(300),
        Broker::Kafka => Duration::from_secs(180),
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
                    pending.remove(i);
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
            }
            Broker::Kafka => println!("  bootstrap    {}", p.kafka_bootstrap()),
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

/// Prints version, mode, ports, pid, memory and health of every broker.
pub fn status(env: &DevEnv) -> Result<()> {
    println!("dev-env home: {}", env.layout.home.display());
    println!(
        "{:<7} {:<8} {:<7} {:<8} {:<40} {:<9} {:<8} STATE",
        "BROKER", "VERSION", "MODE", "PID", "PORTS (127.0.0.1)", "MEMORY", "UPTIME"
    );
    for broker in Broker::ALL {
        let state = State::load(&env.layout, broker);
        let ports = state.as_ref().map(|s| s.ports).unwrap_or(env.ports);
        let port_list = ports
            .of(broker)
            .iter()
            .map(|(n, p)| format!("{n} {p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (mode, pid, memory, uptime, verdict) = match &state {
            None => {
                let listening = ports.of(broker).iter().any(|(_, p)| process::port_open(*p));
                let verdict = if listening {
                    match health(broker, &ports) {
                        Ok(()) => "healthy (not started by xtask)".to_string(),
                        Err(why) => format!("port in use by another process: {why}"),
                    }
                } else {
                    "down".to_string()
                };
                (
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    verdict,
                )
            }
            Some(s) => {
                let alive = match (s.mode, s.pid) {
                    (Mode::Native, Some(pid)) => owned(broker, pid),
                    _ => true,
                };
                let verdict = if !alive {
                    "dead (killed or crashed; `dev-env up` restarts it with its data)".to_string()
                } else {
                    match health(broker, &s.ports) {
                        Ok(()) => "healthy".to_string(),
                        Err(why) => format!("unhealthy: {why}"),
                    }
                };
                let memory = s
                    .pid
                    .filter(|_| alive)
                    .and_then(process::rss_kib)
                    .map(|k| format!("{} MB", k / 1024))
                    .unwrap_or_else(|| "-".to_string());
                let pid = s
                    .pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".to_string());
                (
                    s.mode.name().to_string(),
                    pid,
                    memory,
                    format!("{}s", s.uptime_secs()),
                    verdict,
                )
            }
        };
        println!(
            "{:<7} {:<8} {:<7} {:<8} {:<40} {:<9} {:<8} {verdict}",
            broker.name(),
            broker.version(),
            mode,
            pid,
            port_list,
            memory,
            uptime
        );
    }
    Ok(())
}

/// Prints the last `lines` lines of a broker's log, then follows it if asked.
pub fn logs(env: &DevEnv, broker: Broker, follow: bool, lines: usize) -> Result<()> {
    if State::load(&env.layout, broker).is_some_and(|s| s.mode == Mode::Docker) {
        return docker::logs(env, broker, follow, lines);
    }
    let path = env.layout.log_file(broker);
    let text = fs::read_to_string(&path)
        .with_context(|| format!("no log at {} (never started?)", path.display()))?;
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        println!("{line}");
    }
    if !follow {
        return Ok(());
    }
    let mut file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut pos = file
        .seek(SeekFrom::End(0))
        .context("seeking to the end of the log")?;
    loop {
        let len = file.metadata().map(|m| m.len()).unwrap_or(pos);
        if len < pos {
            pos = 0; // truncated (reset)
        }
        file.seek(SeekFrom::Start(pos))
            .context("seeking in the log")?;
        let mut chunk = String::new();
        let read = file.read_to_string(&mut chunk).context("reading the log")?;
        print!("{chunk}");
        pos += read as u64;
        thread::sleep(Duration::from_millis(500));
    }
}

/// Stops one natively run broker (SIGTERM, then SIGKILL) and waits for its ports to close.
fn stop_native(env: &DevEnv, broker: Broker) -> Result<()> {
    let Some(state) = State::load(&env.layout, broker) else {
        return Ok(());
    };
    if let Some(pid) = state.pid.filter(|&pid| owned(broker, pid)) {
        println!("{broker}: stopping pid {pid}");
        let started = Instant::now();
        process::terminate_tree(pid, Duration::from_secs(30))?;
        process::wait_ports_closed(&state.ports.of(broker), Duration::from_secs(30))?;
        println!(
            "{broker}: stopped in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("{broker}: was not running (stale state removed)");
    }
    State::remove(&env.layout, broker)
}

/// Stops the given brokers (in parallel), whatever mode they were started in.
pub fn down(env: &DevEnv, brokers: &[Broker]) -> Result<()> {
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = brokers
            .iter()
            .map(|&broker| {
                scope.spawn(move || match State::load(&env.layout, broker) {
                    Some(s) if s.mode == Mode::Docker => docker::down(env, broker),
                    Some(_) => stop_native(env, broker),
                    None if env.mode.docker => docker::down(env, broker),
                    None => {
                        let open: Vec<_> = env.ports.of(broker).into_iter().filter(|(_, p)| process::port_open(*p)).collect();
                        if open.is_empty() {
                            println!("{broker}: not running");
                        } else {
                            println!("{broker}: not started by xtask, but ports {open:?} are in use; left alone");
                        }
                        Ok(())
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("stop thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// SIGKILLs a broker's process tree (or container) to simulate a crash; its data stays.
pub fn kill(env: &DevEnv, broker: Broker) -> Result<()> {
    let Some(state) = State::load(&env.layout, broker) else {
        bail!(
            "{broker} is not running (no state in {})",
            env.layout.state_file(broker).display()
        );
    };
    if state.mode == Mode::Docker {
        return docker::kill(env, broker);
    }
    match state.pid.filter(|&pid| owned(broker, pid)) {
        Some(pid) => {
            process::kill_tree(pid)?;
            process::wait_ports_closed(&state.ports.of(broker), Duration::from_secs(15))?;
            println!(
                "{broker}: killed pid {pid} (SIGKILL); `cargo xtask dev-env up {broker}` restarts it with its data"
            );
            Ok(())
        }
        None => bail!("{broker} is not running (its recorded process is gone)"),
    }
}

/// Deletes the brokers' data and logs (they must be stopped).
pub fn wipe(env: &DevEnv, brokers: &[Broker]) -> Result<()> {
    for &broker in brokers {
        remove_path(&env.layout.data_dir(broker))?;
        remove_path(&env.layout.logs_dir(broker))?;
    }
    Ok(())
}

/// `down` for everything, then wipe data and logs (downloads are kept).
pub fn reset(env: &DevEnv) -> Result<()> {
    down(env, &Broker::ALL)?;
    if env.mode.docker || docker::engine_available() {
        docker::reset(env)?;
    }
    wipe(env, &Broker::ALL)?;
    println!(
        "dev-env reset: data and logs deleted under {}",
        env.layout.home.display()
    );
    Ok(())
}
