//! The small JSON file kept per running broker: pid, ports, version and mode.

use std::fs;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{Broker, Layout, Ports};

/// How a broker is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A JVM started from the downloaded distribution.
    Native,
    /// A container from `deploy/docker/compose.dev.yaml`.
    Docker,
}

impl Mode {
    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Docker => "docker",
        }
    }
}

/// What `up` recorded about a broker it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Which broker.
    pub broker: Broker,
    /// Its version.
    pub version: String,
    /// Native process or container.
    pub mode: Mode,
    /// Pid (and process group id) of the native process.
    pub pid: Option<u32>,
    /// The ports it was started with.
    pub ports: Ports,
    /// Start time, seconds since the Unix epoch.
    pub started_at: u64,
    /// Where its output goes (native mode).
    pub log_file: Option<PathBuf>,
}

impl State {
    /// A fresh record stamped with the current time.
    pub fn new(
        broker: Broker,
        mode: Mode,
        pid: Option<u32>,
        ports: Ports,
        log_file: Option<PathBuf>,
    ) -> Self {
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        State {
            broker,
            version: broker.version().to_string(),
            mode,
            pid,
            ports,
            started_at,
            log_file,
        }
    }

    /// Reads the broker's state file; `None` when there is none or it cannot be parsed.
    pub fn load(layout: &Layout, broker: Broker) -> Option<State> {
        let path = layout.state_file(broker);
        let text = fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(state) => Some(state),
            Err(err) => {
                eprintln!("warning: ignoring unreadable {}: {err}", path.display());
                None
            }
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, layout: &Layout) -> Result<()> {
        let path = layout.state_file(self.broker);
        let dir = layout.broker_dir(self.broker);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).context("serializing broker state")?;
        fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    }

    /// Deletes the broker's state file if there is one.
    pub fn remove(layout: &Layout, broker: Broker) -> Result<()> {
        let path = layout.state_file(broker);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Seconds since the broker was started.
    pub fn uptime_secs(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        now.saturating_sub(self.started_at)
    }
}
