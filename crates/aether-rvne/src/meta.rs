//! What a `.rvne` file describes: dims, architecture options, sparse pattern, and the
//! tensor set they imply (docs/model.md, "Tensor names").
//!
//! The tensor set is a pure function of [`ModelMeta`]: [`ModelMeta::tensor_specs`] yields
//! every `(name, shape)` in the canonical order (the v2 table order; for a v1-expressible
//! model it is exactly the v1 weight order `wq, wk, wv, wo` per layer, then `classifier.w`).

use core::fmt::{self, Write};

use crate::error::Error;
use crate::name::Name;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE-754 binary32, little-endian.
    F32,
    /// IEEE-754 binary16, little-endian (converted to f32 on use).
    F16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    /// Lower-case name (`f32` / `f16`).
    pub const fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }

    /// The v2 table code (0 = f32, 1 = f16).
    pub const fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
        }
    }

    /// Decodes a v2 table code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(DType::F32),
            1 => Some(DType::F16),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest tensor rank the v2 table stores.
pub const MAX_RANK: usize = 4;

/// A tensor shape of rank 1..=[`MAX_RANK`], stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: [usize; MAX_RANK],
    rank: u8,
}

impl Shape {
    /// A rank-1 shape.
    pub const fn vector(n: usize) -> Self {
        Self {
            dims: [n, 0, 0, 0],
            rank: 1,
        }
    }

    /// A rank-2 shape `[rows, cols]`.
    pub const fn matrix(rows: usize, cols: usize) -> Self {
        Self {
            dims: [rows, cols, 0, 0],
            rank: 2,
        }
    }

    /// Builds a shape from a slice; `None` when the rank is 0 or above [`MAX_RANK`].
    pub fn from_slice(s: &[usize]) -> Option<Self> {
        if s.is_empty() || s.len() > MAX_RANK {
            return None;
        }
        let mut dims = [0; MAX_RANK];
        dims[..s.len()].copy_from_slice(s);
        Some(Self {
            dims,
            rank: s.len() as u8,
        })
    }

    /// The dimensions.
    pub fn as_slice(&self) -> &[usize] {
        &self.dims[..self.rank as usize]
    }

    /// Element count, `None` on overflow.
    pub fn numel(&self) -> Option<usize> {
        self.as_slice()
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, d) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_char(']')
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Model dimensions (docs/model.md): `F, D, Hq, Hkv, dh, L, C, H`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dims {
    /// `F`: input features per frame.
    pub input_dim: usize,
    /// `D`: model width (equals `F` without an embedding).
    pub d_model: usize,
    /// `Hq`: query heads.
    pub q_heads: usize,
    /// `Hkv`: key/value heads (divides `Hq`).
    pub kv_heads: usize,
    /// `dh`: head dimension.
    pub head_dim: usize,
    /// `L`: layers (≥ 1).
    pub layers: usize,
    /// `C`: classes (≥ 2).
    pub classes: usize,
    /// `H`: MLP hidden width (0 = no MLP).
    pub mlp_hidden: usize,
}

impl Dims {
    /// The AETHER default of FACTS.md: F = D = 16, Hq 4, Hkv 1, dh 32, L 2, C 4, no MLP.
    pub const AETHER_DEFAULT: Dims = Dims {
        input_dim: 16,
        d_model: 16,
        q_heads: 4,
        kv_heads: 1,
        head_dim: 32,
        layers: 2,
        classes: 4,
        mlp_hidden: 0,
    };

    /// v1-style dims (`D = F`, no MLP).
    pub const fn v1(
        input_dim: usize,
        q_heads: usize,
        kv_heads: usize,
        head_dim: usize,
        layers: usize,
        classes: usize,
    ) -> Dims {
        Dims {
            input_dim,
            d_model: input_dim,
            q_heads,
            kv_heads,
            head_dim,
            layers,
            classes,
            mlp_hidden: 0,
        }
    }
}

/// Positional signal added after the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Positional {
    /// None.
    None,
    /// `pe(t)[2c] = sin(t / 10000^(2c/D))`, `pe(t)[2c+1] = cos(…)`.
    Sinusoidal,
}

