//! Progress output for long steps, and Ctrl-C handling.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (and SIGTERM) set a flag instead of killing xtask, so it can clean up.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without cleanup");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: cleaning up (press Ctrl-C again to exit at once)");
    })
    .context("installing the Ctrl-C handler")
}

/// Whether Ctrl-C was pressed since [`install_interrupt_handler`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails when Ctrl-C was pressed.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Prints a command's verdict and how long it took since `started`; fails with `failure` when
/// it did not pass.
pub fn verdict(command: &str, passed: bool, started: Instant, failure: &str) -> Result<()> {
    println!(
        "\ncargo xtask {command}: {} in {}s",
        if passed { "passed" } else { "FAILED" },
        started.elapsed().as_secs()
    );
    if !passed {
        bail!("{failure}");
    }
    Ok(())
}

/// Prints a line with the elapsed time every few seconds while something slow runs.
#[derive(Debug)]
pub struct Heartbeat {
    label: String,
    start: Instant,
    last: Instant,
    every: Duration,
}

impl Heartbeat {
    /// Starts the clock for a step called `label`.
    pub fn new(label: impl Into<String>) -> Self {
        let now = Instant::now();
        Heartbeat {
            label: label.into(),
            start: now,
            last: now,
            every: Duration::from_secs(5),
        }
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Notes that something else was just printed, postponing the next heartbeat.
    pub fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Prints `label: Ns detail` when the last output is older than the interval.
    pub fn tick(&mut self, detail: impl FnOnce() -> String) {
        if self.last.elapsed() >= self.every {
            let detail = detail();
            let sep = if detail.is_empty() { "" } else { " - " };
            println!(
                "  ... {}: {}s{sep}{detail}",
                self.label,
                self.elapsed().as_secs()
            );
            self.last = Instant::now();
        }
    }
}

/// Runs a command, echoing its output with a prefix and a heartbeat while it is silent.
///
/// `detail` adds something to the heartbeat line (e.g. bytes downloaded so far).
pub fn run_streaming(
    mut cmd: Command,
    label: &str,
    mut detail: impl FnMut() -> String,
) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting `{program}`"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(forward_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(forward_lines(err, tx.clone()));
    }
    drop(tx);
    let mut beat = Heartbeat::new(label);
    let mut tail = VecDeque::new();
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(line) => {
                println!("  | {line}");
                beat.touch();
                tail.push_back(line);
                if tail.len() > 20 {
                    tail.pop_front();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => beat.tick(&mut detail),
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(100)),
        }
        if interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("interrupted while running `{program}`");
        }
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{program}`"))?
        {
            break status;
        }
    };
    for reader in readers {
        let _ = reader.join();
    }
    for line in rx.try_iter() {
        println!("  | {line}");
    }
    if !status.success() {
        bail!(
            "`{program}` failed ({status}) after {}s; its output is above",
            beat.elapsed().as_secs()
        );
    }
    println!("  {label}: done in {}s", beat.elapsed().as_secs());
    Ok(())
}

fn forward_lines(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    })
}
