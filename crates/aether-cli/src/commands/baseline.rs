//! `aether baseline --data TRAIN [--test TEST | --kfold K] [--seed N] [--trees N] [--json]`:
//! the random-forest baseline on per-recording summary statistics (aether-baseline,
//! docs/baseline.md), on the same splits as `aether train` / `eval`.
//!
//! With `--test` the forest trains on every recording of `TRAIN` and scores `TEST`
//! (classes matched by name); otherwise stratified k-fold by recording over `TRAIN`
//! (`--kfold`, default 5; split and forest seeded by `--seed`), scored on the pooled
//! out-of-fold predictions. Output: accuracy, macro-F1, per-class precision / recall /
//! F1 and the confusion matrix; `--json` prints one object with `accuracy`,
//! `macro_f1`, `per_class`, `confusion` (rows truth), `classes`, `recordings`,
//! `predictions` (per recording) and, for k-fold, `folds`.

use std::path::PathBuf;

use aether_baseline::{evaluate, kfold, Evaluation, ForestConfig, StatSet};
use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::train::{load, report_json, report_text};

/// Summary statistics per column.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Stats {
    /// mean, std, 10th / 90th percentile, mean |Δ|, std Δ.
    Percentiles,
    /// mean, std, min, max, mean |Δ|.
    Minmax,
}

/// Arguments of `aether baseline`.
#[derive(clap::Args)]
pub struct Args {
    /// Training dataset folder (or `.npy` directory).
    #[arg(long)]
    data: PathBuf,
    /// Test dataset folder: train on all of `--data`, score this.
    #[arg(long, conflicts_with = "kfold")]
    test: Option<PathBuf>,
    /// Stratified k-fold by recording over `--data` (the default, k = 5).
    #[arg(long)]
    kfold: Option<usize>,
    /// Seed of the forest (and of the k-fold split).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of trees.
    #[arg(long, default_value_t = aether_baseline::DEFAULT_TREES)]
    trees: usize,
    /// Summary statistics per feature column.
    #[arg(long, value_enum, default_value_t = Stats::Percentiles)]
    stats: Stats,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn predictions_json(e: &Evaluation) -> Value {
    e.recordings
        .iter()
        .zip(e.labels.iter().zip(&e.predictions))
        .map(|(r, (&t, &p))| json!({"recording": r, "truth": e.classes[t], "predicted": e.classes[p]}))
        .collect()
}

/// Runs `aether baseline`.
pub fn run(a: Args) -> Result<()> {
    let (train, _) = load(&a.data)?;
    let config = ForestConfig {
        trees: a.trees,
        seed: a.seed,
        stats: match a.stats {
            Stats::Percentiles => StatSet::Percentiles,
            Stats::Minmax => StatSet::MinMax,
        },
        max_features: None,
    };
    let header = format!(
        "random forest: {} trees, seed {}, statistics {} ({} features from {} columns)",
        config.trees,
        config.seed,
        config.stats.names().join("/"),
        train.dim() * config.stats.per_column(),
        train.dim()
    );
    let (pooled, folds, mode) = match &a.test {
        Some(test_dir) => {
            let (test, _) = load(test_dir)?;
            let e = evaluate(&train, &test, &config).with_context(|| {
                format!("baseline {} -> {}", a.data.display(), test_dir.display())
            })?;
            (
                e,
                Vec::new(),
                format!("train {} -> test {}", a.data.display(), test_dir.display()),
            )
        }
        None => {
            let k = a.kfold.unwrap_or(5);
            let r = kfold(&train, k, a.seed, &config)
                .with_context(|| format!("{k}-fold baseline on {}", a.data.display()))?;
            (
                r.pooled,
                r.folds,
                format!("{k}-fold by recording on {}", a.data.display()),
            )
        }
    };
    let r = &pooled.report;
    if a.json {
        let mut v = report_json(r, &pooled.classes);
        let o = v.as_object_mut().context("report object")?;
        o.insert("classes".into(), json!(pooled.classes));
        o.insert("recordings".into(), json!(pooled.recordings.len()));
        o.insert(
            "mode".into(),
            json!(if a.test.is_some() { "test" } else { "kfold" }),
        );
        o.insert("trees".into(), json!(config.trees));
        o.insert("seed".into(), json!(config.seed));
        o.insert("stats".into(), json!(config.stats.names()));
        o.insert("predictions".into(), predictions_json(&pooled));
        if !folds.is_empty() {
            let f: Vec<Value> = folds
                .iter()
                .map(|e| json!({"accuracy": e.report.accuracy, "macro_f1": e.report.macro_f1, "recordings": e.recordings.len()}))
                .collect();
            o.insert("folds".into(), json!(f));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{header}");
    println!("{mode}");
    for (i, e) in folds.iter().enumerate() {
        println!(
            "fold {}/{}: accuracy {:.3} ({} recordings), macro-F1 {:.3}",
            i + 1,
            folds.len(),
            e.report.accuracy,
            e.recordings.len(),
            e.report.macro_f1
        );
    }
    println!(
        "accuracy {:.4} per recording ({} recordings{}), macro-F1 {:.4}",
        r.accuracy,
        pooled.recordings.len(),
        if folds.is_empty() {
            ""
        } else {
            ", pooled over folds"
        },
        r.macro_f1
    );
    print!("{}", report_text(r, &pooled.classes));
    Ok(())
}