/// How per-position outputs are pooled before the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// Mean over all positions.
    Mean,
    /// The last position.
    Last,
}

/// Which attention the layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionBackend {
    /// Sparse attention with the file's pattern.
    Sparse,
    /// Dense attention (the pattern's `causal` flag still applies).
    Dense,
}

/// Architecture options of docs/model.md. `mlp` is implied by `Dims::mlp_hidden > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Architecture {
    /// Per-feature input normalisation (`input.mean`, `input.std`).
    pub input_norm: bool,
    /// Linear embedding `F → D` (`embed.w`, `embed.b`).
    pub embed: bool,
    /// Positional signal.
    pub positional: Positional,
    /// Pre-norm layer norms (`ln1`, and `ln2` with an MLP).
    pub pre_norm: bool,
    /// Biases on every projection and the classifier.
    pub biases: bool,
    /// Final layer norm (`final_ln`).
    pub final_norm: bool,
    /// Pooling over time.
    pub pooling: Pooling,
    /// Attention backend.
    pub attention: AttentionBackend,
    /// Causal running standardisation of every input feature before `input_norm`
    /// (docs/model.md step 0; no tensors).
    pub running_norm: bool,
}

impl Architecture {
    /// Every option off, mean pooling, sparse attention: what v1 describes.
    pub const V1: Architecture = Architecture {
        input_norm: false,
        embed: false,
        positional: Positional::None,
        pre_norm: false,
        biases: false,
        final_norm: false,
        pooling: Pooling::Mean,
        attention: AttentionBackend::Sparse,
        running_norm: false,
    };
}

/// Largest number of global tokens a pattern may list (keeps [`PatternSpec`] allocation-free).
pub const MAX_GLOBALS: usize = 32;

/// The sparse pattern of DESIGN.md, stored without allocation (mirror of the kernel's
/// `SparsePattern`; the head converts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatternSpec {
    /// Local window `W`.
    pub window: usize,
    /// Landmark block size `B` (> 0).
    pub block_size: usize,
    globals: [usize; MAX_GLOBALS],
    n_globals: u8,
    /// Causal masking.
    pub causal: bool,
    /// Log-stride look-back (and look-ahead when not causal).
    pub log_stride: bool,
    /// Block landmarks.
    pub landmarks: bool,
}

impl PatternSpec {
    /// The AETHER default: W 32, B 16, globals [0], causal, log-stride and landmarks on.
    pub const AETHER_DEFAULT: PatternSpec = PatternSpec {
        window: 32,
        block_size: 16,
        globals: [0; MAX_GLOBALS],
        n_globals: 1,
        causal: true,
        log_stride: true,
        landmarks: true,
    };

    /// Builds a pattern; refuses more than [`MAX_GLOBALS`] global tokens.
    pub fn new(
        window: usize,
        block_size: usize,
        globals: &[usize],
        causal: bool,
        log_stride: bool,
        landmarks: bool,
    ) -> Result<Self, Error> {
        let mut p = PatternSpec {
            window,
            block_size,
            globals: [0; MAX_GLOBALS],
            n_globals: 0,
            causal,
            log_stride,
            landmarks,
        };
        p.set_globals(globals)?;
        Ok(p)
    }

    /// The global token positions.
    pub fn globals(&self) -> &[usize] {
        &self.globals[..self.n_globals as usize]
    }

    /// Replaces the global token list; refuses more than [`MAX_GLOBALS`].
    pub fn set_globals(&mut self, g: &[usize]) -> Result<(), Error> {
        if g.len() > MAX_GLOBALS {
            return Err(Error::TooManyGlobals {
                got: g.len(),
                max: MAX_GLOBALS,
            });
        }
        self.globals = [0; MAX_GLOBALS];
        self.globals[..g.len()].copy_from_slice(g);
        self.n_globals = g.len() as u8;
        Ok(())
    }
}

