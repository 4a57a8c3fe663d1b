//! [`QuantHead`]: an int8 `.rvne` model (docs/int8.md) and the row-level integer
//! operations the whole-window forward ([`crate::forward`]) and the stream
//! ([`crate::stream`]) share, so both run identical arithmetic.
//!
//! ```text
//! frame f32 bits ─► input stage (pre-scale, running norm, input norm) ─► u i16
//!   ─► embed (i8 matrix, i32 acc, requant) + pe ─► x i16 (residual)
//!   per layer: h = LN1(x) i16; q i16, k i8, v i8; sparse/dense attention (exp2 LUT,
//!              Q15 weights) ─► att i16; x += att·Wo; x += GELU(LN2(x)·W1)·W2
//!   ─► final LN ─► pool (mean | last) ─► ·Wc ─► logits i32 at 2^−logit_shift
//! ```

use alloc::borrow::Cow;
use alloc::vec;
use alloc::vec::Vec;

use aether_kernel::SparsePattern;
use aether_rvne::{AttentionBackend, BlobView, ModelMeta, Pooling, Positional, TensorView};

use crate::error::{try_vec, QuantError, Result};
use crate::fixed::{
    div_round, exp2_neg_q16_u32, f32_to_fixed, fixed_to_f32, gelu_q12, isqrt, isqrt128, pow2_div,
    requant, requant_clamp, rshift, rshift_sat16, sat16, sat8, sin_q15, SAT30,
};

/// Largest input width of any matrix (and largest head dimension): with i16 inputs and
/// i8 weights every product is below 2²², so 511 of them fit an i32 accumulator.
pub const MAX_K: usize = 511;

/// Longest stream (frames since a reset) with running normalisation: its integer sums
/// are exact up to 2³¹ − 1 frames.
pub const MAX_RUNNING_FRAMES: u32 = i32::MAX as u32;

/// An int8 matrix with its requantisation table (`bias, mult, shift` per output).
#[derive(Debug, Clone, PartialEq)]
pub struct QMat<'a> {
    /// `[rows, cols]` row-major i8 weights.
    pub w: Cow<'a, [i8]>,
    /// `[cols, 3]` requantisation table.
    pub rq: Cow<'a, [i32]>,
    /// Input width.
    pub rows: usize,
    /// Output width.
    pub cols: usize,
}

impl QMat<'_> {
    /// `acc[o] = Σᵢ x[i]·w[i, o]` (i32; `x` of length `rows`, `acc` of length `cols`).
    #[inline]
    pub fn matvec(&self, x: &[i16], acc: &mut [i32]) {
        matvec(x, &self.w, &mut acc[..self.cols]);
    }

    /// `(add + R(acc + bias[o], mult[o], shift[o])).clamp(lo, hi)` in i32 arithmetic
    /// (`|add| ≤ 2³⁰`; [`requant_clamp`]).
    #[inline(always)]
    pub fn out_clamp(&self, o: usize, acc: i32, add: i32, lo: i32, hi: i32) -> i32 {
        let r = &self.rq[3 * o..3 * o + 3];
        // `requant`'s clamp of the i64 sum, in i32: saturate, then trim `i32::MIN`.
        requant_clamp(
            acc.saturating_add(r[0]).max(-i32::MAX),
            r[1],
            r[2],
            add,
            lo,
            hi,
        )
    }

    fn bytes(&self) -> usize {
        owned_len(&self.w) + 4 * owned_len(&self.rq)
    }

    /// A copy that owns its tensors.
    pub fn into_owned(self) -> QMat<'static> {
        QMat {
            w: Cow::Owned(self.w.into_owned()),
            rq: Cow::Owned(self.rq.into_owned()),
            rows: self.rows,
            cols: self.cols,
        }
    }
}

