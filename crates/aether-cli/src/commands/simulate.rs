//! `aether simulate`: write a labelled synthetic dataset folder from the
//! physical CSI simulator (`aether_data::sim`, physics in docs/simulator.md).
//!
//! Output: `OUT/README.txt` (marks the data synthetic, records task, seed and
//! sizes) and `OUT/<class>/synthetic_s<seed>_<class>_<i>.csv`, every file
//! written atomically. `OUT` must be missing or empty.

use std::path::{Path, PathBuf};

use aether_data::features::FeatureConfig;
use aether_data::sim::{readme_text, simulate, Task};
use anyhow::{bail, Context, Result};

use crate::fsutil::write_atomic;

/// Arguments of `aether simulate`.
#[derive(clap::Args)]
pub struct Args {
    /// Task: gesture, fall, breathing or anomaly.
    #[arg(long)]
    task: String,
    /// Output dataset folder (created; must be empty if it exists).
    #[arg(long)]
    out: PathBuf,
    /// Recordings per class (default: the task's size that trains in about a minute).
    #[arg(long)]
    recordings: Option<usize>,
    /// Seed: the same seed gives the same files; different seeds draw different rooms and subjects.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    features: FeatureArgs,
}

/// Feature-extraction flags shared by `aether simulate` and `aether features`.
#[derive(clap::Args)]
pub struct FeatureArgs {
    /// Subcarrier bands per antenna in the feature extractor.
    #[arg(long, default_value_t = aether_data::features::DEFAULT_BANDS)]
    bands: usize,
    /// Leave out the per-frame log-gain feature.
    #[arg(long)]
    no_gain: bool,
    /// Leave out the per-frame motion features (same as `--motion-lags 0`).
    #[arg(long)]
    no_motion: bool,
    /// Motion features per antenna: log RMS band change over lags 1, 2, 4, … frames.
    #[arg(long, default_value_t = aether_data::features::DEFAULT_MOTION_LAGS)]
    motion_lags: usize,
}

impl FeatureArgs {
    /// The extractor configuration these flags select.
    pub(crate) fn config(&self) -> FeatureConfig {
        FeatureConfig {
            bands: self.bands,
            gain: !self.no_gain,
            motion: if self.no_motion { 0 } else { self.motion_lags },
        }
    }
}

/// Fails unless `dir` is missing or an empty directory; then creates it.
pub(crate) fn prepare_out_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{}: exists and is not a directory", dir.display());
        }
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{}: directory is not empty; choose a new --out directory",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Writes a dataset's files under `out` (class directories created as needed).
pub(crate) fn write_dataset(out: &Path, ds: &aether_data::Dataset) -> Result<usize> {
    let files = ds.to_files()?;
    for f in &files {
        let dir = out.join(&f.class);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join(&f.file_name), f.contents.as_bytes())?;
    }
    Ok(files.len())
}

/// Runs `aether simulate`.
pub fn run(args: Args) -> Result<()> {
    let task = Task::parse(&args.task)?;
    let per_class = args.recordings.unwrap_or_else(|| task.default_recordings());
    let cfg = args.features.config();
    let ds = simulate(task, per_class, args.seed, cfg)?;
    prepare_out_dir(&args.out)?;
    write_atomic(
        &args.out.join("README.txt"),
        readme_text(task, per_class, args.seed, cfg).as_bytes(),
    )?;
    let n = write_dataset(&args.out, &ds)?;
    println!(
        "simulated {} (synthetic, seed {}): {} recordings = {} classes × {per_class}, {} frames × {} features each -> {}",
        task.name(),
        args.seed,
        n,
        ds.classes.len(),
        task.frames(),
        ds.dim(),
        args.out.display()
    );
    Ok(())
}
