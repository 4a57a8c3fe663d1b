//! Architecture and training configuration.
//!
//! [`Architecture`] names every switch of docs/model.md so an ablation can turn each
//! option on or off independently; [`TrainConfig`] holds the optimiser, schedule and
//! loop settings.

use crate::config::{AttentionBackend, HeadConfig, Pooling, Positional};

use super::error::TrainError;

/// The shape and options of a trainable head: the head's own [`HeadConfig`], so the
/// model that is trained is described exactly as the model that is deployed.
pub type Architecture = HeadConfig;

impl HeadConfig {
    /// The ablation set of this architecture: itself (`"full"`), then one variant per
    /// option switched off (or changed: `pooling last`, `dense` attention with the same
    /// causality), then the bare v1 architecture with the same heads and layers.
    pub fn ablations(&self) -> Vec<(&'static str, HeadConfig)> {
        let b = self;
        let with = |f: &dyn Fn(&mut HeadConfig)| {
            let mut a = b.clone();
            f(&mut a);
            a
        };
        vec![
            ("full", b.clone()),
            ("no input_norm", with(&|a| a.input_norm = false)),
            (
                "no embed",
                with(&|a| {
                    a.embed = false;
                    a.d_model = b.features;
                }),
            ),
            ("no positional", with(&|a| a.positional = Positional::None)),
            ("no pre_norm", with(&|a| a.pre_norm = false)),
            ("no biases", with(&|a| a.biases = false)),
            ("no mlp", with(&|a| a.mlp_hidden = 0)),
            ("no final_norm", with(&|a| a.final_norm = false)),
            ("pooling last", with(&|a| a.pooling = Pooling::Last)),
            (
                "dense attention",
                with(&|a| {
                    // Dense attention keeps only the pattern's causality.
                    a.attention = AttentionBackend::Dense;
                    a.pattern = aether_kernel::SparsePattern {
                        causal: b.pattern.causal,
                        ..Default::default()
                    };
                }),
            ),
            (
                "bare v1",
                HeadConfig::bare(aether_rvne::Dims {
                    d_model: b.features,
                    mlp_hidden: 0,
                    ..b.dims()
                }),
            ),
        ]
    }

    /// Refuses what the head cannot run ([`HeadConfig::validate`]) and sizes the trainer
    /// will not allocate (width, MLP or classes above 65 536, more than 256 layers).
    pub fn check_trainable(&self) -> Result<(), TrainError> {
        self.validate()?;
        let too_big = [self.d_model, self.q_width(), self.mlp_hidden]
            .iter()
            .any(|&v| v > 1 << 16);
        if too_big || self.layers > 256 || self.classes > 1 << 16 {
            return Err(TrainError::config(
                "architecture",
                "dimensions are implausibly large",
            ));
        }
        Ok(())
    }
}

/// Which validation figure early stopping and best-weights selection watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Monitor {
    /// Lowest validation loss (default).
    #[default]
    ValLoss,
    /// Highest validation accuracy (ties broken by lower loss).
    ValAccuracy,
    /// Highest validation macro-F1 (ties broken by lower loss).
    ValMacroF1,
}