impl Default for PatternSpec {
    fn default() -> Self {
        Self::AETHER_DEFAULT
    }
}

/// Everything needed to run the model besides tensors and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelMeta {
    /// Dimensions.
    pub dims: Dims,
    /// Architecture options.
    pub arch: Architecture,
    /// Sparse pattern.
    pub pattern: PatternSpec,
    /// True when the file did not record arch/pattern/pooling (v1) and the documented
    /// defaults were assumed.
    pub defaults_assumed: bool,
}

/// Required-feature bits of the v2 header: one per architecture option. A reader refuses
/// any bit it does not know.
pub mod feature {
    /// `input_norm`.
    pub const INPUT_NORM: u32 = 1 << 0;
    /// `embed`.
    pub const EMBED: u32 = 1 << 1;
    /// `positional = sinusoidal`.
    pub const POS_SINUSOIDAL: u32 = 1 << 2;
    /// `pre_norm`.
    pub const PRE_NORM: u32 = 1 << 3;
    /// `biases`.
    pub const BIASES: u32 = 1 << 4;
    /// MLP present (must equal `mlp_hidden > 0`).
    pub const MLP: u32 = 1 << 5;
    /// `final_norm`.
    pub const FINAL_NORM: u32 = 1 << 6;
    /// `pooling = last`.
    pub const POOL_LAST: u32 = 1 << 7;
    /// `attention = dense`.
    pub const DENSE_ATTENTION: u32 = 1 << 8;
    /// `running_norm` (causal running standardisation of the inputs).
    pub const RUNNING_NORM: u32 = 1 << 9;
    /// Every bit this reader understands.
    pub const KNOWN: u32 = (1 << 10) - 1;
}

impl ModelMeta {
    /// The v1 interpretation of `dims`: AETHER default pattern, every option off, mean
    /// pooling, `defaults_assumed = true`.
    pub const fn v1_defaults(dims: Dims) -> Self {
        Self {
            dims,
            arch: Architecture::V1,
            pattern: PatternSpec::AETHER_DEFAULT,
            defaults_assumed: true,
        }
    }

    /// A v2 model description (`defaults_assumed = false`).
    pub const fn new(dims: Dims, arch: Architecture, pattern: PatternSpec) -> Self {
        Self {
            dims,
            arch,
            pattern,
            defaults_assumed: false,
        }
    }

    /// The v2 required-feature bits of this architecture.
    pub fn feature_bits(&self) -> u32 {
        let a = &self.arch;
        let mut b = 0;
        let mut set = |on: bool, bit: u32| {
            if on {
                b |= bit
            }
        };
        set(a.input_norm, feature::INPUT_NORM);
        set(a.embed, feature::EMBED);
        set(
            a.positional == Positional::Sinusoidal,
            feature::POS_SINUSOIDAL,
        );
        set(a.pre_norm, feature::PRE_NORM);
        set(a.biases, feature::BIASES);
        set(self.dims.mlp_hidden > 0, feature::MLP);
        set(a.final_norm, feature::FINAL_NORM);
        set(a.pooling == Pooling::Last, feature::POOL_LAST);
        set(
            a.attention == AttentionBackend::Dense,
            feature::DENSE_ATTENTION,
        );
        set(a.running_norm, feature::RUNNING_NORM);
        b
    }

    /// Decodes required-feature bits into an architecture; refuses unknown bits.
    pub fn arch_from_bits(bits: u32) -> Result<(Architecture, bool), Error> {
        if bits & !feature::KNOWN != 0 {
            return Err(Error::UnknownRequiredFeatures {
                bits: bits & !feature::KNOWN,
            });
        }
        let on = |bit: u32| bits & bit != 0;
        Ok((
            Architecture {
                input_norm: on(feature::INPUT_NORM),
                embed: on(feature::EMBED),
                positional: if on(feature::POS_SINUSOIDAL) {
                    Positional::Sinusoidal
                } else {
                    Positional::None
                },
                pre_norm: on(feature::PRE_NORM),
                biases: on(feature::BIASES),
                final_norm: on(feature::FINAL_NORM),
                pooling: if on(feature::POOL_LAST) {
                    Pooling::Last
                } else {
                    Pooling::Mean
                },
                attention: if on(feature::DENSE_ATTENTION) {
                    AttentionBackend::Dense
                } else {
                    AttentionBackend::Sparse
                },
                running_norm: on(feature::RUNNING_NORM),
            },
            on(feature::MLP),
        ))
    }

