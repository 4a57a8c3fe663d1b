//! Backward pass of sparse and dense attention: gradients with respect to q, k, v,
//! recomputing the softmax instead of storing it (the math, landmark spreading and GQA
//! reduction: docs/kernel.md). Shapes follow the forward.
//!
//! The `_into` variants accumulate (`+=`) into caller-owned [`AttentionGrads`] and reuse
//! a caller-owned [`BackwardScratch`], so repeated calls at a fixed size allocate
//! nothing; the `_slices` variants do the same over flat caller buffers
//! ([`BackwardInputs`], [`GradsMut`]). Single-threaded: parallelise over a batch outside.
//!
//! ```
//! use aether_kernel::{sparse_attention_backward, SparsePattern, Tensor3};
//! let q = Tensor3::from_vec(vec![0.1; 4 * 2 * 3], 4, 2, 3).unwrap();
//! let kv = Tensor3::from_vec(vec![0.2; 4 * 3], 4, 1, 3).unwrap();
//! let d_out = Tensor3::from_vec(vec![1.0; 4 * 2 * 3], 4, 2, 3).unwrap();
//! let g = sparse_attention_backward(&SparsePattern::default(), &q, &kv, &kv, &d_out).unwrap();
//! assert_eq!(g.dk.shape(), (4, 1, 3));
//! ```

use alloc::vec::Vec;

use crate::error::{KernelError, Result};
use crate::pattern::SparsePattern;
use crate::simd::{
    axpy_g, dispatch, dot_g, exp_shift_sum_g, scale_g, Isa, SimdLevel, WithIsa, LANES,
};
use crate::tensor::{check_lens, check_qkv, checked_len, Tensor3};

/// Gradients of an attention call: `dq` shaped like q, `dk` and `dv` like k and v.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionGrads {
    /// Gradient with respect to q, `[seq][q_heads][dim]`.
    pub dq: Tensor3,
    /// Gradient with respect to k, `[seq][kv_heads][dim]`.
    pub dk: Tensor3,
    /// Gradient with respect to v, `[seq][kv_heads][dim]`.
    pub dv: Tensor3,
}

impl AttentionGrads {
    /// Zero gradients for q of shape `(seq, q_heads, dim)` and k/v of `(seq, kv_heads, dim)`.
    pub fn zeros(seq: usize, q_heads: usize, kv_heads: usize, dim: usize) -> Result<Self> {
        Ok(Self {
            dq: Tensor3::zeros(seq, q_heads, dim)?,
            dk: Tensor3::zeros(seq, kv_heads, dim)?,
            dv: Tensor3::zeros(seq, kv_heads, dim)?,
        })
    }

    /// Zero gradients shaped like the given q and k (v is shaped like k).
    pub fn zeros_like(q: &Tensor3, k: &Tensor3) -> Result<Self> {
        let (n, hq, d) = q.shape();
        Self::zeros(n, hq, k.heads(), d)
    }

    /// Sets every gradient to zero, keeping the buffers.
    pub fn clear(&mut self) {
        self.dq.as_mut_slice().fill(0.0);
        self.dk.as_mut_slice().fill(0.0);
        self.dv.as_mut_slice().fill(0.0);
    }
}

/// Reusable working memory of the backward kernels; grows to the largest problem seen.
#[derive(Debug, Clone, Default)]
pub struct BackwardScratch {
    toks: Vec<usize>,
    lms: Vec<usize>,
    w: Vec<f32>,
    dw: Vec<f32>,
    kl: Vec<f32>,
    vl: Vec<f32>,
    dkl: Vec<f32>,
    dvl: Vec<f32>,
}

impl BackwardScratch {
    /// An empty scratch; the first call sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently reserved.
    pub fn bytes(&self) -> usize {
        let f = self.w.capacity()
            + self.dw.capacity()
            + self.kl.capacity()
            + self.vl.capacity()
            + self.dkl.capacity()
            + self.dvl.capacity();
        let u = self.toks.capacity() + self.lms.capacity();
        f * core::mem::size_of::<f32>() + u * core::mem::size_of::<usize>()
    }
}

