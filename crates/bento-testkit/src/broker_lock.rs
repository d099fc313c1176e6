//! One real broker, many test binaries: those that only use the broker hold its lock shared
//! for their whole run; a test that kills and restarts the broker holds it exclusively, so the
//! two never overlap.
//!
//! The lock is the file `bento-<broker>-broker.lock` in the target directory
//! (`CARGO_TARGET_DIR`, else the workspace's `target`), locked with the operating system's file
//! locks: a crashed test process releases it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Where the lock of `broker` (`"pulsar"`, `"kafka"`) lives.
pub fn path(broker: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join(format!("bento-{broker}-broker.lock"))
}

/// Opens (creating it and its directory if needed) the lock file of `broker`, not locked yet.
///
/// # Panics
///
/// When the file cannot be created or opened.
pub fn open(broker: &str) -> File {
    let path = path(broker);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// Holds the lock of `broker` shared until this process ends (again: no effect).
///
/// # Panics
///
/// When the lock cannot be taken.
pub fn share(broker: &str) {
    hold(broker, |file| file.lock_shared(), "shared");
}

/// Holds the lock of `broker` exclusively until this process ends, waiting for every process
/// that shares it to finish (again: no effect).
///
/// # Panics
///
/// When the lock cannot be taken.
pub fn own(broker: &str) {
    hold(broker, |file| file.lock(), "exclusive");
}

fn hold(broker: &str, lock: impl FnOnce(&File) -> std::io::Result<()>, how: &str) {
    static HELD: OnceLock<Mutex<HashMap<String, File>>> = OnceLock::new();
    let mut held = HELD.get_or_init(Mutex::default).lock();
    if held.contains_key(broker) {
        return;
    }
    let file = open(broker);
    lock(&file).unwrap_or_else(|e| panic!("taking the {broker} broker lock ({how}): {e}"));
    held.insert(broker.to_owned(), file);
}
