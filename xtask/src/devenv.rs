//! `cargo xtask dev-env`: start, inspect and stop the local brokers and PostgreSQL.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::cli::{Action, DevEnvArgs, ModeArgs};
use crate::config::{Broker, Layout, Ports};
use crate::download::remove_path;
use crate::process::{self, is_alive};
use crate::state::{Mode, State};
use crate::{docker, inspect, kafka, postgres, pulsar, start};

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
    pub(crate) fn mode_for_up(&self, brokers: &[Broker]) -> Mode {
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
        Action::Status => inspect::status(&env),
        Action::Env => {
            for (key, value) in crate::test::test_env(&env.layout, &env.ports) {
                println!("export {key}={}", shell_quote(&value));
            }
            Ok(())
        }
        Action::Logs {
            broker,
            follow,
            lines,
        } => inspect::logs(&env, broker, follow, lines),
        Action::Up { target } => {
            let _lock = lock(&env.layout)?;
            start::up(&env, &target.brokers())
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

/// `value` as one single-quoted shell word.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
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
pub(crate) fn owned(broker: Broker, pid: u32) -> bool {
    is_alive(pid)
        && process::cmdline(pid)
            .is_none_or(|cmd| broker.process_markers().iter().any(|m| cmd.contains(m)))
}

/// `Ok` when the broker answers like a ready broker; otherwise what is missing.
pub fn health(broker: Broker, ports: &Ports) -> Result<(), String> {
    match broker {
        Broker::Pulsar => pulsar::health(ports),
        Broker::Kafka => kafka::health(ports),
        Broker::Postgres => postgres::health(ports),
        Broker::Registry => crate::registry::health(ports),
    }
}

/// Stops one natively run broker (SIGTERM, or SIGINT to PostgreSQL's postmaster; SIGKILL after
/// 30 s) and waits for its ports to close.
pub(crate) fn stop_native(env: &DevEnv, broker: Broker) -> Result<()> {
    let Some(state) = State::load(&env.layout, broker) else {
        return Ok(());
    };
    if let Some(pid) = state.pid.filter(|&pid| owned(broker, pid)) {
        println!("{broker}: stopping pid {pid}");
        let started = Instant::now();
        let grace = Duration::from_secs(30);
        match broker {
            // SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
            Broker::Postgres => process::stop_root(pid, Signal::SIGINT, grace)?,
            Broker::Pulsar | Broker::Kafka | Broker::Registry => {
                process::terminate_tree(pid, grace)?
            }
        }
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
                    None if env.mode.docker && broker.service().is_some() => docker::down(env, broker),
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
        if broker == Broker::Postgres {
            // The socket's lock file of a killed server would otherwise outlive its cluster.
            remove_path(&env.layout.postgres_run())?;
        }
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

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn values_are_quoted_as_one_shell_word() {
        assert_eq!(
            shell_quote("pulsar://127.0.0.1:6650"),
            "'pulsar://127.0.0.1:6650'"
        );
        assert_eq!(shell_quote("/a dir/it's"), r"'/a dir/it'\''s'");
    }
}
