//! `cargo xtask docs`: the guide (`docs/guide`), built with mdBook, and its orders tutorial.
//!
//! mdBook is installed on demand with `cargo install --locked` into
//! `target/tools/mdbook-<version>`, where later runs find it. The tutorial is a crate of its own
//! (outside the workspace, as a user's service is); it is built with the workspace's target
//! directory and Cargo.lock, so it reuses what the workspace built and the versions it tests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::workspace_root;
use crate::test::{cargo, run_step};

/// The mdBook release the guide is built with.
pub const MDBOOK_VERSION: &str = "0.4.52";

/// Cargo's target directory (`CARGO_TARGET_DIR`, else the workspace's `target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The guide's sources.
fn guide_dir() -> PathBuf {
    workspace_root().join("docs/guide")
}

/// `cargo xtask docs`: checks the guide's includes and builds it into `target/guide`.
pub fn run() -> Result<()> {
    build_book()?;
    println!(
        "\nthe guide is in {}",
        target_dir().join("guide/index.html").display()
    );
    Ok(())
}

/// The mdbook binary, installed into the target directory unless it is there already.
pub fn mdbook() -> Result<PathBuf> {
    let root = target_dir()
        .join("tools")
        .join(format!("mdbook-{MDBOOK_VERSION}"));
    let binary = root.join("bin").join("mdbook");
    if binary.exists() {
        return Ok(binary);
    }
    let mut install = cargo();
    install
        .args(["install", "--locked", "--version", MDBOOK_VERSION, "mdbook"])
        // `build` and `test` need neither the web server nor the file watcher, which are
        // most of mdbook's dependencies; the search index stays. An unoptimised build
        // compiles in about half the time and renders this book in well under a second.
        .args(["--no-default-features", "--features", "search", "--debug"])
        .arg("--root")
        .arg(&root);
    if !run_step(install)? {
        bail!("installing mdbook {MDBOOK_VERSION} with `cargo install` failed");
    }
    if !binary.exists() {
        bail!(
            "`cargo install` did not leave mdbook at {}",
            binary.display()
        );
    }
    Ok(binary)
}

/// Checks that every `{{#include}}` of the guide names a file and anchor that exist, then builds
/// the book with mdBook (which only warns about a broken include).
pub fn build_book() -> Result<()> {
    let guide = guide_dir();
    let broken = broken_includes(&guide.join("src"))?;
    if !broken.is_empty() {
        bail!(
            "the guide includes what does not exist:\n  {}",
            broken.join("\n  ")
        );
    }
    let mut build = Command::new(mdbook()?);
    build
        .arg("build")
        .arg(&guide)
        .arg("--dest-dir")
        .arg(target_dir().join("guide"));
    println!("\n==> mdbook build {}", guide.display());
    let status = build.status().context("running mdbook")?;
    if !status.success() {
        bail!("`mdbook build docs/guide` failed");
    }
    Ok(())
}

/// Builds the tutorial crate as a user would (`cargo test` in its directory, which builds its
/// binary too) and runs its tests: on the test harness, and its binary on memory and on Pulsar
/// (`BENTO_TEST_PULSAR_URL`, which `envs` must carry).
pub fn test_tutorial(envs: &[(OsString, OsString)]) -> Result<bool> {
    let tutorial = guide_dir().join("tutorial");
    // Start from the workspace's lock, so the tutorial builds with the versions Bento is
    // tested with and reuses the artifacts of the workspace's build.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        tutorial.join("Cargo.lock"),
    )
    .context("copying Cargo.lock into docs/guide/tutorial")?;
    let mut test = cargo();
    test.current_dir(&tutorial)
        .arg("test")
        .env("CARGO_TARGET_DIR", target_dir())
        .envs(envs.iter().map(|(key, value)| (key, value)));
    run_step(test)
}

/// Every `{{#include path[:anchor]}}` under `src` whose file or anchor is missing.
fn broken_includes(src: &Path) -> Result<Vec<String>> {
    let mut broken = Vec::new();
    for page in markdown_files(src)? {
        let text = std::fs::read_to_string(&page)
            .with_context(|| format!("reading {}", page.display()))?;
        let dir = page.parent().unwrap_or(src);
        for include in includes(&text) {
            let (path, anchor) = match include.split_once(':') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (include, None),
            };
            let file = dir.join(path);
            let Ok(included) = std::fs::read_to_string(&file) else {
                broken.push(format!("{}: {include}: no such file", page.display()));
                continue;
            };
            if let Some(anchor) = anchor
                && !has_anchor(&included, anchor)
            {
                broken.push(format!(
                    "{}: {include}: no anchor `{anchor}`",
                    page.display()
                ));
            }
        }
    }
    Ok(broken)
}

/// The targets of the `{{#include ...}}` directives in `text`.
fn includes(text: &str) -> Vec<&str> {
    text.match_indices("{{#include ")
        .filter_map(|(at, directive)| {
            let rest = &text[at + directive.len()..];
            rest.find("}}").map(|end| rest[..end].trim())
        })
        .collect()
}

/// Whether `text` opens and closes anchor `anchor` (mdBook's `ANCHOR:` / `ANCHOR_END:`).
fn has_anchor(text: &str, anchor: &str) -> bool {
    let marks = |mark: &str| {
        text.lines().any(|line| {
            line.split_once(mark)
                .is_some_and(|(_, name)| name.trim() == anchor)
        })
    };
    marks("ANCHOR:") && marks("ANCHOR_END:")
}

/// The `.md` files under `dir`, recursively.
fn markdown_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(markdown_files(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_anchors_are_read() {
        let page =
            "a\n```rust\n{{#include ../tutorial/src/main.rs:main}}\n```\n{{#include x.md}}\n";
        assert_eq!(includes(page), ["../tutorial/src/main.rs:main", "x.md"]);
        let source = "// ANCHOR: main\nfn main() {}\n// ANCHOR_END: main\n";
        assert!(has_anchor(source, "main"));
        assert!(!has_anchor(source, "mai"));
        assert!(!has_anchor("// ANCHOR: main\n", "main"));
    }

    #[test]
    fn the_guide_has_no_broken_include() -> Result<()> {
        let broken = broken_includes(&guide_dir().join("src"))?;
        assert!(broken.is_empty(), "{broken:#?}");
        Ok(())
    }
}
