//! RustStream's side.

use anyhow::{Result, bail};

use crate::{Backend, Knobs, Report};

/// Every measurement of RustStream's side on `backend`.
pub async fn run(backend: Backend, _knobs: &Knobs, _report: &Report) -> Result<()> {
    bail!("RustStream on {} is not measured yet", backend.name())
}
