//! Cross-seed learnability of the simulated tasks: simulate seed A for training,
//! seed B for testing (new rooms and subjects), train the default head on whole
//! recordings and print per-recording accuracy next to a nearest-centroid
//! baseline on per-recording mean/std features (a check that the task is not
//! separable by levels alone). The test confusion matrix goes to stderr.
//!
//! The experiment tool behind the cross-seed tables of docs/simulator.md:
//! `cargo run --release -p aether-data --example cross_seed -- [TASK|all] [TRAIN_SEED]
//! [TEST_SEED] [TRAIN_PER_CLASS] [TEST_PER_CLASS] [OPTIONS]` (defaults: all, 1, 2, the
//! task's default recordings, 20); `--help` lists the options (input representation,
//! extractor, head size, training). Each recording is one window; validation (early
//! stopping): 6 recordings per class of seed 3; head `Architecture::trainable(D, C)`,
//! `TrainConfig::for_windows(n)` on 2 threads.

use std::ops::ControlFlow;
use std::time::Instant;

use aether_data::dataset::Dataset;
use aether_data::features::FeatureConfig;
use aether_data::sim::{simulate, Task};
use aether_head::train::{train, Architecture, TrainConfig, Window};
use clap::{Parser, ValueEnum};

/// How features are centred before training (see [`centre`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Centre {
    /// Raw features (the head's input normalisation only, as in `aether train`).
    Off,
    /// Subtract each feature's causal running mean.
    Mean,
    /// Append the running-mean-centred features to the raw ones.
    Append,
    /// Causal running standardisation `(x_t − m_t) / max(s_t, --std-floor)`.
    Std,
}

/// Cross-seed train/test on simulated tasks.
#[derive(Debug, Parser)]
struct Args {
    /// Task (gesture, fall, breathing, anomaly) or `all`.
    #[arg(default_value = "all")]
    task: String,
    /// Simulator seed of the training recordings.
    #[arg(default_value_t = 1)]
    train_seed: u64,
    /// Simulator seed of the test recordings.
    #[arg(default_value_t = 2)]
    test_seed: u64,
    /// Training recordings per class (default: the task's default).
    train_per_class: Option<usize>,
    /// Test recordings per class.
    #[arg(default_value_t = 20)]
    test_per_class: usize,
    /// Standardise every feature per recording (a stream cannot do this).
    #[arg(long)]
    per_recording: bool,
    /// Keep features `k..D` only.
    #[arg(long, default_value_t = 0)]
    cols_from: usize,
    /// Centre the features before training.
    #[arg(long, value_enum, default_value_t = Centre::Off)]
    centre: Centre,
    /// Floor of the running std under `--centre std`.
    #[arg(long, default_value_t = 1e-3)]
    std_floor: f64,
    /// Extractor: frequency bands.
    #[arg(long)]
    bands: Option<usize>,
    /// Extractor: motion lags.
    #[arg(long)]
    lags: Option<usize>,
    /// Head: model width `D`.
    #[arg(long)]
    d_model: Option<usize>,
    /// Head: layers.
    #[arg(long)]
    layers: Option<usize>,
    /// Head: MLP hidden width.
    #[arg(long)]
    mlp: Option<usize>,
    /// Head: sparse local window.
    #[arg(long)]
    window: Option<usize>,
    /// Head: sparse block size.
    #[arg(long)]
    block: Option<usize>,
    /// Head: causal running standardisation of the inputs.
    #[arg(long)]
    running_norm: bool,
    /// Training: maximum epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Training: gain augmentation std.
    #[arg(long, default_value_t = 0.0)]
    aug_gain: f32,
    /// Training: offset augmentation std.
    #[arg(long, default_value_t = 0.0)]
    aug_offset: f32,
    /// Training: noise augmentation std.
    #[arg(long, default_value_t = 0.0)]
    aug_noise: f32,
}

/// Per-recording standardised frames (`T × D`, each column zero mean, unit std).
fn standardise(x: &[f32], d: usize) -> Vec<f32> {
    let t = x.len() / d;
    let mut out = x.to_vec();
    for k in 0..d {
        let m = (0..t).map(|n| x[n * d + k] as f64).sum::<f64>() / t as f64;
        let v = (0..t)
            .map(|n| (x[n * d + k] as f64 - m).powi(2))
            .sum::<f64>()
            / t as f64;
        let s = v.sqrt().max(1e-6);
        for n in 0..t {
            out[n * d + k] = ((x[n * d + k] as f64 - m) / s) as f32;
        }
    }
    out
}