    /// True when v1 can express this model (every option off, mean pooling, sparse
    /// attention with the AETHER default pattern, `D = F`, dims within u16).
    pub fn v1_expressible(&self) -> Result<(), &'static str> {
        let d = &self.dims;
        if self.arch != Architecture::V1 {
            return Err("v1 cannot record architecture options (input_norm, embed, positional, pre_norm, biases, final_norm, pooling last, dense attention, running_norm)");
        }
        if d.mlp_hidden != 0 {
            return Err("v1 cannot record an MLP (mlp_hidden > 0)");
        }
        if d.d_model != d.input_dim {
            return Err("v1 requires d_model == input_dim");
        }
        if self.pattern != PatternSpec::AETHER_DEFAULT {
            return Err("v1 cannot record a sparse pattern other than the AETHER default (W 32, B 16, globals [0], causal, log-stride, landmarks)");
        }
        let max = u16::MAX as usize;
        if [
            d.input_dim,
            d.q_heads,
            d.kv_heads,
            d.head_dim,
            d.layers,
            d.classes,
        ]
        .iter()
        .any(|&x| x > max)
        {
            return Err("v1 stores dims as u16; a dim exceeds 65535");
        }
        Ok(())
    }

    /// Checks the dims and options against each other (no tensor data involved).
    pub fn validate(&self) -> Result<(), Error> {
        let d = &self.dims;
        for (field, v) in [
            ("input_dim", d.input_dim),
            ("d_model", d.d_model),
            ("q_heads", d.q_heads),
            ("kv_heads", d.kv_heads),
            ("head_dim", d.head_dim),
            ("layers", d.layers),
            ("classes", d.classes),
        ] {
            if v == 0 {
                return Err(Error::ZeroDim { field });
            }
        }
        if d.classes < 2 {
            return Err(Error::TooFewClasses { got: d.classes });
        }
        if !d.q_heads.is_multiple_of(d.kv_heads) {
            return Err(Error::HeadsNotDivisible {
                q_heads: d.q_heads,
                kv_heads: d.kv_heads,
            });
        }
        if !self.arch.embed && d.d_model != d.input_dim {
            return Err(Error::WidthWithoutEmbed {
                input_dim: d.input_dim,
                d_model: d.d_model,
            });
        }
        if self.pattern.block_size == 0 {
            return Err(Error::ZeroBlockSize);
        }
        if d.q_heads.checked_mul(d.head_dim).is_none() {
            return Err(Error::Overflow {
                what: "q_heads × head_dim",
            });
        }
        // Every shape product and their sum must fit in usize (closed form: O(1) in L).
        self.checked_parameter_count().ok_or(Error::Overflow {
            what: "parameter count",
        })?;
        Ok(())
    }

    fn checked_parameter_count(&self) -> Option<usize> {
        let sum = |slots: &mut dyn Iterator<Item = &TensorKind>| -> Option<usize> {
            slots
                .filter(|k| self.present(**k))
                .try_fold(0usize, |acc, k| acc.checked_add(self.shape_of(*k).numel()?))
        };
        let per_layer = sum(&mut LAYER_SLOTS.iter())?;
        let fixed = sum(&mut PRE_SLOTS.iter().chain(POST_SLOTS.iter()))?;
        per_layer.checked_mul(self.dims.layers)?.checked_add(fixed)
    }

    /// Total parameter count (saturates at `usize::MAX`; exact after [`ModelMeta::validate`]).
    pub fn parameter_count(&self) -> usize {
        self.checked_parameter_count().unwrap_or(usize::MAX)
    }

    /// Number of tensors the architecture implies.
    pub fn tensor_count(&self) -> usize {
        // Saturating: `layers` is untrusted and may be huge before validation.
        let per_layer = LAYER_SLOTS.iter().filter(|k| self.present(**k)).count();
        let fixed = PRE_SLOTS
            .iter()
            .chain(POST_SLOTS.iter())
            .filter(|k| self.present(**k))
            .count();
        per_layer
            .saturating_mul(self.dims.layers)
            .saturating_add(fixed)
    }

    /// Every tensor the architecture implies, in canonical order.
    pub fn tensor_specs(&self) -> TensorSpecs {
        TensorSpecs {
            meta: *self,
            stage: 0,
            slot: 0,
            layer: 0,
        }
    }

    /// Looks up the spec of `name` (`None` if the architecture has no such tensor).
    pub fn spec_by_name(&self, name: &str) -> Option<TensorSpec> {
        let (layer, rest) = match name.strip_prefix("layers.") {
            Some(r) => {
                let dot = r.find('.')?;
                let idx = &r[..dot];
                if idx.is_empty()
                    || !idx.bytes().all(|b| b.is_ascii_digit())
                    || (idx.len() > 1 && idx.starts_with('0'))
                {
                    return None;
                }
                let l: usize = idx.parse().ok()?;
                (Some(l), &r[dot + 1..])
            }
            None => (None, name),
        };
        let kind = match layer {
            Some(l) if l < self.dims.layers => {
                LAYER_SLOTS.iter().copied().find(|k| k.suffix() == rest)?
            }
            Some(_) => return None,
            None => PRE_SLOTS
                .iter()
                .chain(POST_SLOTS.iter())
                .copied()
                .find(|k| k.suffix() == rest)?,
        };
        if !self.present(kind) {
            return None;
        }
        Some(TensorSpec {
            kind,
            layer: layer.unwrap_or(0),
            shape: self.shape_of(kind),
        })
    }

    fn present(&self, k: TensorKind) -> bool {
        let a = &self.arch;
        let mlp = self.dims.mlp_hidden > 0;
        use TensorKind::*;
        match k {
            InputMean | InputStd => a.input_norm,
            EmbedW | EmbedB => a.embed,
            Ln1G | Ln1B => a.pre_norm,
            Wq | Wk | Wv | Wo | ClassifierW => true,
            Bq | Bk | Bv | Bo | ClassifierB => a.biases,
            Ln2G | Ln2B => a.pre_norm && mlp,
            MlpW1 | MlpB1 | MlpW2 | MlpB2 => mlp,
            FinalLnG | FinalLnB => a.final_norm,
        }
    }

    fn shape_of(&self, k: TensorKind) -> Shape {
        let d = &self.dims;
        let qd = d.q_heads.saturating_mul(d.head_dim);
        let kvd = d.kv_heads.saturating_mul(d.head_dim);
        use TensorKind::*;
        match k {
            InputMean | InputStd => Shape::vector(d.input_dim),
            EmbedW => Shape::matrix(d.input_dim, d.d_model),
            EmbedB | Ln1G | Ln1B | Ln2G | Ln2B | Bo | MlpB2 | FinalLnG | FinalLnB => {
                Shape::vector(d.d_model)
            }
            Wq => Shape::matrix(d.d_model, qd),
            Wk | Wv => Shape::matrix(d.d_model, kvd),
            Wo => Shape::matrix(qd, d.d_model),
            Bq => Shape::vector(qd),
            Bk | Bv => Shape::vector(kvd),
            MlpW1 => Shape::matrix(d.d_model, d.mlp_hidden),
            MlpB1 => Shape::vector(d.mlp_hidden),
            MlpW2 => Shape::matrix(d.mlp_hidden, d.d_model),
            ClassifierW => Shape::matrix(d.d_model, d.classes),
            ClassifierB => Shape::vector(d.classes),
        }
    }
}

