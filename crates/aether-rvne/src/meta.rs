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
    /// Two's-complement 8-bit integer (quantised weights of an int8 model, docs/int8.md).
    I8,
    /// Two's-complement 32-bit integer, little-endian (an int8 model's integer tables).
    I32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 => 1,
        }
    }

    /// True for the floating-point dtypes (f32, f16).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }

    /// Lower-case name (`f32` / `f16`).
    pub const fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::I32 => "i32",
        }
    }

    /// The v2 table code (0 = f32, 1 = f16, 2 = i8, 3 = i32).
    pub const fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::I8 => 2,
            DType::I32 => 3,
        }
    }

    /// Decodes a v2 table code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(DType::F32),
            1 => Some(DType::F16),
            2 => Some(DType::I8),
            3 => Some(DType::I32),
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
    /// The AETHER default: F = D = 16, Hq 4, Hkv 1, dh 32, L 2, C 4, no MLP.
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
}

/// Positional signal added after the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Positional {
    /// None (v1).
    #[default]
    None,
    /// `pe(t)[2c] = sin(t / 10000^(2c/D))`, `pe(t)[2c+1] = cos(…)`.
    Sinusoidal,
}

/// How per-position outputs are pooled before the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pooling {
    /// Mean over all positions (the default).
    #[default]
    Mean,
    /// The last position.
    Last,
}

/// Which attention the layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AttentionBackend {
    /// Sparse attention with the model's pattern (the default).
    #[default]
    Sparse,
    /// Dense softmax attention over all positions (the pattern's `causal` flag still applies).
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
    /// An integer (int8) model: i8 matrices with per-output-channel scales, integer
    /// requantisation tables and a QUANT record (v2 feature bit 10, docs/int8.md).
    pub int8: bool,
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
    /// An integer (int8) model: quantised tensors and the QUANT record (docs/int8.md).
    pub const INT8: u32 = 1 << 10;
    /// Every bit this reader understands.
    pub const KNOWN: u32 = (1 << 11) - 1;
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
            int8: false,
        }
    }

    /// A v2 model description (`defaults_assumed = false`).
    pub const fn new(dims: Dims, arch: Architecture, pattern: PatternSpec) -> Self {
        Self {
            dims,
            arch,
            pattern,
            defaults_assumed: false,
            int8: false,
        }
    }

    /// The same description as an int8 model (`true`) or a float one (`false`).
    pub const fn with_int8(mut self, int8: bool) -> Self {
        self.int8 = int8;
        self
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
        set(self.int8, feature::INT8);
        b
    }

    /// Decodes required-feature bits into an architecture and the MLP bit (the INT8 bit
    /// is read separately, `bits & feature::INT8`); refuses unknown bits.
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
        if self.int8 {
            return Err("v1 cannot record an int8 (quantised) model");
        }
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
        let sum = |slots: &[Slot]| -> Option<usize> {
            slots
                .iter()
                .filter(|s| self.present(s.0))
                .try_fold(0usize, |acc, s| {
                    acc.checked_add(self.shape_of(s.0, s.1).numel()?)
                })
        };
        let (pre, layer, post) = self.slots();
        let per_layer = sum(layer)?;
        let fixed = sum(pre)?.checked_add(sum(post)?)?;
        per_layer.checked_mul(self.dims.layers)?.checked_add(fixed)
    }

    /// Total parameter count (saturates at `usize::MAX`; exact after [`ModelMeta::validate`]).
    /// For an int8 model: the element count of every stored tensor (integer tables included).
    pub fn parameter_count(&self) -> usize {
        self.checked_parameter_count().unwrap_or(usize::MAX)
    }

    /// Number of tensors the architecture implies.
    pub fn tensor_count(&self) -> usize {
        // Saturating: `layers` is untrusted and may be huge before validation.
        let (pre, layer, post) = self.slots();
        let count = |slots: &[Slot]| slots.iter().filter(|s| self.present(s.0)).count();
        count(layer)
            .saturating_mul(self.dims.layers)
            .saturating_add(count(pre) + count(post))
    }

    /// The slot lists (before the layers, per layer, after) of this model kind.
    fn slots(&self) -> (&'static [Slot], &'static [Slot], &'static [Slot]) {
        if self.int8 {
            (&PRE_SLOTS_INT8, &LAYER_SLOTS_INT8, &POST_SLOTS_INT8)
        } else {
            (&PRE_SLOTS, &LAYER_SLOTS, &POST_SLOTS)
        }
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
        let (pre, per_layer, post) = self.slots();
        let matches = |s: &&Slot| rest.strip_suffix(s.1.suffix()) == Some(s.0.suffix());
        let slot = match layer {
            Some(l) if l < self.dims.layers => per_layer.iter().find(matches)?,
            Some(_) => return None,
            None => pre.iter().chain(post.iter()).find(matches)?,
        };
        if !self.present(slot.0) {
            return None;
        }
        Some(self.spec(*slot, layer.unwrap_or(0)))
    }

    fn spec(&self, (kind, part): Slot, layer: usize) -> TensorSpec {
        TensorSpec {
            kind,
            part,
            layer,
            shape: self.shape_of(kind, part),
            dtype: self.dtype_of(kind, part),
        }
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
            InputQ => self.int8,
            PosQ => self.int8 && a.positional == Positional::Sinusoidal,
            Ln1Q => self.int8 && a.pre_norm,
            Ln2Q => self.int8 && a.pre_norm && mlp,
            FinalLnQ => self.int8 && a.final_norm,
        }
    }

    fn shape_of(&self, k: TensorKind, part: Part) -> Shape {
        let d = &self.dims;
        let qd = d.q_heads.saturating_mul(d.head_dim);
        let kvd = d.kv_heads.saturating_mul(d.head_dim);
        use TensorKind::*;
        let data = match k {
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
            InputQ => Shape::matrix(d.input_dim, INPUT_Q_COLS),
            PosQ => Shape::matrix(d.d_model, POS_Q_COLS),
            Ln1Q | Ln2Q | FinalLnQ => Shape::matrix(d.d_model, LN_Q_COLS),
        };
        // A matrix's scale and requantisation table have one row per output column.
        let outputs = data.as_slice().get(1).copied().unwrap_or(0);
        match part {
            Part::Data => data,
            Part::Scale => Shape::vector(outputs),
            Part::Rq => Shape::matrix(outputs, RQ_COLS),
        }
    }

    fn dtype_of(&self, k: TensorKind, part: Part) -> Option<DType> {
        if !self.int8 {
            return None;
        }
        Some(match part {
            Part::Data if k.is_matrix() => DType::I8,
            Part::Data | Part::Rq => DType::I32,
            Part::Scale => DType::F32,
        })
    }
}

