//! `bento-chaos suite`: runs each scenario, injects its fault, and reports.

mod faults;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bento_runtime::{Bento, Config};
use clap::ValueEnum;

use crate::cluster::{self, KafkaCluster};
use crate::fixtures::{self, ConsumerChild, PulsarProxy};
use crate::publishing::Publishing;
use crate::report::{self, Consumed, Report};
use crate::toxiproxy::{self, Toxiproxy};

/// Which backends to run the scenarios on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backends {
    /// Apache Pulsar.
    Pulsar,
    /// Apache Kafka.
    Kafka,
    /// Both.
    All,
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// toxiproxy adds 100 ms (±50 ms) each way for a while.
    Latency,
    /// toxiproxy limits each direction to 64 KiB/s for a while.
    Bandwidth,
    /// toxiproxy resets every connection 500 ms after it opens, for a while.
    Reset,
    /// toxiproxy refuses and closes every connection: the broker unreachable.
    Outage,
    /// The broker SIGKILLed mid-stream and started again.
    BrokerKill,
    /// The consumer process SIGKILLed at random points and started again.
    ConsumerKill,
    /// Kafka only: one broker of a three-broker cluster (replication factor 3, two in sync
    /// required) SIGKILLed mid-stream, kept down, and started again.
    ClusterBrokerKill,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::Latency,
        Scenario::Bandwidth,
        Scenario::Reset,
        Scenario::Outage,
        Scenario::BrokerKill,
        Scenario::ConsumerKill,
        Scenario::ClusterBrokerKill,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Latency => "latency",
            Scenario::Bandwidth => "bandwidth",
            Scenario::Reset => "reset",
            Scenario::Outage => "outage",
            Scenario::BrokerKill => "broker-kill",
            Scenario::ConsumerKill => "consumer-kill",
            Scenario::ClusterBrokerKill => "cluster-broker-kill",
        }
    }

    fn through_proxy(self) -> bool {
        !matches!(
            self,
            Scenario::BrokerKill | Scenario::ConsumerKill | Scenario::ClusterBrokerKill
        )
    }

    /// Pulsar's dev-env runs one standalone broker: no cluster to lose a member of.
    fn runs_on(self, backend: &str) -> bool {
        self != Scenario::ClusterBrokerKill || backend == "kafka"
    }
}

/// `bento-chaos suite ...`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which backends.
    #[arg(value_enum, default_value_t = Backends::All)]
    pub backends: Backends,
    /// Events per scenario.
    #[arg(long, env = "BENTO_CHAOS_EVENTS", default_value_t = 100_000)]
    pub events: u64,
    /// Concurrent publishers.
    #[arg(long, env = "BENTO_CHAOS_PUBLISHERS", default_value_t = 8)]
    pub publishers: u64,
    /// How long latency, bandwidth and reset faults last, in seconds.
    #[arg(long, env = "BENTO_CHAOS_FAULT_SECS", default_value_t = 20)]
    pub fault_secs: u64,
    /// How long the broker is unreachable in the outage scenario, in seconds.
    #[arg(long, env = "BENTO_CHAOS_OUTAGE_SECS", default_value_t = 30)]
    pub outage_secs: u64,
    /// How many times the consumer is SIGKILLed.
    #[arg(long, env = "BENTO_CHAOS_CONSUMER_KILLS", default_value_t = 5)]
    pub consumer_kills: u64,
    /// The scenarios to run (comma-separated; default: all).
    #[arg(long, env = "BENTO_CHAOS_SCENARIOS", value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// The toxiproxy server binary (`cargo xtask chaos` builds it).
    #[arg(long, env = "BENTO_CHAOS_TOXIPROXY")]
    pub toxiproxy: PathBuf,
    /// Where the files of the run go (default: a new directory under the system's temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the report table (Markdown) to this file.
    #[arg(long, env = "BENTO_CHAOS_REPORT")]
    pub report: Option<PathBuf>,
    /// The size label the report gives (`full` or `quick`).
    #[arg(long, env = "BENTO_CHAOS_SIZE", default_value = "full")]
    pub size: String,
}