/// Which tensor of docs/model.md a spec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// `input.mean`
    InputMean,
    /// `input.std`
    InputStd,
    /// `embed.w`
    EmbedW,
    /// `embed.b`
    EmbedB,
    /// `layers.l.ln1.g`
    Ln1G,
    /// `layers.l.ln1.b`
    Ln1B,
    /// `layers.l.wq`
    Wq,
    /// `layers.l.wk`
    Wk,
    /// `layers.l.wv`
    Wv,
    /// `layers.l.wo`
    Wo,
    /// `layers.l.bq`
    Bq,
    /// `layers.l.bk`
    Bk,
    /// `layers.l.bv`
    Bv,
    /// `layers.l.bo`
    Bo,
    /// `layers.l.ln2.g`
    Ln2G,
    /// `layers.l.ln2.b`
    Ln2B,
    /// `layers.l.mlp.w1`
    MlpW1,
    /// `layers.l.mlp.b1`
    MlpB1,
    /// `layers.l.mlp.w2`
    MlpW2,
    /// `layers.l.mlp.b2`
    MlpB2,
    /// `final_ln.g`
    FinalLnG,
    /// `final_ln.b`
    FinalLnB,
    /// `classifier.w`
    ClassifierW,
    /// `classifier.b`
    ClassifierB,
}