fn own(c: Cow<'_, [i32]>) -> Cow<'static, [i32]> {
    Cow::Owned(c.into_owned())
}

#[allow(clippy::ptr_arg)] // the variant (borrowed or owned) is what is asked
fn owned_len<T: Clone>(c: &Cow<'_, [T]>) -> usize {
    match c {
        Cow::Borrowed(_) => 0,
        Cow::Owned(v) => v.len(),
    }
}

/// `acc[o] = Σᵢ x[i]·w[i·n + o]`, `n = acc.len()` ([`aether_kernel::simd::matvec_i8`]).
#[inline]
pub fn matvec(x: &[i16], w: &[i8], acc: &mut [i32]) {
    aether_kernel::simd::matvec_i8(x, w, acc)
}

/// The i16 range as i32 bounds of [`QMat::out_clamp`].
const I16_LO: i32 = i16::MIN as i32;
const I16_HI: i32 = i16::MAX as i32;

/// One layer's tensors and constants.
#[derive(Debug, Clone, PartialEq)]
pub struct QLayer<'a> {
    /// `ln1.q` (`[D, 3]`: mult, shift, offset), with pre-norm.
    pub ln1: Option<Cow<'a, [i32]>>,
    /// Query projection (i16 output).
    pub wq: QMat<'a>,
    /// Key projection (i8 output).
    pub wk: QMat<'a>,
    /// Value projection (i8 output).
    pub wv: QMat<'a>,
    /// Output projection (added to the residual).
    pub wo: QMat<'a>,
    /// `ln2.q`, with pre-norm and an MLP.
    pub ln2: Option<Cow<'a, [i32]>>,
    /// MLP `(w1, w2)`.
    pub mlp: Option<(QMat<'a>, QMat<'a>)>,
    /// Score difference → Q16 log2 exponent multiplier.
    pub att_mult: i32,
    /// Its shift.
    pub att_shift: i32,
    /// GELU output (Q12) → `w2` input right shift.
    pub gelu_shift: u32,
}

/// Causal running standardisation in integers (docs/model.md step 0, docs/int8.md): per
/// feature the exact sums `Σr`, `Σr²` of the pre-scaled inputs since the last reset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntRunningNorm {
    n: u32,
    s1: Vec<i64>,
    s2: Vec<u128>,
}

impl IntRunningNorm {
    /// A fresh state for `features` features (0: a no-op holder).
    pub fn new(features: usize) -> Self {
        Self {
            n: 0,
            s1: vec![0; features],
            s2: vec![0; features],
        }
    }

    /// [`IntRunningNorm::new`] with its buffers allocated fallibly.
    pub fn try_new(features: usize) -> Result<Self> {
        Ok(Self {
            n: 0,
            s1: try_vec(features, 0, "int8 running-norm sums")?,
            s2: try_vec(features, 0, "int8 running-norm squares")?,
        })
    }

    /// Forgets every frame.
    pub fn reset(&mut self) {
        self.n = 0;
        self.s1.iter_mut().for_each(|s| *s = 0);
        self.s2.iter_mut().for_each(|s| *s = 0);
    }

    /// Frames seen since the last reset.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// Bytes of its buffers.
    pub fn bytes(&self) -> usize {
        Self::bytes_for(self.s1.len())
    }

    /// Bytes of the buffers of a state for `features` features (bounded by a model's
    /// tensors, so this cannot overflow).
    pub fn bytes_for(features: usize) -> usize {
        features.saturating_mul(8 + 16)
    }

    /// Adds the pre-scaled frame `r` and replaces it by `z = (n·r − Σr) / max(√(n·Σr² −
    /// (Σr)²), n·floor)` in Q16 (saturated at ±2³⁰); `floor(c)` is feature `c`'s floor
    /// in Q8 pre-scaled units.
    pub fn apply(&mut self, r: &mut [i32], floor: impl Fn(usize) -> i32) -> Result<()> {
        if self.n >= MAX_RUNNING_FRAMES {
            return Err(QuantError::Unsupported {
                what: "frames since the last reset with running normalisation",
                value: self.n as usize + 1,
                max: MAX_RUNNING_FRAMES as usize,
            });
        }
        self.n += 1;
        let n = self.n as i64;
        for (c, ((v, s1), s2)) in r
            .iter_mut()
            .zip(self.s1.iter_mut())
            .zip(self.s2.iter_mut())
            .enumerate()
        {
            let x = *v as i64;
            *s1 += x;
            *s2 += (x * x) as u128;
            let num = n * x - *s1;
            let s1sq = (*s1 as i128 * *s1 as i128) as u128;
            let var = (n as u128 * *s2).saturating_sub(s1sq);
            let sd = isqrt128(var);
            let fl = (n as u64 * floor(c).max(0) as u64) >> 8;
            let den = sd.max(fl).max(1);
            // Bring the denominator below 2^31 so num·2^16 cannot overflow (|z| ≤ √n).
            let t = (64 - den.leading_zeros()).saturating_sub(31);
            let den = (den >> t) as i64;
            let num = rshift(num, t);
            let z = div_round(num << 16, den.max(1));
            *v = z.clamp(-SAT30, SAT30) as i32;
        }
        Ok(())
    }
}

