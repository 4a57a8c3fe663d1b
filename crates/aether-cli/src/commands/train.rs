//! `aether train` (pending: owned by the issue that builds it).

/// Arguments of `aether train`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether train`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether train` is not available in this build yet")
}