/// Columns of an int8 model's `input.q` table: `exp, mult, shift, offset, floor` (docs/int8.md).
pub const INPUT_Q_COLS: usize = 5;
/// Columns of an int8 model's `pos.q` table: `omega, phase` (u32 bits, docs/int8.md).
pub const POS_Q_COLS: usize = 2;
/// Columns of an int8 model's layer-norm tables (`*.q`): `mult, shift, offset`.
pub const LN_Q_COLS: usize = 3;
/// Columns of an int8 model's requantisation tables (`*.rq`): `bias, mult, shift`.
pub const RQ_COLS: usize = 3;

/// Which stored part of a tensor a spec is: the values themselves, or (int8 models) a
/// matrix's per-output-channel scales or requantisation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The tensor itself (`layers.0.wq`).
    Data,
    /// Per-output-channel weight scales of an int8 matrix (`layers.0.wq.scale`).
    Scale,
    /// Requantisation table of an int8 matrix (`layers.0.wq.rq`).
    Rq,
}

impl Part {
    /// The name suffix (`""`, `".scale"`, `".rq"`).
    pub const fn suffix(self) -> &'static str {
        match self {
            Part::Data => "",
            Part::Scale => ".scale",
            Part::Rq => ".rq",
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
    /// `input.q` (int8 models: the input stage's integer table)
    InputQ,
    /// `pos.q` (int8 models: the positional signal's phase table)
    PosQ,
    /// `layers.l.ln1.q` (int8 models: integer layer norm)
    Ln1Q,
    /// `layers.l.ln2.q` (int8 models)
    Ln2Q,
    /// `final_ln.q` (int8 models)
    FinalLnQ,
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
                | InputQ
                | PosQ
                | FinalLnQ
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
            InputQ => "input.q",
            PosQ => "pos.q",
            Ln1Q => "ln1.q",
            Ln2Q => "ln2.q",
            FinalLnQ => "final_ln.q",
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

/// One stored tensor slot: a tensor kind and which part of it.
/// What a tensor does in the model: how training initialises it and whether weight
/// decay applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Input statistics (`input.mean`, `input.std`): measured on the data, not trained.
    Statistic,
    /// A weight matrix `[in × out]` (initialised randomly, decayed).
    Weight,
    /// A bias or layer-norm shift (initialised to 0, not decayed).
    Bias,
    /// A layer-norm gain (initialised to 1, not decayed).
    Gain,
    /// An integer model's lookup or requantisation table (int8 only).
    Quant,
}

impl TensorKind {
    /// A float model's tensors before the layers, in canonical order (each present or
    /// not depending on the options).
    pub const FLOAT_PRE: [TensorKind; 4] = [
        TensorKind::InputMean,
        TensorKind::InputStd,
        TensorKind::EmbedW,
        TensorKind::EmbedB,
    ];
    /// A float model's tensors of each layer, in canonical order.
    pub const FLOAT_LAYER: [TensorKind; 16] = [
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
    /// A float model's tensors after the layers, in canonical order.
    pub const FLOAT_POST: [TensorKind; 4] = [
        TensorKind::FinalLnG,
        TensorKind::FinalLnB,
        TensorKind::ClassifierW,
        TensorKind::ClassifierB,
    ];

    /// The role of this tensor's data part.
    pub const fn role(self) -> Role {
        use TensorKind::*;
        match self {
            InputMean | InputStd => Role::Statistic,
            EmbedW | Wq | Wk | Wv | Wo | MlpW1 | MlpW2 | ClassifierW => Role::Weight,
            EmbedB | Bq | Bk | Bv | Bo | MlpB1 | MlpB2 | ClassifierB | Ln1B | Ln2B | FinalLnB => {
                Role::Bias
            }
            Ln1G | Ln2G | FinalLnG => Role::Gain,
            InputQ | PosQ | Ln1Q | Ln2Q | FinalLnQ => Role::Quant,
        }
    }
}

type Slot = (TensorKind, Part);

const fn d(k: TensorKind) -> Slot {
    (k, Part::Data)
}

/// The data slots of `kinds`, in order.
const fn data_slots<const N: usize>(kinds: [TensorKind; N]) -> [Slot; N] {
    let mut out = [d(TensorKind::InputMean); N];
    let mut i = 0;
    while i < N {
        out[i] = d(kinds[i]);
        i += 1;
    }
    out
}

const PRE_SLOTS: [Slot; 4] = data_slots(TensorKind::FLOAT_PRE);
const LAYER_SLOTS: [Slot; 16] = data_slots(TensorKind::FLOAT_LAYER);
const POST_SLOTS: [Slot; 4] = data_slots(TensorKind::FLOAT_POST);

const PRE_SLOTS_INT8: [Slot; 5] = [
    d(TensorKind::InputQ),
    d(TensorKind::EmbedW),
    (TensorKind::EmbedW, Part::Scale),
    (TensorKind::EmbedW, Part::Rq),
    d(TensorKind::PosQ),
];
const LAYER_SLOTS_INT8: [Slot; 20] = [
    d(TensorKind::Ln1Q),
    d(TensorKind::Wq),
    (TensorKind::Wq, Part::Scale),
    (TensorKind::Wq, Part::Rq),
    d(TensorKind::Wk),
    (TensorKind::Wk, Part::Scale),
    (TensorKind::Wk, Part::Rq),
    d(TensorKind::Wv),
    (TensorKind::Wv, Part::Scale),
    (TensorKind::Wv, Part::Rq),
    d(TensorKind::Wo),
    (TensorKind::Wo, Part::Scale),
    (TensorKind::Wo, Part::Rq),
    d(TensorKind::Ln2Q),
    d(TensorKind::MlpW1),
    (TensorKind::MlpW1, Part::Scale),
    (TensorKind::MlpW1, Part::Rq),
    d(TensorKind::MlpW2),
    (TensorKind::MlpW2, Part::Scale),
    (TensorKind::MlpW2, Part::Rq),
];
const POST_SLOTS_INT8: [Slot; 4] = [
    d(TensorKind::FinalLnQ),
    d(TensorKind::ClassifierW),
    (TensorKind::ClassifierW, Part::Scale),
    (TensorKind::ClassifierW, Part::Rq),
];

/// One tensor the architecture implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    /// Which tensor.
    pub kind: TensorKind,
    /// Which part of it (always [`Part::Data`] in a float model).
    pub part: Part,
    /// Layer index (0 for non-layer tensors).
    pub layer: usize,
    /// Expected shape.
    pub shape: Shape,
    /// The dtype an int8 model must store it as; `None` in a float model (f32 or f16).
    pub dtype: Option<DType>,
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
        let _ = n.write_str(self.part.suffix());
        n
    }