/// Where the brokers are, from the variables `cargo xtask` exports.
struct Brokers {
    pulsar_url: String,
    pulsar_admin: String,
    kafka: String,
    /// The Kafka broker's chaos listener, which advertises `kafka_chaos_proxy`.
    kafka_chaos: String,
    kafka_chaos_proxy: String,
    dev_env: PathBuf,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

impl Brokers {
    fn from_env() -> Self {
        Self {
            pulsar_url: var("BENTO_TEST_PULSAR_URL", "pulsar://127.0.0.1:6650"),
            pulsar_admin: var("BENTO_TEST_PULSAR_ADMIN_URL", "http://127.0.0.1:8080"),
            kafka: var("BENTO_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            kafka_chaos: var("BENTO_TEST_KAFKA_CHAOS_LISTENER", "127.0.0.1:9094"),
            kafka_chaos_proxy: var("BENTO_TEST_KAFKA_CHAOS_ADVERTISED", "127.0.0.1:9095"),
            dev_env: PathBuf::from(var("BENTO_DEV_ENV_HOME", "target/dev-env")),
        }
    }
}

/// What one run of the suite shares between scenarios.
struct Suite {
    args: Args,
    brokers: Brokers,
    work: PathBuf,
    toxiproxy: Toxiproxy,
    /// Started for the first Pulsar scenario through the proxy.
    pulsar_proxy: Option<(PulsarProxy, u16)>,
    /// Started for the cluster scenario.
    kafka_cluster: Option<KafkaCluster>,
    run: String,
}

/// Runs the scenarios, prints the table, fails if an invariant did not hold.
pub async fn run(args: Args) -> Result<()> {
    let run = format!("{:08x}", fastrand::u32(..));
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("bento-chaos-{run}")),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    println!("bento-chaos: run {run}, files in {}", work.display());
    let toxiproxy = Toxiproxy::start(&args.toxiproxy, &work.join("toxiproxy.log"))?;
    let backends: Vec<&str> = match args.backends {
        Backends::Pulsar => vec!["pulsar"],
        Backends::Kafka => vec!["kafka"],
        Backends::All => vec!["pulsar", "kafka"],
    };
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let mut suite = Suite {
        args,
        brokers: Brokers::from_env(),
        work,
        toxiproxy,
        pulsar_proxy: None,
        kafka_cluster: None,
        run,
    };
    let mut reports = Vec::new();
    for backend in backends {
        for &scenario in scenarios.iter().filter(|s| s.runs_on(backend)) {
            println!("\n==> {backend}: {}", scenario.name());
            let report = match suite.scenario(backend, scenario).await {
                Ok(report) => report,
                Err(error) => {
                    let mut report = Report::new(&[], &Consumed::default());
                    report
                        .failures
                        .push(format!("the scenario failed: {error:#}"));
                    report
                }
            };
            let report = Report {
                backend: backend.to_string(),
                scenario: scenario.name().to_string(),
                events: suite.args.events,
                ..report
            };
            for note in &report.notes {
                println!("    {note}");
            }
            for failure in &report.failures {
                println!("    FAILED: {failure}");
            }
            reports.push(report);
        }
    }
    let table = report::table(&reports);
    println!("\n{table}");
    if let Some(path) = &suite.args.report {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = reports.iter().filter(|r| !r.failures.is_empty()).count();
    if failed > 0 {
        bail!("{failed} of {} scenario(s) failed", reports.len());
    }
    println!("{} passed, 0 failed", reports.len());
    Ok(())
}

impl Suite {
    /// The address clients of `backend` use in `scenario`, setting up the proxy if it needs one.
    fn endpoint(&mut self, backend: &str, scenario: Scenario) -> Result<String> {
        if scenario == Scenario::ClusterBrokerKill {
            if self.kafka_cluster.is_none() {
                println!("    starting a three-broker Kafka cluster");
                self.kafka_cluster = Some(KafkaCluster::start(&self.brokers.dev_env, &self.work)?);
            }
            return Ok(self
                .kafka_cluster
                .as_ref()
                .map(KafkaCluster::bootstrap)
                .unwrap_or_default());
        }
        if !scenario.through_proxy() {
            return Ok(match backend {
                "pulsar" => self.brokers.pulsar_url.clone(),
                _ => self.brokers.kafka.clone(),
            });
        }
        if backend == "pulsar" {
            let port = match &self.pulsar_proxy {
                Some((_, port)) => *port,
                None => {
                    let (port, web) = (toxiproxy::free_port()?, toxiproxy::free_port()?);
                    println!("    starting a Pulsar proxy on port {port}");
                    let proxy = PulsarProxy::start(
                        &self.brokers.dev_env,
                        &self.work,
                        port,
                        web,
                        &self.brokers.pulsar_url,
                        &self.brokers.pulsar_admin,
                    )?;
                    self.pulsar_proxy = Some((proxy, port));
                    port
                }
            };
            let listen = format!("127.0.0.1:{}", toxiproxy::free_port()?);
            self.toxiproxy
                .proxy("pulsar", &listen, &format!("127.0.0.1:{port}"))?;
            Ok(format!("pulsar://{listen}"))
        } else {
            // The broker advertises the proxy's address on its chaos listener, so the port is
            // fixed by the broker's configuration.
            fixtures::wait_for_port(&self.brokers.kafka_chaos, Duration::from_secs(1)).context(
                "the Kafka broker has no chaos listener: restart it with `cargo xtask chaos`",
            )?;
            self.toxiproxy.proxy(
                "kafka",
                &self.brokers.kafka_chaos_proxy,
                &self.brokers.kafka_chaos,
            )?;
            Ok(self.brokers.kafka_chaos_proxy.clone())
        }
    }

