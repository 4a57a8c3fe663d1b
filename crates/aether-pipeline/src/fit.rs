//! Training one head: the options, the derived architecture and hyper-parameters, and
//! the run itself.
//!
//! Every option of [`TrainOpts`] has a default derived from the data, the same whether
//! the options come from the `aether` command line or from [`TrainOpts::default`]:
//! the window from the recording lengths ([`derive_window`]), the
//! architecture from the feature and class counts ([`derive_arch`]) and the optimiser
//! settings from the window count ([`derive_config`]). [`fit`] splits off the
//! validation recordings and trains with early stopping on them; progress goes to a
//! [`Progress`] (plain lines on stderr by default).

use std::ops::ControlFlow;
use std::time::Instant;

use aether_data::dataset::WindowConfig;
use aether_data::Dataset;
use aether_head::train::{
    train as train_head, train_model, Architecture, Augment, EpochStats, Monitor, TrainConfig,
    TrainEvent, TrainOutcome,
};
use aether_head::AttentionBackend;
use anyhow::{bail, Result};

use crate::data::{derive_window, WindowSet};
use crate::report::text::epoch_line;
use crate::values::{self, Ends};

/// Frames of training work the default epoch count aims at (about a minute on 2 cores).
pub const FRAME_BUDGET: f64 = 3.0e6;

/// The attention of a head: the sparse AETHER pattern or dense causal attention
/// (`--attention` of `train`, `--backend` of `eval` and `classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// The sparse pattern.
    Sparse,
    /// Dense causal attention.
    Dense,
}

impl Attention {
    /// The name on the command line and in reports (`sparse`, `dense`).
    pub fn name(self) -> &'static str {
        match self {
            Attention::Sparse => "sparse",
            Attention::Dense => "dense",
        }
    }
}

impl std::fmt::Display for Attention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The inference head's backend for this attention.
impl From<Attention> for AttentionBackend {
    fn from(a: Attention) -> AttentionBackend {
        match a {
            Attention::Sparse => AttentionBackend::Sparse,
            Attention::Dense => AttentionBackend::Dense,
        }
    }
}