/// Sparse attention backward over the pattern; returns fresh gradients.
///
/// `d_out` is the gradient of the loss with respect to the forward output
/// (shaped like q). Errors: invalid pattern, inconsistent q/k/v, `d_out` shape.
pub fn sparse_attention_backward(
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    d_out: &Tensor3,
) -> Result<AttentionGrads> {
    check_qkv(q, k, v)?;
    let mut g = AttentionGrads::zeros_like(q, k)?;
    sparse_attention_backward_into(p, q, k, v, d_out, &mut g, &mut BackwardScratch::new())?;
    Ok(g)
}

/// Dense attention backward (all keys, or `j ≤ i` when `causal`); returns fresh gradients.
pub fn dense_attention_backward(
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
    d_out: &Tensor3,
) -> Result<AttentionGrads> {
    check_qkv(q, k, v)?;
    let mut g = AttentionGrads::zeros_like(q, k)?;
    dense_attention_backward_into(q, k, v, causal, d_out, &mut g, &mut BackwardScratch::new())?;
    Ok(g)
}

/// Sparse attention backward, **accumulating** (`+=`) into `grads` and reusing `scratch`.
///
/// `grads` must be shaped like q (dq) and k/v (dk, dv). Nothing is written on error.
/// Runs at the detected SIMD level.
pub fn sparse_attention_backward_into(
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    d_out: &Tensor3,
    grads: &mut AttentionGrads,
    scratch: &mut BackwardScratch,
) -> Result<()> {
    p.validate()?;
    let x = tensor_inputs(q, k, v, d_out, grads)?;
    sparse_run(SimdLevel::detect(), p, &x, grads_mut(grads), scratch);
    Ok(())
}

/// Dense attention backward, **accumulating** (`+=`) into `grads` and reusing `scratch`.
///
/// Scratch grows to O(n); no O(n²) buffer is formed. Nothing is written on error.
pub fn dense_attention_backward_into(
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
    d_out: &Tensor3,
    grads: &mut AttentionGrads,
    scratch: &mut BackwardScratch,
) -> Result<()> {
    let x = tensor_inputs(q, k, v, d_out, grads)?;
    dense_run(SimdLevel::detect(), &x, causal, grads_mut(grads), scratch);
    Ok(())
}

/// [`sparse_attention_backward`] at an explicit SIMD level (scalar when unavailable);
/// for tests comparing paths.
pub fn sparse_attention_backward_at(
    level: SimdLevel,
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    d_out: &Tensor3,
) -> Result<AttentionGrads> {
    p.validate()?;
    check_qkv(q, k, v)?;
    let mut g = AttentionGrads::zeros_like(q, k)?;
    let x = tensor_inputs(q, k, v, d_out, &g)?;
    sparse_run(level, p, &x, grads_mut(&mut g), &mut BackwardScratch::new());
    Ok(g)
}

/// [`dense_attention_backward`] at an explicit SIMD level (scalar when unavailable);
/// for tests comparing paths.
pub fn dense_attention_backward_at(
    level: SimdLevel,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
    d_out: &Tensor3,
) -> Result<AttentionGrads> {
    check_qkv(q, k, v)?;
    let mut g = AttentionGrads::zeros_like(q, k)?;
    let x = tensor_inputs(q, k, v, d_out, &g)?;
    dense_run(
        level,
        &x,
        causal,
        grads_mut(&mut g),
        &mut BackwardScratch::new(),
    );
    Ok(g)
}

/// Borrowed operands of the slice-level backward: flat row-major buffers, no [`Tensor3`].
///
/// `q` and `d_out` hold `seq·q_heads·dim` values, `k` and `v` `seq·kv_heads·dim`.
#[derive(Debug, Clone, Copy)]
pub struct BackwardInputs<'a> {
    /// Sequence length.
    pub seq: usize,
    /// Query heads (a positive multiple of `kv_heads`).
    pub q_heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Per-head dimension.
    pub dim: usize,
    /// Queries `[seq][q_heads][dim]`.
    pub q: &'a [f32],
    /// Keys `[seq][kv_heads][dim]`.
    pub k: &'a [f32],
    /// Values `[seq][kv_heads][dim]`.
    pub v: &'a [f32],
    /// Gradient of the loss with respect to the forward output, `[seq][q_heads][dim]`.
    pub d_out: &'a [f32],
}

