//! `aether train`: train a head on a dataset folder (or `.npy` directory) and write a
//! `.rvne` model, a JSON report and SVG curves / confusion matrix.
//!
//! Pipeline (shared with `eval`, `gate` and `demo`, hence the `pub` items):
//! 1. read the data ([`load`]); hash it ([`data_hash`], SHA-256 over classes, feature
//!    names and every recording's name, class and f32 bytes);
//! 2. split by recording, stratified and seeded (`--val`, default 0.2);
//! 3. derive the window from the training recordings ([`derive_window`]): length `p10`
//!    of their lengths if ≤ 512 (segmented events train whole), else 256; stride
//!    `max(1, len/4)`; a shorter recording is one whole (shorter) window;
//! 4. derive the hyper-parameters from the window count ([`derive_config`]);
//! 5. train with early stopping on the validation recordings ([`fit`]), progress bar on
//!    stderr unless `--quiet`;
//! 6. write the model (v2 by default, `--format v1` for the bare v1 architecture), the
//!    report and the plots, each atomically.
//!
//! `--kfold K` cross-validates instead (K folds by recording; the JSON report goes to
//! `--out` and no model is written).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aether_data::dataset::{ShortPolicy, WindowConfig};
use aether_data::{Dataset, LoadReport};
use aether_head::train::{
    provenance, report_from_logits, report_from_votes, train as train_head, vote_by_recording,
    Architecture, AttentionBackend, Augment, ClassificationReport, EpochStats, ExportInfo, Model,
    Monitor, Positional, TrainConfig, TrainEvent, TrainOutcome, Window,
};
use aether_rvne::DType;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::plural;
use crate::fsutil::{check_output_file, distinct_outputs, write_atomic};
use crate::values::{self, Ends};

/// Longest recording (10th percentile of the lengths) still trained whole: such
/// recordings are segmented events (a gesture filling a 3 s recording must not be cut).
pub const MAX_WHOLE_WINDOW: usize = 512;
/// Default window for longer, continuous recordings: the node's deployed N (it fits the
/// 64 KB budget; a node chooses its own window at `ruv_temporal_init`).
pub const DEPLOYED_WINDOW: usize = 256;
/// Frames of training work the default epoch count aims at (about a minute on 2 cores).
pub const FRAME_BUDGET: f64 = 3.0e6;

/// Arguments of `aether train`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("evaluation").args(["kfold", "kfold_groups", "test_groups"])))]
pub struct Args {
    /// Dataset folder (`DATA/<class>/<recording>.csv`) or a directory with X.npy and y.npy.
    #[arg(long)]
    pub data: PathBuf,
    /// Output model (.rvne); with --kfold, the JSON report instead.
    #[arg(long)]
    pub out: PathBuf,
    /// Options shared with `gate` and `demo`.
    #[command(flatten)]
    pub opts: TrainOpts,
    /// Output format: v2 (everything) or v1 (bare architecture only).
    #[arg(long, value_parser = ["v1", "v2"], default_value = "v2")]
    pub format: String,
    /// Store weights as f16.
    #[arg(long)]
    pub f16: bool,
    /// Also quantise the trained head to int8 (docs/int8.md; calibrated on its training
    /// windows) and evaluate it beside the float head: writes OUT's sibling
    /// `<stem>.int8.rvne`; with --kfold, --kfold-groups or --test-groups every run's int8
    /// head is tested too (report key `int8`).
    #[arg(long)]
    pub int8: bool,
    /// Cross-validate with K folds by recording, 2..=1000 (writes the report to --out, no model).
    #[arg(long, value_name = "K", value_parser = values::count(2, values::MAX_FOLDS),
          conflicts_with_all = ["kfold_groups", "test_groups"])]
    pub kfold: Option<usize>,
    /// Leave one group out: train on every other group (of --groups, if given), test on
    /// it, for every group (domain: session, room, person, chip; see --group-field).
    /// Writes the report to --out, no model.
    #[arg(long, conflicts_with = "test_groups")]
    pub kfold_groups: bool,
    /// Train on --groups (or everything else) and test on each of these groups
    /// separately (e.g. `--groups D1 --test-groups D2,D3,D4`). Writes the report to
    /// --out, no model.
    #[arg(long, value_delimiter = ',')]
    pub test_groups: Vec<String>,
    /// With --kfold / --kfold-groups / --test-groups: repeat with this many training
    /// seeds (--seed, --seed + 1, …; the folds stay fixed) and report mean ± sd, 1..=100.
    #[arg(long, default_value_t = 1, value_parser = values::count(1, values::MAX_SEEDS),
          requires = "evaluation")]
    pub seeds: usize,
    /// JSON report path (default: OUT with extension .json; not with the evaluation modes).
    #[arg(long, conflicts_with_all = ["kfold", "kfold_groups", "test_groups"])]
    pub report: Option<PathBuf>,
    /// Do not write the SVG curves and confusion matrix.
    #[arg(long)]
    pub no_plots: bool,
    /// No progress bar, no per-epoch lines; only the final summary.
    #[arg(long)]
    pub quiet: bool,
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
    #[arg(long, value_parser = ["sparse", "dense"], default_value = "sparse")]
    pub attention: String,
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

/// Largest number of `f32` values the windows of one run may hold in memory (4 GiB).
pub const MAX_WINDOW_VALUES: usize = 1 << 30;

/// Prints what a dataset reader skipped (stderr), as `train`, `eval` and `gate` do.
pub fn print_skipped(data: &Path, rep: &LoadReport) {
    if !rep.skipped.is_empty() {
        eprintln!("{}: {rep}", data.display());
    }
}

