//! Fetching broker distributions with Maven and unpacking them safely.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::progress;

/// Name of the file written into an install directory once it is complete.
pub const MARKER: &str = ".bento-installed";

/// Whether `dir` holds a complete install of `version`.
pub fn installed(dir: &Path, version: &str) -> bool {
    fs::read_to_string(dir.join(MARKER))
        .map(|v| v.trim() == version)
        .unwrap_or(false)
}

/// Maven's local repository (`~/.m2/repository`), where downloads are cached across workspaces.
pub fn maven_local_repo() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".m2").join("repository"))
}

/// The directory of an artifact (`group:artifact:version...`) inside the local Maven repository.
pub fn maven_artifact_dir(coordinates: &str) -> Option<PathBuf> {
    let mut parts = coordinates.split(':');
    let (group, artifact, version) = (parts.next()?, parts.next()?, parts.next()?);
    Some(
        maven_local_repo()?
            .join(group.replace('.', "/"))
            .join(artifact)
            .join(version),
    )
}

/// Total size in bytes of the files below `path`.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| dir_size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `mvn -B -C -ntp <args>` in `cwd`, echoing its output with a heartbeat.
///
/// `-C` makes Maven fail on a checksum mismatch instead of warning. `watch` is a directory whose
/// growing size is shown while Maven is silent (the artifact's folder in the local repository).
pub fn maven(args: &[String], cwd: &Path, label: &str, watch: Option<PathBuf>) -> Result<()> {
    let mut cmd = Command::new("mvn");
    cmd.args(["-B", "-C", "-ntp"]).args(args).current_dir(cwd);
    progress::run_streaming(cmd, label, || match &watch {
        Some(dir) => format!("{:.1} MB in {}", dir_size(dir) as f64 / 1e6, dir.display()),
        None => String::new(),
    })
}

/// Removes a file or directory tree if it exists.
pub fn remove_path(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.with_context(|| format!("removing {}", path.display()))
}

/// Extracts `tarball` (`.tar.gz` with one top-level directory) to `dest`, atomically.
///
/// Extraction happens in a temporary sibling directory; `dest` appears (by rename) only once
/// everything is unpacked, with a [`MARKER`] file containing `version`. A truncated or corrupt
/// archive fails here (gzip checks a CRC over the whole stream).
pub fn extract_tar_gz(tarball: &Path, dest: &Path, version: &str) -> Result<()> {
    let parent = dest.parent().context("install directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".extract-{}", std::process::id()));
    remove_path(&tmp)?;
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut tar = Command::new("tar");
    tar.arg("xzf").arg(tarball).arg("-C").arg(&tmp);
    if let Err(err) = progress::run_streaming(tar, "extracting", String::new) {
        remove_path(&tmp)?;
        return Err(err).with_context(|| format!("{} is corrupt or incomplete", tarball.display()));
    }
    let top: Vec<PathBuf> = fs::read_dir(&tmp)
        .with_context(|| format!("listing {}", tmp.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let [root] = top.as_slice() else {
        remove_path(&tmp)?;
        bail!(
            "{} should contain exactly one top-level directory",
            tarball.display()
        );
    };
    fs::write(root.join(MARKER), format!("{version}\n")).context("writing the install marker")?;
    remove_path(dest)?;
    fs::rename(root, dest)
        .with_context(|| format!("moving {} to {}", root.display(), dest.display()))?;
    remove_path(&tmp)
}
