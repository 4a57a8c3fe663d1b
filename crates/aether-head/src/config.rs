//! The architecture of a head (docs/model.md): dimensions, options, pattern, pooling.
//!
//! `F` input features, `D` model width (`= F` without `embed`), `Hq`/`Hkv` query and
//! key-value heads of width `dh`, `L` layers, `H` MLP hidden width, `C` classes.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use aether_kernel::SparsePattern;
pub use aether_rvne::{AttentionBackend, Pooling, Positional};
use aether_rvne::{Dims, ModelMeta, PatternSpec, TensorSpecs};

use crate::error::{HeadError, Result};

/// Everything that defines the shape and math of a head: the one model description
/// shared by inference and training (`aether_head::train::Architecture` is this type).
///
/// It is the `.rvne` [`ModelMeta`] (dimensions, options, pattern) with the pattern as
/// the kernel's [`SparsePattern`]; [`HeadConfig::from_meta`] and [`HeadConfig::to_meta`]
/// are the only conversions, and [`HeadConfig::tensor_specs`] is the file format's
/// tensor catalogue.
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
    /// The sparse attention pattern (dense attention uses only its `causal` flag).
    pub pattern: SparsePattern,
    /// Sparse or dense attention.
    pub attention: AttentionBackend,
}

impl HeadConfig {
    /// A bare (v1) head of these dimensions: every option off, mean pooling, sparse
    /// attention with the AETHER default pattern. `dims.d_model` must equal
    /// `dims.input_dim` and `dims.mlp_hidden` be 0 for the result to validate as v1.
    pub fn bare(dims: Dims) -> Self {
        Self::bare_with(dims, SparsePattern::default())
    }

    /// [`HeadConfig::bare`] with `pattern` (no allocation beyond the pattern's own).
    fn bare_with(dims: Dims, pattern: SparsePattern) -> Self {
        Self {
            features: dims.input_dim,
            d_model: dims.d_model,
            q_heads: dims.q_heads,
            kv_heads: dims.kv_heads,
            head_dim: dims.head_dim,
            layers: dims.layers,
            classes: dims.classes,
            mlp_hidden: dims.mlp_hidden,
            running_norm: false,
            input_norm: false,
            embed: false,
            positional: Positional::None,
            pre_norm: false,
            biases: false,
            final_norm: false,
            pooling: Pooling::Mean,
            pattern,
            attention: AttentionBackend::Sparse,
        }
    }

    /// The AETHER default head: F = D = 16, 4 query heads, 1 kv head, dim 32, 2 layers, 4 classes.
    pub fn aether_default() -> Self {
        Self::bare(Dims::AETHER_DEFAULT)
    }

    /// The default trainable head for `features` inputs and `classes` classes: 2 layers,
    /// 4 query heads, 1 kv head, `dh` 32, `D` 32, MLP 64, and input norm, embedding,
    /// sinusoidal positions, pre-norm, biases and final norm all on.
    pub fn trainable(features: usize, classes: usize) -> Self {
        Self {
            input_norm: true,
            embed: true,
            positional: Positional::Sinusoidal,
            pre_norm: true,
            biases: true,
            final_norm: true,
            ..Self::bare(Dims {
                input_dim: features,
                d_model: 32,
                q_heads: 4,
                kv_heads: 1,
                head_dim: 32,
                layers: 2,
                classes,
                mlp_hidden: 64,
            })
        }
    }

    /// The head a `.rvne` model description defines.
    pub fn from_meta(meta: &ModelMeta) -> Self {
        Self::with_globals(meta, meta.pattern.globals().to_vec())
    }

    /// [`HeadConfig::from_meta`] with its one allocation (the global tokens) fallible:
    /// a refusal is [`HeadError::NoMemory`] (a node's init reports it instead of aborting).
    pub fn try_from_meta(meta: &ModelMeta) -> Result<Self> {
        let g = meta.pattern.globals();
        let mut globals = crate::error::try_vec(g.len(), 0, "the pattern's global tokens")?;
        globals.copy_from_slice(g);
        Ok(Self::with_globals(meta, globals))
    }

