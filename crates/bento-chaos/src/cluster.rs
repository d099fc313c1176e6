//! A three-broker Kafka cluster (KRaft, each node broker and controller) for the scenario in
//! which one broker of a replicated cluster dies: built from the dev-env's Kafka install, on
//! free loopback ports, with its data in the run's directory.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::fixtures::wait_for_port;
use crate::toxiproxy::free_port;

/// Nodes in the cluster: with replication factor 3 and `min.insync.replicas` 2, one can die
/// without refusing an `acks=all` publish.
pub const NODES: usize = 3;
const CLUSTER_ID: &str = "YmVudG8tY2hhb3MtY2x1c3Rlcg";

/// JVM options per node: three brokers share the two cores with the dev-env's own.
const JVM_OPTS: &[&str] = &[
    "-Xms128m",
    "-Xmx384m",
    "-XX:+UseG1GC",
    "-XX:ParallelGCThreads=1",
    "-XX:ConcGCThreads=1",
    "-Djava.awt.headless=true",
];

struct Node {
    port: u16,
    controller: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

/// The running cluster; dropping it kills every node.
pub struct KafkaCluster {
    nodes: Vec<Node>,
    classpath: String,
    log4j: PathBuf,
}

impl KafkaCluster {
    /// Writes the nodes' configurations under `work`, formats their storage and starts them;
    /// returns once every node accepts connections.
    pub fn start(dev_env: &Path, work: &Path) -> Result<Self> {
        let libs = dev_env.join("kafka/libs");
        if !libs.is_dir() {
            bail!(
                "no Kafka install at {}: run `cargo xtask dev-env up kafka` first",
                libs.display()
            );
        }
        let dir = work.join("kafka-cluster");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log4j = dir.join("log4j2.properties");
        std::fs::write(&log4j, LOG4J2).with_context(|| format!("writing {}", log4j.display()))?;
        let mut nodes = Vec::new();
        for _ in 0..NODES {
            nodes.push((free_port()?, free_port()?));
        }
        let voters = nodes
            .iter()
            .enumerate()
            .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            nodes: Vec::new(),
            classpath: format!("{}/*", libs.display()),
            log4j,
        };
        for (i, (port, controller)) in nodes.into_iter().enumerate() {
            let id = i + 1;
            let data = dir.join(format!("node-{id}"));
            let config = dir.join(format!("node-{id}.properties"));
            std::fs::write(&config, properties(id, port, controller, &voters, &data))
                .with_context(|| format!("writing {}", config.display()))?;
            cluster.format(&config)?;
            cluster.nodes.push(Node {
                port,
                controller,
                config,
                log: dir.join(format!("node-{id}.log")),
                process: None,
            });
        }
        for node in 0..NODES {
            cluster.spawn(node)?;
        }
        for node in &cluster.nodes {
            wait_for_port(
                &format!("127.0.0.1:{}", node.port),
                Duration::from_secs(180),
            )
            .with_context(|| {
                format!(
                    "cluster node on port {} did not start; see {}",
                    node.port,
                    node.log.display()
                )
            })?;
        }
        Ok(cluster)
    }

    /// The bootstrap list of every node.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILLs node `index` (0-based) with its whole process group.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].process.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts node `index` again with its data and waits until it accepts connections.
    pub fn restart(&mut self, index: usize) -> Result<()> {
        self.spawn(index)?;
        let node = &self.nodes[index];
        wait_for_port(
            &format!("127.0.0.1:{}", node.port),
            Duration::from_secs(180),
        )
        .with_context(|| format!("the restarted node; see {}", node.log.display()))
    }

    fn java(&self) -> Command {
        let java = match std::env::var_os("JAVA_HOME") {
            Some(home) if Path::new(&home).join("bin/java").exists() => {
                Path::new(&home).join("bin/java")
            }
            _ => PathBuf::from("java"),
        };
        let mut command = Command::new(java);
        command
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.log4j.display()
            ))
            .arg("-cp")
            .arg(&self.classpath);
        command
    }

    fn format(&self, config: &Path) -> Result<()> {
        let output = self
            .java()
            .args(["-Xmx256m", "kafka.tools.StorageTool", "format"])
            .args(["--ignore-formatted", "-t", CLUSTER_ID, "-c"])
            .arg(config)
            .output()
            .context("running Kafka's storage tool")?;
        if !output.status.success() {
            bail!(
                "formatting {} failed ({}): {}{}",
                config.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn spawn(&mut self, index: usize) -> Result<()> {
        let node = &self.nodes[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        let mut command = self.java();
        command
            .args(JVM_OPTS)
            .arg("kafka.Kafka")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the node's log")?)
            .stderr(log)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting cluster node {}", index + 1))?;
        self.nodes[index].process = Some(child);
        Ok(())
    }

    /// The controller port of node `index`, for the notes.
    pub fn describe(&self, index: usize) -> String {
        let node = &self.nodes[index];
        format!(
            "node {} (broker port {}, controller port {})",
            index + 1,
            node.port,
            node.controller
        )
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

fn properties(id: usize, port: u16, controller: u16, voters: &str, data: &Path) -> String {
    format!(
        "# Written by bento-chaos: node {id} of a three-node KRaft cluster on loopback.
process.roles=broker,controller
node.id={id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=4
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
num.network.threads=1
num.io.threads=2
log.retention.hours=1
",
        data = data.display()
    )
}

const LOG4J2: &str = "# Written by bento-chaos: everything to stdout, which goes to the node's log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = STDOUT
";
