//! `cargo xtask`: developer tasks for the Bento workspace.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

fn main() {
    if let Err(err) = xtask::run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
