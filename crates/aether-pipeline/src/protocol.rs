//! Evaluation protocols: k-fold by recording, leave one group out, fixed test groups.
//!
//! [`plan_runs`] turns a [`Protocol`] into the trainings it needs ([`Plan`]: each
//! [`Run`] trains on some recordings and is scored on one or more test sets);
//! [`run_protocol`] trains and scores every run with one or more seeds and builds the
//! report `aether train --kfold` / `--kfold-groups` / `--test-groups` writes.

use aether_data::Dataset;
use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::data::WindowSet;
use crate::evaluate::{evaluate, model_logits};
use crate::fit::{fit_progress, Progress, TrainOpts};
use crate::model_io::{int8_logits, model_bytes, quantize_bytes};
use crate::report::json::{evaluation_json, fitted_json, stat_json};
use crate::report::text::plural;

/// One training of an evaluation protocol and the test sets it is scored on.
pub struct Run {
    /// Training recordings (validation is split off inside, by recording).
    pub train: Vec<usize>,
    /// `(label, recordings)` scored with the trained model.
    pub tests: Vec<(String, Vec<usize>)>,
}

/// An evaluation protocol: its name and its trainings.
pub struct Plan {
    /// `kfold`, `kfold-groups` or `test-groups` (the report's `protocol`).
    pub protocol: &'static str,
    /// The trainings, in order.
    pub runs: Vec<Run>,
    /// The fold count of a k-fold plan.
    pub folds: Option<usize>,
}

/// Which evaluation protocol to run (`train` and `baseline` share it); k-fold wins over
/// leave-one-group-out, which wins over test groups.
pub struct Protocol<'a> {
    /// K folds by recording, stratified and seeded.
    pub kfold: Option<usize>,
    /// Leave one group out, for every group.
    pub kfold_groups: bool,
    /// Train on everything else and test on each of these groups.
    pub test_groups: &'a [String],
    /// Which `_`-separated field of a recording's name is its group.
    pub group_field: usize,
    /// Seed of the k-fold split.
    pub seed: u64,
}

