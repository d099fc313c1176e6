//! Kill -9 drills of the outbox and the durable inbox, on a real PostgreSQL server or SQLite
//! files and the real Pulsar or Kafka broker.
//!
//! The `orders` example runs as two processes: `orders ship` (the shipping service, behind the
//! durable inbox) and `orders place N` (the orders service: N commands, each committing one
//! order and its event, every tenth refused and rolled back). The drill SIGKILLs the orders
//! service at random points and starts it again each time, SIGKILLs the shipping service twice,
//! and kills the broker once under the running services, keeping it down for a while. At the end every committed order has
//! exactly one shipment, and no refused order has any.
//!
//! The broker kill holds the broker's test lock exclusively, and the drills run one at a time.
//! `BENTO_DRILL_COMMANDS` (default 10,000), `BENTO_DRILL_KILLS` (default 10),
//! `BENTO_DRILL_BROKER_DOWN_SECS` (default 30) and `BENTO_DRILL_BROKER_KILL` (`all`, the
//! default, or `postgres` / `sqlite` for the drills of that database only) change the drill;
//! `BENTO_DRILL_SEED` replays the kill schedule of the seed a drill printed.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bento_runtime::sqlx::sqlx::{self, Connection as _};

/// One drill at a time: they share brokers, and each kills one.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The dev-env xtask (`$BENTO_XTASK_BIN`, set by `cargo xtask test`, else `target/debug/xtask`).
fn xtask(args: &[&str]) {
    let bin = std::env::var_os("BENTO_XTASK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            bento_testkit::broker_lock::path("kafka")
                .with_file_name("debug")
                .join("xtask")
        });
    let status = Command::new(&bin)
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "running `{} {}` ({e}): build xtask or run `cargo xtask test`",
                bin.display(),
                args.join(" ")
            )
        });
    assert!(
        status.success(),
        "`xtask {}` failed: {status}",
        args.join(" ")
    );
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Database {
    Postgres,
    Sqlite,
}

/// The two services' databases, fresh for one drill.
struct Databases {
    orders: String,
    shipping: String,
    _dir: tempfile::TempDir,
}

async fn databases(kind: Database, run: &str) -> Databases {
    let dir = tempfile::tempdir().expect("a temporary directory");
    match kind {
        Database::Sqlite => Databases {
            orders: format!("sqlite://{}", dir.path().join("orders.db").display()),
            shipping: format!("sqlite://{}", dir.path().join("shipping.db").display()),
            _dir: dir,
        },
        Database::Postgres => {
            let base = std::env::var("BENTO_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://bento@127.0.0.1:5433/bento".to_string());
            let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
                panic!("PostgreSQL at {base} does not answer ({e}): run `cargo xtask dev-env up postgres`")
            });
            let (prefix, _) = base.rsplit_once('/').expect("a database in the URL");
            let url = |service: &str| {
                let name = format!("{service}_{run}");
                (name.clone(), format!("{prefix}/{name}"))
            };
            let (orders_db, orders) = url("orders");
            let (shipping_db, shipping) = url("shipping");
            for name in [orders_db, shipping_db] {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("creating a drill database");
            }
            Databases {
                orders,
                shipping,
                _dir: dir,
            }
        }
    }
}

/// A configuration file of its own: fresh topics (a Pulsar namespace, a Kafka topic), the two
/// databases, and a short relay lease so that a restarted orders service takes over quickly.
fn write_config(dir: &Path, run: &str, dbs: &Databases) -> PathBuf {
    let path = dir.join(format!("drill-{run}.toml"));
    let text = format!(
        r#"[messaging.pulsar]
namespace = "drill-{run}"
create_namespaces = true

[messaging.kafka]
# A consumer killed with -9 stays in its group until its session times out; the restarted
# one joins after that.
subscribe_timeout_ms = 120000

[messaging.kafka.consumer]
"session.timeout.ms" = "10000"

[messaging.kafka.topics]
"orders.order-placed" = "orders-drill-{run}"

[outbox]
database_url = "{orders}"
lease_ttl_ms = 2000
poll_interval_ms = 200

[inbox]
database_url = "{shipping}"
"#,
        orders = dbs.orders,
        shipping = dbs.shipping
    );
    std::fs::write(&path, text).expect("writing the drill's configuration");
    path
}