/// Reads a dataset (folder or `.npy` directory) and validates it; errors name the file.
pub fn load(path: &Path) -> Result<(Dataset, LoadReport)> {
    let shown = path.display().to_string();
    // Most reader errors name the file already; the others get the dataset's path.
    let named = |e: String| {
        if e.contains(&shown) {
            anyhow::anyhow!(e)
        } else {
            anyhow::anyhow!("{shown}: {e}")
        }
    };
    let (ds, rep) = aether_data::dataset::load_dataset(path).map_err(|e| named(e.to_string()))?;
    ds.validate().map_err(|e| named(e.to_string()))?;
    Ok((ds, rep))
}

/// SHA-256 (hex) of a dataset's classes, feature names, and each recording's name,
/// class and frame bytes, in order.
pub fn data_hash(ds: &Dataset) -> String {
    let mut h = Sha256::new();
    for c in &ds.classes {
        h.update(c.as_bytes());
        h.update([0u8]);
    }
    h.update([1u8]);
    for f in &ds.feature_names {
        h.update(f.as_bytes());
        h.update([0u8]);
    }
    for r in &ds.recordings {
        h.update([2u8]);
        h.update(r.name.as_bytes());
        h.update((r.class as u64).to_le_bytes());
        h.update((r.frames.len() as u64).to_le_bytes());
        for v in &r.frames {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Recording indices whose group (field `field` of the name split at `_`; field 0 is the
/// prefix) is in `groups` (all when empty).
pub fn select_groups(ds: &Dataset, groups: &[String], field: usize) -> Result<Vec<usize>> {
    if groups.is_empty() {
        return Ok((0..ds.recordings.len()).collect());
    }
    let all = ds.groups_by(field)?;
    let mut v = Vec::new();
    for g in groups {
        match all.get(g.as_str()) {
            Some(ix) => v.extend(ix),
            None => bail!(
                "group `{g}` has no recording (groups present: {})",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The default window of `indices`: the 10th percentile `p10` of their lengths when
/// `p10 ≤ 512` (short, segmented recordings train whole), else 256 (at least 1),
/// stride `max(1, len / 4)`; `window` / `stride` override either.
pub fn derive_window(
    ds: &Dataset,
    indices: &[usize],
    window: Option<usize>,
    stride: Option<usize>,
) -> Result<WindowConfig> {
    let mut lens: Vec<usize> = indices.iter().map(|&i| ds.len_of(i)).collect();
    if lens.is_empty() {
        bail!("no recordings to derive a window from");
    }
    lens.sort_unstable();
    let p10 = lens[lens.len() / 10];
    let len = window.unwrap_or(if p10 <= MAX_WHOLE_WINDOW {
        p10.max(1)
    } else {
        DEPLOYED_WINDOW
    });
    if len == 0 {
        bail!("--window must be positive");
    }
    let stride = stride.unwrap_or((len / 4).max(1));
    if stride == 0 {
        bail!("--stride must be positive");
    }
    Ok(WindowConfig {
        len,
        stride,
        short: ShortPolicy::Whole,
    })
}

/// Windows of some recordings, copied out as contiguous `len × D` buffers.
#[derive(Debug, Clone, Default)]
pub struct WindowSet {
    /// One buffer per window.
    pub frames: Vec<Vec<f32>>,
    /// Class of each window.
    pub labels: Vec<usize>,
    /// Recording index (into the dataset) of each window.
    pub recording: Vec<usize>,
}

impl WindowSet {
    /// Cuts the recordings `indices` of `ds` into windows.
    pub fn new(ds: &Dataset, indices: &[usize], cfg: WindowConfig) -> Result<Self> {
        let sub = ds.subset(indices);
        let (wins, _) = sub.windows(cfg)?;
        let values = wins.iter().fold(0usize, |a, w| {
            a.saturating_add(w.len.saturating_mul(ds.dim()))
        });
        if values > MAX_WINDOW_VALUES {
            bail!(
                "{} windows of up to {} frames would hold {values} values, more than the {MAX_WINDOW_VALUES} allowed in memory: raise --stride or lower --window",
                wins.len(),
                cfg.len
            );
        }
        let mut s = WindowSet::default();
        for w in &wins {
            let mut buf = Vec::new();
            sub.window_data(w, &mut buf);
            s.frames.push(buf);
            s.labels.push(sub.recordings[w.recording].class);
            s.recording.push(indices[w.recording]);
        }
        Ok(s)
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether there is no window.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Borrowed training windows.
    pub fn windows(&self) -> Vec<Window<'_>> {
        self.frames
            .iter()
            .zip(&self.labels)
            .map(|(f, &label)| Window { frames: f, label })
            .collect()
    }

    /// Borrowed frame buffers.
    pub fn slices(&self) -> Vec<&[f32]> {
        self.frames.iter().map(|f| f.as_slice()).collect()
    }

    /// Total frames over all windows.
    pub fn total_frames(&self, dim: usize) -> usize {
        self.frames.iter().map(|f| f.len() / dim.max(1)).sum()
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
    if opts.attention == "dense" {
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
    if opts.attention == "dense" {
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

/// Everything one training run used and produced.
pub struct Fitted {
    /// The window used for training and stored in the model.
    pub window: WindowConfig,
    /// Architecture trained.
    pub arch: Architecture,
    /// Optimiser settings used.
    pub config: TrainConfig,
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

/// Splits `pool` by recording (`opts.val`, seeded), windows it and trains; progress on
/// stderr unless `quiet`.
pub fn fit(ds: &Dataset, pool: &[usize], opts: &TrainOpts, quiet: bool) -> Result<Fitted> {
    let sub = ds.subset(pool);
    let split = sub.split(opts.val, 0.0, opts.seed)?;
    let train_rec: Vec<usize> = split.train.iter().map(|&i| pool[i]).collect();
    let val_rec: Vec<usize> = split.val.iter().map(|&i| pool[i]).collect();
    let window = derive_window(ds, &train_rec, opts.window, opts.stride)?;
    let arch = derive_arch(opts, ds.dim(), ds.classes.len())?;
    fit_with(ds, &train_rec, &val_rec, window, arch, opts, quiet)
}

/// Trains `arch` on the windows of `train_rec`, early-stopping on `val_rec`.
pub fn fit_with(
    ds: &Dataset,
    train_rec: &[usize],
    val_rec: &[usize],
    window: WindowConfig,
    arch: Architecture,
    opts: &TrainOpts,
    quiet: bool,
) -> Result<Fitted> {
    let tr = WindowSet::new(ds, train_rec, window)?;
    let va = WindowSet::new(ds, val_rec, window)?;
    if tr.is_empty() {
        bail!("no training windows");
    }
    let config = derive_config(opts, tr.len(), tr.total_frames(ds.dim()));
    let batches = tr.len().div_ceil(config.batch_size);
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::with_draw_target(
            Some((config.epochs * batches) as u64),
            ProgressDrawTarget::stderr(),
        );
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb
    };
    if !quiet {
        eprintln!(
            "training on {} windows ({} recordings; window {}, stride {}), validating on {} windows ({} recordings); {} epochs max, batch {}, lr {}",
            tr.len(),
            train_rec.len(),
            window.len,
            window.stride,
            va.len(),
            val_rec.len(),
            config.epochs,
            config.batch_size,
            config.learning_rate
        );
    }
    let (mut seen, mut loss_sum, mut last_acc) = (0usize, 0.0f64, f64::NAN);
    let t0 = Instant::now();
    let outcome = train_head(arch.clone(), &config, &tr.windows(), &va.windows(), |e| {
        match e {
            TrainEvent::Batch {
                epoch, batch, loss, ..
            } => {
                if batch == 0 {
                    (seen, loss_sum) = (0, 0.0);
                }
                seen += 1;
                loss_sum += loss;
                let mean = loss_sum / seen as f64;
                pb.set_prefix(format!("epoch {:>3}", epoch + 1));
                pb.set_message(format!("loss {mean:.4}  val acc {last_acc:.3}"));
                pb.inc(1);
            }
            TrainEvent::Epoch(s) => {
                last_acc = s.val_accuracy.unwrap_or(s.train_accuracy);
                if !quiet {
                    // indicatif draws nothing (println included) off a terminal.
                    if pb.is_hidden() {
                        eprintln!("{}", epoch_line(s));
                    } else {
                        pb.println(epoch_line(s));
                    }
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    pb.finish_and_clear();
    Ok(Fitted {
        window,
        arch,
        config,
        train_recordings: train_rec.to_vec(),
        val_recordings: val_rec.to_vec(),
        train_windows: tr.len(),
        outcome,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn epoch_line(s: &EpochStats) -> String {
    let val = match (s.val_loss, s.val_accuracy) {
        (Some(l), Some(a)) => format!("  val loss {l:.4} acc {a:.3}"),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}: loss {:.4} acc {:.3}{val}  lr {:.2e}  {:.0} windows/s{}",
        s.epoch + 1,
        s.train_loss,
        s.train_accuracy,
        s.learning_rate,
        s.windows_per_sec,
        if s.improved { "  *" } else { "" }
    )
}

/// Window-level and per-recording figures of one evaluation.
pub struct Evaluation {
    /// Window-level report.
    pub windows: ClassificationReport,
    /// Per-recording report (windows vote with their averaged logits).
    pub recordings: ClassificationReport,
    /// Number of windows.
    pub n_windows: usize,
    /// Number of recordings.
    pub n_recordings: usize,
    /// Mean cross-entropy over the windows.
    pub loss: f64,
}

/// Scores the recordings `indices` of `ds` with `logits_of` (flat `[n, C]` logits of a
/// list of windows).
pub fn evaluate(
    ds: &Dataset,
    indices: &[usize],
    window: WindowConfig,
    logits_of: impl Fn(&[&[f32]]) -> Result<Vec<f32>>,
) -> Result<Evaluation> {
    let set = WindowSet::new(ds, indices, window)?;
    if set.is_empty() {
        bail!("no windows to evaluate");
    }
    let c = ds.classes.len();
    let logits = logits_of(&set.slices())?;
    let windows = report_from_logits(&logits, &set.labels, c)?;
    let votes = vote_by_recording(&logits, c, &set.recording, &set.labels)?;
    let recordings = report_from_votes(&votes, c)?;
    let loss = aether_head::train::mean_cross_entropy(&logits, &set.labels, c)?;
    Ok(Evaluation {
        windows,
        recordings,
        n_windows: set.len(),
        n_recordings: votes.len(),
        loss,
    })
}

/// JSON of a classification report with class names.
pub fn report_json(r: &ClassificationReport, classes: &[String]) -> Value {
    let per_class: Vec<Value> = classes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "class": n,
                "precision": r.precision[i],
                "recall": r.recall[i],
                "f1": r.f1[i],
                "support": r.support[i],
            })
        })
        .collect();
    json!({
        "accuracy": r.accuracy,
        "macro_f1": r.macro_f1,
        "per_class": per_class,
        "confusion": r.confusion.rows(),
    })
}

/// JSON of an [`Evaluation`]: per-recording figures at the top (`accuracy`, `macro_f1`,
/// `confusion`, `classes`, `per_class`), window-level ones under `windows`.
pub fn evaluation_json(e: &Evaluation, classes: &[String]) -> Value {
    let mut top = report_json(&e.recordings, classes);
    let obj = top.as_object_mut().expect("object");
    obj.insert("classes".into(), json!(classes));
    obj.insert("recordings".into(), json!(e.n_recordings));
    let mut w = report_json(&e.windows, classes);
    w.as_object_mut()
        .expect("object")
        .insert("count".into(), json!(e.n_windows));
    w.as_object_mut()
        .expect("object")
        .insert("loss".into(), json!(e.loss));
    obj.insert("windows".into(), w);
    top
}

/// A plain-text table of a report (per-class precision / recall / F1, confusion), every
/// column aligned whatever the class names and counts (widths count characters).
pub fn report_text(r: &ClassificationReport, classes: &[String]) -> String {
    let chars = |s: &str| s.chars().count();
    let w = classes.iter().map(|c| chars(c)).max().unwrap_or(5).max(7);
    let mut s = format!(
        "{:<w$}  {:>9}  {:>6}  {:>6}  {:>7}\n",
        "class", "precision", "recall", "f1", "support"
    );
    for (i, n) in classes.iter().enumerate() {
        s += &format!(
            "{n:<w$}  {:>9.3}  {:>6.3}  {:>6.3}  {:>7}\n",
            r.precision[i], r.recall[i], r.f1[i], r.support[i]
        );
    }
    let rows = r.confusion.rows();
    let labels: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i} {n}"))
        .collect();
    let lw = labels.iter().map(|l| chars(l)).max().unwrap_or(0).max(w);
    let cw = rows
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .chain([6, format!("p{}", classes.len().saturating_sub(1)).len()])
        .max()
        .unwrap_or(6);
    s += &format!(
        "confusion (rows = truth, columns = predicted):\n{:<lw$}",
        ""
    );
    for i in 0..classes.len() {
        s += &format!(" {:>cw$}", format!("p{i}"));
    }
    s.push('\n');
    for (label, row) in labels.iter().zip(rows.iter()) {
        s += &format!("{label:<lw$}");
        for v in row {
            s += &format!(" {v:>cw$}");
        }
        s.push('\n');
    }
    s
}

/// Metadata keys (`data.*`) the CLI adds to a model beside [`provenance`].
pub fn data_metadata(hash: &str, f: &Fitted, ds: &Dataset) -> Vec<(String, String)> {
    vec![
        ("data.sha256".into(), hash.to_string()),
        ("data.window".into(), f.window.len.to_string()),
        ("data.stride".into(), f.window.stride.to_string()),
        (
            "data.train_recordings".into(),
            f.train_recordings.len().to_string(),
        ),
        (
            "data.val_recordings".into(),
            f.val_recordings.len().to_string(),
        ),
        ("data.classes".into(), ds.classes.len().to_string()),
        ("train.arch".into(), arch_label(&f.arch)),
    ]
}

/// A short description of an architecture's options.
pub fn arch_label(a: &Architecture) -> String {
    let p = &a.pattern;
    let att = match a.attention {
        AttentionBackend::Sparse => format!(
            "sparse(w{} b{} g{:?} log{} lm{})",
            p.window, p.block_size, p.global_tokens, p.log_stride, p.landmarks
        ),
        AttentionBackend::Dense => format!("dense(causal {})", p.causal),
    };
    format!(
        "D{} L{} Hq{} Hkv{} dh{} mlp{} run{} norm{} embed{} pos{} prenorm{} bias{} final{} pool {:?} {att}",
        a.d_model,
        a.layers,
        a.q_heads,
        a.kv_heads,
        a.head_dim,
        a.mlp_hidden,
        a.running_norm as u8,
        a.input_norm as u8,
        a.embed as u8,
        (a.positional == Positional::Sinusoidal) as u8,
        a.pre_norm as u8,
        a.biases as u8,
        a.final_norm as u8,
        a.pooling
    )
}

/// The `.rvne` bytes of a fitted model: v2 (names, stats, provenance) or v1.
pub fn model_bytes(f: &Fitted, ds: &Dataset, hash: &str, v1: bool, f16: bool) -> Result<Vec<u8>> {
    let dtype = if f16 { DType::F16 } else { DType::F32 };
    if v1 {
        return Ok(f.outcome.model.to_v1_bytes(dtype)?);
    }
    let mut metadata = provenance(&f.config, &f.outcome);
    metadata.extend(data_metadata(hash, f, ds));
    let info = ExportInfo {
        class_names: ds.classes.clone(),
        feature_names: ds.feature_names.clone(),
        metadata,
    };
    Ok(f.outcome.model.to_v2_bytes(&info, dtype)?)
}

/// Logits of windows through the training model (parallel).
pub fn model_logits(m: &Model) -> impl Fn(&[&[f32]]) -> Result<Vec<f32>> + '_ {
    move |w| Ok(m.logits_batch(w)?)
}

fn history_json(h: &[EpochStats]) -> Value {
    json!(h
        .iter()
        .map(|s| json!({
            "epoch": s.epoch + 1,
            "train_loss": s.train_loss,
            "train_accuracy": s.train_accuracy,
            "val_loss": s.val_loss,
            "val_accuracy": s.val_accuracy,
            "val_macro_f1": s.val_macro_f1,
            "learning_rate": s.learning_rate,
            "grad_norm": s.grad_norm,
            "windows_per_sec": s.windows_per_sec,
            "seconds": s.seconds,
        }))
        .collect::<Vec<_>>())
}

/// Report JSON of a fitted model (settings, history, validation figures).
pub fn fitted_json(f: &Fitted, ds: &Dataset, val: Option<&Evaluation>) -> Value {
    let c = &f.config;
    let trained: usize = f.outcome.history.iter().map(|_| f.train_windows).sum();
    json!({
        "window": f.window.len,
        "stride": f.window.stride,
        "architecture": arch_label(&f.arch),
        "config": {
            "epochs": c.epochs, "batch_size": c.batch_size, "learning_rate": c.learning_rate,
            "weight_decay": c.weight_decay, "clip_norm": c.clip_norm, "patience": c.patience,
            "class_weighting": c.class_weighting, "seed": c.seed,
        },
        "train_recordings": f.train_recordings.len(),
        "val_recordings": f.val_recordings.len(),
        "train_windows": f.train_windows,
        "epochs_run": f.outcome.history.len(),
        "best_epoch": f.outcome.best_epoch + 1,
        "stopped_early": f.outcome.stopped_early,
        "seconds": f.seconds,
        "windows_per_sec": trained as f64 / f.seconds.max(1e-9),
        "history": history_json(&f.outcome.history),
        "validation": val.map(|e| evaluation_json(e, &ds.classes)),
    })
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{stem}{suffix}"))
}

/// Every file `train` will write, labelled for messages: the model (or, with
/// `--kfold`, the report), the report, the plots.
fn outputs(args: &Args) -> Vec<(String, PathBuf)> {
    if args.evaluation_mode() {
        return vec![("--out".into(), args.out.clone())];
    }
    let mut v = vec![
        ("--out".to_string(), args.out.clone()),
        match &args.report {
            Some(r) => ("--report".into(), r.clone()),
            None => (
                "--report (default: --out with extension .json)".into(),
                args.out.with_extension("json"),
            ),
        },
    ];
    if args.int8 {
        v.push(("the int8 model".into(), sibling(&args.out, ".int8.rvne")));
    }
    if !args.no_plots {
        v.push(("the curves plot".into(), sibling(&args.out, ".curves.svg")));
        v.push((
            "the confusion plot".into(),
            sibling(&args.out, ".confusion.svg"),
        ));
    }
    v
}

impl Args {
    /// Whether this run cross-validates (report to --out, no model).
    fn evaluation_mode(&self) -> bool {
        self.kfold.is_some() || self.kfold_groups || !self.test_groups.is_empty()
    }
}

/// Runs `aether train`.
pub fn run(args: Args) -> Result<()> {
    args.opts.check()?;
    let outs = outputs(&args);
    for (_, p) in &outs {
        check_output_file(p)?;
    }
    distinct_outputs(
        &outs
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_path()))
            .collect::<Vec<_>>(),
    )?;
    let (ds, skipped) = load(&args.data)?;
    if !args.quiet {
        print_skipped(&args.data, &skipped);
    }
    let hash = data_hash(&ds);
    let pool = select_groups(&ds, &args.opts.groups, args.opts.group_field)?;
    if args.evaluation_mode() {
        let plan = plan(&args, &ds, &pool)?;
        return run_plan(&args, &ds, &hash, plan);
    }
    let v1 = args.format == "v1";
    let mut opts = args.opts.clone();
    if v1 && opts.arch == "full" {
        opts.arch = "bare v1".into();
    }
    if v1 && !derive_arch(&opts, ds.dim(), ds.classes.len())?.is_v1_compatible() {
        bail!("--format v1 needs the bare v1 architecture (use --arch 'bare v1')");
    }
    let fitted = fit(&ds, &pool, &opts, args.quiet)?;
    let val = if fitted.val_recordings.is_empty() {
        None
    } else {
        Some(evaluate(
            &ds,
            &fitted.val_recordings,
            fitted.window,
            model_logits(&fitted.outcome.model),
        )?)
    };
    let bytes = model_bytes(&fitted, &ds, &hash, v1, args.f16)?;
    write_atomic(&args.out, &bytes)?;
    let int8 = if args.int8 {
        let tr = WindowSet::new(&ds, &fitted.train_recordings, fitted.window)?;
        let q = super::quantize::quantize_bytes(&bytes, &tr.slices())?;
        let path = sibling(&args.out, ".int8.rvne");
        write_atomic(&path, &q)?;
        let e = if fitted.val_recordings.is_empty() {
            None
        } else {
            Some(evaluate(
                &ds,
                &fitted.val_recordings,
                fitted.window,
                super::quantize::int8_logits(&q),
            )?)
        };
        Some((path, q.len(), e))
    } else {
        None
    };
    let mut report = fitted_json(&fitted, &ds, val.as_ref());
    let obj = report.as_object_mut().expect("object");
    obj.insert("data".into(), json!(args.data.display().to_string()));
    obj.insert("data_sha256".into(), json!(hash));
    obj.insert("classes".into(), json!(ds.classes));
    obj.insert("features".into(), json!(ds.feature_names));
    obj.insert(
        "skipped".into(),
        json!(skipped
            .skipped
            .iter()
            .map(|(p, r)| format!("{p}: {r}"))
            .collect::<Vec<_>>()),
    );
    obj.insert("model".into(), json!(args.out.display().to_string()));
    obj.insert("format".into(), json!(args.format));
    obj.insert("model_bytes".into(), json!(bytes.len()));
    if let Some((path, n, e)) = &int8 {
        obj.insert(
            "int8".into(),
            json!({
                "model": path.display().to_string(),
                "model_bytes": n,
                "validation": e.as_ref().map(|e| evaluation_json(e, &ds.classes)),
            }),
        );
    }
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| args.out.with_extension("json"));
    write_atomic(
        &report_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let mut written = vec![args.out.clone(), report_path];
    if let Some((path, _, e)) = &int8 {
        if let Some(e) = e {
            println!(
                "validation, int8 head: accuracy {:.3} per recording, {:.3} per window, macro-F1 {:.3}",
                e.recordings.accuracy, e.windows.accuracy, e.recordings.macro_f1
            );
        }
        written.push(path.clone());
    }
    if !args.no_plots {
        let curves = sibling(&args.out, ".curves.svg");
        write_atomic(&curves, curves_svg(&fitted.outcome.history)?.as_bytes())?;
        written.push(curves);
        if let Some(e) = &val {
            let conf = sibling(&args.out, ".confusion.svg");
            write_atomic(
                &conf,
                confusion_svg(&e.recordings, &ds.classes, "validation recordings")?.as_bytes(),
            )?;
            written.push(conf);
        }
    }
    let h = &fitted.outcome.history;
    let wps = h.iter().map(|s| s.windows_per_sec).sum::<f64>() / h.len().max(1) as f64;
    println!(
        "trained {} (best {}) in {:.1} s, {:.0} windows/s; window {} stride {}",
        plural(h.len(), "epoch"),
        fitted.outcome.best_epoch + 1,
        fitted.seconds,
        wps,
        fitted.window.len,
        fitted.window.stride
    );
    if let Some(e) = &val {
        println!(
            "validation: accuracy {:.3} per recording ({}), {:.3} per window ({}), macro-F1 {:.3}",
            e.recordings.accuracy,
            plural(e.n_recordings, "recording"),
            e.windows.accuracy,
            plural(e.n_windows, "window"),
            e.recordings.macro_f1
        );
    }
    println!(
        "wrote {}",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// One training of an evaluation protocol and the test sets it is scored on.
pub(crate) struct Run {
    /// Training recordings (validation is split off inside, by recording).
    pub(crate) train: Vec<usize>,
    /// `(label, recordings)` scored with the trained model.
    pub(crate) tests: Vec<(String, Vec<usize>)>,
}

/// An evaluation protocol: its name and its trainings.
pub(crate) struct Plan {
    pub(crate) protocol: &'static str,
    pub(crate) runs: Vec<Run>,
}

/// Which evaluation protocol to run (`train` and `baseline` share it).
pub(crate) struct Protocol<'a> {
    pub(crate) kfold: Option<usize>,
    pub(crate) kfold_groups: bool,
    pub(crate) test_groups: &'a [String],
    pub(crate) group_field: usize,
    pub(crate) seed: u64,
}

/// The trainings of `--kfold`, `--kfold-groups` or `--test-groups` over `pool`.
fn plan(args: &Args, ds: &Dataset, pool: &[usize]) -> Result<Plan> {
    plan_runs(
        ds,
        pool,
        &Protocol {
            kfold: args.kfold,
            kfold_groups: args.kfold_groups,
            test_groups: &args.test_groups,
            group_field: args.opts.group_field,
            seed: args.opts.seed,
        },
    )
}

/// The trainings of a protocol over the recordings `pool` (sorted).
pub(crate) fn plan_runs(ds: &Dataset, pool: &[usize], args: &Protocol<'_>) -> Result<Plan> {
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
    })
}

/// Mean and sample sd (n − 1; 0 for one value).
pub(crate) fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// `{"mean", "sd", "per_seed"}` of per-seed values.
pub(crate) fn stat_json(v: &[f64]) -> Value {
    let (m, sd) = mean_sd(v);
    json!({"mean": m, "sd": sd, "per_seed": v})
}

/// Per test label, per seed: recording accuracy, macro-F1, window accuracy; confusion
/// summed over seeds.
struct Scores {
    acc: Vec<f64>,
    f1: Vec<f64>,
    wacc: Vec<f64>,
    recordings: usize,
    confusion: Vec<Vec<u64>>,
}

impl Scores {
    /// The report's `tests` entries: one per test, labelled.
    fn json(labels: &[String], scores: &[Scores]) -> Vec<Value> {
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

fn run_plan(args: &Args, ds: &Dataset, hash: &str, plan: Plan) -> Result<()> {
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
        .map(|(_, ix)| Scores {
            acc: Vec::new(),
            f1: Vec::new(),
            wacc: Vec::new(),
            recordings: ix.len(),
            confusion: vec![vec![0u64; c]; c],
        })
        .collect();
    // With --int8 the same scores for each run's int8 head.
    let mut scores8: Vec<Scores> = if args.int8 {
        scores
            .iter()
            .map(|sc| Scores {
                acc: Vec::new(),
                f1: Vec::new(),
                wacc: Vec::new(),
                recordings: sc.recordings,
                confusion: vec![vec![0u64; c]; c],
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut pooled8 = Vec::new();
    // Per seed: pooled accuracy over every test recording, and the mean over tests.
    let (mut pooled, mut mean_over_tests, mut mean_f1) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_run_json = Vec::new();
    for s in 0..args.seeds {
        let mut opts = args.opts.clone();
        opts.seed = args.opts.seed.wrapping_add(s as u64);
        let mut t = 0usize;
        let (mut correct, mut total) = (0u64, 0u64);
        let (mut correct8, mut total8) = (0u64, 0u64);
        let (mut accs, mut f1s) = (Vec::new(), Vec::new());
        for run in &plan.runs {
            let fitted = fit(ds, &run.train, &opts, args.quiet)?;
            // The int8 head of this run, calibrated on its training windows.
            let int8 = if args.int8 {
                let bytes = model_bytes(&fitted, ds, hash, false, false)?;
                let tr = WindowSet::new(ds, &fitted.train_recordings, fitted.window)?;
                Some(super::quantize::quantize_bytes(&bytes, &tr.slices())?)
            } else {
                None
            };
            let mut tests_json = Vec::new();
            for (label, test) in &run.tests {
                let test_int8 = match &int8 {
                    Some(q) => {
                        let e8 =
                            evaluate(ds, test, fitted.window, super::quantize::int8_logits(q))?;
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
                        println!(
                            "seed {}: {label}, int8 head: accuracy {:.3} per recording, {:.3} per window, macro-F1 {:.3}",
                            opts.seed,
                            e8.recordings.accuracy,
                            e8.windows.accuracy,
                            e8.recordings.macro_f1
                        );
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
                println!(
                    "seed {}: {label}: accuracy {:.3} per recording ({}), {:.3} per window, macro-F1 {:.3}",
                    opts.seed,
                    e.recordings.accuracy,
                    plural(e.n_recordings, "recording"),
                    e.windows.accuracy,
                    e.recordings.macro_f1
                );
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
                if args.int8 {
                    o.insert("test_int8".into(), tests_json[0]["test_int8"].clone());
                }
            }
            per_run_json.push(j);
        }
        pooled.push(correct as f64 / total.max(1) as f64);
        if args.int8 {
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
    let seeds: Vec<u64> = (0..args.seeds as u64)
        .map(|s| args.opts.seed.wrapping_add(s))
        .collect();
    let (pm, psd) = mean_sd(&pooled);
    let (mm, msd) = mean_sd(&mean_over_tests);
    let (fm, fsd) = mean_sd(&mean_f1);
    let mut report = json!({
        "data": args.data.display().to_string(),
        "data_sha256": hash,
        "classes": ds.classes,
        "protocol": plan.protocol,
        "group_field": args.opts.group_field,
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
    if args.int8 {
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
            println!(
                "{l}: f32 head {a:.3}, int8 head {a8:.3} per recording ({:+.1} pp); per window {w:.3} vs {w8:.3}",
                (a8 - a) * 100.0
            );
        }
        println!(
            "int8 head: accuracy {p8:.3} pooled over every test recording (f32 head {:.3})",
            mean_sd(&pooled).0
        );
    }
    if let Some(k) = args.kfold {
        // The keys of single-seed k-fold reports, kept for their readers.
        let per_run = report["per_run"].clone();
        let o = report.as_object_mut().expect("object");
        o.insert("folds".into(), json!(k));
        o.insert("seed".into(), json!(args.opts.seed));
        o.insert("mean_fold_accuracy".into(), json!(mm));
        o.insert("mean_fold_macro_f1".into(), json!(fm));
        let w: Vec<f64> = scores.iter().map(|s| mean_sd(&s.wacc).0).collect();
        o.insert("mean_fold_window_accuracy".into(), json!(mean_sd(&w).0));
        o.insert("per_fold".into(), per_run);
    }
    write_atomic(&args.out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    let pm_sd = |m: f64, sd: f64| {
        if args.seeds > 1 {
            format!("{m:.3} ± {sd:.3}")
        } else {
            format!("{m:.3}")
        }
    };
    if plan.protocol != "kfold" {
        for (l, sc) in labels.iter().zip(&scores) {
            let (a, asd) = mean_sd(&sc.acc);
            let (f, fsd2) = mean_sd(&sc.f1);
            println!(
                "{l}: accuracy {} per recording ({}), macro-F1 {}",
                pm_sd(a, asd),
                plural(sc.recordings, "recording"),
                pm_sd(f, fsd2)
            );
        }
    }
    let what = match plan.protocol {
        "kfold" => format!("{}-fold by recording", plan.runs.len()),
        "kfold-groups" => format!("leave one group out ({} groups)", plan.runs.len()),
        _ => format!("test groups {}", args.test_groups.join(", ")),
    };
    println!(
        "{what}{}: accuracy {} (pooled over {}), mean accuracy over tests {}, mean macro-F1 {}; report {}",
        if args.seeds > 1 {
            format!(", {} seeds", args.seeds)
        } else {
            String::new()
        },
        pm_sd(pm, psd),
        plural(scores.iter().map(|s| s.recordings).sum(), "recording"),
        pm_sd(mm, msd),
        pm_sd(fm, fsd),
        args.out.display()
    );
    Ok(())
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing plot: {e:?}")
}

/// SVG of the loss (train, validation) and accuracy curves over epochs.
pub fn curves_svg(h: &[EpochStats]) -> Result<String> {
    use plotters::prelude::*;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (l, r) = root.split_horizontally(450);
        let n = h.len().max(2) as f64;
        let max_loss = h
            .iter()
            .flat_map(|s| [Some(s.train_loss), s.val_loss])
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0.1f64, f64::max);
        let series = |f: &dyn Fn(&EpochStats) -> Option<f64>| -> Vec<(f64, f64)> {
            h.iter()
                .filter_map(|s| f(s).map(|v| ((s.epoch + 1) as f64, v)))
                .collect()
        };
        for (area, title, ymax, tr, va) in [
            (
                &l,
                "loss",
                max_loss * 1.05,
                series(&|s| Some(s.train_loss)),
                series(&|s| s.val_loss),
            ),
            (
                &r,
                "accuracy (window)",
                1.0,
                series(&|s| Some(s.train_accuracy)),
                series(&|s| s.val_accuracy),
            ),
        ] {
            let mut ch = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(45)
                .build_cartesian_2d(1f64..n, 0f64..ymax)
                .map_err(plot_err)?;
            ch.configure_mesh()
                .x_desc("epoch")
                .draw()
                .map_err(plot_err)?;
            ch.draw_series(LineSeries::new(tr, &BLUE))
                .map_err(plot_err)?
                .label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
            if !va.is_empty() {
                ch.draw_series(LineSeries::new(va, &RED))
                    .map_err(plot_err)?
                    .label("validation")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
            }
            ch.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(s)
}

/// SVG of a confusion matrix (rows truth, columns predicted) with counts.
pub fn confusion_svg(r: &ClassificationReport, classes: &[String], title: &str) -> Result<String> {
    use plotters::prelude::*;
    let c = classes.len();
    let rows = r.confusion.rows();
    let max = rows.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let cell = 60i32;
    let left = 130i32;
    let top = 50i32;
    let size = (
        (left + cell * c as i32 + 20) as u32,
        (top + cell * c as i32 + 90) as u32,
    );
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let font = ("sans-serif", 14).into_font();
        root.draw(&Text::new(
            format!("{title}: accuracy {:.3}", r.accuracy),
            (10, 15),
            font.clone(),
        ))
        .map_err(plot_err)?;
        for (t, row) in rows.iter().enumerate() {
            let y = top + cell * t as i32;
            root.draw(&Text::new(
                classes[t].clone(),
                (5, y + cell / 2 - 7),
                font.clone(),
            ))
            .map_err(plot_err)?;
            for (p, &v) in row.iter().enumerate() {
                let x = left + cell * p as i32;
                let shade = (255.0 * (1.0 - 0.8 * v as f64 / max)) as u8;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(shade, shade, 255).filled(),
                ))
                .map_err(plot_err)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.stroke_width(1),
                ))
                .map_err(plot_err)?;
                root.draw(&Text::new(
                    v.to_string(),
                    (x + cell / 2 - 8, y + cell / 2 - 7),
                    font.clone(),
                ))
                .map_err(plot_err)?;
            }
        }
        let yb = top + cell * c as i32 + 8;
        for (p, name) in classes.iter().enumerate() {
            let x = left + cell * p as i32 + 4;
            root.draw(&Text::new(
                name.chars().take(8).collect::<String>(),
                (x, yb),
                font.clone(),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Text::new(
            "rows: truth, columns: predicted",
            (10, yb + 30),
            font,
        ))
        .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_data::Recording;

    fn ds(lens: &[usize]) -> Dataset {
        Dataset {
            classes: vec!["a".into(), "b".into()],
            feature_names: vec!["x".into(), "y".into()],
            recordings: lens
                .iter()
                .enumerate()
                .map(|(i, &t)| Recording {
                    class: i % 2,
                    name: format!("r{i}"),
                    frames: (0..t * 2).map(|v| v as f32).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn window_derivation() {
        let d = ds(&[100; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!((w.len, w.stride), (100, 25));
        let d = ds(&[1000, 2000, 3000]);
        let w = derive_window(&d, &[0, 1, 2], None, None).unwrap();
        assert_eq!(
            (w.len, w.stride),
            (256, 64),
            "continuous recordings: the deployed N"
        );
        let d = ds(&[512; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!(w.len, 512);
        let d = ds(&[513; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!(w.len, 256);
        let d = ds(&[300; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!((w.len, w.stride), (300, 75), "whole 3 s gesture recordings");
        let d = ds(&[1, 1]);
        let w = derive_window(&d, &[0, 1], None, None).unwrap();
        assert_eq!((w.len, w.stride), (1, 1));
        assert!(derive_window(&d, &[0], Some(0), None).is_err());
        assert!(derive_window(&d, &[], None, None).is_err());
    }

    #[test]
    fn default_options_are_the_command_line_defaults() {
        let o = TrainOpts::default();
        assert_eq!(o.aug_crop, 1.0, "crops off");
        assert_eq!(o.weight_decay, 0.01);
        assert_eq!(
            (o.val, o.attention.as_str(), o.arch.as_str()),
            (0.2, "sparse", "full")
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
    fn hash_sees_every_value() {
        let a = ds(&[3, 4]);
        let mut b = a.clone();
        assert_eq!(data_hash(&a), data_hash(&b));
        b.recordings[1].frames[5] += 1.0;
        assert_ne!(data_hash(&a), data_hash(&b));
        let mut c = a.clone();
        c.recordings[0].name = "z".into();
        assert_ne!(data_hash(&a), data_hash(&c));
    }

    #[test]
    fn groups_select_and_refuse_unknown() {
        let mut d = ds(&[2, 2, 2]);
        d.recordings[0].name = "D1_a".into();
        d.recordings[1].name = "D2_a".into();
        d.recordings[2].name = "D1_b".into();
        assert_eq!(select_groups(&d, &["D1".into()], 0).unwrap(), vec![0, 2]);
        assert_eq!(select_groups(&d, &[], 0).unwrap(), vec![0, 1, 2]);
        let e = select_groups(&d, &["D9".into()], 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("D9") && e.contains("D1, D2"), "{e}");
    }

    #[test]
    fn arch_names_follow_the_ablation_table() {
        let o = TrainOpts {
            arch: "bare v1".into(),
            attention: "sparse".into(),
            ..TrainOpts::default()
        };
        assert!(derive_arch(&o, 16, 4).unwrap().is_v1_compatible());
        let o = TrainOpts {
            arch: "nope".into(),
            attention: "sparse".into(),
            ..TrainOpts::default()
        };
        assert!(derive_arch(&o, 16, 4).is_err());
    }

    #[test]
    fn report_text_columns_align_for_long_names_and_counts() {
        let truth: Vec<usize> = (0..1200).map(|i| i % 2).collect();
        let pred: Vec<usize> = (0..1200).map(|i| (i / 7) % 2).collect();
        let r = aether_head::train::classification_report(&pred, &truth, 2).unwrap();
        let names = ["a_rather_long_class".to_string(), "é".to_string()];
        let t = report_text(&r, &names);
        let conf: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("confusion"))
            .skip(1)
            .collect();
        assert_eq!(conf.len(), 3, "{t}");
        let width = conf[0].chars().count();
        assert!(conf.iter().all(|l| l.chars().count() == width), "{t}");
        assert!(conf[1].starts_with("0 a_rather_long_class"), "{t}");
    }

    #[test]
    fn svgs_render() {
        let r = aether_head::train::classification_report(&[0, 1, 1], &[0, 1, 0], 2).unwrap();
        let s = confusion_svg(&r, &["a".into(), "b".into()], "t").unwrap();
        assert!(s.starts_with("<svg") || s.contains("<svg"));
        let h = vec![EpochStats {
            epoch: 0,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: Some(0.9),
            val_accuracy: Some(0.6),
            val_macro_f1: Some(0.6),
            learning_rate: 1e-3,
            grad_norm: 1.0,
            windows_per_sec: 10.0,
            seconds: 1.0,
            improved: true,
        }];
        assert!(curves_svg(&h).unwrap().contains("<svg"));
    }
}
