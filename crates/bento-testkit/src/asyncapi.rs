//! Validates AsyncAPI documents with the official parser: `@asyncapi/parser` 3.x, with the Avro
//! and Protobuf schema parsers, run with node.
//!
//! The parser is installed from the workspace's own `tools/asyncapi/package.json` and
//! `package-lock.json` with `npm ci`, once, into `target/asyncapi-validator` (again when the
//! lock file changes); `cargo xtask test` does it before the tests. Without node and npm a
//! validation fails with a message saying what to install: it never passes unchecked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// What the parser said about one document.
#[derive(Clone, Debug)]
pub struct Validation {
    /// Whether the parser accepted it without errors.
    pub valid: bool,
    /// The AsyncAPI version it read.
    pub version: Option<String>,
    /// Errors (diagnostics of severity error), `code: message at /path`.
    pub errors: Vec<String>,
    /// Warnings and hints.
    pub warnings: Vec<String>,
    /// The channel ids the parser found.
    pub channels: Vec<String>,
    /// The operation ids the parser found.
    pub operations: Vec<String>,
    /// The message ids the parser found.
    pub messages: Vec<String>,
}

/// The workspace's `tools/asyncapi`: the validator's package files and script.
pub fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/asyncapi")
}

/// Where the validator is installed: `asyncapi-validator` in the target directory
/// (`CARGO_TARGET_DIR`, else the workspace's `target`).
pub fn install_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("asyncapi-validator")
}

/// Installs the validator (`npm ci`) unless the installed one was made from the current lock
/// file; returns its directory. Safe to call from several tests and processes at once: the
/// install happens in a fresh directory that is then moved into place.
pub fn install() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install_now).clone()
}

fn install_now() -> Result<PathBuf, String> {
    let tools = tools_dir();
    let lock = read(&tools.join("package-lock.json"))?;
    let dir = install_dir();
    let installed_lock = dir.join("installed-package-lock.json");
    if std::fs::read_to_string(&installed_lock).is_ok_and(|installed| installed == lock)
        && dir.join("node_modules/@asyncapi/parser").exists()
    {
        return Ok(dir);
    }
    let staging = dir.with_file_name(format!("asyncapi-validator.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("creating {}: {e}", staging.display()))?;
    for file in ["package.json", "package-lock.json", "validate.mjs"] {
        std::fs::copy(tools.join(file), staging.join(file))
            .map_err(|e| format!("copying {file} to {}: {e}", staging.display()))?;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&staging)
        .output()
        .map_err(|e| {
            format!(
                "cannot run npm ({e}): validating AsyncAPI documents needs Node.js 18+ and npm \
                 (Debian: apt-get install nodejs npm)"
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "npm ci in {} failed:\n{}\n{}",
            staging.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::write(staging.join("installed-package-lock.json"), &lock)
        .map_err(|e| format!("writing {}: {e}", staging.display()))?;
    // Another process may have installed it meanwhile: keep whichever is in place if current.
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        if !(std::fs::read_to_string(&installed_lock).is_ok_and(|installed| installed == lock)) {
            return Err(format!(
                "moving the validator to {}: {error}",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Validates `document` with the official parser (installing it first if needed).
pub fn validate(document: &Value) -> Result<Validation, String> {
    let dir = install()?;
    let file = tempfile_path(&dir)?;
    let text = serde_json::to_string_pretty(document).map_err(|e| e.to_string())?;
    std::fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let result = validate_file(&dir, &file);
    let _ = std::fs::remove_file(&file);
    result
}

/// Validates the document in `path` (JSON or YAML).
pub fn validate_path(path: &Path) -> Result<Validation, String> {
    let dir = install()?;
    validate_file(&dir, path)
}

fn tempfile_path(dir: &Path) -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let documents = dir.join("documents");
    std::fs::create_dir_all(&documents)
        .map_err(|e| format!("creating {}: {e}", documents.display()))?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(documents.join(format!("{}-{n}.json", std::process::id())))
}

fn validate_file(dir: &Path, file: &Path) -> Result<Validation, String> {
    let output = Command::new("node")
        .arg(dir.join("validate.mjs"))
        .arg(file)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            format!("cannot run node ({e}): validating AsyncAPI documents needs Node.js 18+")
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(line).map_err(|e| {
        format!(
            "the validator printed no report ({e}); status {}:\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let strings = |name: &str| -> Vec<String> {
        report[name]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Validation {
        valid: report["valid"].as_bool() == Some(true),
        version: report["version"].as_str().map(str::to_owned),
        errors: strings("errors"),
        warnings: strings("warnings"),
        channels: strings("channels"),
        operations: strings("operations"),
        messages: strings("messages"),
    })
}
