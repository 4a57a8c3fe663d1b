//! `aether demo`: the main job on embedded defaults.
//!
//! Until the head and training land, it runs the quick kernel benchmark
//! (`aether bench --quick`): our dense vs sparse prefill, GQA/MQA, 2-thread
//! scaling and streaming decode, in well under 30 s.

/// Arguments of `aether demo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `aether demo`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    println!("aether demo: quick kernel benchmark (full run: `aether bench`)");
    println!();
    super::bench::collect(true, true)?;
    Ok(())
}
