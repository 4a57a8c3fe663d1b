//! `aether inspect` (pending: owned by the issue that builds it).

/// Arguments of `aether inspect`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether inspect`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether inspect` is not available in this build yet")
}
