//! Detached broker processes: spawning, liveness, killing whole process trees, port checks.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Spawns `cmd` in its own process group, stdin closed, stdout and stderr appended to `log_file`.
///
/// The broker keeps running after xtask exits; its pid is also its process group id.
pub fn spawn_detached(mut cmd: Command, log_file: &Path) -> Result<Child> {
    if let Some(dir) = log_file.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("opening {}", log_file.display()))?;
    let log_err = log.try_clone().context("duplicating the log file handle")?;
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.spawn().with_context(|| format!("starting `{program}`"))
}

fn pid(raw: u32) -> Result<Pid> {
    let raw = i32::try_from(raw).with_context(|| format!("pid {raw} out of range"))?;
    Ok(Pid::from_raw(raw))
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn is_alive(raw: u32) -> bool {
    let Ok(p) = pid(raw) else { return false };
    let exists = matches!(kill(p, None), Ok(()) | Err(Errno::EPERM));
    exists && !is_zombie(raw)
}

fn is_zombie(raw: u32) -> bool {
    // Linux only; elsewhere a zombie simply counts as alive until its parent reaps it.
    fs::read_to_string(format!("/proc/{raw}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Whether any live (non-zombie) process of the process group `pgid` is still there.
pub fn group_alive(raw: u32) -> bool {
    let Ok(p) = pid(raw) else { return false };
    if !matches!(killpg(p, None), Ok(()) | Err(Errno::EPERM)) {
        return false;
    }
    if Path::new("/proc/self/stat").exists() {
        group_members(raw).into_iter().any(|m| !is_zombie(m))
    } else {
        true
    }
}

/// The command line of a process, if it can be read.
pub fn cmdline(raw: u32) -> Option<String> {
    if let Ok(bytes) = fs::read(format!("/proc/{raw}/cmdline")) {
        let text: String = String::from_utf8_lossy(&bytes).replace('\0', " ");
        return Some(text.trim().to_string());
    }
    let out = Command::new("ps")
        .args(["-o", "args=", "-p", &raw.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Resident memory of a process in KiB (Linux `/proc`, else `ps`).
pub fn rss_kib(raw: u32) -> Option<u64> {
    if let Ok(status) = fs::read_to_string(format!("/proc/{raw}/status")) {
        return status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok());
    }
    let out = Command::new("ps")
        .args(["-o", "rss=", "-p", &raw.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `(pid, ppid, pgid)` of every process, from Linux `/proc` (empty elsewhere).
fn process_table() -> Vec<(u32, u32, u32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace().skip(1);
            let ppid = fields.next()?.parse().ok()?;
            let pgid = fields.next()?.parse().ok()?;
            Some((p, ppid, pgid))
        })
        .collect()
}

fn group_members(pgid: u32) -> Vec<u32> {
    process_table()
        .into_iter()
        .filter(|&(_, _, g)| g == pgid)
        .map(|(p, _, _)| p)
        .collect()
}

/// The process, its process group and all their descendants.
fn tree(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut found: Vec<u32> = vec![root];
    found.extend(
        table
            .iter()
            .filter(|&&(p, _, g)| g == root && p != root)
            .map(|&(p, _, _)| p),
    );
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for &(p, pp, _) in &table {
            if pp == parent && !found.contains(&p) {
                found.push(p);
            }
        }
        i += 1;
    }
    found
}

fn signal_tree(root: u32, signal: Signal) {
    if let Ok(group) = pid(root) {
        let _ = killpg(group, signal);
    }
    for p in tree(root) {
        if let Ok(p) = pid(p) {
            let _ = kill(p, signal);
        }
    }
}

fn wait_tree_gone(root: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        reap(root);
        let left: Vec<u32> = tree(root).into_iter().filter(|&p| is_alive(p)).collect();
        if left.is_empty() && !group_alive(root) {
            wait_reaped(root, Duration::from_secs(3));
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Reaps `raw` if it is an exited child of this process (`cargo xtask test` starts the brokers
/// itself); harmless otherwise.
fn reap(raw: u32) {
    if let Ok(p) = pid(raw) {
        let _ = waitpid(p, Some(WaitPidFlag::WNOHANG));
    }
}

/// Best effort: gives the parent (often init) a moment to reap the exited process, so that it
/// no longer shows up in `ps`/`pgrep` as a zombie.
fn wait_reaped(raw: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{raw}")).exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a process tree: SIGTERM to the group and every descendant, SIGKILL after `grace`.
pub fn terminate_tree(root: u32, grace: Duration) -> Result<()> {
    signal_tree(root, Signal::SIGTERM);
    if wait_tree_gone(root, grace) {
        return Ok(());
    }
    println!(
        "  still running after {}s: sending SIGKILL",
        grace.as_secs()
    );
    kill_tree(root)
}

/// Stops a server that shuts down its own children: `signal` to the root process alone, SIGKILL
/// to the whole tree after `grace`.
///
/// PostgreSQL's postmaster does a fast shutdown (ends sessions, checkpoints) on SIGINT; a signal
/// to every process of the tree, as [`terminate_tree`] sends, would reach its helper processes
/// in the middle of that.
pub fn stop_root(root: u32, signal: Signal, grace: Duration) -> Result<()> {
    let p = pid(root)?;
    if let Err(err) = kill(p, signal)
        && err != Errno::ESRCH
    {
        return Err(err).with_context(|| format!("sending {signal} to pid {root}"));
    }
    if wait_tree_gone(root, grace) {
        return Ok(());
    }
    println!(
        "  still running after {}s: sending SIGKILL",
        grace.as_secs()
    );
    kill_tree(root)
}

/// SIGKILLs a process tree at once (a simulated crash) and waits until it is gone.
pub fn kill_tree(root: u32) -> Result<()> {
    signal_tree(root, Signal::SIGKILL);
    if !wait_tree_gone(root, Duration::from_secs(15)) {
        bail!("process tree of pid {root} survived SIGKILL");
    }
    Ok(())
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Waits until none of `ports` accepts connections any more.
pub fn wait_ports_closed(ports: &[(&str, u16)], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let open: Vec<String> = ports
            .iter()
            .filter(|(_, p)| port_open(*p))
            .map(|(n, p)| format!("{n} {p}"))
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "ports still open after {}s: {}",
                timeout.as_secs(),
                open.join(", ")
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a command to completion, capturing its output, killing it after `timeout`.
pub fn output_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting `{program}`"))?;
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{program}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{program}` did not finish within {}s", timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(100));
    };
    let join =
        |h: Option<thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn read_all(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        buf
    })
}

/// Runs a command with inherited stdio and fails unless it succeeds.
pub fn run_checked(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
