//! `aether baseline --data TRAIN [--test TEST | --kfold K | --kfold-groups | --test-groups G,…]
//! [--groups G,…] [--group-field N] [--seeds K] [--seed N] [--trees N] [--json]`:
//! the random-forest baseline on per-recording summary statistics (aether-baseline,
//! docs/baseline.md), on the same splits as `aether train` / `eval`.
//!
//! With `--test` the forest trains on every recording of `TRAIN` and scores `TEST`
//! (classes matched by name); `--kfold-groups` and `--test-groups` run the protocols of
//! `aether train` (leave one group out; train on `--groups`, test each listed group),
//! with the same folds, and report mean ± sd over `--seeds` forest seeds; otherwise
//! stratified k-fold by recording over `TRAIN` (`--kfold`, default 5; split and forest
//! seeded by `--seed`), scored on the pooled out-of-fold predictions. Output: accuracy, macro-F1, per-class precision / recall /
//! F1 and the confusion matrix; `--json` prints one object with `accuracy`,
//! `macro_f1`, `per_class`, `confusion` (rows truth), `classes`, `recordings`,
//! `predictions` (per recording) and, for k-fold, `folds`.

use std::path::PathBuf;

use aether_baseline::{evaluate, kfold, Evaluation, ForestConfig, StatSet};
use aether_pipeline::{
    load, mean_sd, plan_runs, report_json, report_text, select_groups, stat_json, Protocol,
};
use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::plural;
use crate::values;

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
    #[arg(long, conflicts_with_all = ["kfold", "kfold_groups", "test_groups"])]
    test: Option<PathBuf>,
    /// Stratified k-fold by recording over `--data` (the default, k = 5), 2..=1000.
    #[arg(long, value_parser = values::count(2, values::MAX_FOLDS),
          conflicts_with_all = ["kfold_groups", "test_groups"])]
    kfold: Option<usize>,
    /// Leave one group out, as `aether train --kfold-groups`.
    #[arg(long, conflicts_with = "test_groups")]
    kfold_groups: bool,
    /// Train on --groups (or everything else) and test each of these groups, as `aether
    /// train --test-groups`.
    #[arg(long, value_delimiter = ',')]
    test_groups: Vec<String>,
    /// Use only recordings of these groups.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Which `_`-separated field of a recording's name is its group, 0..=15.
    #[arg(long, default_value_t = 0, value_parser = values::count(0, 15))]
    group_field: usize,
    /// With --kfold-groups / --test-groups: forest seeds (--seed, --seed + 1, …), 1..=100.
    #[arg(long, default_value_t = 1, value_parser = values::count(1, values::MAX_SEEDS))]
    seeds: usize,
    /// Seed of the forest (and of the k-fold split).
    #[arg(long, default_value_t = 0, value_parser = values::seed)]
    seed: u64,
    /// Number of trees, 1..=10000.
    #[arg(long, default_value_t = aether_baseline::DEFAULT_TREES, value_parser = values::count(1, 10_000))]
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

/// One test group: label, recordings, accuracy and macro-F1 per seed, summed confusion.
type GroupRow = (String, usize, Vec<f64>, Vec<f64>, Vec<Vec<u64>>);

/// `--kfold-groups` / `--test-groups`: the protocol of `aether train`, forests instead of
/// heads, mean ± sd over seeds per test group.
fn run_groups(a: &Args, ds: &aether_data::Dataset, config: &ForestConfig) -> Result<()> {
    let pool = select_groups(ds, &a.groups, a.group_field)?;
    let plan = plan_runs(
        ds,
        &pool,
        &Protocol {
            kfold: None,
            kfold_groups: a.kfold_groups,
            test_groups: &a.test_groups,
            group_field: a.group_field,
            seed: a.seed,
        },
    )?;
    let c = ds.classes.len();
    let mut rows: Vec<GroupRow> = Vec::new();
    for run in &plan.runs {
        for (label, test) in &run.tests {
            rows.push((
                label.clone(),
                test.len(),
                Vec::new(),
                Vec::new(),
                vec![vec![0; c]; c],
            ));
        }
    }
    let mut per_seed_mean = Vec::new();
    for s in 0..a.seeds {
        let cfg = ForestConfig {
            seed: a.seed.wrapping_add(s as u64),
            ..*config
        };
        let mut t = 0;
        let mut accs = Vec::new();
        for run in &plan.runs {
            let train = ds.subset(&run.train);
            for (label, test) in &run.tests {
                let e = evaluate(&train, &ds.subset(test), &cfg)
                    .with_context(|| format!("baseline, test group {label}"))?;
                let row = &mut rows[t];
                row.2.push(e.report.accuracy);
                row.3.push(e.report.macro_f1);
                for (ti, r) in e.report.confusion.rows().iter().enumerate() {
                    for (pi, v) in r.iter().enumerate() {
                        row.4[ti][pi] += v;
                    }
                }
                accs.push(e.report.accuracy);
                t += 1;
            }
        }
        per_seed_mean.push(mean_sd(&accs).0);
    }
    let (m, sd) = mean_sd(&per_seed_mean);
    if a.json {
        let tests: Vec<Value> = rows
            .iter()
            .map(|(l, n, acc, f1, conf)| {
                json!({"label": l, "recordings": n, "accuracy": stat_json(acc),
                       "macro_f1": stat_json(f1), "confusion": conf})
            })
            .collect();
        let v = json!({
            "protocol": plan.protocol, "group_field": a.group_field, "classes": ds.classes,
            "trees": config.trees, "stats": config.stats.names(),
            "seeds": (0..a.seeds as u64).map(|s| a.seed.wrapping_add(s)).collect::<Vec<_>>(),
            "mean_test_accuracy": stat_json(&per_seed_mean), "tests": tests,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (l, n, acc, f1, _) in &rows {
        let (am, asd) = mean_sd(acc);
        let (fm, fsd) = mean_sd(f1);
        println!(
            "{l}: accuracy {am:.3} ± {asd:.3} per recording ({}), macro-F1 {fm:.3} ± {fsd:.3}",
            plural(*n, "recording")
        );
    }
    println!(
        "random forest, {} ({} seeds): mean accuracy over tests {m:.3} ± {sd:.3}",
        plan.protocol, a.seeds
    );
    Ok(())
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
    if a.kfold_groups || !a.test_groups.is_empty() {
        return run_groups(&a, &train, &config);
    }
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
