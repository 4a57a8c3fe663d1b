//! `aether demo` (pending: owned by the issue that builds it).

/// Arguments of `aether demo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether demo`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`aether demo` is not available in this build yet")
}
