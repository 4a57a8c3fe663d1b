//! Architecture and training configuration.
//!
//! [`Architecture`] names every switch of docs/model.md so an ablation can turn each
//! option on or off independently; [`TrainConfig`] holds the optimiser, schedule and
//! loop settings.

use aether_kernel::SparsePattern;

use super::error::TrainError;

/// How the per-position outputs of the last layer are pooled into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Mean over all positions (default).
    #[default]
    Mean,
    /// The last position only.
    Last,
}

/// The attention used by every layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttentionKind {
    /// Sparse attention over the given pattern.
    Sparse(SparsePattern),
    /// Dense softmax attention over all positions (`j ≤ i` when `causal`).
    Dense {
        /// Attend only earlier or equal positions.
        causal: bool,
    },
}

impl Default for AttentionKind {
    /// Sparse with the AETHER default pattern.
    fn default() -> Self {
        AttentionKind::Sparse(SparsePattern::default())
    }
}

/// The shape and options of a head (docs/model.md); every option switches independently.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// `F`: input features per frame.
    pub features: usize,
    /// `D`: model width; must equal `features` when `embed` is off.
    pub d_model: usize,
    /// `L`: number of layers.
    pub layers: usize,
    /// `Hq`: query heads.
    pub q_heads: usize,
    /// `Hkv`: key/value heads (must divide `q_heads`; GQA/MQA when smaller).
    pub kv_heads: usize,
    /// `dh`: per-head dimension.
    pub head_dim: usize,
    /// `C`: classes.
    pub classes: usize,
    /// `H`: MLP hidden width per layer; 0 disables the MLP.
    pub mlp_hidden: usize,
    /// Causal running standardisation of every input feature before `input_norm`
    /// (docs/model.md step 0): each frame relative to the mean and std of the
    /// sequence's frames so far.
    pub running_norm: bool,
    /// Normalise inputs per feature with training-set mean and std.
    pub input_norm: bool,
    /// Learned input embedding `u·embed.w + embed.b` (`F → D`).
    pub embed: bool,
    /// Add the sinusoidal positional signal after the embedding.
    pub positional: bool,
    /// Pre-norm layer normalisation before attention (and MLP).
    pub pre_norm: bool,
    /// Biases on projections, MLP and classifier.
    pub biases: bool,
    /// Layer normalisation after the last layer.
    pub final_norm: bool,
    /// Pooling over positions.
    pub pooling: Pooling,
    /// Sparse (with pattern) or dense attention.
    pub attention: AttentionKind,
}

