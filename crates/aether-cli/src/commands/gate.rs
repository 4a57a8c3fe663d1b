//! `aether gate --data DIR`: the dense-vs-sparse validation gate of FACTS.md.
//!
//! The recordings are split by recording (seeded): test `--test-fraction` (default
//! 0.25) of each class, validation `--val` of the rest. A sparse head and a dense head
//! (same architecture otherwise, same windows, same seed, same epochs, batch and
//! learning rate) are trained, then on the test recordings:
//! * accuracy (per recording, windows voting with averaged logits, and per window) and
//!   mean cross-entropy per window: the deltas are sparse − dense;
//! * Spearman ρ of top-K (K = min(50, n−1)) embedding nearest-neighbour orderings: for
//!   every test window `q`, its K nearest windows by Euclidean distance between dense
//!   embeddings, ranked 1..K by dense distance and by sparse distance;
//!   `ρ_q = 1 − 6 Σ d² / (K (K² − 1))`; reported as the mean over `q`;
//! * latency of one forward at the deployed window (the training window length) through
//!   the inference head, median of repeated runs, dense / sparse.
//!
//! `--test-data DIR` tests on every recording of a separate dataset instead (all of
//! `--data` then trains and validates); `--seeds K` repeats both trainings with K seeds
//! on the same split and reports each run and the mean ± sd of the deltas, so a
//! difference between the attention patterns can be told from seed-to-seed noise.
//!
//! Gate (FACTS.md): sparse loss at most 1 % above dense, sparse accuracy at most 1 pp
//! below dense (both one-sided: better is a pass), ρ ≥ 0.95, latency ≥ 5× better at the
//! deployed window; with several seeds, on the means. A failed check prints `FAIL` and
//! exits with code 1 after the report (text or JSON) is printed.

use std::path::PathBuf;
use std::time::Instant;

use aether_head::train::{AttentionKind, Model};
use aether_head::{Backend, TemporalHead};
use aether_pipeline::{
    data_hash, derive_arch, derive_window, evaluate, fit_with_progress, load, mean_sd, model_bytes,
    model_logits, print_skipped, select_groups, Attention, Evaluation, TrainOpts, WindowSet,
};
use anyhow::{bail, Result};
use serde_json::json;

use super::plural;
use crate::progress;
use crate::values::{self, Ends};

/// Arguments of `aether gate`.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset folder or `.npy` directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Fraction of each class's recordings held out as the test set (without --test-data),
    /// 0 ≤ x < 1, with --val + --test-fraction < 1.
    #[arg(long, default_value_t = 0.25, value_parser = values::real(0.0, 1.0, Ends::OpenMax))]
    pub test_fraction: f64,
    /// A separate test dataset (same classes and features, e.g. another simulator
    /// seed): every recording of it is tested and all of --data trains and validates.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Train both heads with this many seeds (--seed, --seed + 1, …) on the same split
    /// and test set; the gate judges the mean deltas. 1..=100.
    #[arg(long, default_value_t = 1, value_parser = values::count(1, values::MAX_SEEDS))]
    pub seeds: usize,
    /// Training options (both heads use them; `--attention` is ignored).
    #[command(flatten)]
    pub opts: TrainOpts,
    /// Forward passes timed per backend for the latency figure, 1..=100000.
    #[arg(long, default_value_t = 50, value_parser = values::count(1, values::MAX_REPEATS))]
    pub repeats: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress output while training.
    #[arg(long)]
    pub quiet: bool,
}

/// Spearman ρ between two rankings of the same `k` items given as positions (0-based).
fn spearman_from_ranks(a: &[usize], b: &[usize]) -> f64 {
    let k = a.len() as f64;
    let d2: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (k * (k * k - 1.0))
}

fn sq_dist(x: &[f32], y: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum()
}