/// The trainings of a protocol over the recordings `pool` (sorted).
pub fn plan_runs(ds: &Dataset, pool: &[usize], args: &Protocol<'_>) -> Result<Plan> {
    if let Some(k) = args.kfold {
        let sub = ds.subset(pool);
        let folds = sub.kfold(k, args.seed)?;
        let runs = folds
            .iter()
            .enumerate()
            .map(|(i, f)| Run {
                train: f.train.iter().map(|&j| pool[j]).collect(),
                tests: vec![(
                    format!("fold {}", i + 1),
                    f.test.iter().map(|&j| pool[j]).collect(),
                )],
            })
            .collect();
        return Ok(Plan {
            protocol: "kfold",
            runs,
            folds: Some(k),
        });
    }
    let groups = ds.groups_by(args.group_field)?;
    let in_pool = |ix: &Vec<usize>| -> Vec<usize> {
        ix.iter()
            .copied()
            .filter(|i| pool.binary_search(i).is_ok())
            .collect()
    };
    if args.kfold_groups {
        let present: Vec<(String, Vec<usize>)> = groups
            .iter()
            .map(|(g, ix)| (g.clone(), in_pool(ix)))
            .filter(|(_, ix)| !ix.is_empty())
            .collect();
        if present.len() < 2 {
            bail!(
                "--kfold-groups needs at least two groups, found {} (group field {}: {})",
                present.len(),
                args.group_field,
                present
                    .iter()
                    .map(|(g, _)| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let runs = present
            .iter()
            .map(|(g, test)| Run {
                train: pool
                    .iter()
                    .copied()
                    .filter(|i| test.binary_search(i).is_err())
                    .collect(),
                tests: vec![(g.clone(), test.clone())],
            })
            .collect();
        return Ok(Plan {
            protocol: "kfold-groups",
            runs,
            folds: None,
        });
    }
    let mut tests = Vec::new();
    let mut all_test = Vec::new();
    for g in args.test_groups {
        let Some(ix) = groups.get(g.as_str()) else {
            bail!(
                "--test-groups: group `{g}` has no recording (groups present: {})",
                groups.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        all_test.extend(ix.iter().copied());
        tests.push((g.clone(), ix.clone()));
    }
    all_test.sort_unstable();
    let train: Vec<usize> = pool
        .iter()
        .copied()
        .filter(|i| all_test.binary_search(i).is_err())
        .collect();
    if train.is_empty() {
        bail!("--test-groups leaves no training recording (train with --groups)");
    }
    Ok(Plan {
        protocol: "test-groups",
        runs: vec![Run { train, tests }],
        folds: None,
    })
}

/// Mean and sample sd (n − 1; 0 for one value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Per test label, per seed: recording accuracy, macro-F1, window accuracy; confusion
/// summed over seeds.
pub struct Scores {
    /// Per-recording accuracy, one per seed.
    pub acc: Vec<f64>,
    /// Per-recording macro-F1, one per seed.
    pub f1: Vec<f64>,
    /// Window accuracy, one per seed.
    pub wacc: Vec<f64>,
    /// Recordings in the test set.
    pub recordings: usize,
    /// Confusion matrix (rows truth) summed over seeds.
    pub confusion: Vec<Vec<u64>>,
}

impl Scores {
    /// The report's `tests` entries: one per test, labelled.
    pub fn json(labels: &[String], scores: &[Scores]) -> Vec<Value> {
        labels
            .iter()
            .zip(scores)
            .map(|(l, sc)| {
                json!({
                    "label": l,
                    "recordings": sc.recordings,
                    "accuracy": stat_json(&sc.acc),
                    "macro_f1": stat_json(&sc.f1),
                    "window_accuracy": stat_json(&sc.wacc),
                    "confusion": sc.confusion,
                })
            })
            .collect()
    }
}

/// How [`run_protocol`] trains: the options of every training, the seeds, and whether
/// each run's int8 head is scored too.
pub struct ProtocolSettings<'a> {
    /// Training options; `opts.seed` is the first seed.
    pub opts: &'a TrainOpts,
    /// Trainings per run, with seeds `opts.seed`, `opts.seed + 1`, … (the folds stay fixed).
    pub seeds: usize,
    /// Also quantise each run's head to int8 and score it (report key `int8`).
    pub int8: bool,
}

/// What [`run_protocol`] measured, and its report.
pub struct ProtocolOutcome {
    /// The report (`aether train --kfold …` writes it with a `data` key added).
    pub report: Value,
    /// One label per test set, in plan order.
    pub labels: Vec<String>,
    /// Scores of the float heads, one per test set.
    pub scores: Vec<Scores>,
    /// Scores of the int8 heads (empty without int8).
    pub scores_int8: Vec<Scores>,
    /// Per seed: accuracy pooled over every test recording.
    pub pooled: Vec<f64>,
    /// Per seed: the int8 heads' pooled accuracy (empty without int8).
    pub pooled_int8: Vec<f64>,
    /// Per seed: mean accuracy over the test sets.
    pub mean_over_tests: Vec<f64>,
    /// Per seed: mean macro-F1 over the test sets.
    pub mean_f1: Vec<f64>,
}

fn empty_scores(recordings: usize, c: usize) -> Scores {
    Scores {
        acc: Vec::new(),
        f1: Vec::new(),
        wacc: Vec::new(),
        recordings,
        confusion: vec![vec![0u64; c]; c],
    }
}

/// Trains and scores every run of `plan` with each seed of `settings`; training progress
/// goes to `progress`, one result line per test and seed (and the int8 comparison) to
/// `out`. `hash` is the dataset's [`data_hash`](crate::data_hash), stored in the report.
pub fn run_protocol(
    ds: &Dataset,
    hash: &str,
    plan: &Plan,
    settings: &ProtocolSettings<'_>,
    progress: &mut dyn Progress,
    out: &mut dyn FnMut(&str),
) -> Result<ProtocolOutcome> {
    let (base, n_seeds, with_int8) = (settings.opts, settings.seeds, settings.int8);
    let c = ds.classes.len();
    let labels: Vec<String> = plan
        .runs
        .iter()
        .flat_map(|r| r.tests.iter().map(|(l, _)| l.clone()))
        .collect();
    let mut scores: Vec<Scores> = plan
        .runs
        .iter()
        .flat_map(|r| r.tests.iter())
        .map(|(_, ix)| empty_scores(ix.len(), c))
        .collect();
    // With int8 the same scores for each run's int8 head.
    let mut scores8: Vec<Scores> = if with_int8 {
        scores
            .iter()
            .map(|sc| empty_scores(sc.recordings, c))
            .collect()
    } else {
        Vec::new()
    };
    let mut pooled8 = Vec::new();
    // Per seed: pooled accuracy over every test recording, and the mean over tests.
    let (mut pooled, mut mean_over_tests, mut mean_f1) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_run_json = Vec::new();
    for s in 0..n_seeds {
        let mut opts = base.clone();
        opts.seed = base.seed.wrapping_add(s as u64);
        let mut t = 0usize;
        let (mut correct, mut total) = (0u64, 0u64);
        let (mut correct8, mut total8) = (0u64, 0u64);
        let (mut accs, mut f1s) = (Vec::new(), Vec::new());
        for run in &plan.runs {
            let fitted = fit_progress(ds, &run.train, &opts, progress)?;
            // The int8 head of this run, calibrated on its training windows.
            let int8 = if with_int8 {
                let bytes = model_bytes(&fitted, ds, hash, false, false)?;
                let tr = WindowSet::new(ds, &fitted.train_recordings, fitted.window)?;
                Some(quantize_bytes(&bytes, &tr.slices())?)
            } else {
                None
            };
            let mut tests_json = Vec::new();
            for (label, test) in &run.tests {
                let test_int8 = match &int8 {
                    Some(q) => {
                        let e8 = evaluate(ds, test, fitted.window, int8_logits(q))?;
                        let sc = &mut scores8[t];
                        sc.acc.push(e8.recordings.accuracy);
                        sc.f1.push(e8.recordings.macro_f1);
                        sc.wacc.push(e8.windows.accuracy);
                        for (ti, row) in e8.recordings.confusion.rows().iter().enumerate() {
                            for (pi, v) in row.iter().enumerate() {
                                sc.confusion[ti][pi] += v;
                                total8 += v;
                                if ti == pi {
                                    correct8 += v;
                                }
                            }
                        }
                        out(&format!(
                            "seed {}: {label}, int8 head: accuracy {:.3} per recording, {:.3} per window, macro-F1 {:.3}",
                            opts.seed,
                            e8.recordings.accuracy,
                            e8.windows.accuracy,
                            e8.recordings.macro_f1
                        ));
                        Some(evaluation_json(&e8, &ds.classes))
                    }
                    None => None,
                };
                let e = evaluate(ds, test, fitted.window, model_logits(&fitted.outcome.model))?;
                let sc = &mut scores[t];
                sc.acc.push(e.recordings.accuracy);
                sc.f1.push(e.recordings.macro_f1);
                sc.wacc.push(e.windows.accuracy);
                for (ti, row) in e.recordings.confusion.rows().iter().enumerate() {
                    for (pi, v) in row.iter().enumerate() {
                        sc.confusion[ti][pi] += v;
                        total += v;
                        if ti == pi {
                            correct += v;
                        }
                    }
                }
                accs.push(e.recordings.accuracy);
                f1s.push(e.recordings.macro_f1);
                out(&format!(
                    "seed {}: {label}: accuracy {:.3} per recording ({}), {:.3} per window, macro-F1 {:.3}",
                    opts.seed,
                    e.recordings.accuracy,
                    plural(e.n_recordings, "recording"),
                    e.windows.accuracy,
                    e.recordings.macro_f1
                ));
                let mut tj = json!({"label": label, "test": evaluation_json(&e, &ds.classes)});
                if let Some(j8) = test_int8 {
                    tj.as_object_mut()
                        .expect("object")
                        .insert("test_int8".into(), j8);
                }
                tests_json.push(tj);
                t += 1;
            }
            let mut j = fitted_json(&fitted, ds, None);
            let o = j.as_object_mut().expect("object");
            o.insert("seed".into(), json!(opts.seed));
            o.insert("tests".into(), json!(tests_json));
            if tests_json.len() == 1 {
                o.insert("test".into(), tests_json[0]["test"].clone());
                if with_int8 {
                    o.insert("test_int8".into(), tests_json[0]["test_int8"].clone());
                }
            }
            per_run_json.push(j);
        }
        pooled.push(correct as f64 / total.max(1) as f64);
        if with_int8 {
            pooled8.push(correct8 as f64 / total8.max(1) as f64);
        }
        mean_over_tests.push(mean_sd(&accs).0);
        mean_f1.push(mean_sd(&f1s).0);
    }
    let tests_json = Scores::json(&labels, &scores);
    let mut confusion = vec![vec![0u64; c]; c];
    for sc in &scores {
        for (ti, row) in sc.confusion.iter().enumerate() {
            for (pi, v) in row.iter().enumerate() {
                confusion[ti][pi] += v;
            }
        }
    }
    let seeds: Vec<u64> = (0..n_seeds as u64)
        .map(|s| base.seed.wrapping_add(s))
        .collect();
    let (pm, psd) = mean_sd(&pooled);
    let (mm, _) = mean_sd(&mean_over_tests);
    let (fm, _) = mean_sd(&mean_f1);
    let mut report = json!({
        "data_sha256": hash,
        "classes": ds.classes,
        "protocol": plan.protocol,
        "group_field": base.group_field,
        "seeds": seeds,
        "accuracy": pm,
        "accuracy_sd": psd,
        "mean_test_accuracy": stat_json(&mean_over_tests),
        "mean_test_macro_f1": stat_json(&mean_f1),
        "pooled_accuracy": stat_json(&pooled),
        "confusion": confusion,
        "tests": tests_json,
        "per_run": per_run_json,
    });
    if with_int8 {
        let tests8 = Scores::json(&labels, &scores8);
        let (p8, p8sd) = mean_sd(&pooled8);
        report.as_object_mut().expect("object").insert(
            "int8".into(),
            json!({
                "accuracy": p8,
                "accuracy_sd": p8sd,
                "pooled_accuracy": stat_json(&pooled8),
                "tests": tests8,
            }),
        );
        for (l, (sc, s8)) in labels.iter().zip(scores.iter().zip(&scores8)) {
            let (a, _) = mean_sd(&sc.acc);
            let (a8, _) = mean_sd(&s8.acc);
            let (w, _) = mean_sd(&sc.wacc);
            let (w8, _) = mean_sd(&s8.wacc);
            out(&format!(
                "{l}: f32 head {a:.3}, int8 head {a8:.3} per recording ({:+.1} pp); per window {w:.3} vs {w8:.3}",
                (a8 - a) * 100.0
            ));
        }
        out(&format!(
            "int8 head: accuracy {p8:.3} pooled over every test recording (f32 head {:.3})",
            mean_sd(&pooled).0
        ));
    }
    if let Some(k) = plan.folds {
        // The keys of single-seed k-fold reports, kept for their readers.
        let per_run = report["per_run"].clone();
        let o = report.as_object_mut().expect("object");
        o.insert("folds".into(), json!(k));
        o.insert("seed".into(), json!(base.seed));
        o.insert("mean_fold_accuracy".into(), json!(mm));
        o.insert("mean_fold_macro_f1".into(), json!(fm));
        let w: Vec<f64> = scores.iter().map(|s| mean_sd(&s.wacc).0).collect();
        o.insert("mean_fold_window_accuracy".into(), json!(mean_sd(&w).0));
        o.insert("per_fold".into(), per_run);
    }
    Ok(ProtocolOutcome {
        report,
        labels,
        scores,
        scores_int8: scores8,
        pooled,
        pooled_int8: pooled8,
        mean_over_tests,
        mean_f1,
    })
}

impl ProtocolOutcome {
    /// The closing lines `aether train` prints (per test set unless k-fold, then the
    /// protocol's summary naming `report_path`); `plan` is the plan that was run.
    pub fn summary_lines(&self, plan: &Plan, report_path: &std::path::Path) -> Vec<String> {
        let seeds = self.pooled.len();
        let pm_sd = |m: f64, sd: f64| {
            if seeds > 1 {
                format!("{m:.3} ± {sd:.3}")
            } else {
                format!("{m:.3}")
            }
        };
        let mut lines = Vec::new();
        if plan.protocol != "kfold" {
            for (l, sc) in self.labels.iter().zip(&self.scores) {
                let (a, asd) = mean_sd(&sc.acc);
                let (f, fsd2) = mean_sd(&sc.f1);
                lines.push(format!(
                    "{l}: accuracy {} per recording ({}), macro-F1 {}",
                    pm_sd(a, asd),
                    plural(sc.recordings, "recording"),
                    pm_sd(f, fsd2)
                ));
            }
        }
        let what = match plan.protocol {
            "kfold" => format!("{}-fold by recording", plan.runs.len()),
            "kfold-groups" => format!("leave one group out ({} groups)", plan.runs.len()),
            _ => format!("test groups {}", self.labels.join(", ")),
        };
        let (pm, psd) = mean_sd(&self.pooled);
        let (mm, msd) = mean_sd(&self.mean_over_tests);
        let (fm, fsd) = mean_sd(&self.mean_f1);
        lines.push(format!(
            "{what}{}: accuracy {} (pooled over {}), mean accuracy over tests {}, mean macro-F1 {}; report {}",
            if seeds > 1 {
                format!(", {seeds} seeds")
            } else {
                String::new()
            },
            pm_sd(pm, psd),
            plural(self.scores.iter().map(|s| s.recordings).sum(), "recording"),
            pm_sd(mm, msd),
            pm_sd(fm, fsd),
            report_path.display()
        ));
        lines
    }
}