/// Where a layer's keys and values live: rows of `Hkv·dh` i8 values per position, and
/// the landmark (block mean) rows.
#[derive(Debug, Clone, Copy)]
pub struct KvRows<'s> {
    /// Keys `[n][width]`.
    pub k: &'s [i8],
    /// Values `[n][width]`.
    pub v: &'s [i8],
    /// Landmark keys `[blocks][width]`.
    pub lk: &'s [i8],
    /// Landmark values `[blocks][width]`.
    pub lv: &'s [i8],
    /// `Hkv·dh`.
    pub width: usize,
}

/// `out[c] = q · rows[offs[c] + lo..][..len(q)]` ([`aether_kernel::simd::scores_i8`]).
#[inline]
fn scores_of(q: &[i16], rows: &[i8], offs: &[u32], lo: usize, out: &mut [i32]) {
    aether_kernel::simd::scores_i8(q, rows, offs, lo, out)
}

/// `acc[d] += Σ_c wts[c] · rows[offs[c] + lo + d]` ([`aether_kernel::simd::weighted_i8`]).
#[inline]
fn weighted(wts: &[i32], rows: &[i8], offs: &[u32], lo: usize, acc: &mut [i32]) {
    aether_kernel::simd::weighted_i8(wts, rows, offs, lo, acc)
}

/// Mean of rows `lo..hi` of `rows` (`width` each) into `out`, rounded half up.
pub fn block_mean(rows: &[i8], lo: usize, hi: usize, width: usize, out: &mut [i8]) {
    let cnt = (hi - lo) as i64;
    for (j, o) in out.iter_mut().enumerate().take(width) {
        let s: i64 = (lo..hi).map(|t| rows[t * width + j] as i64).sum();
        *o = sat8(div_round(s, cnt));
    }
}

/// An int8 temporal head: model description, constants and integer tensors (borrowed
/// from the blob when aligned, else copied once).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantHead<'a> {
    meta: ModelMeta,
    pattern: SparsePattern,
    input: Cow<'a, [i32]>,
    embed: Option<QMat<'a>>,
    pos: Option<Cow<'a, [i32]>>,
    layers: Vec<QLayer<'a>>,
    final_ln: Option<Cow<'a, [i32]>>,
    classifier: QMat<'a>,
    logit_shift: u32,
    ln_eps: u64,
    pe_mult: i32,
    pe_shift: i32,
    scales: Vec<f32>,
}

/// The allocator refused a small table of `what` (its size is bounded by the blob).
fn no_memory(what: &'static str) -> QuantError {
    QuantError::NoMemory { what, bytes: None }
}

fn i32_table<'a>(t: &TensorView<'a>) -> Result<Cow<'a, [i32]>> {
    if let Some(s) = t.as_i32() {
        return Ok(Cow::Borrowed(s));
    }
    let mut v = try_vec(t.len(), 0i32, "an int8 table copied out of the blob")?;
    t.read_i32_into(&mut v)?;
    Ok(Cow::Owned(v))
}

impl<'a> QuantHead<'a> {
    /// Parses an int8 `.rvne` blob (docs/int8.md) and builds the head, borrowing its
    /// tensors (i32 tables when the buffer is 4-aligned).
    pub fn from_blob(bytes: &'a [u8]) -> Result<Self> {
        let view = BlobView::parse(bytes)?;
        Self::from_view(&view)
    }

