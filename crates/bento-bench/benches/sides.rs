//! One side of `cargo xtask bench` (see the `bento-bench` crate): run by the xtask with the
//! side in `BENTO_BENCH_*` variables. Under `cargo test` (no `--bench` argument) it measures
//! Bento's in-memory side once with a few events, as a check that it produces figures.

use bento_bench::{UNAVAILABLE_EXIT, Unavailable};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return bento_bench::smoke();
    }
    match bento_bench::run_from_env() {
        Err(err) if err.downcast_ref::<Unavailable>().is_some() => {
            eprintln!("unavailable: {err}");
            std::process::exit(UNAVAILABLE_EXIT);
        }
        result => result,
    }
}
