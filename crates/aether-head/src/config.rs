//! The architecture of a head (docs/model.md): dimensions, options, pattern, pooling.
//!
//! `F` input features, `D` model width (`= F` without `embed`), `Hq`/`Hkv` query and
//! key-value heads of width `dh`, `L` layers, `H` MLP hidden width, `C` classes.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use aether_kernel::SparsePattern;

use crate::error::{HeadError, Result};

/// How the per-position outputs are pooled over time before the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Mean over all positions (the default).
    #[default]
    Mean,
    /// The last position only.
    Last,
}

/// Which attention the layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Sparse attention with the config's pattern (the default).
    #[default]
    Sparse,
    /// Dense softmax attention over all positions (causal when the pattern is).
    Dense,
}

/// Positional signal added after the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Positional {
    /// None (v1).
    #[default]
    None,
    /// `pe(t)[2c] = sin(t / 10000^(2c/D))`, `pe(t)[2c+1] = cos(…)`.
    Sinusoidal,
}

/// Everything that defines the shape and math of a head.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadConfig {
    /// Input features per frame `F`.
    pub features: usize,
    /// Model width `D` (must equal `F` when `embed` is off).
    pub d_model: usize,
    /// Query heads `Hq`.
    pub q_heads: usize,
    /// Key/value heads `Hkv` (divides `Hq`).
    pub kv_heads: usize,
    /// Head dimension `dh`.
    pub head_dim: usize,
    /// Layers `L` (≥ 1).
    pub layers: usize,
    /// Classes `C` (≥ 2).
    pub classes: usize,
    /// MLP hidden width `H` (0: no MLP).
    pub mlp_hidden: usize,
    /// Causal running standardisation of the inputs before `input_norm` (docs/model.md step 0).
    pub running_norm: bool,
    /// Per-feature input normalisation `(u − mean) / std`.
    pub input_norm: bool,
    /// Linear embedding `F → D`.
    pub embed: bool,
    /// Positional signal.
    pub positional: Positional,
    /// Pre-norm LayerNorm before attention (and MLP).
    pub pre_norm: bool,
    /// Biases on every projection and the classifier.
    pub biases: bool,
    /// LayerNorm after the last layer.
    pub final_norm: bool,
    /// Pooling over time.
    pub pooling: Pooling,
    /// The sparse attention pattern.
    pub pattern: SparsePattern,
    /// Attention backend.
    pub backend: Backend,
}

impl HeadConfig {
    /// A v1 architecture: every option off, `D = F`, mean pooling, the AETHER default pattern.
    pub fn v1(
        features: usize,
        q_heads: usize,
        kv_heads: usize,
        head_dim: usize,
        layers: usize,
        classes: usize,
    ) -> Self {
        Self {
            features,
            d_model: features,
            q_heads,
            kv_heads,
            head_dim,
            layers,
            classes,
            mlp_hidden: 0,
            running_norm: false,
            input_norm: false,
            embed: false,
            positional: Positional::None,
            pre_norm: false,
            biases: false,
            final_norm: false,
            pooling: Pooling::Mean,
            pattern: SparsePattern::default(),
            backend: Backend::Sparse,
        }
    }

    /// The AETHER default head: F = D = 16, 4 query heads, 1 kv head, dim 32, 2 layers, 4 classes.
    pub fn aether_default() -> Self {
        Self::v1(16, 4, 1, 32, 2, 4)
    }

    /// Width of all query heads, `Hq·dh`.
    pub fn q_width(&self) -> usize {
        self.q_heads.saturating_mul(self.head_dim)
    }

    /// Width of all key (or value) heads, `Hkv·dh`.
    pub fn kv_width(&self) -> usize {
        self.kv_heads.saturating_mul(self.head_dim)
    }