    /// Builds the head a parsed int8 blob describes; a float blob is [`QuantError::NotInt8`].
    pub fn from_view(view: &BlobView<'a>) -> Result<Self> {
        let Some(q) = view.quant() else {
            return Err(QuantError::NotInt8);
        };
        let meta = *view.meta();
        let d = &meta.dims;
        for (what, v) in [
            ("input width F", d.input_dim),
            ("model width D", d.d_model),
            ("query width Hq·dh", d.q_heads.saturating_mul(d.head_dim)),
            ("head dimension dh", d.head_dim),
            ("MLP width H", d.mlp_hidden),
        ] {
            if v > MAX_K {
                return Err(QuantError::Unsupported {
                    what,
                    value: v,
                    max: MAX_K,
                });
            }
        }
        let tensor = |name: &str| view.tensor(name).ok_or(QuantError::NotInt8);
        let table = |name: &str| -> Result<Cow<'a, [i32]>> { i32_table(&tensor(name)?) };
        let mat = |name: &str| -> Result<QMat<'a>> {
            let w = tensor(name)?;
            let shape = w.shape();
            let s = shape.as_slice();
            let mut rq_name = aether_rvne::Name::new(name);
            let _ = core::fmt::Write::write_str(&mut rq_name, ".rq");
            Ok(QMat {
                w: Cow::Borrowed(w.as_i8().ok_or(QuantError::NotInt8)?),
                rq: table(rq_name.as_str())?,
                rows: s[0],
                cols: s[1],
            })
        };
        let opt_table = |on: bool, name: &str| -> Result<Option<Cow<'a, [i32]>>> {
            if on {
                table(name).map(Some)
            } else {
                Ok(None)
            }
        };
        let a = &meta.arch;
        let mut layers = Vec::new();
        layers
            .try_reserve_exact(d.layers)
            .map_err(|_| no_memory("the int8 layer table"))?;
        for l in 0..d.layers {
            let name = |s: &str| {
                let mut n = aether_rvne::Name::empty();
                let _ = core::fmt::Write::write_fmt(&mut n, format_args!("layers.{l}.{s}"));
                n
            };
            let lq = q.layer(l);
            layers.push(QLayer {
                ln1: opt_table(a.pre_norm, name("ln1.q").as_str())?,
                wq: mat(name("wq").as_str())?,
                wk: mat(name("wk").as_str())?,
                wv: mat(name("wv").as_str())?,
                wo: mat(name("wo").as_str())?,
                ln2: opt_table(a.pre_norm && d.mlp_hidden > 0, name("ln2.q").as_str())?,
                mlp: if d.mlp_hidden > 0 {
                    Some((mat(name("mlp.w1").as_str())?, mat(name("mlp.w2").as_str())?))
                } else {
                    None
                },
                att_mult: lq.att_mult,
                att_shift: lq.att_shift,
                gelu_shift: lq.gelu_shift,
            });
        }
        let p = &meta.pattern;
        let mut global_tokens = try_vec(p.globals().len(), 0, "the pattern's global tokens")?;
        global_tokens.copy_from_slice(p.globals());
        let mut scales = try_vec(q.scale_count(), 0.0, "the int8 scales")?;
        for (i, s) in scales.iter_mut().enumerate() {
            *s = q.scale(i);
        }
        Ok(Self {
            pattern: SparsePattern {
                window: p.window,
                block_size: p.block_size,
                global_tokens,
                causal: p.causal,
                log_stride: p.log_stride,
                landmarks: p.landmarks,
            },
            input: table("input.q")?,
            embed: if a.embed { Some(mat("embed.w")?) } else { None },
            pos: opt_table(a.positional == Positional::Sinusoidal, "pos.q")?,
            layers,
            final_ln: opt_table(a.final_norm, "final_ln.q")?,
            classifier: mat("classifier.w")?,
            logit_shift: q.logit_shift(),
            ln_eps: q.ln_eps(),
            pe_mult: q.pe_mult(),
            pe_shift: q.pe_shift(),
            scales,
            meta,
        })
    }

    /// A copy that owns every tensor (for a service that outlives the file's bytes).
    pub fn into_owned(self) -> QuantHead<'static> {
        QuantHead {
            meta: self.meta,
            pattern: self.pattern,
            input: own(self.input),
            embed: self.embed.map(QMat::into_owned),
            pos: self.pos.map(own),
            layers: self
                .layers
                .into_iter()
                .map(|l| QLayer {
                    ln1: l.ln1.map(own),
                    wq: l.wq.into_owned(),
                    wk: l.wk.into_owned(),
                    wv: l.wv.into_owned(),
                    wo: l.wo.into_owned(),
                    ln2: l.ln2.map(own),
                    mlp: l.mlp.map(|(a, b)| (a.into_owned(), b.into_owned())),
                    att_mult: l.att_mult,
                    att_shift: l.att_shift,
                    gelu_shift: l.gelu_shift,
                })
                .collect(),
            final_ln: self.final_ln.map(own),
            classifier: self.classifier.into_owned(),
            logit_shift: self.logit_shift,
            ln_eps: self.ln_eps,
            pe_mult: self.pe_mult,
            pe_shift: self.pe_shift,
            scales: self.scales,
        }
    }

    /// The model description (`meta.int8 == true`).
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The sparse pattern (kernel form).
    pub fn pattern(&self) -> &SparsePattern {
        &self.pattern
    }

    /// The layers.
    pub fn layers(&self) -> &[QLayer<'a>] {
        &self.layers
    }

    /// Logits are `q · 2^−logit_shift`.
    pub fn logit_shift(&self) -> u32 {
        self.logit_shift
    }

    /// The activation scales of the QUANT record (`s_in, s_x`, per layer `s_h1, s_q,
    /// s_k, s_v, s_h2`, `s_f`): documentation and dequantisation, not used by the
    /// integer path.
    pub fn activation_scales(&self) -> &[f32] {
        &self.scales
    }

    /// Features per frame `F`.
    pub fn features(&self) -> usize {
        self.meta.dims.input_dim
    }

    /// Classes `C`.
    pub fn classes(&self) -> usize {
        self.meta.dims.classes
    }

    /// Bytes of tensors copied out of the blob (0 when everything is borrowed).
    pub fn owned_bytes(&self) -> usize {
        let t = |c: &Option<Cow<'_, [i32]>>| c.as_ref().map_or(0, |c| 4 * owned_len(c));
        let mut b = 4 * owned_len(&self.input) + t(&self.pos) + t(&self.final_ln);
        b += self.embed.as_ref().map_or(0, QMat::bytes) + self.classifier.bytes();
        for l in &self.layers {
            b += t(&l.ln1) + t(&l.ln2);
            b += l.wq.bytes() + l.wk.bytes() + l.wv.bytes() + l.wo.bytes();
            if let Some((w1, w2)) = &l.mlp {
                b += w1.bytes() + w2.bytes();
            }
        }
        b
    }

    /// `Hkv·dh`.
    pub fn kv_width(&self) -> usize {
        self.meta.dims.kv_heads * self.meta.dims.head_dim
    }

    /// `Hq·dh`.
    pub fn q_width(&self) -> usize {
        self.meta.dims.q_heads * self.meta.dims.head_dim
    }

    /// Widest matrix output (the accumulator scratch a row needs).
    pub fn acc_width(&self) -> usize {
        let d = &self.meta.dims;
        [d.d_model, self.q_width(), d.mlp_hidden, d.classes]
            .into_iter()
            .max()
            .unwrap_or(1)
    }

    /// Candidate scratch (tokens + landmarks per query) for sequences up to `max_len`.
    pub fn scratch_len(&self, max_len: usize) -> usize {
        match self.meta.arch.attention {
            AttentionBackend::Sparse => self.pattern.max_edges_per_query(max_len).max(1),
            AttentionBackend::Dense => max_len.max(1),
        }
    }

    /// Whether layers attend landmarks (sparse backend with landmarks on).
    pub fn uses_landmarks(&self) -> bool {
        self.meta.arch.attention == AttentionBackend::Sparse && self.pattern.landmarks
    }

    /// The logits as f32 (`q · 2^−logit_shift`, built from integers).
    pub fn logits_to_f32(&self, q: &[i32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(q) {
            *o = fixed_to_f32(v, self.logit_shift);
        }
    }

    /// Checks a frame buffer (`n·F` values, finite) and returns `n`.
    pub fn check_frames(&self, frames: &[f32]) -> Result<usize> {
        let f = self.features();
        if f == 0 || !frames.len().is_multiple_of(f) {
            return Err(QuantError::FrameWidth {
                expected: f,
                got: frames.len(),
            });
        }
        // Exponent all ones = NaN or infinity (checked on the bits, no float compare).
        if let Some(i) = frames
            .iter()
            .position(|x| x.to_bits() & 0x7F80_0000 == 0x7F80_0000)
        {
            return Err(QuantError::NonFiniteInput {
                frame: i / f,
                feature: i % f,
            });
        }
        Ok(frames.len() / f)
    }

    /// Step 0–1 for one frame: pre-scale, running norm (`rn`), input norm → `u` (i16);
    /// `r` is `F` scratch.
    pub(crate) fn input_row(
        &self,
        frame: &[f32],
        rn: &mut IntRunningNorm,
        r: &mut [i32],
        u: &mut [i16],
    ) -> Result<()> {
        let tab = &self.input;
        for (c, (x, rv)) in frame.iter().zip(r.iter_mut()).enumerate() {
            *rv = f32_to_fixed(x.to_bits(), tab[5 * c]);
        }
        if self.meta.arch.running_norm {
            rn.apply(r, |c| tab[5 * c + 4])?;
        }
        for (c, (rv, o)) in r.iter().zip(u.iter_mut()).enumerate() {
            let t = &tab[5 * c..5 * c + 5];
            *o = sat16(requant(*rv as i64, t[1], t[2]) + t[3] as i64);
        }
        Ok(())
    }

    /// Steps 0–3 for frame `t`: `x = embed(input(frame)) + pe(t)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn embed_row(
        &self,
        t: usize,
        frame: &[f32],
        rn: &mut IntRunningNorm,
        r: &mut [i32],
        u: &mut [i16],
        acc: &mut [i32],
        x: &mut [i16],
    ) -> Result<()> {
        self.input_row(frame, rn, r, u)?;
        match &self.embed {
            Some(e) => {
                e.matvec(u, acc);
                for (o, xo) in x.iter_mut().enumerate() {
                    *xo = e.out_clamp(o, acc[o], 0, I16_LO, I16_HI) as i16;
                }
            }
            None => x.copy_from_slice(u),
        }
        if let Some(pos) = &self.pos {
            let tt = t as u32;
            for (i, xo) in x.iter_mut().enumerate() {
                let phase = tt
                    .wrapping_mul(pos[2 * i] as u32)
                    .wrapping_add(pos[2 * i + 1] as u32);
                let pe = requant(sin_q15(phase) as i64, self.pe_mult, self.pe_shift);
                *xo = sat16(*xo as i64 + pe);
            }
        }
        Ok(())
    }

    /// Integer layer norm of one row: `y = (D·x − Σx)·2^16 / √(Σc²/D + eps)` (Q16), then
    /// `out = R(y, mult, shift) + offset` per element.
    pub fn layer_norm(&self, table: &[i32], x: &[i16], out: &mut [i16]) {
        let d = x.len() as i64;
        let s: i64 = x.iter().map(|&v| v as i64).sum();
        let ss: u64 = x
            .iter()
            .map(|&v| {
                let c = d * v as i64 - s;
                (c * c) as u64
            })
            .sum();
        // (A power-of-two width divides by a shift: the same quotient, no 64-bit division.)
        let du = d as u64;
        let mean_sq = if du.is_power_of_two() {
            ss >> du.trailing_zeros()
        } else {
            ss / du
        };
        let var = mean_sq.saturating_add(self.ln_eps);
        let sd6 = if var < 1 << 50 {
            isqrt(var << 12)
        } else {
            isqrt(var) << 6
        };
        let inv = pow2_div(52, sd6.max(1)) as i64;
        for (i, (&v, o)) in x.iter().zip(out.iter_mut()).enumerate() {
            let c = d * v as i64 - s;
            let y = rshift(c * inv, 30);
            let t = &table[3 * i..3 * i + 3];
            *o = sat16(requant(y, t[0], t[1]) + t[2] as i64);
        }
    }

    /// The layer input `h = LN(x)` with a table, else `x` itself.
    #[inline]
    pub fn norm_or_copy<'r>(
        &self,
        table: Option<&[i32]>,
        x: &'r [i16],
        h: &'r mut [i16],
    ) -> &'r [i16] {
        match table {
            Some(t) => {
                self.layer_norm(t, x, h);
                h
            }
            None => x,
        }
    }

    /// Keys and values of one row: `k = sat8(R(h·Wk))`, `v = sat8(R(h·Wv))`.
    pub fn project_kv(
        &self,
        lw: &QLayer<'_>,
        h: &[i16],
        acc: &mut [i32],
        k: &mut [i8],
        v: &mut [i8],
    ) {
        lw.wk.matvec(h, acc);
        for (o, ko) in k.iter_mut().enumerate() {
            *ko = lw.wk.out_clamp(o, acc[o], 0, -128, 127) as i8;
        }
        lw.wv.matvec(h, acc);
        for (o, vo) in v.iter_mut().enumerate() {
            *vo = lw.wv.out_clamp(o, acc[o], 0, -128, 127) as i8;
        }
    }

    /// Query of one row: `q = sat16(R(h·Wq))`.
    pub fn project_q(&self, lw: &QLayer<'_>, h: &[i16], acc: &mut [i32], q: &mut [i16]) {
        lw.wq.matvec(h, acc);
        for (o, qo) in q.iter_mut().enumerate() {
            *qo = lw.wq.out_clamp(o, acc[o], 0, I16_LO, I16_HI) as i16;
        }
    }

    /// Collects the candidates of query `i` of `n` into `idx`: the pattern's tokens, then
    /// its landmark blocks (sparse), or every position `j ≤ i` (causal) / `j < n` (dense).
    /// Returns `(candidates, tokens)`.
    pub fn candidates(&self, i: usize, n: usize, idx: &mut [u32]) -> (usize, usize) {
        let cap = idx.len();
        let mut ne = 0usize;
        match self.meta.arch.attention {
            AttentionBackend::Sparse => {
                self.pattern.for_each_token(i, n, |j| {
                    if ne < cap {
                        idx[ne] = j as u32;
                        ne += 1;
                    }
                });
                let ntok = ne;
                if self.pattern.landmarks {
                    self.pattern.for_each_landmark(i, n, |b| {
                        if ne < cap {
                            idx[ne] = b as u32;
                            ne += 1;
                        }
                    });
                }
                (ne, ntok)
            }
            AttentionBackend::Dense => {
                let last = if self.pattern.causal { i + 1 } else { n };
                for (slot, j) in idx.iter_mut().zip(0..last) {
                    *slot = j as u32;
                    ne += 1;
                }
                (ne, ne)
            }
        }
    }

    /// Attention of query `i` of `n` (all heads, `q` is `Hq·dh`) into `att` (`Hq·dh`):
    /// scores `q·k` (i32), `p = 2^(−R(max − s))` (Q16), weights `p·⌊2^47/Σp⌋ / 2^32`
    /// (Q15), `att = (Σ w·v) / 2^7` (i16 at the value scale / 256).
    ///
    /// Candidates are processed four at a time (one query load feeds four key rows, one
    /// accumulator update takes four value rows); integer sums do not depend on the
    /// order, so every blocking gives the same bits.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        lw: &QLayer<'_>,
        i: usize,
        n: usize,
        q: &[i16],
        src: &KvRows<'_>,
        idx: &mut [u32],
        scores: &mut [i32],
        att: &mut [i16],
    ) {
        let cap = idx.len().min(scores.len());
        let (ne, ntok) = self.candidates(i, n, &mut idx[..cap]);
        let d = &self.meta.dims;
        let dh = d.head_dim;
        let group = d.q_heads / d.kv_heads;
        let w = src.width;
        // Candidate positions → element offsets of their rows (every store is `[n][w]`).
        for j in idx[..ne].iter_mut() {
            *j = u32::try_from(*j as usize * w).expect("cache rows fit u32 offsets");
        }
        let (toks, lms) = idx[..ne].split_at(ntok);
        // Value sums of one head, 64 dimensions at a time (zeroed per chunk below).
        let mut o = [0i32; 64];
        for h in 0..d.q_heads {
            let lo = (h / group) * dh;
            let qh = &q[h * dh..(h + 1) * dh];
            let (st, sl) = scores[..ne].split_at_mut(ntok);
            scores_of(qh, src.k, toks, lo, st);
            scores_of(qh, src.lk, lms, lo, sl);
            let m = scores[..ne].iter().copied().max().unwrap_or(0);
            let mut z = 0u64;
            for s in scores[..ne].iter_mut() {
                // `m ≥ s`, so the difference saturates only upwards (at `i32::MAX`, as the
                // 64-bit `min` did); `requant`'s clamp is then the identity, and clamping the
                // exponent to `0..=17·2¹⁶` does not change `2^−y` (see `exp2_neg_q16`).
                let diff = m.saturating_sub(*s);
                let y = requant_clamp(diff, lw.att_mult, lw.att_shift, 0, 0, 17 << 16);
                let p = exp2_neg_q16_u32(y as u32);
                *s = p as i32;
                z += p as u64;
            }
            let r = pow2_div(47, z.max(1));
            for s in scores[..ne].iter_mut() {
                *s = ((*s as u64 * r + (1 << 31)) >> 32) as i32;
            }
            let oh = &mut att[h * dh..(h + 1) * dh];
            let mut chunk = 0;
            while chunk < dh {
                let len = (dh - chunk).min(64);
                let acc = &mut o[..len];
                acc.iter_mut().for_each(|a| *a = 0);
                let (wt, wl) = scores[..ne].split_at(ntok);
                weighted(wt, src.v, toks, lo + chunk, acc);
                weighted(wl, src.lv, lms, lo + chunk, acc);
                for (dst, a) in oh[chunk..chunk + len].iter_mut().zip(acc.iter()) {
                    // |a| ≤ (Σ weights ≈ 2¹⁵ + one per candidate)·128 < 2³⁰: the 32-bit shift.
                    *dst = rshift_sat16(*a, 7);
                }
                chunk += len;
            }
        }
    }

    /// One row after attention: `x += R(att·Wo)`, then the MLP block when present
    /// (`h`, `hid` scratch of `D` and `H`).
    pub(crate) fn finish_row(
        &self,
        lw: &QLayer<'_>,
        att: &[i16],
        x: &mut [i16],
        h: &mut [i16],
        hid: &mut [i16],
        acc: &mut [i32],
    ) {
        lw.wo.matvec(att, acc);
        for (o, xo) in x.iter_mut().enumerate() {
            *xo = lw.wo.out_clamp(o, acc[o], *xo as i32, I16_LO, I16_HI) as i16;
        }
        if let Some((w1, w2)) = &lw.mlp {
            let hin = self.norm_or_copy(lw.ln2.as_deref(), x, h);
            w1.matvec(hin, acc);
            for (o, ho) in hid.iter_mut().enumerate() {
                let z = w1.out_clamp(o, acc[o], 0, -(1 << 30), 1 << 30);
                *ho = rshift_sat16(gelu_q12(z), lw.gelu_shift);
            }
            w2.matvec(hid, acc);
            for (o, xo) in x.iter_mut().enumerate() {
                *xo = w2.out_clamp(o, acc[o], *xo as i32, I16_LO, I16_HI) as i16;
            }
        }
    }

    /// Step 5 for one row: `f = LN_final(x)`, or `x` without a final norm.
    pub(crate) fn final_row(&self, x: &[i16], f: &mut [i16]) {
        match &self.final_ln {
            Some(t) => self.layer_norm(t, x, f),
            None => f.copy_from_slice(x),
        }
    }

    /// Mean pooling: `pooled = round(sum / n)`.
    pub fn pool_mean(sum: &[i64], n: usize, pooled: &mut [i16]) {
        for (p, s) in pooled.iter_mut().zip(sum) {
            *p = sat16(div_round(*s, n as i64));
        }
    }

    /// Whether the head pools the last position (else the mean).
    pub fn pools_last(&self) -> bool {
        self.meta.arch.pooling == Pooling::Last
    }

    /// Step 7: `logits = sat30(R(pooled·Wc))`.
    pub fn classify_pooled(&self, pooled: &[i16], acc: &mut [i32], logits: &mut [i32]) {
        let c = &self.classifier;
        c.matvec(pooled, acc);
        for (o, l) in logits.iter_mut().enumerate() {
            *l = c.out_clamp(o, acc[o], 0, -(1 << 30), 1 << 30);
        }
    }
}
