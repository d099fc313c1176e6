//! What the example tests share.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// An example binary cargo built next to this test binary (`cargo test` does not build them:
/// `cargo build -p bento-examples --examples` with the features of the backends under test).
pub fn example(name: &str) -> PathBuf {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test binary: {e}"));
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} was not built; run `cargo build -p bento-examples --examples` with the features of \
         the backends under test",
        binary.display()
    );
    binary
}

/// Points `command` at the test brokers `cargo xtask test` names, where it names them.
pub fn point_at_test_brokers(command: &mut Command) {
    for (test_var, config_var) in [
        (
            "BENTO_TEST_PULSAR_URL",
            "BENTO_MESSAGING__PULSAR__SERVICE_URL",
        ),
        (
            "BENTO_TEST_PULSAR_ADMIN_URL",
            "BENTO_MESSAGING__PULSAR__ADMIN_URL",
        ),
        (
            "BENTO_TEST_KAFKA_BOOTSTRAP",
            "BENTO_MESSAGING__KAFKA__BOOTSTRAP_SERVERS",
        ),
    ] {
        if let Some(value) = std::env::var_os(test_var) {
            command.env(config_var, value);
        }
    }
}

/// The first line the `service` example prints once it is running: its periodic summary,
/// printed only after its SIGTERM handler is installed (every 10 s).
pub const SERVICE_RUNNING: &str = "registered ";

/// Starts `command` (the `service` example), waits until it printed a line starting with
/// `running` (within `patience`), sends it SIGTERM and waits for it to end: its output, and how
/// long it took to end after the signal.
///
/// A fixed sleep before the signal was a race: connecting and subscribing on a real broker can
/// take longer than the sleep on a loaded machine, and a SIGTERM that comes before the service
/// listens for it kills the process instead of stopping it. Sends the signal with `kill`
/// (Unix).
pub fn stop_with_sigterm_once_running(
    command: &mut Command,
    running: &str,
    patience: std::time::Duration,
) -> (std::process::Output, std::time::Duration) {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::process::Stdio;
    use std::time::Instant;

    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the service example: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    // Both pipes are drained all along, so the child never blocks on a full pipe.
    let stdout_reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(mut line) = line else { break };
            let _ = lines_tx.send(String::from_utf8_lossy(&line).into_owned());
            line.push(b'\n');
            all.extend(line);
        }
        all
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });
    let deadline = Instant::now() + patience;
    let mut is_running = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(running) => {
                is_running = true;
                break;
            }
            Ok(_) => {}
            // Timed out, or the service closed its output (it ended).
            Err(_) => break,
        }
    }
    if !is_running {
        let _ = child.kill();
        let status = child.wait();
        let stdout = stdout_reader.join().unwrap_or_default();
        let stderr = stderr_reader.join().unwrap_or_default();
        panic!(
            "the service did not print `{running}` within {patience:?} ({status:?}):\n{}\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    }
    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot send SIGTERM: {e}"));
    assert!(killed.success());
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for the service: {e}"));
    let took = signalled.elapsed();
    let output = std::process::Output {
        status,
        stdout: stdout_reader.join().unwrap_or_default(),
        stderr: stderr_reader.join().unwrap_or_default(),
    };
    (output, took)
}
