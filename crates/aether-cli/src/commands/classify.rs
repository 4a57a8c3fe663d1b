//! `aether classify` (pending: owned by the issue that builds it).

/// Arguments of `aether classify`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether classify`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether classify` is not available in this build yet")
}