/// Gradient buffers the slice-level backward accumulates into (`+=`).
#[derive(Debug)]
pub struct GradsMut<'a> {
    /// `[seq][q_heads][dim]`.
    pub dq: &'a mut [f32],
    /// `[seq][kv_heads][dim]`.
    pub dk: &'a mut [f32],
    /// `[seq][kv_heads][dim]`.
    pub dv: &'a mut [f32],
}

impl BackwardInputs<'_> {
    /// Checks dimensions and every buffer length (also of `g`).
    fn validate(&self, g: &GradsMut<'_>) -> Result<()> {
        let (n, hq, hk, d) = (self.seq, self.q_heads, self.kv_heads, self.dim);
        if hk == 0 {
            return Err(KernelError::ZeroDim { what: "kv_heads" });
        }
        if hq == 0 || hq % hk != 0 {
            return Err(KernelError::HeadsNotDivisible {
                q_heads: hq,
                kv_heads: hk,
            });
        }
        let ql = checked_len(n, hq, d)?;
        let kl = checked_len(n, hk, d)?;
        check_lens(&[
            ("q", ql, self.q.len()),
            ("k", kl, self.k.len()),
            ("v", kl, self.v.len()),
            ("d_out", ql, self.d_out.len()),
            ("dq", ql, g.dq.len()),
            ("dk", kl, g.dk.len()),
            ("dv", kl, g.dv.len()),
        ])
    }
}

/// [`sparse_attention_backward_into`] over flat slices, for callers that keep
/// activations in their own buffers. Nothing is written on error.
pub fn sparse_attention_backward_slices(
    p: &SparsePattern,
    x: &BackwardInputs<'_>,
    grads: GradsMut<'_>,
    scratch: &mut BackwardScratch,
) -> Result<()> {
    p.validate()?;
    x.validate(&grads)?;
    sparse_run(SimdLevel::detect(), p, x, grads, scratch);
    Ok(())
}

/// [`dense_attention_backward_into`] over flat slices. Nothing is written on error.
pub fn dense_attention_backward_slices(
    x: &BackwardInputs<'_>,
    causal: bool,
    grads: GradsMut<'_>,
    scratch: &mut BackwardScratch,
) -> Result<()> {
    x.validate(&grads)?;
    dense_run(SimdLevel::detect(), x, causal, grads, scratch);
    Ok(())
}

/// Slices of validated tensors.
fn tensor_inputs<'a>(
    q: &'a Tensor3,
    k: &'a Tensor3,
    v: &'a Tensor3,
    d_out: &'a Tensor3,
    grads: &AttentionGrads,
) -> Result<BackwardInputs<'a>> {
    let (seq, q_heads, kv_heads, dim) = check_shapes(q, k, v, d_out, grads)?;
    Ok(BackwardInputs {
        seq,
        q_heads,
        kv_heads,
        dim,
        q: q.as_slice(),
        k: k.as_slice(),
        v: v.as_slice(),
        d_out: d_out.as_slice(),
    })
}

fn grads_mut(g: &mut AttentionGrads) -> GradsMut<'_> {
    GradsMut {
        dq: g.dq.as_mut_slice(),
        dk: g.dk.as_mut_slice(),
        dv: g.dv.as_mut_slice(),
    }
}

/// Sizes the scratch and runs the sparse backward on validated operands.
fn sparse_run(
    level: SimdLevel,
    p: &SparsePattern,
    x: &BackwardInputs<'_>,
    g: GradsMut<'_>,
    s: &mut BackwardScratch,
) {
    let (n, hq, hk, d) = (x.seq, x.q_heads, x.kv_heads, x.dim);
    let blocks = if p.landmarks {
        n.div_ceil(p.block_size)
    } else {
        0
    };
    for buf in [&mut s.kl, &mut s.vl, &mut s.dkl, &mut s.dvl] {
        buf.clear();
        buf.resize(blocks * hk * d, 0.0);
    }
    // Sized once from the pattern's bound, so later calls at this size never grow.
    let cap = p.max_edges_per_query(n);
    for buf in [&mut s.toks, &mut s.lms] {
        buf.clear();
        buf.reserve(cap);
    }
    for buf in [&mut s.w, &mut s.dw] {
        buf.clear();
        buf.reserve(cap.saturating_mul(hq / hk));
    }
    let op = SparseOp { p, x, g, s, blocks };
    dispatch(level, op);
}