impl Architecture {
    /// The bare v1 architecture: `D = F`, every option off, mean pooling, default sparse pattern.
    pub fn v1(
        features: usize,
        classes: usize,
        layers: usize,
        q_heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Self {
        Self {
            features,
            d_model: features,
            layers,
            q_heads,
            kv_heads,
            head_dim,
            classes,
            mlp_hidden: 0,
            running_norm: false,
            input_norm: false,
            embed: false,
            positional: false,
            pre_norm: false,
            biases: false,
            final_norm: false,
            pooling: Pooling::Mean,
            attention: AttentionKind::default(),
        }
    }

    /// The default trainable head: 2 layers, 4 query heads, 1 kv head, `dh` 32, `D` 32,
    /// MLP 64, and input norm, embedding, positional, pre-norm, biases, final norm all on.
    pub fn default_for(features: usize, classes: usize) -> Self {
        Self {
            features,
            d_model: 32,
            layers: 2,
            q_heads: 4,
            kv_heads: 1,
            head_dim: 32,
            classes,
            mlp_hidden: 64,
            running_norm: false,
            input_norm: true,
            embed: true,
            positional: true,
            pre_norm: true,
            biases: true,
            final_norm: true,
            pooling: Pooling::Mean,
            attention: AttentionKind::default(),
        }
    }

    /// Whether a v1 `.rvne` file can express this architecture exactly.
    pub fn is_v1_compatible(&self) -> bool {
        self.d_model == self.features
            && self.mlp_hidden == 0
            && !self.running_norm
            && !self.input_norm
            && !self.embed
            && !self.positional
            && !self.pre_norm
            && !self.biases
            && !self.final_norm
            && self.pooling == Pooling::Mean
            && self.attention == AttentionKind::default()
    }

    /// The ablation set of this architecture: itself (`"full"`), then one variant per
    /// option switched off (or changed: `pooling last`, `dense` attention with the same
    /// causality), then the bare v1 architecture with the same heads and layers.
    pub fn ablations(&self) -> Vec<(&'static str, Architecture)> {
        let b = self;
        let causal = match &b.attention {
            AttentionKind::Sparse(p) => p.causal,
            AttentionKind::Dense { causal } => *causal,
        };
        let mut v = vec![
            ("full", b.clone()),
            (
                "no input_norm",
                Architecture {
                    input_norm: false,
                    ..b.clone()
                },
            ),
            (
                "no embed",
                Architecture {
                    embed: false,
                    d_model: b.features,
                    ..b.clone()
                },
            ),
            (
                "no positional",
                Architecture {
                    positional: false,
                    ..b.clone()
                },
            ),
            (
                "no pre_norm",
                Architecture {
                    pre_norm: false,
                    ..b.clone()
                },
            ),
            (
                "no biases",
                Architecture {
                    biases: false,
                    ..b.clone()
                },
            ),
            (
                "no mlp",
                Architecture {
                    mlp_hidden: 0,
                    ..b.clone()
                },
            ),
            (
                "no final_norm",
                Architecture {
                    final_norm: false,
                    ..b.clone()
                },
            ),
            (
                "pooling last",
                Architecture {
                    pooling: Pooling::Last,
                    ..b.clone()
                },
            ),
            (
                "dense attention",
                Architecture {
                    attention: AttentionKind::Dense { causal },
                    ..b.clone()
                },
            ),
        ];
        v.push((
            "bare v1",
            Architecture::v1(
                b.features, b.classes, b.layers, b.q_heads, b.kv_heads, b.head_dim,
            ),
        ));
        v
    }

    /// Refuses inconsistent shapes (zero sizes, `Hkv ∤ Hq`, `D ≠ F` without embedding, bad pattern).
    pub fn validate(&self) -> Result<(), TrainError> {
        let positive = [
            ("features", self.features),
            ("d_model", self.d_model),
            ("layers", self.layers),
            ("q_heads", self.q_heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("classes", self.classes),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(TrainError::Config(format!("{what} must be positive")));
            }
        }
        if !self.q_heads.is_multiple_of(self.kv_heads) {
            return Err(TrainError::Config(format!(
                "q_heads ({}) must be a multiple of kv_heads ({})",
                self.q_heads, self.kv_heads
            )));
        }
        if !self.embed && self.d_model != self.features {
            return Err(TrainError::Config(format!(
                "without embed, d_model ({}) must equal features ({})",
                self.d_model, self.features
            )));
        }
        if let AttentionKind::Sparse(p) = &self.attention {
            if p.block_size == 0 {
                return Err(TrainError::Config(
                    "sparse block_size must be positive".into(),
                ));
            }
        }
        let too_big = [self.d_model, self.q_heads * self.head_dim, self.mlp_hidden]
            .iter()
            .any(|&v| v > 1 << 16);
        if too_big || self.layers > 256 || self.classes > 1 << 16 {
            return Err(TrainError::Config(
                "architecture dimensions are implausibly large".into(),
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
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.epochs == 0 {
            return bad("epochs must be positive");
        }
        if self.batch_size == 0 {
            return bad("batch_size must be positive");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate must be finite and positive");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio must be in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad("warmup_fraction must be in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay must be finite and non-negative");
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return bad("beta1 and beta2 must be in [0, 1)");
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps must be finite and positive");
        }
        let a = &self.augment;
        if [a.gain_std, a.offset_std, a.noise_std, a.speed]
            .iter()
            .any(|x| !(x.is_finite() && *x >= 0.0))
        {
            return bad("augmentation stds must be finite and non-negative");
        }
        if !(a.crop_min > 0.0 && a.crop_min <= 1.0) {
            return bad("crop_min must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&a.mask) {
            return bad("mask must be in [0, 1)");
        }
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                return bad("ema decay must be in [0, 1)");
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing must be in [0, 1)");
        }
        if !(self.mixup.is_finite() && self.mixup >= 0.0) {
            return bad("mixup must be finite and non-negative");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ablations_switch_one_option_each() {
        let full = Architecture::default_for(6, 3);
        let set = full.ablations();
        assert_eq!(set.len(), 11);
        for (name, a) in &set {
            a.validate().unwrap();
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