/// Optimiser, schedule and loop settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Windows per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate (after warmup).
    pub learning_rate: f32,
    /// Learning rate at the end of the cosine, as a fraction of the peak.
    pub min_lr_ratio: f32,
    /// Fraction of all steps spent in linear warmup (0 ≤ x < 1).
    pub warmup_fraction: f32,
    /// AdamW decoupled weight decay (on weight matrices only).
    pub weight_decay: f32,
    /// AdamW `β₁`.
    pub beta1: f32,
    /// AdamW `β₂`.
    pub beta2: f32,
    /// AdamW `ε`.
    pub eps: f32,
    /// Global gradient-norm clip; `0` or non-finite disables clipping.
    pub clip_norm: f32,
    /// Weight the loss by inverse class frequency of the training windows.
    pub class_weighting: bool,
    /// Stop after this many epochs without validation improvement (`None`: never).
    pub patience: Option<usize>,
    /// The validation figure watched by early stopping and best-weights restore.
    pub monitor: Monitor,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// Worker threads (`0`: rayon's global pool). Results do not depend on it.
    pub threads: usize,
    /// Training-time input augmentation (off by default).
    pub augment: Augment,
    /// Exponential moving average of the weights with this decay per step (`None`:
    /// off): validation, best-epoch selection and the result use the averaged weights.
    pub ema: Option<f32>,
    /// Label smoothing `ε`: the target is `(1 − ε)·onehot + ε / C` (0: off).
    pub label_smoothing: f32,
    /// Mixup `α`: each window is mixed with another of the batch, `λ ~ Beta(α, α)`, inputs
    /// and targets alike (0: off).
    pub mixup: f32,
    /// Which parameters train (one flag per parameter of the model's [`super::Layout`]);
    /// `None`: all. Frozen parameters keep their values (few-shot adaptation).
    pub trainable: Option<Vec<bool>>,
    /// Quantisation-aware training: every step's forward and backward, and validation,
    /// use the weight matrices projected onto their int8 grid ([`super::qat`]), the
    /// gradient passed straight through to the float weights; the result is projected.
    pub fake_quant: bool,
}

/// Seeded training-time augmentation of each window, in units of the model's per-feature
/// input std (1 when `input_norm` is off): `x'[t][c] = x[t][c]·e^{σ_g·a_c} + σ_o·s_c·b_c +
/// σ_n·s_c·ε[t][c]` with `a, b, ε` standard normal, `a_c, b_c` drawn once per window
/// and feature. Mimics per-recording gain/offset differences and sensor noise. The draws
/// depend only on the seed, the epoch and the window index, never on threads.
///
/// Besides the value jitter, a window can be cut and re-timed before it: with
/// `crop_min < 1` the window is replaced by a contiguous part of length
/// `L = ⌈u·n⌉` frames (`u` uniform in `[crop_min, 1]`, `L` rounded up to a multiple of
/// [`CROP_STEP`]), which is what a live stream's outputs see (a context of `H/2 ..= H`
/// frames from a restart, docs/serve.md); with `speed > 0` that part is read at a speed
/// `s = e^{σ_s·z}` (`z` uniform in `[−1, 1]`): a span of `min(n, round(L·s))` frames is
/// resampled linearly to `L` (people do the same gesture faster or slower). With
/// `mask > 0` each feature of the window is zeroed (after input normalisation: set to its
/// mean) with that probability (a band or subcarrier missing on another chip or room).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// `σ_g`: log-normal gain jitter per feature.
    pub gain_std: f32,
    /// `σ_o`: offset jitter per feature.
    pub offset_std: f32,
    /// `σ_n`: additive white noise per value.
    pub noise_std: f32,
    /// Shortest crop as a fraction of the window, in `(0, 1]` (1: no cropping).
    pub crop_min: f32,
    /// `σ_s`: log-speed range of the time warp (0: off).
    pub speed: f32,
    /// Probability of masking each feature for a whole window (0: off).
    pub mask: f32,
}

/// Crop lengths are multiples of this many frames (bounds the number of sequence plans).
pub const CROP_STEP: usize = 8;

impl Default for Augment {
    fn default() -> Self {
        Self {
            gain_std: 0.0,
            offset_std: 0.0,
            noise_std: 0.0,
            crop_min: 1.0,
            speed: 0.0,
            mask: 0.0,
        }
    }
}

impl Augment {
    /// Whether any augmentation is on.
    pub fn is_active(&self) -> bool {
        self.gain_std > 0.0
            || self.offset_std > 0.0
            || self.noise_std > 0.0
            || self.mask > 0.0
            || self.reshapes()
    }

    /// Whether windows are cropped or re-timed.
    pub fn reshapes(&self) -> bool {
        self.crop_min < 1.0 || self.speed > 0.0
    }