/// Written by hand rather than derived: the values carry no help text, so `--help`
/// lists them on one line (`[possible values: sparse, dense]`).
impl clap::ValueEnum for Attention {
    fn value_variants<'a>() -> &'a [Self] {
        &[Attention::Sparse, Attention::Dense]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Training options shared by `train`, `gate` and `demo`; every one has a derived default.
#[derive(clap::Args, Clone, Debug)]
pub struct TrainOpts {
    /// Window length in frames, 1..=8192 (default: the 10th percentile p10 of the recording lengths if ≤ 512, else 256).
    #[arg(long, value_parser = values::count(1, values::MAX_WINDOW))]
    pub window: Option<usize>,
    /// Window stride in frames, 1..=1000000 (default: window / 4).
    #[arg(long, value_parser = values::count(1, values::MAX_STRIDE))]
    pub stride: Option<usize>,
    /// Maximum epochs, 1..=10000 (default: from the window count, about 3 M frames of work, 15..150).
    #[arg(long, value_parser = values::count(1, values::MAX_EPOCHS))]
    pub epochs: Option<usize>,
    /// Windows per optimiser step, 1..=4096 (default: windows / 8, clamped to 8..32).
    #[arg(long, value_parser = values::count(1, values::MAX_BATCH))]
    pub batch: Option<usize>,
    /// Peak learning rate, 0 < lr ≤ 1 (default 3e-3).
    #[arg(long, value_parser = values::real32(0.0, 1.0, Ends::OpenMin))]
    pub lr: Option<f32>,
    /// Early-stopping patience in epochs, 1..=10000 (default: max(10, epochs / 4)).
    #[arg(long, value_parser = values::count(1, values::MAX_PATIENCE))]
    pub patience: Option<usize>,
    /// Seed of the split, initialisation and shuffling (decimal or 0x hex).
    #[arg(long, default_value_t = 0, value_parser = values::seed)]
    pub seed: u64,
    /// Fraction of each class's recordings held out for validation / early stopping, 0 ≤ x < 1.
    #[arg(long, default_value_t = 0.2, value_parser = values::real(0.0, 1.0, Ends::OpenMax))]
    pub val: f64,
    /// Worker threads, 0..=256 (0: all cores).
    #[arg(long, default_value_t = 0, value_parser = values::count(0, values::MAX_THREADS))]
    pub threads: usize,
    /// Model width D, 1..=1024 (default 32).
    #[arg(long, value_parser = values::count(1, values::MAX_D_MODEL))]
    pub d_model: Option<usize>,
    /// Layers, 1..=32 (default 2).
    #[arg(long, value_parser = values::count(1, values::MAX_TRAIN_LAYERS))]
    pub layers: Option<usize>,
    /// Standardise every input feature causally against the stream's own running mean and
    /// std before the head's input normalisation (docs/model.md step 0): recommended when
    /// recordings differ in level and scale (simulated breathing: 0.24 -> 0.51 held out).
    #[arg(long)]
    pub running_norm: bool,
    /// Attention: sparse (the AETHER pattern) or dense.
    #[arg(long, value_enum, default_value = "sparse")]
    pub attention: Attention,
    /// Architecture variant: `full` or one row of the ablation table
    /// (`no input_norm`, `no embed`, …, `bare v1`).
    #[arg(long, default_value = "full")]
    pub arch: String,
    /// Train only on recordings whose group (see --group-field) is listed.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Which `_`-separated field of a recording's name is its group (domain), 0..=15:
    /// 0 = the prefix (`D1_e01_…` → `D1`), 1 = the second (`baseline_c3_64sc_…` → `c3`).
    #[arg(long, default_value_t = 0, value_parser = values::count(0, 15))]
    pub group_field: usize,
    /// Augmentation: per-window log-normal gain jitter σ_g per feature, 0..=10 (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, values::MAX_AUG, Ends::Closed))]
    pub aug_gain: f32,
    /// Augmentation: per-window offset jitter per feature, in input stds, 0..=10 (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, values::MAX_AUG, Ends::Closed))]
    pub aug_offset: f32,
    /// Augmentation: white noise per value, in input stds, 0..=10 (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, values::MAX_AUG, Ends::Closed))]
    pub aug_noise: f32,
    /// Augmentation: train on random contiguous crops of each window, at least this
    /// fraction of it long, 0 < x ≤ 1 (1: off); a live stream's outputs see such crops.
    #[arg(long, default_value_t = 1.0, value_parser = values::real32(0.0, 1.0, Ends::OpenMin))]
    pub aug_crop: f32,
    /// Augmentation: time warp, the crop read at speed e^(σ·U[−1,1]), 0..=1 (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, 1.0, Ends::Closed))]
    pub aug_speed: f32,
    /// Augmentation: probability of masking each feature for a whole window, 0 ≤ p < 1.
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, 1.0, Ends::OpenMax))]
    pub aug_mask: f32,
    /// AdamW decoupled weight decay on weight matrices, 0..=1.
    #[arg(long, default_value_t = 0.01, value_parser = values::real32(0.0, 1.0, Ends::Closed))]
    pub weight_decay: f32,
    /// Exponential moving average of the weights (decay per step, 0 ≤ d < 1; 0: off):
    /// validation, early stopping and the model use the averaged weights.
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, 1.0, Ends::OpenMax))]
    pub ema: f32,
    /// Label smoothing ε, 0 ≤ ε < 1.
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, 1.0, Ends::OpenMax))]
    pub label_smoothing: f32,
    /// Mixup α (windows mixed with a partner of the batch, λ ~ Beta(α, α)), 0..=2 (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = values::real32(0.0, 2.0, Ends::Closed))]
    pub mixup: f32,
    /// Quantisation-aware fine-tuning after training, 0..=10000 epochs (0: off): the
    /// weights on their int8 grid in every forward (straight-through gradients), a tenth
    /// of the learning rate, best epoch by validation; the float model's weights end on
    /// the grid, so `--int8` quantises them exactly (docs/int8.md).
    #[arg(long, default_value_t = 0, value_parser = values::count(0, values::MAX_EPOCHS))]
    pub qat_epochs: usize,
}

