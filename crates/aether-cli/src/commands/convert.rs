//! `aether convert` (pending: owned by the issue that builds it).

/// Arguments of `aether convert`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether convert`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether convert` is not available in this build yet")
}