    fn with_globals(meta: &ModelMeta, global_tokens: Vec<usize>) -> Self {
        let (d, a, p) = (&meta.dims, &meta.arch, &meta.pattern);
        let pattern = SparsePattern {
            window: p.window,
            block_size: p.block_size,
            global_tokens,
            causal: p.causal,
            log_stride: p.log_stride,
            landmarks: p.landmarks,
        };
        Self {
            running_norm: a.running_norm,
            input_norm: a.input_norm,
            embed: a.embed,
            positional: a.positional,
            pre_norm: a.pre_norm,
            biases: a.biases,
            final_norm: a.final_norm,
            pooling: a.pooling,
            attention: a.attention,
            ..Self::bare_with(*d, pattern)
        }
    }

    /// The dimensions `F, D, Hq, Hkv, dh, L, C, H`.
    pub fn dims(&self) -> Dims {
        Dims {
            input_dim: self.features,
            d_model: self.d_model,
            q_heads: self.q_heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            layers: self.layers,
            classes: self.classes,
            mlp_hidden: self.mlp_hidden,
        }
    }

    /// The options as the file format records them.
    pub fn options(&self) -> aether_rvne::Architecture {
        aether_rvne::Architecture {
            input_norm: self.input_norm,
            embed: self.embed,
            positional: self.positional,
            pre_norm: self.pre_norm,
            biases: self.biases,
            final_norm: self.final_norm,
            pooling: self.pooling,
            attention: self.attention,
            running_norm: self.running_norm,
        }
    }

    /// The `.rvne` description of this head (a v2 float model), validated. Dense
    /// attention is recorded with the default pattern and this pattern's `causal` flag
    /// (the only part it uses). Fails when the pattern lists more global tokens than a
    /// file can hold or the description is not one a reader accepts.
    pub fn to_meta(&self) -> Result<ModelMeta> {
        let p = &self.pattern;
        let pattern = match self.attention {
            AttentionBackend::Sparse => PatternSpec::new(
                p.window,
                p.block_size,
                &p.global_tokens,
                p.causal,
                p.log_stride,
                p.landmarks,
            )
            .map_err(HeadError::format)?,
            AttentionBackend::Dense => {
                let mut d = PatternSpec::AETHER_DEFAULT;
                d.causal = p.causal;
                d
            }
        };
        let meta = ModelMeta::new(self.dims(), self.options(), pattern);
        meta.validate().map_err(HeadError::format)?;
        Ok(meta)
    }

    /// Every tensor the head needs, in the canonical order of docs/model.md: the file
    /// format's catalogue (name, shape, role) for these dimensions and options.
    pub fn tensor_specs(&self) -> TensorSpecs {
        // The pattern does not change the tensor list; the default one always fits.
        ModelMeta::new(self.dims(), self.options(), PatternSpec::AETHER_DEFAULT).tensor_specs()
    }

    /// Whether a v1 `.rvne` file (no options, fixed pattern) describes this head exactly.
    pub fn is_v1_compatible(&self) -> bool {
        *self
            == Self::bare(Dims {
                d_model: self.features,
                mlp_hidden: 0,
                ..self.dims()
            })
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
        if let Some(t) = self.tensor_specs().find(|t| t.numel().is_none()) {
            return cfg(
                "dimensions",
                format!("size of {} overflows", t.name().as_str()),
            );
        }
        Ok(())
    }

    /// `(name, element count)` of every tensor the config needs, in
    /// [`HeadConfig::tensor_specs`] order. `None` counts overflowed.
    pub fn tensor_shapes(&self) -> Vec<(String, Option<usize>)> {
        self.tensor_specs()
            .map(|t| (String::from(t.name().as_str()), t.numel()))
            .collect()
    }

    /// Total number of weights, or `None` on overflow.
    pub fn num_weights(&self) -> Option<usize> {
        self.tensor_specs()
            .try_fold(0usize, |acc, t| acc.checked_add(t.numel()?))
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
