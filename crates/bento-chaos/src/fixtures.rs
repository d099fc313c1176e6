//! What the scenarios run beside the brokers: the Pulsar proxy, the consumer child, the
//! dev-env xtask, the broker locks, resident memory.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_port(addr: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Apache Pulsar's own proxy (`pulsar proxy` from the dev-env distribution), run by this
/// process; killed with its process group when dropped.
///
/// Why: a Pulsar client looks a topic up and then connects to the broker address the answer
/// names (the broker's `advertisedAddress`), not to the service URL, and the `pulsar` crate
/// cannot ask for another advertised listener. A toxiproxy in front of the broker would only
/// see the lookups. The Pulsar proxy answers lookups with "connect through the service URL",
/// so with toxiproxy in front of the Pulsar proxy, every byte between the client and the
/// broker crosses toxiproxy, and the broker and its other clients stay as they are.
pub struct PulsarProxy {
    child: Child,
}

impl PulsarProxy {
    /// Starts the proxy on `port` (web port `web_port`) in front of the broker at
    /// `broker_url`/`admin_url`.
    pub fn start(
        dev_env: &Path,
        work: &Path,
        port: u16,
        web_port: u16,
        broker_url: &str,
        admin_url: &str,
    ) -> Result<Self> {
        let dist = dev_env.join("pulsar/dist");
        let broker_port = broker_url.rsplit(':').next().unwrap_or("6650");
        let conf = work.join("proxy.conf");
        std::fs::write(
            &conf,
            format!(
                "# Written by bento-chaos: a Pulsar proxy in front of the dev-env broker.\n\
                 brokerServiceURL={broker_url}\n\
                 brokerWebServiceURL={admin_url}\n\
                 bindAddress=127.0.0.1\n\
                 advertisedAddress=127.0.0.1\n\
                 servicePort={port}\n\
                 webServicePort={web_port}\n\
                 clusterName=standalone\n\
                 brokerProxyAllowedTargetPorts={broker_port}\n\
                 authenticationEnabled=false\n\
                 authorizationEnabled=false\n"
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let logs = work.join("pulsar-proxy-logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let log = File::create(logs.join("proxy.out")).context("creating the proxy's log")?;
        let mut command = Command::new(dist.join("bin/pulsar"));
        command
            .arg("proxy")
            .env("PULSAR_PROXY_CONF", &conf)
            .env("PULSAR_LOG_DIR", &logs)
            .env(
                "PULSAR_MEM",
                "-Xms64m -Xmx256m -XX:MaxDirectMemorySize=256m",
            )
            .env(
                "PULSAR_GC",
                "-XX:+UseG1GC -XX:ParallelGCThreads=1 -XX:ConcGCThreads=1",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the proxy's log")?)
            .stderr(log)
            // Its own process group, so that dropping it kills the JVM and its launcher.
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", dist.join("bin/pulsar").display()))?;
        let proxy = Self { child };
        wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(90))
            .with_context(|| format!("the Pulsar proxy did not start; see {}", logs.display()))?;
        Ok(proxy)
    }
}

impl Drop for PulsarProxy {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs the dev-env xtask (`$BENTO_XTASK_BIN`, else `target/debug/xtask`).
pub fn xtask(args: &[&str]) -> Result<()> {
    let bin = std::env::var_os("BENTO_XTASK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            bento_testkit::broker_lock::path("pulsar")
                .with_file_name("debug")
                .join("xtask")
        });
    let status = Command::new(&bin)
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .status()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if !status.success() {
        bail!("`xtask {}` failed: {status}", args.join(" "));
    }
    Ok(())
}

/// A broker's test lock, held shared (scenarios that leave the broker alone) or exclusively
/// (the broker kill), until dropped.
pub fn lock_broker(broker: &str, exclusive: bool) -> Result<File> {
    let file = bento_testkit::broker_lock::open(broker);
    if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    }
    .with_context(|| format!("taking the {broker} broker lock"))?;
    Ok(file)
}

use bento_testkit::memory::peak_rss_kib;

/// The peak resident memory of this process, in KiB.
pub fn own_peak_rss_kib() -> u64 {
    peak_rss_kib(std::process::id()).unwrap_or(0)
}

/// A running consumer child.
pub struct ConsumerChild {
    child: Child,
    /// The highest `VmHWM` seen, in KiB.
    pub peak_kib: u64,
}

impl ConsumerChild {
    /// Starts `bento-chaos consume` and waits until it says it is subscribed.
    pub fn start(args: &[String], log: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("finding this program")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut child = Command::new(exe)
            .arg("consume")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting the consumer")?;
        let stdout = child.stdout.take().context("the consumer's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim() == "READY" {
                    let _ = tx.send(());
                }
            }
        });
        let mut consumer = Self { child, peak_kib: 0 };
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(()) => Ok(consumer),
            Err(_) => {
                let status = consumer.child.try_wait().ok().flatten();
                consumer.sigkill();
                bail!("the consumer did not subscribe within 180 s (exit: {status:?}); see its log")
            }
        }
    }

    /// Records its peak memory; `Err` if it died on its own.
    pub fn check(&mut self) -> Result<()> {
        if let Some(kib) = peak_rss_kib(self.child.id()) {
            self.peak_kib = self.peak_kib.max(kib);
        }
        if let Some(status) = self.child.try_wait().context("checking the consumer")? {
            bail!("the consumer exited by itself: {status}; see its log");
        }
        Ok(())
    }

    /// SIGKILL, and reap it.
    pub fn sigkill(&mut self) {
        let _ = self.check();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (it shuts its subscriptions down), SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        let _ = self.check();
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)
            .context("sending SIGTERM to the consumer")?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("waiting for the consumer")? {
                if !status.success() {
                    bail!("the consumer's shutdown failed: {status}; see its log");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.sigkill();
        bail!("the consumer did not stop within {grace:?} of SIGTERM")
    }
}

impl Drop for ConsumerChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