/// Mean over queries of the Spearman ρ of the top-`k` nearest-neighbour orderings
/// (reference embeddings `a`, compared `b`, both `[n, d]` flat); `None` when `n < 3`.
pub fn knn_spearman(a: &[f32], b: &[f32], d: usize, k: usize) -> Option<f64> {
    let n = a.len() / d.max(1);
    let k = k.min(n.saturating_sub(1));
    if n < 3 || k < 2 || b.len() != a.len() {
        return None;
    }
    let row = |m: &[f32], i: usize| -> Vec<f32> { m[i * d..(i + 1) * d].to_vec() };
    let mut total = 0.0;
    for q in 0..n {
        let (qa, qb) = (row(a, q), row(b, q));
        let mut others: Vec<(f64, usize)> = (0..n)
            .filter(|&j| j != q)
            .map(|j| (sq_dist(&qa, &a[j * d..(j + 1) * d]), j))
            .collect();
        others.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let top: Vec<usize> = others[..k].iter().map(|x| x.1).collect();
        let mut by_b: Vec<(f64, usize)> = top
            .iter()
            .enumerate()
            .map(|(pos, &j)| (sq_dist(&qb, &b[j * d..(j + 1) * d]), pos))
            .collect();
        by_b.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let mut rank_b = vec![0usize; k];
        for (r, &(_, pos)) in by_b.iter().enumerate() {
            rank_b[pos] = r;
        }
        let rank_a: Vec<usize> = (0..k).collect();
        total += spearman_from_ranks(&rank_a, &rank_b);
    }
    Some(total / n as f64)
}