/// Sizes the scratch and runs the dense backward on validated operands.
fn dense_run(
    level: SimdLevel,
    x: &BackwardInputs<'_>,
    causal: bool,
    g: GradsMut<'_>,
    s: &mut BackwardScratch,
) {
    let (n, hq, hk) = (x.seq, x.q_heads, x.kv_heads);
    for buf in [&mut s.toks, &mut s.lms] {
        buf.clear();
        buf.reserve(n);
    }
    for buf in [&mut s.w, &mut s.dw] {
        buf.clear();
        buf.reserve(n.saturating_mul(hq / hk));
    }
    dispatch(level, DenseOp { x, g, s, causal });
}

/// Validates q/k/v, `d_out` and the gradient buffers; returns `(seq, q_heads, kv_heads, dim)`.
fn check_shapes(
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    d_out: &Tensor3,
    g: &AttentionGrads,
) -> Result<(usize, usize, usize, usize)> {
    let dims = check_qkv(q, k, v)?;
    let checks: [(&'static str, &Tensor3, &Tensor3); 4] = [
        ("d_out", d_out, q),
        ("dq", &g.dq, q),
        ("dk", &g.dk, k),
        ("dv", &g.dv, k),
    ];
    for (name, t, like) in checks {
        let (a, b) = (t.shape(), like.shape());
        let (what, expected, got) = if a.0 != b.0 {
            ("seq", b.0, a.0)
        } else if a.1 != b.1 {
            ("heads", b.1, a.1)
        } else if a.2 != b.2 {
            ("dim", b.2, a.2)
        } else {
            continue;
        };
        return Err(KernelError::ShapeMismatch {
            what: shape_label(name, what),
            expected,
            got,
        });
    }
    Ok(dims)
}

/// `"<tensor>.<dimension>"` as a static label for [`KernelError::ShapeMismatch`].
fn shape_label(name: &'static str, what: &'static str) -> &'static str {
    match (name, what) {
        ("d_out", "seq") => "d_out.seq",
        ("d_out", "heads") => "d_out.heads",
        ("d_out", _) => "d_out.dim",
        ("dq", "seq") => "dq.seq",
        ("dq", "heads") => "dq.heads",
        ("dq", _) => "dq.dim",
        ("dk", "seq") => "dk.seq",
        ("dk", "heads") => "dk.heads",
        ("dk", _) => "dk.dim",
        (_, "seq") => "dv.seq",
        (_, "heads") => "dv.heads",
        _ => "dv.dim",
    }
}

/// Writes the per-block mean rows of `x` (`n` rows of `row` floats) into zeroed `out`.
#[inline(always)]
fn block_means<I: Isa>(x: &[f32], n: usize, row: usize, bs: usize, out: &mut [f32]) {
    for (b, o) in out.chunks_exact_mut(row).enumerate() {
        let lo = b * bs;
        let hi = (lo + bs).min(n);
        for t in lo..hi {
            axpy_g::<I>(1.0, &x[t * row..(t + 1) * row], o, row);
        }
        scale_g::<I>(1.0 / (hi - lo) as f32, o);
    }
}

/// Adds `g_b / |b|` of every block gradient row to each of the block's token rows.
#[inline(always)]
fn spread_blocks<I: Isa>(g: &[f32], n: usize, row: usize, bs: usize, dst: &mut [f32]) {
    for (b, gb) in g.chunks_exact(row).enumerate() {
        let lo = b * bs;
        let hi = (lo + bs).min(n);
        let inv = 1.0 / (hi - lo) as f32;
        for t in lo..hi {
            axpy_g::<I>(inv, gb, &mut dst[t * row..(t + 1) * row], row);
        }
    }
}