    /// The lengths a window of `n` frames may be cropped to (ascending, `n` included).
    pub fn crop_lengths(&self, n: usize) -> Vec<usize> {
        if self.crop_min >= 1.0 || n <= CROP_STEP {
            return vec![n];
        }
        let lo = ((f64::from(self.crop_min) * n as f64).ceil() as usize).clamp(1, n);
        let mut v: Vec<usize> = (lo.div_ceil(CROP_STEP)..)
            .map(|k| k * CROP_STEP)
            .take_while(|&l| l < n)
            .collect();
        v.push(n);
        v
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 32,
            learning_rate: 3e-3,
            min_lr_ratio: 0.05,
            warmup_fraction: 0.05,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip_norm: 1.0,
            class_weighting: true,
            patience: Some(8),
            monitor: Monitor::ValLoss,
            seed: 0,
            threads: 0,
            augment: Augment::default(),
            ema: None,
            label_smoothing: 0.0,
            mixup: 0.0,
            trainable: None,
            fake_quant: false,
        }
    }
}

impl TrainConfig {
    /// Defaults sized for `windows` training windows: batch `clamp(windows/8, 8, 32)`,
    /// enough epochs for about 600 optimiser steps (clamped to 20..=200) and patience
    /// `max(10, epochs/5)`; everything else as [`TrainConfig::default`].
    pub fn for_windows(windows: usize) -> Self {
        let batch_size = (windows / 8).clamp(8, 32);
        let steps_per_epoch = windows.div_ceil(batch_size).max(1);
        let epochs = 600usize.div_ceil(steps_per_epoch).clamp(20, 200);
        Self {
            epochs,
            batch_size,
            patience: Some((epochs / 5).max(10)),
            ..Self::default()
        }
    }

    /// Refuses settings the loop cannot run (zero batch, negative or non-finite rates).
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: &'static str, detail: &str| Err(TrainError::config(what, detail));
        if self.epochs == 0 {
            return bad("epochs", "must be positive");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be positive");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be finite and positive");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio", "must be in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad("warmup_fraction", "must be in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be finite and non-negative");
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return bad("beta1/beta2", "must be in [0, 1)");
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", "must be finite and positive");
        }
        let a = &self.augment;
        if [a.gain_std, a.offset_std, a.noise_std, a.speed]
            .iter()
            .any(|x| !(x.is_finite() && *x >= 0.0))
        {
            return bad("augmentation stds", "must be finite and non-negative");
        }
        if !(a.crop_min > 0.0 && a.crop_min <= 1.0) {
            return bad("crop_min", "must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&a.mask) {
            return bad("mask", "must be in [0, 1)");
        }
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                return bad("ema decay", "must be in [0, 1)");
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing", "must be in [0, 1)");
        }
        if !(self.mixup.is_finite() && self.mixup >= 0.0) {
            return bad("mixup", "must be finite and non-negative");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ablations_switch_one_option_each() {
        let full = Architecture::trainable(6, 3);
        let set = full.ablations();
        assert_eq!(set.len(), 11);
        for (name, a) in &set {
            a.check_trainable().unwrap();
            let diffs = [
                a.input_norm != full.input_norm,
                a.embed != full.embed,
                a.positional != full.positional,
                a.pre_norm != full.pre_norm,
                a.biases != full.biases,
                a.mlp_hidden != full.mlp_hidden,
                a.final_norm != full.final_norm,
                a.pooling != full.pooling,
                a.attention != full.attention,
            ]
            .iter()
            .filter(|&&d| d)
            .count();
            match *name {
                "full" => assert_eq!(diffs, 0),
                "bare v1" => assert!(a.is_v1_compatible()),
                _ => assert_eq!(diffs, 1, "{name}"),
            }
        }
        assert!(!full.is_v1_compatible());
        assert!(TrainConfig::default().validate().is_ok());
        let small = TrainConfig::for_windows(128);
        assert_eq!(
            (small.batch_size, small.epochs, small.patience),
            (16, 75, Some(15))
        );
        let big = TrainConfig::for_windows(100_000);
        assert_eq!(
            (big.batch_size, big.epochs, big.patience),
            (32, 20, Some(10))
        );
        assert!(TrainConfig::for_windows(0).validate().is_ok());
        let bad = TrainConfig {
            warmup_fraction: 1.0,
            ..TrainConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