/// The command-line defaults, so code that builds options (demo, serve --demo, tests)
/// trains exactly what `aether train` with no option trains (a derived `Default` once
/// left `--aug-crop` at 0, which training refuses).
impl Default for TrainOpts {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            opts: TrainOpts,
        }
        <Defaults as clap::Parser>::parse_from(["aether"]).opts
    }
}

impl TrainOpts {
    /// Checks what can be checked before reading any data: the `--arch` name.
    pub fn check(&self) -> Result<()> {
        let names: Vec<&str> = Architecture::trainable(1, 2)
            .ablations()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        if !names.contains(&self.arch.as_str()) {
            bail!("--arch `{}` is not one of: {}", self.arch, names.join(", "));
        }
        Ok(())
    }
}

/// The architecture named by `opts` (`--arch`, `--attention`, `--d-model`, `--layers`).
pub fn derive_arch(opts: &TrainOpts, features: usize, classes: usize) -> Result<Architecture> {
    let mut base = Architecture::trainable(features, classes);
    if let Some(d) = opts.d_model {
        base.d_model = d;
    }
    if let Some(l) = opts.layers {
        base.layers = l;
    }
    if opts.attention == Attention::Dense {
        base.attention = AttentionBackend::Dense;
    }
    let variants = base.ablations();
    let Some((_, arch)) = variants.iter().find(|(n, _)| *n == opts.arch) else {
        bail!(
            "--arch `{}` is not one of: {}",
            opts.arch,
            variants
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut arch = arch.clone();
    if opts.attention == Attention::Dense {
        arch.attention = AttentionBackend::Dense;
    }
    arch.running_norm |= opts.running_norm;
    arch.check_trainable()?;
    Ok(arch)
}

/// Hyper-parameters for `n` training windows totalling `frames` frames: epochs from a
/// budget of [`FRAME_BUDGET`] frames (15..150), batch `n/8` clamped to 8..32, patience
/// `max(10, epochs/4)`, peak lr 3e-3, class weighting, best weights by validation loss.
pub fn derive_config(opts: &TrainOpts, n: usize, frames: usize) -> TrainConfig {
    let epochs = opts
        .epochs
        .unwrap_or_else(|| ((FRAME_BUDGET / frames.max(1) as f64).round() as usize).clamp(15, 150));
    TrainConfig {
        epochs,
        batch_size: opts.batch.unwrap_or((n / 8).clamp(8, 32)),
        learning_rate: opts.lr.unwrap_or(3e-3),
        patience: Some(opts.patience.unwrap_or((epochs / 4).max(10))),
        monitor: Monitor::ValLoss,
        seed: opts.seed,
        threads: opts.threads,
        augment: Augment {
            gain_std: opts.aug_gain,
            offset_std: opts.aug_offset,
            noise_std: opts.aug_noise,
            crop_min: opts.aug_crop,
            speed: opts.aug_speed,
            mask: opts.aug_mask,
        },
        weight_decay: opts.weight_decay,
        ema: (opts.ema > 0.0).then_some(opts.ema),
        label_smoothing: opts.label_smoothing,
        mixup: opts.mixup,
        ..TrainConfig::default()
    }
}

/// The settings of the quantisation-aware fine-tuning after a training with `config`:
/// `epochs` epochs, a tenth of the peak learning rate without warmup, the weights on
/// their int8 grid (`fake_quant`), the rest as trained.
pub fn qat_config(config: &TrainConfig, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        learning_rate: config.learning_rate * 0.1,
        warmup_fraction: 0.0,
        patience: None,
        fake_quant: true,
        ..config.clone()
    }
}

/// Everything one training run used and produced.
pub struct Fitted {
    /// The window used for training and stored in the model.
    pub window: WindowConfig,
    /// Architecture trained.
    pub arch: Architecture,
    /// Optimiser settings used.
    pub config: TrainConfig,
    /// Epochs of quantisation-aware fine-tuning that followed (0: none, or training was cancelled).
    pub qat_epochs: usize,
    /// Training recordings.
    pub train_recordings: Vec<usize>,
    /// Validation recordings.
    pub val_recordings: Vec<usize>,
    /// Number of training windows.
    pub train_windows: usize,
    /// The trained model and its history.
    pub outcome: TrainOutcome,
    /// Wall time of training, seconds.
    pub seconds: f64,
}

/// Receives the progress of a training run: the lines a user reads and, for a progress
/// bar, every optimiser step. The `aether` command draws a bar on a terminal.
pub trait Progress {
    /// A line for the user: the run's summary before training, then one per epoch.
    fn line(&mut self, text: &str);
    /// Training starts; it takes at most `steps` optimiser steps.
    fn start(&mut self, steps: u64) {
        let _ = steps;
    }
    /// An optimiser step is done: `epoch` (from 1), the epoch's mean loss so far and the
    /// latest validation accuracy (NaN before the first epoch ends).
    fn step(&mut self, epoch: usize, mean_loss: f64, val_accuracy: f64) {
        let _ = (epoch, mean_loss, val_accuracy);
    }
    /// Training has ended successfully.
    fn finish(&mut self) {}
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn line(&mut self, _: &str) {}
}

/// Progress as plain lines on stderr (what `aether train` prints off a terminal).
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLines;

impl Progress for StderrLines {
    fn line(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// [`StderrLines`] unless `quiet`, then [`Silent`].
fn default_progress(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else {
        Box::new(StderrLines)
    }
}

/// Splits `pool` by recording (`opts.val`, seeded), windows it and trains with every
/// default of `aether train`; progress lines on stderr unless `quiet`.
pub fn fit(ds: &Dataset, pool: &[usize], opts: &TrainOpts, quiet: bool) -> Result<Fitted> {
    fit_progress(ds, pool, opts, default_progress(quiet).as_mut())
}

/// [`fit`] reporting to `progress`.
pub fn fit_progress(
    ds: &Dataset,
    pool: &[usize],
    opts: &TrainOpts,
    progress: &mut dyn Progress,
) -> Result<Fitted> {
    let sub = ds.subset(pool);
    let split = sub.split(opts.val, 0.0, opts.seed)?;
    let train_rec: Vec<usize> = split.train.iter().map(|&i| pool[i]).collect();
    let val_rec: Vec<usize> = split.val.iter().map(|&i| pool[i]).collect();
    let window = derive_window(ds, &train_rec, opts.window, opts.stride)?;
    let arch = derive_arch(opts, ds.dim(), ds.classes.len())?;
    fit_with_progress(ds, &train_rec, &val_rec, window, arch, opts, progress)
}

/// Trains `arch` on the windows of `train_rec`, early-stopping on `val_rec`; progress
/// lines on stderr unless `quiet`.
pub fn fit_with(
    ds: &Dataset,
    train_rec: &[usize],
    val_rec: &[usize],
    window: WindowConfig,
    arch: Architecture,
    opts: &TrainOpts,
    quiet: bool,
) -> Result<Fitted> {
    let mut progress = default_progress(quiet);
    fit_with_progress(
        ds,
        train_rec,
        val_rec,
        window,
        arch,
        opts,
        progress.as_mut(),
    )
}

/// [`fit_with`] reporting to `progress`.
pub fn fit_with_progress(
    ds: &Dataset,
    train_rec: &[usize],
    val_rec: &[usize],
    window: WindowConfig,
    arch: Architecture,
    opts: &TrainOpts,
    progress: &mut dyn Progress,
) -> Result<Fitted> {
    let tr = WindowSet::new(ds, train_rec, window)?;
    let va = WindowSet::new(ds, val_rec, window)?;
    if tr.is_empty() {
        bail!("no training windows");
    }
    let config = derive_config(opts, tr.len(), tr.total_frames(ds.dim()));
    let batches = tr.len().div_ceil(config.batch_size);
    progress.line(&format!(
        "training on {} windows ({} recordings; window {}, stride {}), validating on {} windows ({} recordings); {} epochs max, batch {}, lr {}{}",
        tr.len(),
        train_rec.len(),
        window.len,
        window.stride,
        va.len(),
        val_rec.len(),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        if opts.qat_epochs > 0 {
            format!(
                "; then {} quantisation-aware epochs at lr {}",
                opts.qat_epochs,
                qat_config(&config, opts.qat_epochs).learning_rate
            )
        } else {
            String::new()
        }
    ));
    progress.start(((config.epochs + opts.qat_epochs) * batches) as u64);
    let (mut seen, mut loss_sum, mut last_acc) = (0usize, 0.0f64, f64::NAN);
    let t0 = Instant::now();
    // Epoch numbers of the fine-tuning continue those of the training.
    let first_epoch = std::cell::Cell::new(0usize);
    let mut on_event = |e: TrainEvent<'_>| {
        match e {
            TrainEvent::Batch {
                epoch, batch, loss, ..
            } => {
                if batch == 0 {
                    (seen, loss_sum) = (0, 0.0);
                }
                seen += 1;
                loss_sum += loss;
                progress.step(
                    first_epoch.get() + epoch + 1,
                    loss_sum / seen as f64,
                    last_acc,
                );
            }
            TrainEvent::Epoch(s) => {
                last_acc = s.val_accuracy.unwrap_or(s.train_accuracy);
                let s = EpochStats {
                    epoch: first_epoch.get() + s.epoch,
                    ..s.clone()
                };
                progress.line(&epoch_line(&s));
            }
        }
        ControlFlow::Continue(())
    };
    let (train_w, val_w) = (tr.windows(), va.windows());
    let mut outcome = train_head(arch.clone(), &config, &train_w, &val_w, &mut on_event)?;
    // Not after a cancelled training: the model then is what the caller stopped.
    let qat_epochs = if outcome.cancelled {
        0
    } else {
        opts.qat_epochs
    };
    if qat_epochs > 0 {
        first_epoch.set(outcome.history.len());
        let first_epoch = first_epoch.get();
        let q = train_model(
            outcome.model,
            &qat_config(&config, qat_epochs),
            &train_w,
            &val_w,
            &mut on_event,
        )?;
        outcome.history.extend(q.history.into_iter().map(|mut s| {
            s.epoch += first_epoch;
            s
        }));
        outcome = TrainOutcome {
            model: q.model,
            best_epoch: first_epoch + q.best_epoch,
            stopped_early: outcome.stopped_early,
            cancelled: outcome.cancelled || q.cancelled,
            steps: outcome.steps + q.steps,
            history: outcome.history,
            class_weights: outcome.class_weights,
        };
    }
    progress.finish();
    Ok(Fitted {
        window,
        arch,
        config,
        qat_epochs,
        train_recordings: train_rec.to_vec(),
        val_recordings: val_rec.to_vec(),
        train_windows: tr.len(),
        outcome,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_the_command_line_defaults() {
        let o = TrainOpts::default();
        assert_eq!(o.aug_crop, 1.0, "crops off");
        assert_eq!(o.weight_decay, 0.01);
        assert_eq!(
            (o.val, o.attention, o.arch.as_str()),
            (0.2, Attention::Sparse, "full")
        );
        derive_config(&o, 100, 30_000)
            .validate()
            .expect("the default options train");
    }

    #[test]
    fn config_derivation_is_bounded() {
        let o = TrainOpts::default();
        let c = derive_config(&o, 1, 1);
        assert_eq!((c.epochs, c.batch_size), (150, 8));
        let c = derive_config(&o, 100_000, 100_000_000);
        assert_eq!((c.epochs, c.batch_size), (15, 32));
        assert!(c.patience.unwrap() >= 10);
    }

    #[test]
    fn arch_names_follow_the_ablation_table() {
        let o = TrainOpts {
            arch: "bare v1".into(),
            ..TrainOpts::default()
        };
        assert!(derive_arch(&o, 16, 4).unwrap().is_v1_compatible());
        let o = TrainOpts {
            arch: "nope".into(),
            ..TrainOpts::default()
        };
        assert!(derive_arch(&o, 16, 4).is_err());
    }
}