/// The whole sparse backward as one computation for [`dispatch`] (one ISA choice per call).
struct SparseOp<'a, 'b> {
    p: &'a SparsePattern,
    x: &'a BackwardInputs<'b>,
    g: GradsMut<'a>,
    s: &'a mut BackwardScratch,
    blocks: usize,
}

impl WithIsa for SparseOp<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let SparseOp { p, x, g, s, blocks } = self;
        let (n, hk, d) = (x.seq, x.kv_heads, x.dim);
        let (row, bs) = (hk * d, p.block_size);
        if blocks > 0 {
            block_means::<I>(x.k, n, row, bs, &mut s.kl);
            block_means::<I>(x.v, n, row, bs, &mut s.vl);
        }
        let xi = Inputs {
            q: x.q,
            k: x.k,
            v: x.v,
            kl: &s.kl,
            vl: &s.vl,
            d_out: x.d_out,
            hq: x.q_heads,
            hk,
            d,
            scale: 1.0 / libm::sqrtf(d as f32),
        };
        let mut o = Outputs {
            dq: g.dq,
            dk: g.dk,
            dv: g.dv,
            dkl: &mut s.dkl,
            dvl: &mut s.dvl,
        };
        for i in 0..n {
            s.toks.clear();
            s.lms.clear();
            p.for_each_token(i, n, |j| s.toks.push(j));
            p.for_each_landmark(i, n, |b| s.lms.push(b));
            position_backward::<I>(&xi, &mut o, i, &s.toks, &s.lms, &mut s.w, &mut s.dw);
        }
        if blocks > 0 {
            spread_blocks::<I>(o.dkl, n, row, bs, o.dk);
            spread_blocks::<I>(o.dvl, n, row, bs, o.dv);
        }
    }
}

/// The whole dense backward as one computation for [`dispatch`].
struct DenseOp<'a, 'b> {
    x: &'a BackwardInputs<'b>,
    g: GradsMut<'a>,
    s: &'a mut BackwardScratch,
    causal: bool,
}

impl WithIsa for DenseOp<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let DenseOp { x, g, s, causal } = self;
        let (n, d) = (x.seq, x.dim);
        let xi = Inputs {
            q: x.q,
            k: x.k,
            v: x.v,
            kl: &[],
            vl: &[],
            d_out: x.d_out,
            hq: x.q_heads,
            hk: x.kv_heads,
            d,
            scale: 1.0 / libm::sqrtf(d as f32),
        };
        let mut o = Outputs {
            dq: g.dq,
            dk: g.dk,
            dv: g.dv,
            dkl: &mut [],
            dvl: &mut [],
        };
        for i in 0..n {
            let last = if causal { i + 1 } else { n };
            // Candidates are the prefix 0..last: rebuild only when it changes.
            if s.toks.len() != last {
                s.toks.clear();
                s.toks.extend(0..last);
            }
            position_backward::<I>(&xi, &mut o, i, &s.toks, &[], &mut s.w, &mut s.dw);
        }
    }
}

/// Read-only operands of one backward call (flat row-major buffers).
struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    kl: &'a [f32],
    vl: &'a [f32],
    d_out: &'a [f32],
    hq: usize,
    hk: usize,
    d: usize,
    scale: f32,
}

/// Gradient accumulators of one backward call; `dkl`/`dvl` are per-block landmark gradients.
struct Outputs<'a> {
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
    dkl: &'a mut [f32],
    dvl: &'a mut [f32],
}