struct Service {
    command: Command,
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// A drill that fails leaves no service behind to disturb the next one.
impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

impl Service {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the orders example");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        // The service's log, prefixed with its mode and process: the threads inherit the
        // test's output capture, so a failed drill shows what each service saw.
        let name = format!(
            "{}:{}",
            command
                .get_args()
                .next()
                .and_then(|mode| mode.to_str())
                .unwrap_or("orders"),
            child.id()
        );
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
            }
        });
        Self {
            command,
            child,
            lines,
        }
    }

    fn wait_for_line(&mut self, what: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the service ended before printing `{what}`: {:?}",
                        self.child.try_wait()
                    )
                }
            }
        }
        panic!("the service did not print `{what}` within {patience:?}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Self::start(std::mem::replace(&mut self.command, Command::new("true")));
    }

    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn orders_command(backend: &str, config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(common::example("orders"));
    command
        .args(args)
        .env("BENTO_CONFIG", config)
        .env("BENTO_MESSAGING__BACKEND", backend)
        // Logs for a failed drill: Bento's own at info, the clients' and drivers' warnings.
        .env("BENTO_OBSERVABILITY__INSTALL_SUBSCRIBER", "true")
        .env(
            "BENTO_OBSERVABILITY__LOG_FILTER",
            "warn,bento_pulsar=info,bento_kafka=info,bento_sqlx=info,bento_application=info",
        );
    common::point_at_test_brokers(&mut command);
    command
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url)
        .await
        .expect("connects to a drill database")
}

async fn committed(orders: &sqlx::AnyPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT number FROM orders ORDER BY number")
        .fetch_all(orders)
        .await
        .expect("reads the orders")
}

