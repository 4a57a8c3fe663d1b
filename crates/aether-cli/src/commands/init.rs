//! `aether init` (pending: owned by the issue that builds it).

/// Arguments of `aether init`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether init`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether init` is not available in this build yet")
}