impl TensorKind {
    /// True for per-layer tensors (`layers.{l}.…`).
    pub const fn is_layer(self) -> bool {
        use TensorKind::*;
        !matches!(
            self,
            InputMean
                | InputStd
                | EmbedW
                | EmbedB
                | FinalLnG
                | FinalLnB
                | ClassifierW
                | ClassifierB
        )
    }

    /// The name without the `layers.{l}.` prefix.
    pub const fn suffix(self) -> &'static str {
        use TensorKind::*;
        match self {
            InputMean => "input.mean",
            InputStd => "input.std",
            EmbedW => "embed.w",
            EmbedB => "embed.b",
            Ln1G => "ln1.g",
            Ln1B => "ln1.b",
            Wq => "wq",
            Wk => "wk",
            Wv => "wv",
            Wo => "wo",
            Bq => "bq",
            Bk => "bk",
            Bv => "bv",
            Bo => "bo",
            Ln2G => "ln2.g",
            Ln2B => "ln2.b",
            MlpW1 => "mlp.w1",
            MlpB1 => "mlp.b1",
            MlpW2 => "mlp.w2",
            MlpB2 => "mlp.b2",
            FinalLnG => "final_ln.g",
            FinalLnB => "final_ln.b",
            ClassifierW => "classifier.w",
            ClassifierB => "classifier.b",
        }
    }

    /// True for tensors the reference init fills with random weights (matrices); vectors
    /// get 0, layer-norm gains and `input.std` get 1.
    pub const fn is_matrix(self) -> bool {
        use TensorKind::*;
        matches!(
            self,
            EmbedW | Wq | Wk | Wv | Wo | MlpW1 | MlpW2 | ClassifierW
        )
    }
}

const PRE_SLOTS: [TensorKind; 4] = [
    TensorKind::InputMean,
    TensorKind::InputStd,
    TensorKind::EmbedW,
    TensorKind::EmbedB,
];
const LAYER_SLOTS: [TensorKind; 16] = [
    TensorKind::Ln1G,
    TensorKind::Ln1B,
    TensorKind::Wq,
    TensorKind::Wk,
    TensorKind::Wv,
    TensorKind::Wo,
    TensorKind::Bq,
    TensorKind::Bk,
    TensorKind::Bv,
    TensorKind::Bo,
    TensorKind::Ln2G,
    TensorKind::Ln2B,
    TensorKind::MlpW1,
    TensorKind::MlpB1,
    TensorKind::MlpW2,
    TensorKind::MlpB2,
];
const POST_SLOTS: [TensorKind; 4] = [
    TensorKind::FinalLnG,
    TensorKind::FinalLnB,
    TensorKind::ClassifierW,
    TensorKind::ClassifierB,
];

/// One tensor the architecture implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    /// Which tensor.
    pub kind: TensorKind,
    /// Layer index (0 for non-layer tensors).
    pub layer: usize,
    /// Expected shape.
    pub shape: Shape,
}

