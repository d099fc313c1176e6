//! Free space on the volume a broker writes to.
//!
//! Pulsar's embedded bookie stops taking writes when its disk is nearly full, and then every
//! ledger fails with "Not enough non-faulty bookies", which says nothing about the disk. These
//! checks turn that into an error that does.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Space a broker needs free before it starts: logs, a journal and the tests' data.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024 * 1024;

/// Size and free space of the filesystem holding `path`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Size of the filesystem.
    pub total: u64,
    /// Space an unprivileged process can still write.
    pub available: u64,
}

impl Usage {
    /// Reads the usage of the filesystem holding `path` (the nearest existing ancestor).
    pub fn of(path: &Path) -> Result<Self> {
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or_else(|| Path::new("/"));
        let out = Command::new("df")
            .arg("-Pk")
            .arg(existing)
            .output()
            .context("running df")?;
        if !out.status.success() {
            bail!(
                "df -Pk {} failed: {}",
                existing.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse_df(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("reading df's output for {}", existing.display()))
    }

    /// Used share of the filesystem, 0.0 to 1.0.
    pub fn used_fraction(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let fraction = 1.0 - self.available as f64 / self.total as f64;
        fraction
    }

    /// "7.1 GiB free of 252.0 GiB (97% used)".
    pub fn describe(&self) -> String {
        format!(
            "{} free of {} ({:.0}% used)",
            gib(self.available),
            gib(self.total),
            self.used_fraction() * 100.0
        )
    }
}

fn gib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let gib = bytes as f64 / (1024.0 * 1024.0 * 1024.0);
    format!("{gib:.1} GiB")
}

/// Parses `df -Pk`: a header, then `filesystem blocks used available capacity mount`.
fn parse_df(text: &str) -> Result<Usage> {
    let line = text.lines().nth(1).context("no data line")?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> Result<u64> {
        let field = fields
            .get(i)
            .with_context(|| format!("no column {i} in {line:?}"))?;
        let kib: u64 = field
            .parse()
            .with_context(|| format!("column {i} of {line:?} is not a number"))?;
        Ok(kib * 1024)
    };
    Ok(Usage {
        total: number(1)?,
        available: number(3)?,
    })
}

/// Fails with a message naming the volume and its usage when less than [`MIN_FREE_BYTES`]
/// is free where `what` writes its data.
pub fn ensure_room(what: &str, dir: &Path) -> Result<()> {
    let usage = Usage::of(dir)?;
    if usage.available < MIN_FREE_BYTES {
        bail!(
            "{what} needs at least {} free for its data in {}, but the disk has {}; free some \
             space (an old `target/` directory is often the largest thing on it)",
            gib(MIN_FREE_BYTES),
            dir.display(),
            usage.describe()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_read_in_bytes() {
        let text = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                    /dev/vda 264000000 88000000 7400000 93% /\n";
        let usage = parse_df(text).expect("parses");
        assert_eq!(usage.total, 264_000_000 * 1024);
        assert_eq!(usage.available, 7_400_000 * 1024);
        assert!(usage.used_fraction() > 0.97 && usage.used_fraction() < 0.98);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_df("Filesystem\n").is_err());
        assert!(parse_df("header\n/dev/vda x y z\n").is_err());
    }

    #[test]
    fn this_machine_has_a_readable_disk() {
        let usage = Usage::of(Path::new(".")).expect("df works here");
        assert!(usage.total > 0 && usage.available <= usage.total);
    }
}