    /// True when `s` is this tensor's name (no formatting into a buffer needed).
    pub fn name_is(&self, s: &str) -> bool {
        if !self.kind.is_layer() && self.part == Part::Data {
            return s == self.kind.suffix();
        }
        self.name() == s
    }

    /// Element count, `None` on overflow.
    pub fn numel(&self) -> Option<usize> {
        self.shape.numel()
    }

    /// What the tensor does (a matrix's scales and requantisation table are [`Role::Quant`]).
    pub fn role(&self) -> Role {
        match self.part {
            Part::Data => self.kind.role(),
            Part::Scale | Part::Rq => Role::Quant,
        }
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
        let (pre, per_layer, post) = self.meta.slots();
        loop {
            let (slot, layer) = match self.stage {
                0 => {
                    if self.slot >= pre.len() {
                        self.stage = 1;
                        self.slot = 0;
                        continue;
                    }
                    (pre[self.slot], 0)
                }
                1 => {
                    if self.layer >= self.meta.dims.layers {
                        self.stage = 2;
                        self.slot = 0;
                        continue;
                    }
                    if self.slot >= per_layer.len() {
                        self.slot = 0;
                        self.layer += 1;
                        continue;
                    }
                    (per_layer[self.slot], self.layer)
                }
                2 => {
                    if self.slot >= post.len() {
                        self.stage = 3;
                        continue;
                    }
                    (post[self.slot], 0)
                }
                _ => return None,
            };
            self.slot += 1;
            if self.meta.present(slot.0) {
                return Some(self.meta.spec(slot, layer));
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

    #[test]
    fn int8_catalogue_order_names_dtypes() {
        let m = ModelMeta::v1_defaults(Dims::AETHER_DEFAULT).with_int8(true);
        let names: [&str; 1 + 2 * 12 + 3] = [
            "input.q",
            "layers.0.wq",
            "layers.0.wq.scale",
            "layers.0.wq.rq",
            "layers.0.wk",
            "layers.0.wk.scale",
            "layers.0.wk.rq",
            "layers.0.wv",
            "layers.0.wv.scale",
            "layers.0.wv.rq",
            "layers.0.wo",
            "layers.0.wo.scale",
            "layers.0.wo.rq",
            "layers.1.wq",
            "layers.1.wq.scale",
            "layers.1.wq.rq",
            "layers.1.wk",
            "layers.1.wk.scale",
            "layers.1.wk.rq",
            "layers.1.wv",
            "layers.1.wv.scale",
            "layers.1.wv.rq",
            "layers.1.wo",
            "layers.1.wo.scale",
            "layers.1.wo.rq",
            "classifier.w",
            "classifier.w.scale",
            "classifier.w.rq",
        ];
        assert_eq!(m.tensor_count(), names.len());
        assert_eq!(m.tensor_specs().count(), names.len());
        for (s, n) in m.tensor_specs().zip(names) {
            assert_eq!(s.name(), n);
            assert!(s.name_is(n));
            assert_eq!(m.spec_by_name(n), Some(s), "{n}");
        }
        let wq = m.spec_by_name("layers.0.wq").unwrap();
        assert_eq!(
            (wq.dtype, wq.shape),
            (Some(DType::I8), Shape::matrix(16, 128))
        );
        let rq = m.spec_by_name("layers.0.wq.rq").unwrap();
        assert_eq!(
            (rq.dtype, rq.shape),
            (Some(DType::I32), Shape::matrix(128, 3))
        );
        let sc = m.spec_by_name("classifier.w.scale").unwrap();
        assert_eq!((sc.dtype, sc.shape), (Some(DType::F32), Shape::vector(4)));
        assert_eq!(m.spec_by_name("layers.0.ln1.q"), None);
        assert_eq!(m.spec_by_name("layers.0.bq"), None);
        assert_eq!(m.spec_by_name("classifier.w.rq.rq"), None);
        // element count: every stored value
        let total: usize = m.tensor_specs().map(|s| s.numel().unwrap()).sum();
        assert_eq!(m.parameter_count(), total);
        assert_eq!(m.feature_bits(), feature::INT8);
        // the float catalogue never carries parts or dtypes
        let f = ModelMeta::v1_defaults(Dims::AETHER_DEFAULT);
        assert!(f
            .tensor_specs()
            .all(|s| s.part == Part::Data && s.dtype.is_none()));
        assert_eq!(f.spec_by_name("layers.0.wq.rq"), None);
    }

    #[test]
    fn int8_full_arch_tables() {
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
            pooling: Pooling::Mean,
            attention: AttentionBackend::Sparse,
            running_norm: true,
        };
        let m = ModelMeta::new(dims, arch, PatternSpec::default()).with_int8(true);
        m.validate().unwrap();
        // input.q, embed ×3, pos.q; per layer ln1.q, 4 × 3, ln2.q, 2 × 3; final_ln.q, classifier ×3
        assert_eq!(m.tensor_count(), 5 + 2 * 20 + 4);
        assert_eq!(m.tensor_specs().count(), m.tensor_count());
        let shape = |n: &str| m.spec_by_name(n).unwrap().shape;
        assert_eq!(shape("input.q"), Shape::matrix(16, INPUT_Q_COLS));
        assert_eq!(shape("pos.q"), Shape::matrix(24, POS_Q_COLS));
        assert_eq!(shape("embed.w.rq"), Shape::matrix(24, RQ_COLS));
        assert_eq!(shape("layers.1.ln2.q"), Shape::matrix(24, LN_Q_COLS));
        assert_eq!(shape("layers.1.mlp.w1.scale"), Shape::vector(48));
        assert_eq!(shape("final_ln.q"), Shape::matrix(24, LN_Q_COLS));
        assert_eq!(m.spec_by_name("input.mean"), None);
    }
}
