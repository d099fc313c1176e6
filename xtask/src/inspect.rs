//! `dev-env status` and `dev-env logs`: looking at the brokers without changing anything.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::Broker;
use crate::devenv::{DevEnv, health, owned};
use crate::docker;
use crate::process;
use crate::state::{Mode, State};

/// Prints version, mode, ports, pid, memory and health of every broker.
pub fn status(env: &DevEnv) -> Result<()> {
    println!("dev-env home: {}", env.layout.home.display());
    println!(
        "{:<8} {:<8} {:<7} {:<8} {:<62} {:<9} {:<8} STATE",
        "SERVICE", "VERSION", "MODE", "PID", "PORTS (127.0.0.1)", "MEMORY", "UPTIME"
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
            "{:<8} {:<8} {:<7} {:<8} {:<62} {:<9} {:<8} {verdict}",
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