/// Backward of every query head at position `i` over token candidates `toks` and
/// landmark candidates `lms` (candidate `c < toks.len()` is a token, else a landmark).
///
/// Per kv head, the softmax of each query head of its group is recomputed into
/// `w[g·nc..]` and `σ·ds` into `dw[g·nc..]`; then dq is accumulated per head in a
/// register over the candidates, and each candidate's dk/dv row is read and written
/// once for the whole group (GQA sharing).
#[inline(always)]
fn position_backward<I: Isa>(
    x: &Inputs<'_>,
    o: &mut Outputs<'_>,
    i: usize,
    toks: &[usize],
    lms: &[usize],
    w: &mut Vec<f32>,
    dw: &mut Vec<f32>,
) {
    let nt = toks.len();
    let nc = nt + lms.len();
    if nc == 0 {
        return;
    }
    let (hq, hk, d) = (x.hq, x.hk, x.d);
    let group = hq / hk;
    w.clear();
    w.resize(group * nc, 0.0);
    dw.clear();
    dw.resize(group * nc, 0.0);
    // Row offset (within one kv head) of candidate c, and whether it is a landmark.
    let off = |c: usize| -> (usize, bool) {
        if c < nt {
            (toks[c] * hk * d, false)
        } else {
            (lms[c - nt] * hk * d, true)
        }
    };
    for kh in 0..hk {
        for g in 0..group {
            let qo = (i * hq + kh * group + g) * d;
            let (qrow, grow) = (&x.q[qo..qo + d], &x.d_out[qo..qo + d]);
            let (wg, dwg) = (&mut w[g * nc..(g + 1) * nc], &mut dw[g * nc..(g + 1) * nc]);
            // Scores s_c and dw_c = g·v_c in one sweep over the candidates.
            let mut m = f32::NEG_INFINITY;
            for (c, (wc, dwc)) in wg.iter_mut().zip(dwg.iter_mut()).enumerate() {
                let (ro, lm) = off(c);
                let ro = ro + kh * d;
                let (krow, vrow) = if lm {
                    (&x.kl[ro..ro + d], &x.vl[ro..ro + d])
                } else {
                    (&x.k[ro..ro + d], &x.v[ro..ro + d])
                };
                let s = dot_g::<I>(qrow, krow, d) * x.scale;
                *wc = s;
                m = m.max(s);
                *dwc = dot_g::<I>(grow, vrow, d);
            }
            // w = softmax(s); the max term is e⁰ = 1, so z ≥ 1.
            let z = exp_shift_sum_g::<I>(wg, -m);
            scale_g::<I>(1.0 / z, wg);
            let big_d = dot_g::<I>(wg, dwg, nc);
            // dw becomes σ·ds in place.
            for (dwc, &wc) in dwg.iter_mut().zip(wg.iter()) {
                *dwc = wc * (*dwc - big_d) * x.scale;
            }
        }
        let (w, ds) = (&w[..], &dw[..]);
        // Lane chunk outermost so accumulators stay in registers over the candidates.
        let mut cc = 0;
        while cc < d {
            let len = (d - cc).min(LANES);
            let ld = |s: &[f32]| {
                if len == LANES {
                    I::load(s)
                } else {
                    I::load_partial(&s[..len])
                }
            };
            let st = |s: &mut [f32], v: I::V| {
                if len == LANES {
                    I::store(s, v)
                } else {
                    I::store_partial(&mut s[..len], v)
                }
            };
            let kc = kh * d + cc;
            // dq_h += Σ_c σ ds_c k_c, one head at a time.
            for g in 0..group {
                let dsg = &ds[g * nc..(g + 1) * nc];
                let mut acc = I::zero();
                for (&j, &dsc) in toks.iter().zip(dsg) {
                    acc = I::fma(I::splat(dsc), ld(&x.k[j * hk * d + kc..]), acc);
                }
                for (&b, &dsc) in lms.iter().zip(&dsg[nt..]) {
                    acc = I::fma(I::splat(dsc), ld(&x.kl[b * hk * d + kc..]), acc);
                }
                let qo = (i * hq + kh * group + g) * d + cc;
                let r = I::add(acc, ld(&o.dq[qo..]));
                st(&mut o.dq[qo..], r);
            }
            // dk_c += Σ_h σ ds_hc q_h and dv_c += Σ_h w_hc g_h: one read-modify-write per row.
            for c in 0..nc {
                let (ro, lm) = off(c);
                let ro = ro + kc;
                let (dk, dv) = if lm {
                    (&mut o.dkl[ro..], &mut o.dvl[ro..])
                } else {
                    (&mut o.dk[ro..], &mut o.dv[ro..])
                };
                let (mut ak, mut av) = (ld(dk), ld(dv));
                for g in 0..group {
                    let qo = (i * hq + kh * group + g) * d + cc;
                    ak = I::fma(I::splat(ds[g * nc + c]), ld(&x.q[qo..]), ak);
                    av = I::fma(I::splat(w[g * nc + c]), ld(&x.d_out[qo..]), av);
                }
                st(dk, ak);
                st(dv, av);
            }
            cc += LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn t(n: usize, h: usize, d: usize, seed: u32) -> Tensor3 {
        let data = (0..n * h * d)
            .map(|x| {
                let y = (x as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 97);
                ((y >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        Tensor3::from_vec(data, n, h, d).unwrap()
    }

    #[test]
    fn d_out_and_grad_shape_mismatches_are_typed_errors() {
        let (q, k) = (t(5, 2, 3, 1), t(5, 1, 3, 2));
        let p = SparsePattern::default();
        let bad = t(4, 2, 3, 3);
        assert_eq!(
            sparse_attention_backward(&p, &q, &k, &k, &bad),
            Err(KernelError::ShapeMismatch {
                what: "d_out.seq",
                expected: 5,
                got: 4
            })
        );
        assert!(matches!(
            dense_attention_backward(&q, &k, &k, true, &t(5, 1, 3, 0)),
            Err(KernelError::ShapeMismatch {
                what: "d_out.heads",
                ..
            })
        ));
        let mut g = AttentionGrads::zeros(5, 2, 2, 3).unwrap();
        let before = g.clone();
        let mut s = BackwardScratch::new();
        assert!(matches!(
            sparse_attention_backward_into(&p, &q, &k, &k, &q, &mut g, &mut s),
            Err(KernelError::ShapeMismatch {
                what: "dk.heads",
                expected: 1,
                got: 2
            })
        ));
        assert_eq!(g, before);
        let p0 = SparsePattern { block_size: 0, ..p };
        assert_eq!(
            sparse_attention_backward(&p0, &q, &k, &k, &q),
            Err(KernelError::BlockSizeZero)
        );
    }

    #[test]
    fn into_accumulates_and_reuses_scratch() {
        let (q, k, v, g) = (
            t(40, 4, 8, 1),
            t(40, 2, 8, 2),
            t(40, 2, 8, 3),
            t(40, 4, 8, 4),
        );
        let p = SparsePattern {
            window: 5,
            block_size: 6,
            ..SparsePattern::default()
        };
        let once = sparse_attention_backward(&p, &q, &k, &v, &g).unwrap();
        let mut acc = AttentionGrads::zeros_like(&q, &k).unwrap();
        let mut s = BackwardScratch::new();
        sparse_attention_backward_into(&p, &q, &k, &v, &g, &mut acc, &mut s).unwrap();
        let bytes = s.bytes();
        sparse_attention_backward_into(&p, &q, &k, &v, &g, &mut acc, &mut s).unwrap();
        assert_eq!(s.bytes(), bytes, "second call must not grow scratch");
        for (a, b) in [
            (&acc.dq, &once.dq),
            (&acc.dk, &once.dk),
            (&acc.dv, &once.dv),
        ] {
            for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
                assert!((x - 2.0 * y).abs() <= 1e-5 * (1.0 + y.abs()));
            }
        }
        acc.clear();
        assert!(acc.dq.as_slice().iter().all(|&x| x == 0.0));
    }

    #[test]
    fn dv_sums_to_d_out_sum() {
        // Each row's weights sum to one and landmark spreading preserves mass, so the
        // total value gradient equals the total upstream gradient (summed over heads).
        let (q, k, v, g) = (
            t(23, 3, 5, 5),
            t(23, 1, 5, 6),
            t(23, 1, 5, 7),
            t(23, 3, 5, 8),
        );
        for landmarks in [false, true] {
            let p = SparsePattern {
                window: 3,
                block_size: 4,
                global_tokens: vec![0, 7, 99],
                causal: false,
                log_stride: true,
                landmarks,
            };
            let gr = sparse_attention_backward(&p, &q, &k, &v, &g).unwrap();
            for c in 0..5 {
                let want: f32 = (0..23 * 3).map(|r| g.as_slice()[r * 5 + c]).sum();
                let got: f32 = (0..23).map(|r| gr.dv.as_slice()[r * 5 + c]).sum();
                assert!((want - got).abs() < 1e-4, "{want} vs {got}");
            }
        }
    }
}