async fn shipped(shipping: &sqlx::AnyPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT order_id, COUNT(*) FROM shipments GROUP BY order_id")
        .fetch_all(shipping)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// What a drill does: how many commands, how many kills, whether and how long the broker goes
/// down.
struct Plan {
    commands: u64,
    kills: u64,
    broker_down: Duration,
    kill_broker: bool,
}

impl Plan {
    /// The plan of the `database` drills, from the `BENTO_DRILL_*` variables.
    fn from_env(database: Database) -> Self {
        // A broker restart takes most of a drill's time; the quick drills kill it only in the
        // PostgreSQL ones (`BENTO_DRILL_BROKER_KILL=postgres`), the full ones in all.
        let kill_broker = std::env::var("BENTO_DRILL_BROKER_KILL").map_or(true, |only| {
            only == "all" || only.eq_ignore_ascii_case(&format!("{database:?}"))
        });
        Self {
            commands: setting("BENTO_DRILL_COMMANDS", 10_000),
            kills: setting("BENTO_DRILL_KILLS", 10),
            broker_down: Duration::from_secs(setting("BENTO_DRILL_BROKER_DOWN_SECS", 30)),
            kill_broker,
        }
    }
}

async fn drill(backend: &str, database: Database) {
    let _one = ONE_AT_A_TIME.lock().await;
    bento_testkit::broker_lock::own(backend);
    let plan = Plan::from_env(database);
    let commands = plan.commands;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    // Printed below, and taken from `BENTO_DRILL_SEED` when set: a failed drill's kill
    // schedule can be run again.
    let seed = setting("BENTO_DRILL_SEED", fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    eprintln!(
        "drill {run} on {backend} with {database:?}: {commands} commands, {} kills, seed {seed}",
        plan.kills
    );

    let dbs = databases(database, &run).await;
    let config = write_config(dbs._dir.path(), &run, &dbs);
    let mut shipping = Service::start(orders_command(backend, &config, &["ship"]));
    shipping.wait_for_line("shipping: ready", Duration::from_secs(120));
    let count = commands.to_string();
    let mut placing = Service::start(orders_command(backend, &config, &["place", &count]));

    let started = Instant::now();
    kill_and_restart(
        backend,
        &plan,
        &mut rng,
        &mut placing,
        &mut shipping,
        started,
    )
    .await;
    placing.wait_for_line("the relay published everything", Duration::from_secs(900));
    let _ = placing.child.wait();
    eprintln!(
        "[{:>5.1}s] all {commands} commands done and relayed",
        started.elapsed().as_secs_f64()
    );

    let orders = pool(&dbs.orders).await;
    let shipping_db = pool(&dbs.shipping).await;
    let committed = committed(&orders).await;
    let expected: Vec<i64> = (1..=i64::try_from(commands).expect("fits"))
        .filter(|n| n % 10 != 0)
        .collect();
    assert_eq!(
        committed, expected,
        "every accepted command committed once, no refused one"
    );

    let shipments = settled_shipments(&shipping_db, committed.len()).await;
    shipping.terminate();
    eprintln!(
        "[{:>5.1}s] {} orders shipped",
        started.elapsed().as_secs_f64(),
        shipments.len()
    );
    assert_shipped_once(&committed, &shipments);
}

/// The drill's disruptions, at random intervals: `plan.kills` times the orders service is
/// SIGKILLed and started again (and every fourth time the shipping service too), except at
/// the middle one, where the broker is killed and kept down for `plan.broker_down` instead
/// (when the plan kills it).
async fn kill_and_restart(
    backend: &str,
    plan: &Plan,
    rng: &mut fastrand::Rng,
    placing: &mut Service,
    shipping: &mut Service,
    started: Instant,
) {
    let (kills, broker_down) = (plan.kills, plan.broker_down);
    for kill in 1..=kills {
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1_500))).await;
        if kill == kills / 2 && plan.kill_broker {
            // The broker dies under a running orders service: commits go on, the relay backs
            // off, and the backlog drains once the broker is back.
            xtask(&["dev-env", "kill", backend]);
            eprintln!(
                "[{:>5.1}s] {backend} killed; down for {broker_down:?}",
                started.elapsed().as_secs_f64()
            );
            tokio::time::sleep(broker_down).await;
            xtask(&["dev-env", "up", backend]);
            eprintln!(
                "[{:>5.1}s] {backend} is back",
                started.elapsed().as_secs_f64()
            );
            continue;
        }
        placing.kill();
        eprintln!(
            "[{:>5.1}s] kill -9 of the orders service ({kill}/{kills})",
            started.elapsed().as_secs_f64()
        );
        if kill % 4 == 3 {
            shipping.restart();
            eprintln!(
                "[{:>5.1}s] kill -9 of the shipping service",
                started.elapsed().as_secs_f64()
            );
            shipping.wait_for_line("shipping: ready", Duration::from_secs(180));
        }
        placing.restart();
    }
}

/// The shipments once there are `committed` of them (or after five minutes), read again a
/// few seconds later so that anything still in flight has landed.
async fn settled_shipments(shipping: &sqlx::AnyPool, committed: usize) -> BTreeMap<String, i64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut shipments = shipped(shipping).await;
    while shipments.len() < committed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        shipments = shipped(shipping).await;
    }
    // Anything still in flight lands now; it must not add a second shipment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    shipped(shipping).await
}

/// Every committed order shipped exactly once, and nothing else shipped.
fn assert_shipped_once(committed: &[i64], shipments: &BTreeMap<String, i64>) {
    let missing: Vec<&i64> = committed
        .iter()
        .filter(|n| !shipments.contains_key(&format!("order-{n:06}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} committed orders never shipped, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let twice: Vec<(&String, &i64)> = shipments.iter().filter(|(_, c)| **c != 1).collect();
    assert!(
        twice.is_empty(),
        "orders shipped more than once: {:?}",
        &twice[..twice.len().min(10)]
    );
    assert_eq!(
        shipments.len(),
        committed.len(),
        "nothing shipped that was not committed"
    );
}

#[cfg(feature = "pulsar")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_on_pulsar_with_postgres() {
    drill("pulsar", Database::Postgres).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_on_kafka_with_postgres() {
    drill("kafka", Database::Postgres).await;
}

#[cfg(feature = "pulsar")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_on_pulsar_with_sqlite() {
    drill("pulsar", Database::Sqlite).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_on_kafka_with_sqlite() {
    drill("kafka", Database::Sqlite).await;
}
