//! `aether simulate` (pending: owned by the issue that builds it).

/// Arguments of `aether simulate`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether simulate`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether simulate` is not available in this build yet")
}
