//! The training loop: seeded shuffling, mini-batches in parallel, AdamW with warmup +
//! cosine, clipping, class weighting, validation, early stopping with best-weights restore.
//!
//! Determinism: a batch is cut into fixed chunks of [`GRAD_CHUNK`] windows; each chunk's
//! gradient is accumulated serially, and chunk gradients are summed in chunk order. The
//! result depends only on the seed and the data, never on thread count or timing.

use std::ops::ControlFlow;
use std::time::Instant;

use rayon::prelude::*;

use super::config::{Architecture, Monitor, TrainConfig};
use super::error::TrainError;
use super::metrics::{mean_cross_entropy, report_from_logits};
use super::model::{Model, Plans, Window, Workspace};
use super::optim::{clip_global_norm, AdamW, Schedule};
use super::qat::fake_quant_weights;
use super::rng::Rng;

/// Windows per gradient chunk: the unit of parallel work and of the fixed-order reduction.
pub const GRAD_CHUNK: usize = 4;

/// Figures of one finished epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean (unweighted) cross-entropy of the training windows, before each step.
    pub train_loss: f64,
    /// Training accuracy, before each step.
    pub train_accuracy: f64,
    /// Validation mean cross-entropy (`None` without validation windows).
    pub val_loss: Option<f64>,
    /// Validation accuracy (window level).
    pub val_accuracy: Option<f64>,
    /// Validation macro-F1 (window level).
    pub val_macro_f1: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub learning_rate: f32,
    /// Mean global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training throughput (forward + backward + update), windows per second.
    pub windows_per_sec: f64,
    /// Wall time of the epoch including validation, seconds.
    pub seconds: f64,
    /// Whether this epoch is the best so far by the monitored figure.
    pub improved: bool,
}

/// Progress reported to the caller's callback.
#[derive(Debug, Clone, Copy)]
pub enum TrainEvent<'a> {
    /// One optimiser step finished.
    Batch {
        /// 0-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// Mean cross-entropy of the batch.
        loss: f64,
    },
    /// One epoch finished (after validation).
    Epoch(&'a EpochStats),
}

/// What [`train`] returns.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The model with the best weights (by the monitor; the last epoch without validation).
    pub model: Model,
    /// Per-epoch figures.
    pub history: Vec<EpochStats>,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Stopped by patience before `epochs`.
    pub stopped_early: bool,
    /// Stopped because the callback returned `Break`.
    pub cancelled: bool,
    /// The class weights used by the loss.
    pub class_weights: Vec<f32>,
    /// Optimiser steps taken.
    pub steps: usize,
}

/// Inverse-frequency class weights `w_c = n / (C·n_c)` (1 for a class with no window).
pub fn inverse_frequency_weights(labels: &[usize], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &y in labels {
        if y < classes {
            counts[y] += 1;
        }
    }
    let n = labels.len() as f64;
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                1.0
            } else {
                (n / (classes as f64 * c as f64)) as f32
            }
        })
        .collect()
}