    fn write_config(
        &self,
        backend: &str,
        endpoint: &str,
        name: &str,
        replicas: u32,
    ) -> Result<PathBuf> {
        let path = self.work.join(format!("{name}.toml"));
        let text = match backend {
            "pulsar" => format!(
                r#"[messaging]
backend = "pulsar"

[messaging.pulsar]
service_url = "{endpoint}"
admin_url = "{admin}"
operation_timeout_ms = 10000
"#,
                admin = self.brokers.pulsar_admin
            ),
            _ => format!(
                r#"[messaging]
backend = "kafka"

[messaging.kafka]
bootstrap_servers = "{endpoint}"
replication_factor = {replicas}
# A consumer killed with -9 stays in its group until its session times out.
subscribe_timeout_ms = 120000

[messaging.kafka.consumer]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"#
            ),
        };
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    async fn scenario(&mut self, backend: &str, scenario: Scenario) -> Result<Report> {
        let exclusive = scenario == Scenario::BrokerKill;
        let lock = tokio::task::spawn_blocking({
            let backend = backend.to_string();
            move || fixtures::lock_broker(&backend, exclusive)
        })
        .await
        .context("taking the broker lock")??;
        let endpoint = self.endpoint(backend, scenario)?;
        let name = format!("chaos-{}-{backend}-{}", scenario.name(), self.run);
        let replicas = if scenario == Scenario::ClusterBrokerKill {
            cluster::NODES as u32
        } else {
            1
        };
        let config = self.write_config(backend, &endpoint, &name, replicas)?;
        let mut run = Running::new(&self.work, &name, &config);
        run.consumer = Some(
            run.start_consumer()
                .await
                .context("starting the consumer")?,
        );

        let bento = Bento::from_config(
            Config::from_figment(Config::figment(&config)).context("reading the configuration")?,
        )
        .await
        .context("starting the publishers' Bento")?;
        let publishing = Publishing::start(&bento, &name, self.args.events, self.args.publishers);
        let started = Instant::now();
        self.drive(backend, scenario, &mut run, &publishing).await?;
        let seconds = started.elapsed().as_secs();
        let consumer_peak = run.stop_consumer().await?;
        bento
            .shutdown()
            .await
            .context("stopping the publishers' Bento")?;
        drop(lock);
        if scenario.through_proxy() {
            let _ = self.toxiproxy.remove(backend);
        }
        let mut report = self.report(scenario, run, &publishing)?;
        report.consumer_peak_mib = consumer_peak.div_ceil(1024);
        report.seconds = seconds;
        Ok(report)
    }

    /// Watches a scenario until everything published was consumed (or the drain deadline
    /// passed): injects the fault once a fifth of the events are acknowledged and, in the
    /// consumer-kill scenario, kills the consumer at random points.
    async fn drive(
        &mut self,
        backend: &str,
        scenario: Scenario,
        run: &mut Running,
        publishing: &Publishing,
    ) -> Result<()> {
        let fault_from = self.args.events / 5;
        let mut fault_done = false;
        let planned = match scenario {
            Scenario::ConsumerKill => self.args.consumer_kills,
            _ => 0,
        };
        let mut kills: Vec<u64> = (0..planned)
            .map(|_| fastrand::u64(self.args.events / 10..self.args.events * 9 / 10))
            .collect();
        kills.sort_unstable();
        let mut kills = kills.into_iter().peekable();
        let drain_deadline = Duration::from_secs(300);
        let mut published_at: Option<Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Some(c) = run.consumer.as_mut() {
                c.check()?;
            }
            let acked = publishing.acked.load(Ordering::Relaxed);
            if !fault_done && acked >= fault_from {
                fault_done = true;
                let note = self
                    .inject(backend, scenario, publishing)
                    .await
                    .with_context(|| format!("injecting {}", scenario.name()))?;
                run.notes.push(note);
            }
            // Kill points are planned for the consumer-kill scenario only.
            if kills.peek().is_some() {
                // While publishing, at the kill points; after it, the points not reached yet
                // are made whenever the consumer has gone quiet, so that every run has all of
                // them and none hits a consumer still handling what the last kill replayed.
                if published_at.is_none() {
                    run.kill_when_due(&mut kills).await?;
                } else {
                    run.kill_idle(&mut kills).await?;
                }
            }
            if publishing.failed.load(Ordering::Relaxed) {
                bail!("a publisher gave up (an event kept failing for 5 minutes)");
            }
            if publishing.done() && published_at.is_none() {
                published_at = Some(Instant::now());
                if kills.peek().is_some() {
                    run.notes.push(format!(
                        "publishing ended before {} of the kills (at {} handled lines); the \
                         remaining kills happen whenever the consumer goes quiet",
                        kills.len(),
                        run.lines_seen
                    ));
                }
            }
            if let Some(at) = published_at {
                let consumed =
                    Consumed::parse(&std::fs::read_to_string(&run.out).unwrap_or_default());
                // Until the last kill is made: what it redelivers is read too.
                if consumed.complete(&publishing.acked_events()) && kills.peek().is_none() {
                    return Ok(());
                }
                if at.elapsed() > drain_deadline {
                    run.failures.push(format!(
                        "not everything was consumed within {drain_deadline:?} of the last publish"
                    ));
                    return Ok(());
                }
            }
        }
    }

