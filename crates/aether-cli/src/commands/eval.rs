//! `aether eval` (pending: owned by the issue that builds it).

/// Arguments of `aether eval`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether eval`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether eval` is not available in this build yet")
}