/// `--centre mean`: subtract the causal running mean (frames 0..=t) from frame t;
/// `--centre append`: append those centred features to the raw ones; `--centre std`:
/// causal running standardisation.
fn centre(x: Vec<f32>, d: usize, mode: Centre, floor: f64) -> Vec<f32> {
    if mode == Centre::Off {
        return x;
    }
    if mode == Centre::Std {
        // causal running standardisation: (x_t - m_t) / max(s_t, floor), Welford over 0..=t
        let (mut m, mut m2) = (vec![0.0f64; d], vec![0.0f64; d]);
        let mut out = Vec::with_capacity(x.len());
        for (t, f) in x.chunks_exact(d).enumerate() {
            for (k, v) in f.iter().enumerate() {
                let v = *v as f64;
                let delta = v - m[k];
                m[k] += delta / (t + 1) as f64;
                m2[k] += delta * (v - m[k]);
                let sd = (m2[k] / (t + 1) as f64).sqrt().max(floor);
                out.push(((v - m[k]) / sd) as f32);
            }
        }
        return out;
    }
    let append = mode == Centre::Append;
    let mut sum = vec![0.0f64; d];
    let mut out = Vec::with_capacity(if append { 2 * x.len() } else { x.len() });
    for (t, f) in x.chunks_exact(d).enumerate() {
        if append {
            out.extend_from_slice(f);
        }
        for (k, v) in f.iter().enumerate() {
            sum[k] += *v as f64;
            out.push((*v as f64 - sum[k] / (t + 1) as f64) as f32);
        }
    }
    out
}

/// Recordings as (frames, label), standardised per recording under `--per-recording`.
fn prepared(ds: &Dataset, args: &Args) -> Vec<(Vec<f32>, usize)> {
    let d = ds.dim();
    let from = args.cols_from.min(d.saturating_sub(1));
    ds.recordings
        .iter()
        .map(|r| {
            let x: Vec<f32> = r
                .frames
                .chunks_exact(d)
                .flat_map(|f| f[from..].to_vec())
                .collect();
            let x = if args.per_recording {
                standardise(&x, d - from)
            } else {
                x
            };
            (centre(x, d - from, args.centre, args.std_floor), r.class)
        })
        .collect()
}

/// Per-recording summary: mean and std of every raw feature, z-scored with the
/// training set's statistics.
fn summary(ds: &Dataset) -> Vec<(Vec<f64>, usize)> {
    let d = ds.dim();
    ds.recordings
        .iter()
        .map(|r| {
            let t = r.frames.len() / d;
            let mut s = Vec::with_capacity(2 * d);
            for k in 0..d {
                let m = (0..t).map(|n| r.frames[n * d + k] as f64).sum::<f64>() / t as f64;
                let v = (0..t)
                    .map(|n| (r.frames[n * d + k] as f64 - m).powi(2))
                    .sum::<f64>()
                    / t as f64;
                s.push(m);
                s.push(v.sqrt());
            }
            (s, r.class)
        })
        .collect()
}

/// Nearest-centroid accuracy on z-scored per-recording mean/std summaries.
fn centroid_baseline(train: &Dataset, test: &Dataset) -> f64 {
    let tr = summary(train);
    let te = summary(test);
    let f = tr[0].0.len();
    let mu: Vec<f64> = (0..f)
        .map(|j| tr.iter().map(|s| s.0[j]).sum::<f64>() / tr.len() as f64)
        .collect();
    let sd: Vec<f64> = (0..f)
        .map(|j| {
            (tr.iter().map(|s| (s.0[j] - mu[j]).powi(2)).sum::<f64>() / tr.len() as f64)
                .sqrt()
                .max(1e-9)
        })
        .collect();
    let z = |v: &[f64]| -> Vec<f64> { (0..f).map(|j| (v[j] - mu[j]) / sd[j]).collect() };
    let c = train.classes.len();
    let mut cent = vec![vec![0.0; f]; c];
    let mut cnt = vec![0usize; c];
    for (v, y) in &tr {
        for (a, b) in cent[*y].iter_mut().zip(z(v)) {
            *a += b;
        }
        cnt[*y] += 1;
    }
    for (row, n) in cent.iter_mut().zip(&cnt) {
        row.iter_mut().for_each(|a| *a /= (*n).max(1) as f64);
    }
    let correct = te
        .iter()
        .filter(|(v, y)| {
            let zv = z(v);
            let best = (0..c)
                .min_by(|&a, &b| {
                    let da: f64 = zv.iter().zip(&cent[a]).map(|(p, q)| (p - q).powi(2)).sum();
                    let db: f64 = zv.iter().zip(&cent[b]).map(|(p, q)| (p - q).powi(2)).sum();
                    da.total_cmp(&db)
                })
                .unwrap_or(0);
            best == *y
        })
        .count();
    correct as f64 / te.len() as f64
}

