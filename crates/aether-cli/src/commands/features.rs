//! `aether features` (pending: owned by the issue that builds it).

/// Arguments of `aether features`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether features`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether features` is not available in this build yet")
}