/// Median wall time in ms of `repeats` forwards of `frames` through `head`.
pub fn median_forward_ms(head: &TemporalHead<'_>, frames: &[f32], repeats: usize) -> Result<f64> {
    let _ = head.forward(frames)?;
    let mut t = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let s = Instant::now();
        std::hint::black_box(head.forward(std::hint::black_box(frames))?);
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

struct Side {
    eval: Evaluation,
    embeddings: Vec<f32>,
    latency_ms: f64,
    epochs: usize,
}

/// One training seed's comparison (sparse − dense).
struct Run {
    seed: u64,
    sparse: Side,
    dense: Side,
    acc_delta: f64,
    wacc_delta: f64,
    loss_rel: f64,
    rho: Option<f64>,
}

/// Runs `aether gate`.
pub fn run(args: Args) -> Result<()> {
    args.opts.check()?;
    if args.test_data.is_none() && args.opts.val + args.test_fraction >= 1.0 {
        bail!(
            "--val {} and --test-fraction {} leave nothing to train on: their sum must be below 1",
            args.opts.val,
            args.test_fraction
        );
    }
    let (ds, skipped) = load(&args.data)?;
    if !args.quiet {
        print_skipped(&args.data, &skipped);
    }
    let hash = data_hash(&ds);
    let pool = select_groups(&ds, &args.opts.groups, args.opts.group_field)?;
    let sub = ds.subset(&pool);
    let map = |v: &[usize]| v.iter().map(|&i| pool[i]).collect::<Vec<usize>>();
    // The test recordings: a separate dataset (every recording) or a held-out share.
    let held_out;
    let (test_ds, train_rec, val_rec, test_rec) = match &args.test_data {
        Some(path) => {
            let (t, skipped) = load(path)?;
            if !args.quiet {
                print_skipped(path, &skipped);
            }
            if t.classes != ds.classes {
                bail!(
                    "{}: classes {:?} differ from the training data's {:?}",
                    path.display(),
                    t.classes,
                    ds.classes
                );
            }
            if t.dim() != ds.dim() {
                bail!(
                    "{}: {} features per frame, the training data has {}",
                    path.display(),
                    t.dim(),
                    ds.dim()
                );
            }
            held_out = t;
            let split = sub.split(args.opts.val, 0.0, args.opts.seed)?;
            let all: Vec<usize> = (0..held_out.recordings.len()).collect();
            (&held_out, map(&split.train), map(&split.val), all)
        }
        None => {
            let split = sub.split(args.opts.val, args.test_fraction, args.opts.seed)?;
            (&ds, map(&split.train), map(&split.val), map(&split.test))
        }
    };
    if test_rec.is_empty() {
        bail!("no test recordings: raise --test-fraction, add recordings or pass --test-data");
    }
    let window = derive_window(&ds, &train_rec, args.opts.window, args.opts.stride)?;
    let test = WindowSet::new(test_ds, &test_rec, window)?;
    let probe: Vec<f32> = test
        .frames
        .iter()
        .find(|f| f.len() == window.len * ds.dim())
        .cloned()
        .unwrap_or_else(|| test.frames[0].clone());
    let mut runs = Vec::new();
    for i in 0..args.seeds {
        let seed = args.opts.seed.wrapping_add(i as u64);
        let mut sides = Vec::new();
        for attention in [Attention::Sparse, Attention::Dense] {
            let opts = TrainOpts {
                attention,
                seed,
                ..args.opts.clone()
            };
            let arch = derive_arch(&opts, ds.dim(), ds.classes.len())?;
            if !args.quiet {
                eprintln!("training the {attention} head (seed {seed})");
            }
            let fitted = fit_with_progress(
                &ds,
                &train_rec,
                &val_rec,
                window,
                arch,
                &opts,
                progress::training(args.quiet).as_mut(),
            )?;
            let model: &Model = &fitted.outcome.model;
            let eval = evaluate(test_ds, &test_rec, window, model_logits(model))?;
            let embeddings = model.embeddings_batch(&test.slices())?;
            let bytes = model_bytes(&fitted, &ds, &hash, false, false)?;
            let mut head = TemporalHead::from_blob(&bytes)?;
            head.set_backend(match model.arch().attention {
                AttentionKind::Sparse(_) => Backend::Sparse,
                AttentionKind::Dense { .. } => Backend::Dense,
            });
            let latency_ms = median_forward_ms(&head, &probe, args.repeats)?;
            sides.push(Side {
                eval,
                embeddings,
                latency_ms,
                epochs: fitted.outcome.history.len(),
            });
        }
        let dense = sides.pop().expect("two sides");
        let sparse = sides.pop().expect("two sides");
        let dim = sparse.embeddings.len() / test.len().max(1);
        runs.push(Run {
            seed,
            rho: knn_spearman(&dense.embeddings, &sparse.embeddings, dim, 50),
            acc_delta: sparse.eval.recordings.accuracy - dense.eval.recordings.accuracy,
            wacc_delta: sparse.eval.windows.accuracy - dense.eval.windows.accuracy,
            loss_rel: (sparse.eval.loss - dense.eval.loss) / dense.eval.loss.max(1e-12),
            sparse,
            dense,
        });
    }
    let stat = |f: &dyn Fn(&Run) -> f64| mean_sd(&runs.iter().map(f).collect::<Vec<_>>());
    let (acc_delta, acc_sd) = stat(&|r| r.acc_delta);
    let (wacc_delta, _) = stat(&|r| r.wacc_delta);
    let (loss_rel, loss_sd) = stat(&|r| r.loss_rel);
    let rhos: Vec<f64> = runs.iter().filter_map(|r| r.rho).collect();
    let rho = (rhos.len() == runs.len()).then(|| mean_sd(&rhos).0);
    let (lat_s, _) = stat(&|r| r.sparse.latency_ms);
    let (lat_d, _) = stat(&|r| r.dense.latency_ms);
    let speedup = lat_d / lat_s.max(1e-12);
    let n_probe = probe.len() / ds.dim();
    let pass = [
        // A tolerance of 1e-9 so a mean landing exactly on the bound (e.g. −1.00 pp
        // from three runs) is not failed by float rounding.
        ("loss at most 1 % above dense", loss_rel <= 0.01 + 1e-9),
        (
            "accuracy at most 1 pp below dense",
            acc_delta >= -0.01 - 1e-9,
        ),
        ("Spearman >= 0.95", rho.is_some_and(|r| r >= 0.95)),
        ("latency >= 5x better", speedup >= 5.0),
    ];
    if args.json {
        let side = |x: &Side| {
            json!({
                "accuracy": x.eval.recordings.accuracy,
                "macro_f1": x.eval.recordings.macro_f1,
                "window_accuracy": x.eval.windows.accuracy,
                "loss": x.eval.loss,
                "latency_ms": x.latency_ms,
                "epochs_run": x.epochs,
            })
        };
        let first = &runs[0];
        let j = json!({
            "data": args.data.display().to_string(),
            "data_sha256": hash,
            "test_data": args.test_data.as_ref().map(|p| p.display().to_string()),
            "seed": args.opts.seed,
            "seeds": args.seeds,
            "window": window.len,
            "stride": window.stride,
            "test_recordings": test_rec.len(),
            "test_windows": test.len(),
            "sparse": side(&first.sparse),
            "dense": side(&first.dense),
            "runs": runs.iter().map(|r| json!({
                "seed": r.seed,
                "sparse": side(&r.sparse),
                "dense": side(&r.dense),
                "accuracy_delta": r.acc_delta,
                "window_accuracy_delta": r.wacc_delta,
                "loss_relative_delta": r.loss_rel,
                "spearman_top50": r.rho,
            })).collect::<Vec<_>>(),
            "accuracy_delta": acc_delta,
            "accuracy_delta_sd": acc_sd,
            "window_accuracy_delta": wacc_delta,
            "loss_relative_delta": loss_rel,
            "loss_relative_delta_sd": loss_sd,
            "spearman_top50": rho,
            "latency_ratio": speedup,
            "latency_window": n_probe,
            "gate": pass.iter().map(|(n, p)| json!({"check": n, "pass": p})).collect::<Vec<_>>(),
            "pass": pass.iter().all(|(_, p)| *p),
        });
        println!("{j}");
        return verdict(&pass);
    }
    println!(
        "gate on {} ({}{}, {} of {}; seeds {}..{})",
        args.data.display(),
        plural(test_rec.len(), "test recording"),
        args.test_data
            .as_ref()
            .map_or(String::new(), |p| format!(" from {}", p.display())),
        plural(test.len(), "window"),
        plural(window.len, "frame"),
        args.opts.seed,
        args.opts.seed.wrapping_add(args.seeds as u64 - 1)
    );
    println!(
        "{:<6} {:<8} {:>10} {:>10} {:>9} {:>11} {:>7}",
        "seed", "head", "acc (rec)", "acc (win)", "loss", "latency ms", "epochs"
    );
    for r in &runs {
        for (n, x) in [("sparse", &r.sparse), ("dense", &r.dense)] {
            println!(
                "{:<6} {n:<8} {:>10.4} {:>10.4} {:>9.4} {:>11.4} {:>7}",
                r.seed,
                x.eval.recordings.accuracy,
                x.eval.windows.accuracy,
                x.eval.loss,
                x.latency_ms,
                x.epochs
            );
        }
    }
    let pm = |sd: f64, scale: f64| {
        if runs.len() > 1 {
            format!(" ± {:.2}", sd * scale)
        } else {
            String::new()
        }
    };
    println!(
        "accuracy delta {:+.2}{} pp (per window {:+.2} pp), loss delta {:+.2}{} %, Spearman top-50 {}, latency ratio {:.2}x at N = {n_probe}{}",
        acc_delta * 100.0,
        pm(acc_sd, 100.0),
        wacc_delta * 100.0,
        loss_rel * 100.0,
        pm(loss_sd, 100.0),
        rho.map_or("n/a".into(), |r| format!("{r:.3}")),
        speedup,
        if runs.len() > 1 {
            format!(" (mean ± sd over {} seeds)", runs.len())
        } else {
            String::new()
        }
    );
    for (n, p) in pass {
        println!("  {} {n}", if p { "pass" } else { "FAIL" });
    }
    verdict(&pass)
}

/// Ok when every check passed, else an error listing the failed ones (exit code 1).
fn verdict(pass: &[(&str, bool)]) -> Result<()> {
    let failed: Vec<&str> = pass.iter().filter(|(_, p)| !p).map(|(n, _)| *n).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "gate failed: {} of {} checks ({})",
            failed.len(),
            pass.len(),
            failed.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_identical_and_reversed_orderings() {
        assert_eq!(spearman_from_ranks(&[0, 1, 2, 3], &[0, 1, 2, 3]), 1.0);
        assert_eq!(spearman_from_ranks(&[0, 1, 2, 3], &[3, 2, 1, 0]), -1.0);
    }

    #[test]
    fn knn_spearman_is_one_for_scaled_embeddings_and_lower_for_shuffled() {
        let n = 20;
        let a: Vec<f32> = (0..n * 2).map(|i| ((i * 37 % 11) as f32).sin()).collect();
        let b: Vec<f32> = a.iter().map(|v| v * 3.0).collect();
        let r = knn_spearman(&a, &b, 2, 50).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        let mut c = a.clone();
        c.reverse();
        assert!(knn_spearman(&a, &c, 2, 50).unwrap() < 0.9);
        assert!(knn_spearman(&a[..4], &b[..4], 2, 50).is_none());
    }
}