fn windows(data: &[(Vec<f32>, usize)]) -> Vec<Window<'_>> {
    data.iter()
        .map(|(x, y)| Window {
            frames: x,
            label: *y,
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    let tasks: Vec<Task> = match args.task.as_str() {
        "all" => Task::ALL.to_vec(),
        t => match Task::parse(t) {
            Ok(t) => vec![t],
            Err(e) => {
                eprintln!("cross_seed: {e} (or `all`)");
                std::process::exit(2);
            }
        },
    };
    let (seed_a, seed_b) = (args.train_seed, args.test_seed);
    let mut cfg = FeatureConfig::default();
    if let Some(v) = args.bands {
        cfg.bands = v;
    }
    if let Some(v) = args.lags {
        cfg.motion = v;
    }
    println!("| task | train (seed {seed_a}) | test (seed {seed_b}) | head train acc | head test acc | centroid mean/std | time |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for task in tasks {
        let start = Instant::now();
        let per_train = args.train_per_class.unwrap_or(task.default_recordings());
        let tr = simulate(task, per_train, seed_a, cfg).expect("simulate train");
        let va = simulate(task, 6, 3, cfg).expect("simulate validation");
        let te = simulate(task, args.test_per_class, seed_b, cfg).expect("simulate test");
        let (trp, vap, tep) = (
            prepared(&tr, &args),
            prepared(&va, &args),
            prepared(&te, &args),
        );
        let mut arch = Architecture::trainable(
            trp[0].0.len() * tr.dim() / tr.recordings[0].frames.len(),
            tr.classes.len(),
        );
        if let Some(v) = args.d_model {
            arch.d_model = v;
        }
        if let Some(v) = args.layers {
            arch.layers = v;
        }
        if let Some(v) = args.mlp {
            arch.mlp_hidden = v;
        }
        if let Some(v) = args.window {
            arch.pattern.window = v;
        }
        if let Some(v) = args.block {
            arch.pattern.block_size = v;
        }
        arch.running_norm = args.running_norm;
        let mut tcfg = TrainConfig {
            threads: 2,
            ..TrainConfig::for_windows(trp.len())
        };
        if let Some(v) = args.epochs {
            tcfg.epochs = v;
        }
        tcfg.augment.gain_std = args.aug_gain;
        tcfg.augment.offset_std = args.aug_offset;
        tcfg.augment.noise_std = args.aug_noise;
        let out = train(arch, &tcfg, &windows(&trp), &windows(&vap), |_| {
            ControlFlow::Continue(())
        })
        .expect("train");
        let acc = |data: &[(Vec<f32>, usize)]| -> f64 {
            let ok = data
                .iter()
                .filter(|(x, y)| {
                    aether_head::train::argmax(&out.model.logits(x).expect("logits")) == *y
                })
                .count();
            ok as f64 / data.len() as f64
        };
        let c = tr.classes.len();
        let mut confusion = vec![vec![0usize; c]; c];
        for (x, y) in &tep {
            let p = aether_head::train::argmax(&out.model.logits(x).expect("logits"));
            confusion[*y][p] += 1;
        }
        eprintln!(
            "{} test confusion (rows truth {:?}): {confusion:?}",
            task.name(),
            tr.classes
        );
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} s |",
            task.name(),
            tr.recordings.len(),
            te.recordings.len(),
            acc(&trp),
            acc(&tep),
            centroid_baseline(&tr, &te),
            start.elapsed().as_secs_f64()
        );
    }
}
