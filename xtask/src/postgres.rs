//! PostgreSQL: a private cluster under the dev-env home, run by the machine's own server programs.
//!
//! Nothing is downloaded: the programs come from Debian's `postgresql-15` package (which the
//! prerequisite check installs when running as root on Debian) or from wherever `pg_config
//! --bindir` points. PostgreSQL refuses to run as root, so when xtask runs as root the cluster
//! belongs to an unprivileged system user and every server program is started as that user.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::unistd::{Uid, User};

use crate::config::{Broker, LOOPBACK, Layout, POSTGRES_DATABASE, POSTGRES_USER, Ports};
use crate::download::remove_path;
use crate::process::{self, output_with_timeout, run_checked};
use crate::versions::{POSTGRES_DEBIAN_PACKAGE, POSTGRES_MAJOR};

/// Server settings passed as `-c name=value` on every start, so that they also apply to a
/// cluster initialised by an older xtask (port and socket directory are added per start).
pub const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", LOOPBACK),
    ("max_connections", "200"),
    ("shared_buffers", "128MB"),
    // The crash tests SIGKILL the server (`dev-env kill postgres`) and expect every committed
    // transaction back: these are PostgreSQL's defaults, spelled out so nobody "speeds up" tests
    // by turning them off.
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    // Everything to stderr, which `up` sends to the log file.
    ("logging_collector", "off"),
    ("log_line_prefix", "%m [%p] "),
];

/// Programs xtask needs from the PostgreSQL installation.
const PROGRAMS: [&str; 4] = ["initdb", "postgres", "pg_isready", "psql"];

/// System users that may own the cluster when xtask runs as root: the one Debian's package
/// creates, else one xtask creates itself.
const SYSTEM_USERS: [&str; 2] = ["postgres", "bento"];

/// Longest Unix socket path PostgreSQL can bind (`sizeof(sun_path)` is 108 on Linux and 104 on
/// macOS; the smaller one, less the terminating NUL).
const MAX_SOCKET_PATH: usize = 103;

/// How long `initdb` and the single-user run that creates the database may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long one health query may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The major version in `postgres --version` output, e.g. 15 in
/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
fn major_version(text: &str) -> Option<u32> {
    let version = text
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The major version of the `postgres` program in `dir`, if it runs.
fn major_in(dir: &Path) -> Option<u32> {
    let out = Command::new(dir.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    major_version(&String::from_utf8_lossy(&out.stdout))
}

/// Directories that may hold the server programs, best first: Debian's directory of the pinned
/// major, what `pg_config --bindir` says (Homebrew, PGDG, source builds), then every other
/// Debian major (only to say what was found instead).
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(format!(
        "/usr/lib/postgresql/{POSTGRES_MAJOR}/bin"
    ))];
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ));
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let mut others: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .collect();
        others.sort();
        dirs.extend(others);
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let new = !seen.contains(d);
        seen.push(d.clone());
        new
    });
    dirs
}

/// The directory with PostgreSQL's programs, all of the pinned major version.
///
/// Found once per process (health checks ask every second); a failed search is not remembered,
/// so that a package installed in the meantime is found.
pub fn bin_dir() -> Result<PathBuf, String> {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = FOUND.get() {
        return Ok(dir.clone());
    }
    let mut seen = Vec::new();
    for dir in candidate_dirs() {
        if !PROGRAMS.iter().all(|p| dir.join(p).is_file()) {
            continue;
        }
        match major_in(&dir) {
            Some(POSTGRES_MAJOR) => return Ok(FOUND.get_or_init(|| dir).clone()),
            Some(major) => seen.push(format!("PostgreSQL {major} in {}", dir.display())),
            None => seen.push(format!(
                "an unreadable `postgres --version` in {}",
                dir.display()
            )),
        }
    }
    let mut why = format!(
        "no PostgreSQL {POSTGRES_MAJOR} with {} (looked in /usr/lib/postgresql/{POSTGRES_MAJOR}/bin \
         and `pg_config --bindir`)",
        PROGRAMS.join(", ")
    );
    if !seen.is_empty() {
        why.push_str(&format!("; found {}", seen.join(", ")));
    }
    Err(why)
}