/// Initialises a model for `arch` with `cfg.seed`, fits the input statistics on `train`
/// (when `input_norm` is on) and trains it; see [`train_model`].
pub fn train(
    arch: Architecture,
    cfg: &TrainConfig,
    train: &[Window],
    val: &[Window],
    on_event: impl FnMut(TrainEvent<'_>) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    let mut model = Model::new(arch, cfg.seed)?;
    if model.arch().input_norm {
        model.fit_input_norm(train)?;
    }
    train_model(model, cfg, train, val, on_event)
}

/// The best epoch so far: `(val loss, accuracy, macro-F1)`, its weights, its index.
type Best = ((f64, f64, f64), Vec<f32>, usize);

/// Writes the augmented copy of `frames` (see [`super::config::Augment`]) into `out`;
/// the random stream is a function of (seed, epoch, window index) only.
fn augment_into(
    m: &Model,
    cfg: &TrainConfig,
    epoch: usize,
    index: usize,
    frames: &[f32],
    out: &mut Vec<f32>,
) {
    let a = cfg.augment;
    let f = m.arch().features;
    let mix = (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let mut rng = Rng::new(cfg.seed ^ 0xA06E_0000_0000_0003 ^ mix);
    let std = m.input_std();
    let gain: Vec<f32> = (0..f)
        .map(|_| (f64::from(a.gain_std) * rng.normal()).exp() as f32)
        .collect();
    let off: Vec<f32> = (0..f)
        .map(|c| (f64::from(a.offset_std) * rng.normal()) as f32 * std[c])
        .collect();
    out.clear();
    if a.reshapes() {
        reshape_into(&a, &mut rng, frames, f, out);
    } else {
        out.extend_from_slice(frames);
    }
    let masked: Vec<bool> = (0..f)
        .map(|_| a.mask > 0.0 && rng.uniform() < f64::from(a.mask))
        .collect();
    let mean = m.input_mean();
    for row in out.chunks_exact_mut(f) {
        for (c, x) in row.iter_mut().enumerate() {
            let noise = if a.noise_std > 0.0 {
                (f64::from(a.noise_std) * rng.normal()) as f32 * std[c]
            } else {
                0.0
            };
            *x = if masked[c] {
                mean[c]
            } else {
                *x * gain[c] + off[c] + noise
            };
        }
    }
}

/// The crop / time warp of [`super::config::Augment`]: a contiguous part of the window,
/// read at a random speed, resampled (linear interpolation) to a crop length.
fn reshape_into(
    a: &super::config::Augment,
    rng: &mut Rng,
    frames: &[f32],
    f: usize,
    out: &mut Vec<f32>,
) {
    let n = frames.len() / f;
    let lens = a.crop_lengths(n);
    let u = f64::from(a.crop_min) + (1.0 - f64::from(a.crop_min)) * rng.uniform();
    let want = (u * n as f64).ceil() as usize;
    let l = lens.iter().copied().find(|&l| l >= want).unwrap_or(n);
    let s = (f64::from(a.speed) * (2.0 * rng.uniform() - 1.0)).exp();
    let m = ((l as f64 * s).round() as usize).clamp(1, n);
    let start = rng.below(n - m + 1);
    let span = &frames[start * f..(start + m) * f];
    if m == l {
        out.extend_from_slice(span);
        return;
    }
    for j in 0..l {
        let pos = if l > 1 {
            j as f64 * (m - 1) as f64 / (l - 1) as f64
        } else {
            0.0
        };
        let i0 = pos.floor() as usize;
        let i1 = (i0 + 1).min(m - 1);
        let w = (pos - i0 as f64) as f32;
        for c in 0..f {
            let (x0, x1) = (span[i0 * f + c], span[i1 * f + c]);
            out.push(x0 + (x1 - x0) * w);
        }
    }
}

/// `λ ~ Beta(α, α)` (Jöhnk's method; 0.5 after 64 rejections), folded to `λ ≥ 1/2` so the
/// window keeps its own label as the larger part.
fn beta_sym(alpha: f32, rng: &mut Rng) -> f32 {
    let inv = 1.0 / f64::from(alpha);
    for _ in 0..64 {
        let x = rng.uniform().powf(inv);
        let y = rng.uniform().powf(inv);
        if x + y <= 1.0 && x + y > 0.0 {
            let l = (x / (x + y)) as f32;
            return l.max(1.0 - l);
        }
    }
    0.5
}

/// The training target of `label`: one-hot, or smoothed by `eps`.
fn target_of(label: usize, classes: usize, eps: f32, out: &mut [f32]) {
    out.iter_mut().for_each(|t| *t = eps / classes as f32);
    out[label] += 1.0 - eps;
}

/// Better-than test of the monitored figure; `(loss, accuracy, macro_f1)`.
fn better(m: Monitor, new: (f64, f64, f64), old: (f64, f64, f64)) -> bool {
    match m {
        Monitor::ValLoss => new.0 < old.0,
        Monitor::ValAccuracy => new.1 > old.1 || (new.1 == old.1 && new.0 < old.0),
        Monitor::ValMacroF1 => new.2 > old.2 || (new.2 == old.2 && new.0 < old.0),
    }
}

/// Copies `latent`'s weights into `shadow`, projected onto the int8 grid.
fn project_into(latent: &Model, shadow: &mut Model) {
    shadow.params_mut().copy_from_slice(latent.params());
    fake_quant_weights(latent.layout(), shadow.params_mut());
}

/// Trains `model` in place of its current weights (input statistics are kept as given).
///
/// `val` may be empty (no early stopping; the last weights are kept). `on_event` sees
/// every step and epoch; returning `Break` stops after the current step with the best
/// weights so far. With [`TrainConfig::fake_quant`] the forward, the backward and
/// validation use the weights projected onto their int8 grid, and so does the result.
pub fn train_model(
    mut model: Model,
    cfg: &TrainConfig,
    train: &[Window],
    val: &[Window],
    mut on_event: impl FnMut(TrainEvent<'_>) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    cfg.validate()?;
    if train.is_empty() {
        return Err(TrainError::Empty);
    }
    if let Some(t) = &cfg.trainable {
        if t.len() != model.params().len() {
            return Err(TrainError::LengthMismatch {
                what: "trainable",
                expected: model.params().len(),
                got: t.len(),
            });
        }
    }
    let frozen: Vec<(usize, f32)> = match &cfg.trainable {
        Some(t) => t
            .iter()
            .zip(model.params())
            .enumerate()
            .filter(|(_, (&on, _))| !on)
            .map(|(i, (_, &p))| (i, p))
            .collect(),
        None => Vec::new(),
    };
    model.check_windows(train)?;
    model.check_windows(val)?;
    let pool = match cfg.threads {
        0 => None,
        t => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .map_err(|e| TrainError::config("threads", format!("thread pool: {e}")))?,
        ),
    };
    let f = model.arch().features;
    let classes = model.arch().classes;
    let aug = cfg.augment;
    let plans = Plans::build(
        model.arch(),
        train
            .iter()
            .flat_map(|w| aug.crop_lengths(w.frames.len() / f)),
    );
    let labels: Vec<usize> = train.iter().map(|w| w.label).collect();
    let weights = if cfg.class_weighting {
        inverse_frequency_weights(&labels, classes)
    } else {
        vec![1.0; classes]
    };
    let batches = train.len().div_ceil(cfg.batch_size);
    let total = batches * cfg.epochs;
    let sched = Schedule {
        peak: cfg.learning_rate,
        min_lr: cfg.learning_rate * cfg.min_lr_ratio,
        warmup: (cfg.warmup_fraction as f64 * total as f64).round() as usize,
        total,
    };
    let mut opt = AdamW::new(
        model.layout(),
        cfg.beta1,
        cfg.beta2,
        cfg.eps,
        cfg.weight_decay,
    );
    let mut rng = Rng::new(cfg.seed ^ 0x5EED_5407_F1E5_0002);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let val_frames: Vec<&[f32]> = val.iter().map(|w| w.frames).collect();
    let val_labels: Vec<usize> = val.iter().map(|w| w.label).collect();
    let nparams = model.layout().total();
    let mut history = Vec::new();
    let mut best: Option<Best> = None;
    // The averaged weights (a copy of the initial ones until the first step).
    let mut ema: Vec<f32> = if cfg.ema.is_some() {
        model.params().to_vec()
    } else {
        Vec::new()
    };
    let (mut since_best, mut stopped_early, mut cancelled, mut step) =
        (0usize, false, false, 0usize);
    // Quantisation-aware training: the weights every forward sees, projected onto the
    // int8 grid from the float ("latent") weights the optimiser updates.
    let mut shadow: Option<Model> = cfg.fake_quant.then(|| model.clone());
    'epochs: for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut norm_sum, mut lr) = (0.0f64, 0usize, 0.0f64, 0.0f32);
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            let total_w: f32 = idx.iter().map(|&i| weights[train[i].label]).sum();
            if let Some(q) = shadow.as_mut() {
                project_into(&model, q);
            }
            let m = shadow.as_ref().unwrap_or(&model);
            let soft = cfg.label_smoothing > 0.0 || cfg.mixup > 0.0;
            let work = || {
                idx.par_chunks(GRAD_CHUNK)
                    .enumerate()
                    .map_init(
                        || {
                            (
                                Workspace::default(),
                                (Vec::new(), Vec::new(), Vec::new()),
                                vec![0.0f32; classes],
                                vec![0.0f32; classes],
                            )
                        },
                        |(ws, (buf, buf2, buf3), y, y2), (ci, chunk)| {
                            let mut g = vec![0.0f32; nparams];
                            let (mut l, mut c) = (0.0f64, 0usize);
                            for (k, &i) in chunk.iter().enumerate() {
                                let mut w = train[i];
                                if cfg.augment.is_active() {
                                    augment_into(m, cfg, epoch, i, w.frames, buf);
                                    w.frames = buf;
                                }
                                if soft {
                                    target_of(w.label, classes, cfg.label_smoothing, y);
                                }
                                if cfg.mixup > 0.0 {
                                    // The partner: the next window of the batch.
                                    let pos = ci * GRAD_CHUNK + k;
                                    let j = idx[(pos + 1) % idx.len()];
                                    let mut rng = Rng::new(
                                        cfg.seed
                                            ^ 0x3A1C_0000_0000_0007
                                            ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                                            ^ (i as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
                                    );
                                    let lam = beta_sym(cfg.mixup, &mut rng);
                                    let other = if cfg.augment.is_active() {
                                        augment_into(
                                            m,
                                            cfg,
                                            epoch,
                                            j + train.len(),
                                            train[j].frames,
                                            buf2,
                                        );
                                        &buf2[..]
                                    } else {
                                        train[j].frames
                                    };
                                    let len = w.frames.len().min(other.len());
                                    if len > 0 && plans.get(len / f).is_some() {
                                        buf3.clear();
                                        buf3.extend(
                                            w.frames[..len]
                                                .iter()
                                                .zip(&other[..len])
                                                .map(|(a, b)| lam * a + (1.0 - lam) * b),
                                        );
                                        w.frames = buf3;
                                        target_of(train[j].label, classes, cfg.label_smoothing, y2);
                                        y.iter_mut()
                                            .zip(y2.iter())
                                            .for_each(|(a, b)| *a = lam * *a + (1.0 - lam) * b);
                                    }
                                }
                                let n = w.frames.len() / f;
                                if let Some(plan) = plans.get(n) {
                                    let (ce, pred) = m.window_step(
                                        &w,
                                        soft.then_some(&y[..]),
                                        weights[w.label] / total_w,
                                        plan,
                                        ws,
                                        &mut g,
                                    );
                                    l += f64::from(ce);
                                    c += usize::from(pred == w.label);
                                }
                            }
                            (g, l, c)
                        },
                    )
                    .collect::<Vec<_>>()
            };
            let parts = match &pool {
                Some(p) => p.install(work),
                None => work(),
            };
            let mut parts = parts.into_iter();
            let (mut g, mut bl, mut bc) = parts.next().unwrap_or((vec![0.0; nparams], 0.0, 0));
            for (pg, pl, pc) in parts {
                g.iter_mut().zip(&pg).for_each(|(a, b)| *a += b);
                bl += pl;
                bc += pc;
            }
            if !bl.is_finite() || g.iter().any(|x| !x.is_finite()) {
                return Err(TrainError::Diverged { epoch });
            }
            norm_sum += f64::from(clip_global_norm(&mut g, cfg.clip_norm));
            lr = sched.lr(step);
            opt.step(model.params_mut(), &g, lr);
            if !frozen.is_empty() {
                let p = model.params_mut();
                for &(i, v) in &frozen {
                    p[i] = v;
                }
            }
            if let Some(d) = cfg.ema {
                // Warm-started decay so the average is not dominated by the initialisation.
                let d = d.min((1 + step) as f32 / (10 + step) as f32);
                for (e, p) in ema.iter_mut().zip(model.params()) {
                    *e = d * *e + (1.0 - d) * p;
                }
            }
            step += 1;
            loss_sum += bl;
            correct += bc;
            let ev = TrainEvent::Batch {
                epoch,
                batch: b,
                batches,
                loss: bl / idx.len() as f64,
            };
            if on_event(ev).is_break() {
                cancelled = true;
            }
            if cancelled {
                break;
            }
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let seen = if cancelled {
            correct.max(1)
        } else {
            train.len()
        };
        let mut stats = EpochStats {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            val_loss: None,
            val_accuracy: None,
            val_macro_f1: None,
            learning_rate: lr,
            grad_norm: norm_sum / batches as f64,
            windows_per_sec: train.len() as f64 / train_secs.max(1e-9),
            seconds: 0.0,
            improved: false,
        };
        if cfg.ema.is_some() {
            model.swap_params(&mut ema);
        }
        if !val.is_empty() {
            let judged = match shadow.as_mut() {
                Some(q) => {
                    project_into(&model, q);
                    &*q
                }
                None => &model,
            };
            let logits = match &pool {
                Some(p) => p.install(|| judged.logits_batch(&val_frames)),
                None => judged.logits_batch(&val_frames),
            };
            let logits = match logits {
                Ok(l) => l,
                Err(e) => {
                    if cfg.ema.is_some() {
                        model.swap_params(&mut ema);
                    }
                    return Err(e);
                }
            };
            let loss = mean_cross_entropy(&logits, &val_labels, classes)?;
            let rep = report_from_logits(&logits, &val_labels, classes)?;
            stats.val_loss = Some(loss);
            stats.val_accuracy = Some(rep.accuracy);
            stats.val_macro_f1 = Some(rep.macro_f1);
            let key = (loss, rep.accuracy, rep.macro_f1);
            let improved = match &best {
                None => true,
                Some((old, _, _)) => better(cfg.monitor, key, *old),
            };
            if improved {
                best = Some((key, model.params().to_vec(), epoch));
                since_best = 0;
            } else {
                since_best += 1;
            }
            stats.improved = improved;
        } else {
            stats.improved = true;
        }
        // The last epoch's averaged weights stay in `ema` for a run without validation.
        if cfg.ema.is_some() {
            model.swap_params(&mut ema);
        }
        stats.seconds = t0.elapsed().as_secs_f64();
        history.push(stats);
        if let Some(s) = history.last() {
            if on_event(TrainEvent::Epoch(s)).is_break() {
                cancelled = true;
            }
        }
        if cancelled {
            break 'epochs;
        }
        if let Some(p) = cfg.patience {
            if !val.is_empty() && since_best >= p {
                stopped_early = epoch + 1 < cfg.epochs;
                break;
            }
        }
    }
    let last = history.len().saturating_sub(1);
    let best_epoch = match best {
        Some((_, params, e)) => {
            model.params_mut().copy_from_slice(&params);
            e
        }
        None => {
            if cfg.ema.is_some() {
                model.params_mut().copy_from_slice(&ema);
            }
            last
        }
    };
    if cfg.fake_quant {
        let layout = model.layout().clone();
        fake_quant_weights(&layout, model.params_mut());
    }
    Ok(TrainOutcome {
        model,
        history,
        best_epoch,
        stopped_early,
        cancelled,
        class_weights: weights,
        steps: step,
    })
}
