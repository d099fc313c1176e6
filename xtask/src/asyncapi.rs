//! The AsyncAPI validator the tests use (`bento_testkit::asyncapi`): `@asyncapi/parser` 3.x and
//! its Avro and Protobuf schema parsers, installed with `npm ci` from the workspace's
//! `tools/asyncapi` into `target/asyncapi-validator`, where the tests look for it. Installed
//! again only when `tools/asyncapi/package-lock.json` changes (the same check as the tests').

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::workspace_root;

/// Cargo's target directory (`CARGO_TARGET_DIR`, else the workspace's `target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Installs the validator unless the installed one is current.
pub fn install_validator() -> Result<()> {
    let tools = workspace_root().join("tools/asyncapi");
    let lock = std::fs::read_to_string(tools.join("package-lock.json"))
        .with_context(|| format!("reading {}/package-lock.json", tools.display()))?;
    let dir = target_dir().join("asyncapi-validator");
    let marker = dir.join("installed-package-lock.json");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == lock)
        && dir.join("node_modules/@asyncapi/parser").exists()
    {
        return Ok(());
    }
    println!(
        "installing the AsyncAPI validator (npm ci) into {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in ["package.json", "package-lock.json", "validate.mjs"] {
        std::fs::copy(tools.join(file), dir.join(file))
            .with_context(|| format!("copying {file} to {}", dir.display()))?;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&dir)
        .status()
        .context("running npm")?;
    if !status.success() {
        bail!("`npm ci` in {} failed ({status})", dir.display());
    }
    std::fs::write(&marker, lock).with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}