fn program(name: &str) -> Result<PathBuf> {
    let dir = bin_dir().map_err(|why| anyhow!("{why}; install {POSTGRES_DEBIAN_PACKAGE}"))?;
    Ok(dir.join(name))
}

/// The unprivileged user the server programs run as when xtask runs as root (`None`: as
/// whoever runs xtask). Creates a system user when the machine has none of [`SYSTEM_USERS`].
fn server_user() -> Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in SYSTEM_USERS {
        if let Some(user) = User::from_name(name).with_context(|| format!("looking up {name}"))? {
            return Ok(Some(user));
        }
    }
    let name = SYSTEM_USERS[SYSTEM_USERS.len() - 1];
    println!("postgres: creating the system user `{name}` to run PostgreSQL (it refuses root)");
    let mut useradd = Command::new("useradd");
    useradd.args([
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        name,
    ]);
    run_checked(useradd, &format!("useradd --system {name}"))?;
    User::from_name(name)
        .with_context(|| format!("looking up {name}"))?
        .with_context(|| format!("useradd created no user {name}"))
        .map(Some)
}

/// A command running `program` as `user`, or as the current user when `None`.
///
/// `setpriv` drops to the user and then execs the program, so the pid xtask records is the
/// program's own. (`runuser` would stay in between as a root parent, and on SIGTERM it SIGKILLs
/// its child after two seconds: no clean shutdown.)
fn command(program: &Path, user: Option<&User>, cwd: &Path) -> Command {
    let mut cmd = match user {
        None => Command::new(program),
        Some(user) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .arg("--init-groups")
                .arg("--")
                .arg(program)
                .env("HOME", &user.dir)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
            cmd
        }
    };
    // Somewhere the user can enter (xtask's own working directory may be private to root).
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// Gives `path` (recursively) to `user`.
fn chown(path: &Path, user: &User) -> Result<()> {
    let mut cmd = Command::new("chown");
    cmd.arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(path);
    run_checked(cmd, &format!("chown -R {} {}", user.name, path.display()))
}

/// Fails unless `user` can write in `dir`: every directory above it must be searchable by
/// others, which a home directory like `/root` (mode 700) is not.
fn ensure_reachable(dir: &Path, user: &User) -> Result<()> {
    let mut test = command(Path::new("test"), Some(user), Path::new("/"));
    test.arg("-w").arg(dir);
    let out = output_with_timeout(test, Duration::from_secs(10))?;
    if !out.status.success() {
        bail!(
            "postgres: the system user `{}` cannot write to {}: PostgreSQL must not run as root, \
             so every directory above the dev-env home must be searchable by others (chmod o+x), \
             or set BENTO_DEV_ENV_HOME to a directory outside root's home",
            user.name,
            dir.display()
        );
    }
    Ok(())
}

