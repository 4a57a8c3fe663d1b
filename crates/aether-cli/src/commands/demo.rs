//! `aether demo`: the whole job end to end on embedded defaults, in about a minute.
//!
//! 1. simulate a small gesture set (`--recordings` per class, seed `--seed`);
//! 2. train the default head on it (progress bar; window and hyper-parameters derived
//!    from the data, as `aether train` does);
//! 3. write the model (`.rvne` v2) and simulate a held-out set with another seed
//!    (other rooms and subjects), evaluate it through the inference head: accuracy per
//!    recording (windows vote) and per window;
//! 4. stream-classify one held-out recording frame by frame through the per-layer
//!    KV caches, as a node would;
//! 5. print a short report.
//!
//! Everything happens in memory: without `--keep DIR` the demo writes no file at all
//! (nothing is left in the temp directory). `--keep DIR` (alias `--out`; created, must
//! be missing or empty, checked before any work) keeps the model and both datasets
//! there and says where; a failed run removes what it wrote. It works from any
//! directory.

use std::path::PathBuf;
use std::time::Instant;

use aether_data::features::FeatureConfig;
use aether_data::sim::{simulate, Task};
use aether_head::math::softmax;
use aether_head::{EvictionPolicy, Stream, TemporalHead};
use aether_pipeline::{data_hash, evaluate, fit_progress, model_bytes, TrainOpts};
use anyhow::{Context, Result};

use super::plural;
use crate::fsutil::{check_output_dir, write_atomic, write_dataset, OutDir};
use crate::progress;
use crate::values;

/// Arguments of `aether demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Keep the model and both datasets in DIR (created; must be missing or empty).
    /// Without it the demo writes nothing.
    #[arg(long = "keep", visible_alias = "out", value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Training recordings per gesture class, 1..=20000 (400: about 35 s on 2 idle
    /// cores; more recordings is what raises held-out accuracy most, docs/results.md).
    #[arg(long, default_value_t = 400, value_parser = values::count(1, values::MAX_RECORDINGS))]
    pub recordings: usize,
    /// Held-out recordings per gesture class, 1..=20000.
    #[arg(long, default_value_t = 50, value_parser = values::count(1, values::MAX_RECORDINGS))]
    pub held_out: usize,
    /// Seed of the training simulation and of training; the held-out set uses seed + 1.
    #[arg(long, default_value_t = 1, value_parser = values::seed)]
    pub seed: u64,
    /// Maximum training epochs, 1..=10000 (default: derived from the data).
    #[arg(long, value_parser = values::count(1, values::MAX_EPOCHS))]
    pub epochs: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `aether demo`.
pub fn run(args: Args) -> Result<()> {
    let t_all = Instant::now();
    if let Some(d) = &args.keep {
        check_output_dir(d)?;
    }
    let task = Task::Gesture;
    let cfg = FeatureConfig::default();
    println!(
        "aether demo: {} gestures ({}), synthetic CSI from the physical simulator; {}",
        task.classes().len(),
        task.classes().join(", "),
        match &args.keep {
            Some(d) => format!("files kept under {}", d.display()),
            None => "in memory (--keep DIR keeps the model and data)".into(),
        }
    );

    let t = Instant::now();
    let train_ds = simulate(task, args.recordings, args.seed, cfg)?;
    let held_seed = args.seed.wrapping_add(1);
    let held_ds = simulate(task, args.held_out, held_seed, cfg)?;
    println!(
        "1. simulated {} (seed {}) and {} (seed {held_seed}: other rooms and subjects), {} frames × {} features each, in {:.1} s",
        plural(train_ds.recordings.len(), "training recording"),
        args.seed,
        plural(held_ds.recordings.len(), "held-out recording"),
        task.frames(),
        train_ds.dim(),
        t.elapsed().as_secs_f64()
    );

    let opts = TrainOpts {
        seed: args.seed,
        epochs: args.epochs,
        ..TrainOpts::default()
    };
    let pool: Vec<usize> = (0..train_ds.recordings.len()).collect();
    let fitted = fit_progress(
        &train_ds,
        &pool,
        &opts,
        progress::training(args.quiet).as_mut(),
    )?;
    let h = &fitted.outcome.history;
    let wps = h.iter().map(|s| s.windows_per_sec).sum::<f64>() / h.len().max(1) as f64;
    let hash = data_hash(&train_ds);
    let bytes = model_bytes(&fitted, &train_ds, &hash, false, false)?;
    println!(
        "2. trained the sparse head ({} parameters) for {} (best {}) in {:.1} s, {:.0} windows/s: a {}-byte .rvne v2 model",
        fitted.outcome.model.params().len(),
        plural(h.len(), "epoch"),
        fitted.outcome.best_epoch + 1,
        fitted.seconds,
        wps,
        bytes.len()
    );

    let head = TemporalHead::from_blob(&bytes).context("reading back the model")?;
    let held: Vec<usize> = (0..held_ds.recordings.len()).collect();
    let e = evaluate(&held_ds, &held, fitted.window, |w| {
        let mut v = Vec::with_capacity(w.len() * held_ds.classes.len());
        for x in w {
            v.extend(head.forward(x)?);
        }
        Ok(v)
    })?;
    println!(
        "3. held-out accuracy {:.1} % per recording ({}), {:.1} % per window, macro-F1 {:.3}",
        100.0 * e.recordings.accuracy,
        plural(e.n_recordings, "recording"),
        100.0 * e.windows.accuracy,
        e.recordings.macro_f1
    );

    let pick = held_ds
        .recordings
        .iter()
        .position(|r| r.class == held_ds.classes.len() - 1)
        .unwrap_or(0);
    let rec = &held_ds.recordings[pick];
    let d = held_ds.dim();
    let n = rec.frames.len() / d;
    let mut stream = Stream::new(&head, n, EvictionPolicy::Error)?;
    let mut p = vec![0.0f32; held_ds.classes.len()];
    let t = Instant::now();
    let mut line = String::new();
    let mut last = 0usize;
    for (i, fr) in rec.frames.chunks(d).enumerate() {
        let logits = stream.push(&head, fr)?;
        softmax(logits, &mut p);
        last = aether_head::train::argmax(logits);
        if (i + 1) % (n / 6).max(1) == 0 || i + 1 == n {
            line += &format!(
                "\n     frame {:>4}: {:<8} p = {:.2}",
                i + 1,
                held_ds.classes[last],
                p[last]
            );
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "4. streamed held-out recording {} (truth {}) frame by frame through the KV caches, {us:.0} µs per frame; the stream so far says:{line}\n   final: {} ({})",
        rec.name,
        held_ds.classes[rec.class],
        held_ds.classes[last],
        if last == rec.class { "correct" } else { "wrong" }
    );
    let kept = match &args.keep {
        Some(d) => {
            let out = OutDir::create(d)?;
            write_dataset(&out.path().join("train_data"), &train_ds)?;
            write_dataset(&out.path().join("heldout_data"), &held_ds)?;
            let model_path = out.path().join("gesture.rvne");
            write_atomic(&model_path, &bytes)?;
            out.keep();
            format!(
                " Kept under {}: try aether eval --model {} --data {}",
                d.display(),
                model_path.display(),
                d.join("heldout_data").display()
            )
        }
        None => String::new(),
    };
    println!(
        "5. done in {:.1} s. Accuracy on unseen rooms and subjects: {:.1} % (target 95 %).{kept}",
        t_all.elapsed().as_secs_f64(),
        100.0 * e.recordings.accuracy,
    );
    Ok(())
}