    /// Refuses a configuration the head cannot run.
    pub fn validate(&self) -> Result<()> {
        let cfg = |what: &'static str, detail: String| Err(HeadError::Config { what, detail });
        for (what, v) in [
            ("features", self.features),
            ("d_model", self.d_model),
            ("q_heads", self.q_heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("layers", self.layers),
        ] {
            if v == 0 {
                return cfg(what, "must be positive".into());
            }
        }
        if self.classes < 2 {
            return cfg("classes", format!("{} < 2", self.classes));
        }
        if !self.q_heads.is_multiple_of(self.kv_heads) {
            return cfg(
                "kv_heads",
                format!("{} does not divide q_heads {}", self.kv_heads, self.q_heads),
            );
        }
        if !self.embed && self.d_model != self.features {
            return cfg(
                "d_model",
                format!(
                    "{} != features {} without an embedding",
                    self.d_model, self.features
                ),
            );
        }
        if self.pattern.block_size == 0 {
            return cfg("pattern.block_size", "must be positive".into());
        }
        if self.q_heads.checked_mul(self.head_dim).is_none() {
            return cfg("head_dim", "q_heads · head_dim overflows".into());
        }
        // Every weight count must fit in usize (and a u32 tensor table).
        for (name, n) in self.tensor_shapes() {
            if n.is_none() {
                return cfg("dimensions", format!("size of {name} overflows"));
            }
        }
        Ok(())
    }

    /// `(name, element count)` of every tensor the config needs, in v1-compatible order
    /// (docs/model.md). `None` counts overflowed.
    pub fn tensor_shapes(&self) -> Vec<(String, Option<usize>)> {
        let (f, d, qw, kw, h, c) = (
            self.features,
            self.d_model,
            self.q_width(),
            self.kv_width(),
            self.mlp_hidden,
            self.classes,
        );
        let m = |a: usize, b: usize| a.checked_mul(b);
        let mut out: Vec<(String, Option<usize>)> = Vec::new();
        if self.input_norm {
            out.push(("input.mean".into(), Some(f)));
            out.push(("input.std".into(), Some(f)));
        }
        if self.embed {
            out.push(("embed.w".into(), m(f, d)));
            out.push(("embed.b".into(), Some(d)));
        }
        for l in 0..self.layers {
            let p = |s: &str| format!("layers.{l}.{s}");
            if self.pre_norm {
                out.push((p("ln1.g"), Some(d)));
                out.push((p("ln1.b"), Some(d)));
            }
            out.push((p("wq"), m(d, qw)));
            out.push((p("wk"), m(d, kw)));
            out.push((p("wv"), m(d, kw)));
            out.push((p("wo"), m(qw, d)));
            if self.biases {
                out.push((p("bq"), Some(qw)));
                out.push((p("bk"), Some(kw)));
                out.push((p("bv"), Some(kw)));
                out.push((p("bo"), Some(d)));
            }
            if h > 0 {
                if self.pre_norm {
                    out.push((p("ln2.g"), Some(d)));
                    out.push((p("ln2.b"), Some(d)));
                }
                out.push((p("mlp.w1"), m(d, h)));
                out.push((p("mlp.b1"), Some(h)));
                out.push((p("mlp.w2"), m(h, d)));
                out.push((p("mlp.b2"), Some(d)));
            }
        }
        if self.final_norm {
            out.push(("final_ln.g".into(), Some(d)));
            out.push(("final_ln.b".into(), Some(d)));
        }
        out.push(("classifier.w".into(), m(d, c)));
        if self.biases {
            out.push(("classifier.b".into(), Some(c)));
        }
        out
    }

    /// Total number of weights, or `None` on overflow.
    pub fn num_weights(&self) -> Option<usize> {
        self.tensor_shapes()
            .into_iter()
            .try_fold(0usize, |acc, (_, n)| acc.checked_add(n?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aether_default_has_reference_weight_count() {
        let c = HeadConfig::aether_default();
        c.validate().unwrap();
        assert_eq!(c.num_weights(), Some(10_304));
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut c = HeadConfig::aether_default();
        c.kv_heads = 3;
        assert!(matches!(
            c.validate(),
            Err(HeadError::Config {
                what: "kv_heads",
                ..
            })
        ));
        let mut c = HeadConfig::aether_default();
        c.classes = 1;
        assert!(c.validate().is_err());
        let mut c = HeadConfig::aether_default();
        c.d_model = 8;
        assert!(c.validate().is_err());
        c.embed = true;
        c.validate().unwrap();
        let mut c = HeadConfig::aether_default();
        c.pattern.block_size = 0;
        assert!(c.validate().is_err());
        let mut c = HeadConfig::aether_default();
        c.head_dim = usize::MAX / 2;
        assert!(c.validate().is_err());
    }
}