fn failure(what: &str, out: &Output) -> anyhow::Error {
    anyhow!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Makes sure the cluster exists, with the `bento` database, and belongs to whoever runs the
/// server; checks the server programs on the way.
///
/// A new cluster is built in a temporary directory and renamed into place only once complete,
/// so an interrupted first start leaves nothing half-made behind.
pub fn prepare(layout: &Layout) -> Result<()> {
    let dir = layout.broker_dir(Broker::Postgres);
    let data = layout.data_dir(Broker::Postgres);
    let run = layout.postgres_run();
    for d in [&dir, &run] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let user = server_user()?;
    if let Some(user) = &user {
        chown(&run, user)?;
        ensure_reachable(&run, user)?;
    }
    if !data.join("PG_VERSION").exists() {
        initialise(layout, user.as_ref())?;
    }
    let version = fs::read_to_string(data.join("PG_VERSION"))
        .with_context(|| format!("reading {}/PG_VERSION", data.display()))?;
    if version.trim() != POSTGRES_MAJOR.to_string() {
        bail!(
            "postgres: {} holds a PostgreSQL {} cluster, but the dev-env runs {POSTGRES_MAJOR}; \
             `cargo xtask dev-env reset` deletes it",
            data.display(),
            version.trim()
        );
    }
    if let Some(user) = &user {
        // Also after a cluster made by a non-root developer, or under another system user.
        chown(&data, user)?;
    }
    Ok(())
}

/// `initdb`, then `CREATE DATABASE bento` in single-user mode (no server, no port needed).
fn initialise(layout: &Layout, user: Option<&User>) -> Result<()> {
    let dir = layout.broker_dir(Broker::Postgres);
    let data = layout.data_dir(Broker::Postgres);
    let tmp = dir.join(".data-tmp");
    remove_path(&tmp)?;
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if let Some(user) = user {
        chown(&tmp, user)?;
    }
    println!(
        "postgres: creating a PostgreSQL {POSTGRES_MAJOR} cluster in {} (first start only)",
        data.display()
    );
    let mut initdb = command(&program("initdb")?, user, &dir);
    initdb
        .arg("-D")
        .arg(&tmp)
        .arg("--auth=trust")
        .arg(format!("--username={POSTGRES_USER}"))
        .arg("--encoding=UTF8")
        // C collation: the same sort order on every machine, whatever the developer's LANG.
        .arg("--no-locale");
    let out = output_with_timeout(initdb, INIT_TIMEOUT)?;
    if !out.status.success() {
        return Err(failure("initdb", &out));
    }
    let sql = dir.join("create-database.sql");
    fs::write(&sql, format!("CREATE DATABASE {POSTGRES_DATABASE};\n"))
        .with_context(|| format!("writing {}", sql.display()))?;
    let input = fs::File::open(&sql).with_context(|| format!("opening {}", sql.display()))?;
    let mut single = command(&program("postgres")?, user, &dir);
    single
        .arg("--single")
        .arg("-D")
        .arg(&tmp)
        .arg("postgres")
        .stdin(input);
    let out = output_with_timeout(single, INIT_TIMEOUT)?;
    // Single-user mode reports a failed statement but still exits with 0.
    if !out.status.success() || String::from_utf8_lossy(&out.stderr).contains("ERROR:") {
        return Err(failure("creating the database in single-user mode", &out));
    }
    remove_path(&sql)?;
    remove_path(&data)?;
    fs::rename(&tmp, &data)
        .with_context(|| format!("moving {} to {}", tmp.display(), data.display()))
}

/// `unix_socket_directories` for the run directory: the path in double quotes (the setting is
/// a comma-separated list), or empty (TCP only) when the socket path would be too long to bind.
fn socket_directories(run: &Path, port: u16) -> String {
    let dir = run.display().to_string();
    let socket = format!("{dir}/.s.PGSQL.{port}");
    if socket.len() > MAX_SOCKET_PATH {
        return String::new();
    }
    format!("\"{}\"", dir.replace('"', "\"\""))
}

/// Arguments of the server: data directory and every setting.
fn server_args(layout: &Layout, ports: &Ports) -> Vec<String> {
    let mut args = vec![
        "-D".to_string(),
        layout.data_dir(Broker::Postgres).display().to_string(),
    ];
    let port = ports.postgres.to_string();
    let sockets = socket_directories(&layout.postgres_run(), ports.postgres);
    let dynamic = [
        ("port", port.as_str()),
        ("unix_socket_directories", sockets.as_str()),
    ];
    for (name, value) in dynamic.iter().chain(SETTINGS) {
        args.push("-c".to_string());
        args.push(format!("{name}={value}"));
    }
    args
}

/// Starts the server detached (after [`prepare`]).
pub fn spawn(layout: &Layout, ports: &Ports) -> Result<Child> {
    if socket_directories(&layout.postgres_run(), ports.postgres).is_empty() {
        println!(
            "postgres: note: {} is too long a path for a Unix socket; TCP only",
            layout.postgres_run().display()
        );
    }
    let user = server_user()?;
    let dir = layout.broker_dir(Broker::Postgres);
    let mut cmd = command(&program("postgres")?, user.as_ref(), &dir);
    cmd.args(server_args(layout, ports));
    process::spawn_detached(cmd, &layout.log_file(Broker::Postgres))
}

/// Runs `sql` with `psql` against `url`; returns its unaligned, tuples-only output.
pub fn query(url: &str, sql: &str) -> Result<String> {
    let mut psql = Command::new(program("psql")?);
    // No ~/.psqlrc; bare values; stop at the first error.
    psql.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null());
    let out = output_with_timeout(psql, PROBE_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "psql {url} -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `Ok` when the server accepts connections (`pg_isready`) and answers a query in the `bento`
/// database; otherwise why not.
pub fn health(ports: &Ports) -> Result<(), String> {
    let pg_isready = program("pg_isready").map_err(|e| format!("{e:#}"))?;
    let mut ready = Command::new(pg_isready);
    ready
        .args(["-h", LOOPBACK, "-p", &ports.postgres.to_string()])
        .args(["-U", POSTGRES_USER, "-d", POSTGRES_DATABASE, "-t", "3"])
        .stdin(Stdio::null());
    let out = output_with_timeout(ready, PROBE_TIMEOUT).map_err(|e| format!("{e:#}"))?;
    match out.status.code() {
        Some(0) => {}
        Some(1) => return Err("rejecting connections (starting up or recovering)".to_string()),
        Some(2) => return Err("not listening yet".to_string()),
        _ => {
            return Err(format!(
                "pg_isready: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
    }
    match query(&ports.postgres_url(), "select 1") {
        Ok(answer) if answer == "1" => Ok(()),
        Ok(answer) => Err(format!("`select 1` answered {answer:?}")),
        Err(err) => Err(format!("{err:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_version_is_read_from_postgres_version() {
        let debian = "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n";
        assert_eq!(major_version(debian), Some(15));
        assert_eq!(major_version("postgres (PostgreSQL) 16beta1"), Some(16));
        assert_eq!(major_version("postgres (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(major_version("command not found"), None);
    }

    #[test]
    fn socket_directory_is_quoted_or_dropped_when_too_long() {
        let run = Path::new("/work/main/target/dev-env/postgres/run");
        assert_eq!(
            socket_directories(run, 5433),
            "\"/work/main/target/dev-env/postgres/run\""
        );
        assert_eq!(
            socket_directories(Path::new("/a \"b\", c"), 5433),
            "\"/a \"\"b\"\", c\""
        );
        let deep = PathBuf::from(format!("/{}", "d".repeat(100)));
        assert_eq!(socket_directories(&deep, 5433), "");
    }

    #[test]
    fn server_listens_on_loopback_with_durable_settings() {
        let layout = Layout {
            home: PathBuf::from("/h"),
        };
        let ports = Ports {
            postgres: 15433,
            ..Ports::default()
        };
        let args = server_args(&layout, &ports);
        assert_eq!(args[..2], ["-D", "/h/postgres/data"]);
        for setting in [
            "port=15433",
            "unix_socket_directories=\"/h/postgres/run\"",
            "listen_addresses=127.0.0.1",
            "fsync=on",
            "max_connections=200",
            "shared_buffers=128MB",
        ] {
            let at = args.iter().position(|a| a == setting);
            assert!(
                at.is_some_and(|i| args[i - 1] == "-c"),
                "{setting} missing in {args:?}"
            );
        }
    }
}
