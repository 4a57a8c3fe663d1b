//! `aether bench` (pending: owned by the issue that builds it).

/// Arguments of `aether bench`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether bench`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether bench` is not available in this build yet")
}
