//! `aether gate` (pending: owned by the issue that builds it).

/// Arguments of `aether gate`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether gate`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether gate` is not available in this build yet")
}
