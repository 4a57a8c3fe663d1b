//! Cross-seed learnability of the simulated tasks: simulate seed A for training,
//! seed B for testing (new rooms and subjects), train the default head on whole
//! recordings and print per-recording accuracy next to a nearest-centroid
//! baseline on per-recording mean/std features (a check that the task is not
//! separable by levels alone). The test confusion matrix goes to stderr.
//!
//! `cargo run --release -p aether-data --example cross_seed -- [task|all] [train_seed] [test_seed] [train_per_class] [test_per_class]`
//! (defaults: all, 1, 2, the task's default recordings, 20). Each recording is one
//! window; validation (early stopping): 6 recordings per class of seed 3; head
//! `Architecture::trainable(D, C)`, `TrainConfig::for_windows(n)` on 2 threads.
//! Environment: `PER_RECORDING=1` standardises every feature per recording
//! (otherwise only the head's input normalisation applies, as in `aether
//! train`); `COLS_FROM=k` keeps features `k..D` only (ablations); `CENTRE=1`
//! subtracts each feature's causal running mean (`CENTRE=append` appends those
//! centred features to the raw ones); `BANDS`, `LAGS` change the extractor;
//! `D_MODEL`, `LAYERS`, `MLP`, `WINDOW`, `BLOCK` (sparse pattern), `RUNNING_NORM=1`
//! the head; `EPOCHS` and `AUG_GAIN`, `AUG_OFFSET`,
//! `AUG_NOISE` (see `Augment`) the training.

use std::ops::ControlFlow;
use std::time::Instant;

use aether_data::dataset::Dataset;
use aether_data::features::FeatureConfig;
use aether_data::sim::{simulate, Task};
use aether_head::train::{train, Architecture, TrainConfig, Window};

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

/// `CENTRE=1`: subtract the causal running mean (frames 0..=t) from frame t;
/// `CENTRE=append`: append those centred features to the raw ones.
fn centre(x: Vec<f32>, d: usize) -> Vec<f32> {
    let mode = std::env::var("CENTRE").unwrap_or_default();
    if mode.is_empty() || mode == "0" {
        return x;
    }
    if mode == "std" {
        // causal running standardisation: (x_t - m_t) / max(s_t, floor), Welford over 0..=t
        let floor: f64 = std::env::var("STD_FLOOR")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1e-3);
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
    let append = mode == "append";
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

/// Whether `PER_RECORDING=1`: standardise every feature per recording.
fn per_recording() -> bool {
    std::env::var("PER_RECORDING").is_ok_and(|v| v == "1")
}

/// Recordings as (frames, label), standardised per recording under `PER_RECORDING=1`.
fn prepared(ds: &Dataset) -> Vec<(Vec<f32>, usize)> {
    let d = ds.dim();
    let from: usize = std::env::var("COLS_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ds.recordings
        .iter()
        .map(|r| {
            let x: Vec<f32> = r
                .frames
                .chunks_exact(d)
                .flat_map(|f| f[from..].to_vec())
                .collect();
            let x = if per_recording() {
                standardise(&x, d - from)
            } else {
                x
            };
            (centre(x, d - from), r.class)
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tasks: Vec<Task> = match args.first().map(String::as_str) {
        None | Some("all") => Task::ALL.to_vec(),
        Some(t) => vec![Task::parse(t).expect("task: gesture|fall|breathing|anomaly|all")],
    };
    let num = |i: usize| -> Option<u64> { args.get(i).map(|a| a.parse().expect("integer")) };
    let seed_a = num(1).unwrap_or(1);
    let seed_b = num(2).unwrap_or(2);
    let mut cfg = FeatureConfig::default();
    let envu = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(v) = envu("BANDS") {
        cfg.bands = v;
    }
    if let Some(v) = envu("LAGS") {
        cfg.motion = v;
    }
    println!("| task | train (seed {seed_a}) | test (seed {seed_b}) | head train acc | head test acc | centroid mean/std | time |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for task in tasks {
        let start = Instant::now();
        let per_train = num(3).map_or(task.default_recordings(), |v| v as usize);
        let per_test = num(4).unwrap_or(20) as usize;
        let tr = simulate(task, per_train, seed_a, cfg).expect("simulate train");
        let va = simulate(task, 6, 3, cfg).expect("simulate validation");
        let te = simulate(task, per_test, seed_b, cfg).expect("simulate test");
        let (trp, vap, tep) = (prepared(&tr), prepared(&va), prepared(&te));
        let mut arch = Architecture::trainable(
            trp[0].0.len() * tr.dim() / tr.recordings[0].frames.len(),
            tr.classes.len(),
        );
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
        if let Some(v) = env("D_MODEL") {
            arch.d_model = v;
        }
        if let Some(v) = env("LAYERS") {
            arch.layers = v;
        }
        if let Some(v) = env("MLP") {
            arch.mlp_hidden = v;
        }
        if let Some(v) = env("WINDOW") {
            arch.pattern.window = v;
        }
        if let Some(v) = env("BLOCK") {
            arch.pattern.block_size = v;
        }
        arch.running_norm = std::env::var("RUNNING_NORM").is_ok_and(|v| v == "1");
        let mut tcfg = TrainConfig {
            threads: 2,
            ..TrainConfig::for_windows(trp.len())
        };
        if let Some(v) = env("EPOCHS") {
            tcfg.epochs = v;
        }
        let envf = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f32>().ok());
        tcfg.augment.gain_std = envf("AUG_GAIN").unwrap_or(0.0);
        tcfg.augment.offset_std = envf("AUG_OFFSET").unwrap_or(0.0);
        tcfg.augment.noise_std = envf("AUG_NOISE").unwrap_or(0.0);
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