impl TensorSpec {
    /// The docs/model.md name, e.g. `layers.1.wk`.
    pub fn name(&self) -> Name {
        let mut n = Name::empty();
        if self.kind.is_layer() {
            let _ = write!(n, "layers.{}.{}", self.layer, self.kind.suffix());
        } else {
            let _ = n.write_str(self.kind.suffix());
        }
        n
    }

    /// True when `s` is this tensor's name (no formatting into a buffer needed).
    pub fn name_is(&self, s: &str) -> bool {
        if !self.kind.is_layer() {
            return s == self.kind.suffix();
        }
        self.name() == s
    }

    /// Element count, `None` on overflow.
    pub fn numel(&self) -> Option<usize> {
        self.shape.numel()
    }
}

/// Iterator over the canonical tensor list of a [`ModelMeta`].
#[derive(Debug, Clone)]
pub struct TensorSpecs {
    meta: ModelMeta,
    stage: u8,
    slot: usize,
    layer: usize,
}

impl Iterator for TensorSpecs {
    type Item = TensorSpec;

    fn next(&mut self) -> Option<TensorSpec> {
        loop {
            let (kind, layer) = match self.stage {
                0 => {
                    if self.slot >= PRE_SLOTS.len() {
                        self.stage = 1;
                        self.slot = 0;
                        continue;
                    }
                    (PRE_SLOTS[self.slot], 0)
                }
                1 => {
                    if self.layer >= self.meta.dims.layers {
                        self.stage = 2;
                        self.slot = 0;
                        continue;
                    }
                    if self.slot >= LAYER_SLOTS.len() {
                        self.slot = 0;
                        self.layer += 1;
                        continue;
                    }
                    (LAYER_SLOTS[self.slot], self.layer)
                }
                2 => {
                    if self.slot >= POST_SLOTS.len() {
                        self.stage = 3;
                        continue;
                    }
                    (POST_SLOTS[self.slot], 0)
                }
                _ => return None,
            };
            self.slot += 1;
            if self.meta.present(kind) {
                return Some(TensorSpec {
                    kind,
                    layer,
                    shape: self.meta.shape_of(kind),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_order_and_count() {
        let m = ModelMeta::v1_defaults(Dims::AETHER_DEFAULT);
        let names: [&str; 9] = [
            "layers.0.wq",
            "layers.0.wk",
            "layers.0.wv",
            "layers.0.wo",
            "layers.1.wq",
            "layers.1.wk",
            "layers.1.wv",
            "layers.1.wo",
            "classifier.w",
        ];
        assert_eq!(m.tensor_count(), 9);
        for (s, n) in m.tensor_specs().zip(names) {
            assert_eq!(s.name(), n);
            assert!(s.name_is(n));
            assert_eq!(m.spec_by_name(n), Some(s));
        }
        assert_eq!(m.parameter_count(), 10_304);
        assert_eq!(m.spec_by_name("layers.2.wq"), None);
        assert_eq!(m.spec_by_name("layers.01.wq"), None);
        assert_eq!(m.spec_by_name("embed.w"), None);
    }

    #[test]
    fn full_arch_count() {
        let mut dims = Dims::AETHER_DEFAULT;
        dims.d_model = 24;
        dims.mlp_hidden = 48;
        let arch = Architecture {
            input_norm: true,
            embed: true,
            positional: Positional::Sinusoidal,
            pre_norm: true,
            biases: true,
            final_norm: true,
            pooling: Pooling::Last,
            attention: AttentionBackend::Dense,
            running_norm: true,
        };
        let m = ModelMeta::new(dims, arch, PatternSpec::default());
        assert_eq!(m.tensor_count(), 4 + 16 * 2 + 4);
        assert_eq!(m.tensor_specs().count(), m.tensor_count());
        m.validate().unwrap();
        let (a, mlp) = ModelMeta::arch_from_bits(m.feature_bits()).unwrap();
        assert_eq!(a, arch);
        assert!(mlp);
    }
}
