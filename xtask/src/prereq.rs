//! Checks for the tools the environment needs, installing Debian packages when running as root.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::config;
use crate::process::{output_with_timeout, run_checked};
use crate::versions::{MIN_JAVA_MAJOR, POSTGRES_DEBIAN_PACKAGE, POSTGRES_MAJOR};

/// A tool that must be on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Java 17 or newer, to run both brokers.
    Java,
    /// Apache Maven, to download the brokers from Maven Central.
    Maven,
    /// The PostgreSQL server programs of the pinned major version (see [`crate::postgres`]).
    Postgres,
    /// Node.js 18+ and npm, to run the official AsyncAPI parser the tests validate with.
    Node,
}

impl Tool {
    fn describe(self) -> String {
        match self {
            Tool::Java => {
                format!("Java {MIN_JAVA_MAJOR}+ (a JDK or JRE; `java` on PATH or JAVA_HOME)")
            }
            Tool::Maven => "Apache Maven (`mvn` on PATH)".to_string(),
            Tool::Node => "Node.js 18+ and npm (`node` and `npm` on PATH)".to_string(),
            Tool::Postgres => format!(
                "PostgreSQL {POSTGRES_MAJOR} (initdb, postgres, pg_isready and psql; Debian's \
                 {POSTGRES_DEBIAN_PACKAGE})"
            ),
        }
    }

    /// Debian packages to try, in order, that provide the tool.
    fn debian_packages(self) -> &'static [&'static str] {
        match self {
            Tool::Java => &["openjdk-17-jre-headless", "default-jre-headless"],
            Tool::Maven => &["maven"],
            // npm depends on nodejs.
            Tool::Node => &["npm"],
            Tool::Postgres => &[POSTGRES_DEBIAN_PACKAGE],
        }
    }

    fn hint(self) -> String {
        match self {
            Tool::Java => {
                "Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17"
                    .to_string()
            }
            Tool::Maven => {
                "Debian/Ubuntu: apt-get install maven; macOS: brew install maven".to_string()
            }
            Tool::Node => "Debian/Ubuntu: apt-get install nodejs npm; macOS: brew install node"
                .to_string(),
            Tool::Postgres => format!(
                "Debian/Ubuntu: apt-get install {POSTGRES_DEBIAN_PACKAGE}; macOS: brew install \
                 postgresql@{POSTGRES_MAJOR}"
            ),
        }
    }

    /// `Ok(())` when usable, else why not.
    fn check(self) -> Result<(), String> {
        match self {
            Tool::Java => java_major().and_then(|major| {
                if major >= MIN_JAVA_MAJOR {
                    Ok(())
                } else {
                    Err(format!("found Java {major}"))
                }
            }),
            Tool::Maven => runs(Command::new("mvn").arg("-v")),
            Tool::Node => node_major().and_then(|major| {
                if major < 18 {
                    return Err(format!("found Node.js {major}"));
                }
                runs(Command::new("npm").arg("--version"))
            }),
            Tool::Postgres => crate::postgres::bin_dir().map(|_| ()),
        }
    }
}

fn runs(cmd: &mut Command) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`{program}` exited with {}", out.status)),
        Err(err) => Err(format!("`{program}` not found ({err})")),
    }
}

/// The major version of `node` (`v20.1.0` -> 20).
fn node_major() -> Result<u32, String> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("`node` not found ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| format!("cannot read the version in: {}", text.trim()))
}

/// The major version of the `java` xtask uses (see [`config::java`]).
pub fn java_major() -> Result<u32, String> {
    let java = config::java();
    let out = Command::new(&java)
        .arg("-version")
        .output()
        .map_err(|e| format!("`{}` not found ({e})", java.display()))?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let quoted = text
        .split('"')
        .nth(1)
        .ok_or_else(|| format!("cannot read the version in: {}", text.trim()))?;
    let mut parts = quoted.split(['.', '-', '+']);
    let first: u32 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("unparsable java version")?;
    // Java 8 and older report "1.8.0_..."
    let major = if first == 1 {
        parts.next().and_then(|p| p.parse().ok()).unwrap_or(1)
    } else {
        first
    };
    Ok(major)
}

fn can_install_debian_packages() -> bool {
    Path::new("/etc/debian_version").exists() && nix::unistd::Uid::effective().is_root()
}

/// Makes sure every tool is usable, installing Debian packages when root on Debian.
///
/// Otherwise fails with one message that lists everything missing and how to install it.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let missing: Vec<(Tool, String)> = tools
        .iter()
        .filter_map(|&t| t.check().err().map(|why| (t, why)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if can_install_debian_packages() {
        println!(
            "installing missing prerequisites with apt-get: {}",
            names(&missing)
        );
        let mut update = Command::new("apt-get");
        update
            .args(["-q", "update"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_checked(update, "apt-get update")?;
        for (tool, _) in &missing {
            install_debian(*tool)?;
        }
        let still: Vec<(Tool, String)> = tools
            .iter()
            .filter_map(|&t| t.check().err().map(|why| (t, why)))
            .collect();
        if still.is_empty() {
            return Ok(());
        }
        bail!("{}", message(&still));
    }
    bail!("{}", message(&missing))
}

fn install_debian(tool: Tool) -> Result<()> {
    for package in tool.debian_packages() {
        let mut cmd = Command::new("apt-get");
        cmd.args(["-q", "-y", "install", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive");
        let out = output_with_timeout(cmd, Duration::from_secs(900))?;
        if out.status.success() {
            println!("  installed {package}");
            return Ok(());
        }
        println!(
            "  apt-get install {package} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    bail!("could not install {} with apt-get", tool.describe())
}

fn names(missing: &[(Tool, String)]) -> String {
    missing
        .iter()
        .map(|(t, _)| t.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

fn message(missing: &[(Tool, String)]) -> String {
    let mut text = String::from("missing prerequisites:");
    for (tool, why) in missing {
        text.push_str(&format!(
            "\n  - {} ({why})\n    install: {}",
            tool.describe(),
            tool.hint()
        ));
    }
    text
}