    /// The scenario's report: what was acknowledged beside what was consumed, and whether the
    /// scenario's own promises held.
    fn report(&self, scenario: Scenario, run: Running, publishing: &Publishing) -> Result<Report> {
        let acked = publishing.acked_events();
        let consumed = Consumed::parse(
            &std::fs::read_to_string(&run.out)
                .with_context(|| format!("reading {}", run.out.display()))?,
        );
        let mut report = Report::new(&acked, &consumed);
        report.injected = self.injected(scenario);
        if scenario == Scenario::ConsumerKill {
            report.injected = format!(
                "consumer process SIGKILLed {} of {} planned times at random points, restarted",
                run.kills, self.args.consumer_kills
            );
            if run.kills == 0 && self.args.consumer_kills > 0 {
                report
                    .failures
                    .push("the consumer was never killed: nothing was tested".to_string());
            }
        }
        report.publish_retries = publishing.retries.load(Ordering::Relaxed);
        report.publisher_peak_mib = fixtures::own_peak_rss_kib().div_ceil(1024);
        report.notes.extend(run.notes);
        report.notes.push(format!(
            "{} publish attempt(s) failed and were retried",
            report.publish_retries
        ));
        report.failures.extend(run.failures);
        if report.acked != self.args.events {
            report.failures.push(format!(
                "{} of {} publishes acknowledged",
                report.acked, self.args.events
            ));
        }
        if matches!(scenario, Scenario::BrokerKill | Scenario::ClusterBrokerKill) {
            let after = publishing.acked_after_restart.load(Ordering::Relaxed);
            let since = match scenario {
                Scenario::BrokerKill => "restart",
                _ => "kill",
            };
            report
                .notes
                .push(format!("{after} publishes acknowledged after the {since}"));
            if after == 0 {
                report.failures.push(format!(
                    "no publish was acknowledged after the broker {since}"
                ));
            }
        }
        Ok(report)
    }
}

/// How long a consumer must have handled nothing before it is killed idle: twice the Kafka
/// commit interval the suite's consumers use by default, so that what they handled is committed.
const IDLE_FOR: Duration = Duration::from_secs(1);

fn mark(path: &Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = file.write_all(line.as_bytes());
    }
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
        .unwrap_or(0)
}

/// One scenario's consumer side while it runs: the child process, its output file, and what
/// was noted or went wrong.
struct Running {
    consumer_args: Vec<String>,
    log: PathBuf,
    /// The consumer's output: one line per handled event, and a `K` line per kill.
    out: PathBuf,
    consumer: Option<ConsumerChild>,
    /// Handled lines of `out` (the kill markers not counted) when last counted.
    lines_seen: u64,
    /// Handled lines of `out` when the running consumer was started.
    lines_at_start: u64,
    /// Since when `lines_seen` has not changed (or the running consumer was started).
    quiet_since: Instant,
    /// Consumer kills made.
    kills: u64,
    notes: Vec<String>,
    failures: Vec<String>,
}

impl Running {
    fn new(work: &Path, name: &str, config: &Path) -> Self {
        let out = work.join(format!("{name}.handled"));
        let consumer_args = vec![
            "--config".to_string(),
            config.display().to_string(),
            "--topic".to_string(),
            name.to_string(),
            "--subscription".to_string(),
            format!("{name}-sub"),
            "--out".to_string(),
            out.display().to_string(),
        ];
        Self {
            consumer_args,
            log: work.join(format!("{name}.consumer.log")),
            out,
            consumer: None,
            lines_seen: 0,
            lines_at_start: 0,
            quiet_since: Instant::now(),
            kills: 0,
            notes: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Lines of `out` written by consumers: every line but the kill markers.
    fn handled_lines(&self) -> u64 {
        count_lines(&self.out).saturating_sub(self.kills)
    }

    /// Starts a consumer child and waits until it is subscribed.
    async fn start_consumer(&self) -> Result<ConsumerChild> {
        let (args, log) = (self.consumer_args.clone(), self.log.clone());
        tokio::task::spawn_blocking(move || ConsumerChild::start(&args, &log)).await?
    }

    /// SIGKILLs and restarts the consumer if the next kill point is reached, marking the kill
    /// in the output file.
    ///
    /// One kill a call, and only once the running consumer has handled something: killing a
    /// consumer that has not yet caught up tests its start-up, not its recovery, and made the
    /// duplicates of a run swing by a hundredfold with how the kill points happened to bunch.
    async fn kill_when_due(
        &mut self,
        kills: &mut std::iter::Peekable<std::vec::IntoIter<u64>>,
    ) -> Result<()> {
        self.lines_seen = self.handled_lines();
        self.quiet_since = Instant::now();
        let lines_seen = self.lines_seen;
        let due = kills.peek().is_some_and(|&at| lines_seen >= at);
        if !due || lines_seen <= self.lines_at_start {
            return Ok(());
        }
        kills.next();
        self.kill_and_restart(false).await
    }

    /// SIGKILLs and restarts the consumer for the next kill point once publishing is over and
    /// the consumer has handled nothing for [`IDLE_FOR`]: a consumer restarted after a kill
    /// first handles again what was not committed, and killing it then would only replay that
    /// once more.
    async fn kill_idle(
        &mut self,
        kills: &mut std::iter::Peekable<std::vec::IntoIter<u64>>,
    ) -> Result<()> {
        let lines = self.handled_lines();
        if lines != self.lines_seen {
            self.lines_seen = lines;
            self.quiet_since = Instant::now();
            return Ok(());
        }
        if self.quiet_since.elapsed() >= IDLE_FOR && kills.next().is_some() {
            self.kill_and_restart(true).await?;
        }
        Ok(())
    }

    /// SIGKILLs the consumer, marks the kill in the output file and starts a new consumer.
    async fn kill_and_restart(&mut self, idle: bool) -> Result<()> {
        let lines_seen = self.lines_seen;
        let Some(mut c) = self.consumer.take() else {
            return Ok(());
        };
        c.sigkill();
        // A marker in the file, so that a reader sees which generation of the consumer handled
        // what.
        mark(&self.out, &format!("K {lines_seen}\n"));
        self.kills += 1;
        let peak = c.peak_kib;
        let mut next = self
            .start_consumer()
            .await
            .context("restarting the consumer")?;
        next.peak_kib = peak;
        self.consumer = Some(next);
        self.lines_at_start = self.handled_lines();
        self.quiet_since = Instant::now();
        let idle = if idle { " (idle)" } else { "" };
        self.notes.push(format!(
            "consumer SIGKILLed after {lines_seen} handled lines{idle}, restarted"
        ));
        Ok(())
    }

    /// After a moment for late duplicates, stops the consumer cleanly; its peak resident set
    /// in KiB.
    async fn stop_consumer(&mut self) -> Result<u64> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(c) = self.consumer.take() else {
            return Ok(0);
        };
        let peak = c.peak_kib;
        if let Err(error) = tokio::task::spawn_blocking(move || c.stop(Duration::from_secs(60)))
            .await
            .context("stopping the consumer")?
        {
            self.failures.push(format!("{error:#}"));
        }
        Ok(peak)
    }
}
