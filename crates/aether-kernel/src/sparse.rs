//! Sparse attention over the normative [`SparsePattern`].
//!
//! Shapes: `q [N][Hq][d]`, `k, v [N][Hkv][d]` with `Hkv | Hq` (MHA when equal,
//! GQA/MQA otherwise; query head `h` reads kv head `h / (Hq/Hkv)`), output
//! `[N][Hq][d]`. For query `i`, head `h`:
//!
//! `out = Σ_{c ∈ C(i)} softmax_c(q·k_c / √d) · v_c`
//!
//! where `C(i)` are the pattern's token candidates (rows of k/v) and landmark
//! candidates (the mean key/value of a block of `B` tokens).
//!
//! How it runs: block means once per call per kv head; per query the candidate
//! list is enumerated once and reused by every head; per head a SIMD dot per
//! candidate, a two-pass softmax with max subtraction and the fast exp of
//! [`crate::simd`], and a register-blocked weighted sum of the value rows.
//! Cost `O(N · Hq · E · d)` with `E ≈ W + |G| + 2·log₂N + 3` edges per query.
//!
//! Numerics and input policy: inputs are **not** scanned for NaN/∞ (that would
//! cost a pass over q, k, v); a non-finite value only reaches the outputs of
//! the queries that attend it. Finite input never produces NaN: scores are
//! clamped to `±f32::MAX` (an overflowing dot product saturates instead of
//! turning into NaN), the maximum is subtracted before exponentiation and the
//! weights are normalised before the weighted sum, so `|out| ≤ max |v|` up to
//! rounding. A query with no candidates (impossible with a valid pattern, which
//! always contains `i` itself) would output zeros.
//!
//! [`sparse_attention`] allocates its output and scratch; [`sparse_attention_into`]
//! runs allocation-free on caller memory sized by [`sparse_scratch_len`]. With
//! the `rayon` feature, [`sparse_attention_par`] splits the queries over threads
//! with bit-identical results.
//!
//! ```
//! use aether_kernel::{sparse_attention, SparsePattern, Tensor3};
//! let (n, h, d) = (8, 2, 4);
//! let x = Tensor3::from_vec((0..n * h * d).map(|i| (i % 7) as f32 * 0.1).collect(), n, h, d)?;
//! let out = sparse_attention(&SparsePattern::default(), &x, &x, &x)?;
//! assert_eq!(out.shape(), (n, h, d));
//! # Ok::<(), aether_kernel::KernelError>(())
//! ```

use alloc::vec;

use crate::error::{KernelError, Result};
use crate::pattern::SparsePattern;
use crate::simd::{
    self, dispatch, dot4_g, dot_g, exp_shift_sum_g, scale_g, Isa, SimdLevel, WithIsa, LANES,
};
use crate::tensor::{check_qkv, Tensor3};

/// Length (in f32) of the scratch [`sparse_attention_into`] needs for `n` positions.
///
/// Block means of keys and values (`2 · ceil(n/B) · kv_heads · dim` when landmarks
/// are on) plus two lists of `max_edges_per_query(n)` entries.
pub fn sparse_scratch_len(
    p: &SparsePattern,
    n: usize,
    kv_heads: usize,
    dim: usize,
) -> Result<usize> {
    p.validate()?;
    let lm = landmark_len(p, n, kv_heads, dim)?;
    let e = p.max_edges_per_query(n);
    lm.checked_mul(2)
        .and_then(|x| x.checked_add(e.checked_mul(2)?))
        .ok_or(KernelError::Overflow {
            what: "sparse scratch",
        })
}

fn landmark_len(p: &SparsePattern, n: usize, kv_heads: usize, dim: usize) -> Result<usize> {
    if !p.landmarks {
        return Ok(0);
    }
    n.div_ceil(p.block_size)
        .checked_mul(kv_heads)
        .and_then(|x| x.checked_mul(dim))
        .ok_or(KernelError::Overflow {
            what: "landmark means",
        })
}

/// Sparse attention of `q` over `k, v` with pattern `p` (allocates the output).
///
/// Errors: invalid pattern (`block_size == 0`), q/k/v shape mismatch, or
/// `k.heads` not dividing `q.heads`.
pub fn sparse_attention(
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Tensor3> {
    p.validate()?;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let mut out = Tensor3::zeros(n, hq, d)?;
    let mut scratch = vec![0.0f32; sparse_scratch_len(p, n, hk, d)?];
    sparse_attention_into(p, q, k, v, &mut out, &mut scratch)?;
    Ok(out)
}

/// Allocation-free [`sparse_attention`]: writes into `out` (shape `[N][Hq][d]`)
/// using `scratch` (at least [`sparse_scratch_len`] values; contents ignored).
pub fn sparse_attention_into(
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    out: &mut Tensor3,
    scratch: &mut [f32],
) -> Result<()> {
    p.validate()?;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    check_out(out, n, hq, d)?;
    let need = sparse_scratch_len(p, n, hk, d)?;
    if scratch.len() < need {
        return Err(KernelError::ShapeMismatch {
            what: "sparse scratch",
            expected: need,
            got: scratch.len(),
        });
    }
    if n == 0 {
        return Ok(());
    }
    let lm = landmark_len(p, n, hk, d)?;
    let (lm_k, rest) = scratch.split_at_mut(lm);
    let (lm_v, rest) = rest.split_at_mut(lm);
    if p.landmarks {
        block_means(k.as_slice(), n, hk * d, p.block_size, lm_k);
        block_means(v.as_slice(), n, hk * d, p.block_size, lm_v);
    }
    let e = p.max_edges_per_query(n);
    let (idx, rest) = rest.split_at_mut(e);
    let scores = &mut rest[..e];
    let level = simd::select_level();
    dispatch(
        level,
        SparseRows {
            ctx: Ctx::new(p, q, k, v, lm_k, lm_v),
            idx: as_u32(idx),
            scores,
            out: out.as_mut_slice(),
            rows: 0..n,
        },
    );
    Ok(())
}

/// [`sparse_attention`] with queries split over the rayon pool; bit-identical to serial.
#[cfg(feature = "rayon")]
pub fn sparse_attention_par(
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Tensor3> {
    use rayon::prelude::*;
    p.validate()?;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let mut out = Tensor3::zeros(n, hq, d)?;
    if n == 0 {
        return Ok(out);
    }
    let lm = landmark_len(p, n, hk, d)?;
    let mut lm_k = vec![0.0f32; lm];
    let mut lm_v = vec![0.0f32; lm];
    if p.landmarks {
        block_means(k.as_slice(), n, hk * d, p.block_size, &mut lm_k);
        block_means(v.as_slice(), n, hk * d, p.block_size, &mut lm_v);
    }
    let e = p.max_edges_per_query(n);
    let level = simd::select_level();
    let ctx = Ctx::new(p, q, k, v, &lm_k, &lm_v);
    const ROWS: usize = 64;
    out.as_mut_slice()
        .par_chunks_mut(ROWS * hq * d)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let mut idx = vec![0u32; e];
            let mut scores = vec![0.0f32; e];
            let r0 = ci * ROWS;
            let r1 = (r0 + ROWS).min(n);
            dispatch(
                level,
                SparseRows {
                    ctx,
                    idx: &mut idx,
                    scores: &mut scores,
                    out: chunk,
                    rows: r0..r1,
                },
            );
        });
    Ok(out)
}

pub(crate) fn check_out(out: &Tensor3, n: usize, hq: usize, d: usize) -> Result<()> {
    let (on, oh, od) = out.shape();
    for (what, expected, got) in [
        ("out.seq", n, on),
        ("out.heads", hq, oh),
        ("out.dim", d, od),
    ] {
        if expected != got {
            return Err(KernelError::ShapeMismatch {
                what,
                expected,
                got,
            });
        }
    }
    Ok(())
}

/// Views an f32 scratch region as u32 candidate indices.
fn as_u32(s: &mut [f32]) -> &mut [u32] {
    // SAFETY: f32 and u32 have the same size and alignment and every bit pattern is
    // valid for both; the new slice covers exactly the memory of `s` and borrows it.
    unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u32>(), s.len()) }
}

/// Mean of every block of `bs` rows of width `w`: `out[b][..] = Σ rows / count`.
///
/// Accumulates in f32 in row order, then divides (the reference crate's order).
fn block_means(x: &[f32], n: usize, w: usize, bs: usize, out: &mut [f32]) {
    for (b, ob) in out.chunks_exact_mut(w).enumerate() {
        ob.iter_mut().for_each(|o| *o = 0.0);
        let lo = b * bs;
        let hi = (lo + bs).min(n);
        for row in x[lo * w..hi * w].chunks_exact(w) {
            for (o, &xv) in ob.iter_mut().zip(row) {
                *o += xv;
            }
        }
        let cnt = (hi - lo) as f32;
        ob.iter_mut().for_each(|o| *o /= cnt);
    }
}

/// Shared read-only inputs of one sparse call.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    p: &'a SparsePattern,
    n: usize,
    hq: usize,
    hk: usize,
    d: usize,
    scale: f32,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    lm_k: &'a [f32],
    lm_v: &'a [f32],
}

impl<'a> Ctx<'a> {
    fn new(
        p: &'a SparsePattern,
        q: &'a Tensor3,
        k: &'a Tensor3,
        v: &'a Tensor3,
        lm_k: &'a [f32],
        lm_v: &'a [f32],
    ) -> Self {
        let (n, hq, d) = q.shape();
        Ctx {
            p,
            n,
            hq,
            hk: k.heads(),
            d,
            scale: 1.0 / libm::sqrtf(d as f32),
            q: q.as_slice(),
            k: k.as_slice(),
            v: v.as_slice(),
            lm_k,
            lm_v,
        }
    }
}

/// Queries `rows` of one call; `out` holds exactly those rows.
struct SparseRows<'a> {
    ctx: Ctx<'a>,
    idx: &'a mut [u32],
    scores: &'a mut [f32],
    out: &'a mut [f32],
    rows: core::ops::Range<usize>,
}

impl WithIsa for SparseRows<'_> {
    type Output = ();
    // max/min instead of `clamp`: NaN must map to -MAX, not propagate.
    #[allow(clippy::manual_clamp)]
    #[inline(always)]
    fn run<I: Isa>(self) {
        let SparseRows {
            ctx,
            idx,
            scores,
            out,
            rows,
        } = self;
        let Ctx {
            p,
            n,
            hq,
            hk,
            d,
            scale,
            q,
            k,
            v,
            lm_k,
            lm_v,
        } = ctx;
        let group = hq / hk;
        let r0 = rows.start;
        for i in rows {
            let mut t = 0usize;
            p.for_each_token(i, n, |j| {
                if let Some(slot) = idx.get_mut(t) {
                    *slot = j as u32;
                    t += 1;
                }
            });
            let mut e = t;
            p.for_each_landmark(i, n, |b| {
                if let Some(slot) = idx.get_mut(e) {
                    *slot = b as u32;
                    e += 1;
                }
            });
            let (tok, lms) = idx[..e].split_at(t);
            let sc = &mut scores[..e];
            for h in 0..hq {
                let kh = h / group;
                let qo = (i * hq + h) * d;
                let qrow = &q[qo..qo + d];
                let orow = &mut out[((i - r0) * hq + h) * d..((i - r0) * hq + h + 1) * d];
                if e == 0 {
                    orow.iter_mut().for_each(|o| *o = 0.0);
                    continue;
                }
                scores_into::<I>(qrow, tok, k, hk, kh, d, scale, &mut sc[..t]);
                scores_into::<I>(qrow, lms, lm_k, hk, kh, d, scale, &mut sc[t..]);
                let mut m = -f32::MAX;
                for s in sc.iter_mut() {
                    // NaN (overflowing opposite-signed products) -> -MAX, ±inf -> ±MAX.
                    let c = s.max(-f32::MAX).min(f32::MAX);
                    *s = c;
                    m = m.max(c);
                }
                let sum = exp_shift_sum_g::<I>(sc, -m);
                scale_g::<I>(1.0 / sum, sc);
                weighted_rows::<I>(sc, tok, lms, v, lm_v, hk, kh, d, orow);
            }
        }
    }
}

/// `out[c] = scale · q · rows[idx[c]]` (rows of width `hk·d`, head `kh`), four at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scores_into<I: Isa>(
    q: &[f32],
    idx: &[u32],
    rows: &[f32],
    hk: usize,
    kh: usize,
    d: usize,
    scale: f32,
    out: &mut [f32],
) {
    let row = |j: u32| {
        let o = (j as usize * hk + kh) * d;
        &rows[o..o + d]
    };
    let mut ic = idx.chunks_exact(4);
    let mut oc = out.chunks_exact_mut(4);
    for (i4, o4) in (&mut ic).zip(&mut oc) {
        let s = dot4_g::<I>(q, [row(i4[0]), row(i4[1]), row(i4[2]), row(i4[3])], d);
        for (o, x) in o4.iter_mut().zip(s) {
            *o = x * scale;
        }
    }
    for (o, &j) in oc.into_remainder().iter_mut().zip(ic.remainder()) {
        *o = dot_g::<I>(q, row(j), d) * scale;
    }
}

/// `out = Σ_c w[c] · row_c` over token rows of `v` then landmark rows of `lm_v`,
/// 64 columns at a time held in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn weighted_rows<I: Isa>(
    w: &[f32],
    tok: &[u32],
    lms: &[u32],
    v: &[f32],
    lm_v: &[f32],
    hk: usize,
    kh: usize,
    d: usize,
    out: &mut [f32],
) {
    let mut c0 = 0;
    while c0 < d {
        let width = (d - c0).min(4 * LANES);
        let args = Cols {
            w,
            tok,
            lms,
            v,
            lm_v,
            hk,
            kh,
            d,
            c0,
            width,
        };
        match width.div_ceil(LANES) {
            1 => cols::<I, 1>(&args, out),
            2 => cols::<I, 2>(&args, out),
            3 => cols::<I, 3>(&args, out),
            _ => cols::<I, 4>(&args, out),
        }
        c0 += width;
    }
}

struct Cols<'a> {
    w: &'a [f32],
    tok: &'a [u32],
    lms: &'a [u32],
    v: &'a [f32],
    lm_v: &'a [f32],
    hk: usize,
    kh: usize,
    d: usize,
    c0: usize,
    width: usize,
}

/// `acc += wc · row` for the `NV` vectors of one column group (`row.len()` columns).
#[inline(always)]
fn row_acc<I: Isa, const NV: usize>(acc: &mut [I::V; NV], wc: f32, row: &[f32], full: bool) {
    let wv = I::splat(wc);
    let w = row.len();
    for (u, av) in acc.iter_mut().enumerate() {
        let x = if full || (u + 1) * LANES <= w {
            I::load(&row[u * LANES..])
        } else {
            I::load_partial(&row[u * LANES..w])
        };
        *av = I::fma(wv, x, *av);
    }
}

#[inline(always)]
fn cols<I: Isa, const NV: usize>(a: &Cols<'_>, out: &mut [f32]) {
    let mut acc = [I::zero(); NV];
    let full = a.width == NV * LANES;
    let (t, d, c0, w) = (a.tok.len(), a.d, a.c0, a.width);
    for (&wc, &j) in a.w[..t].iter().zip(a.tok) {
        let o = (j as usize * a.hk + a.kh) * d + c0;
        row_acc::<I, NV>(&mut acc, wc, &a.v[o..o + w], full);
    }
    for (&wc, &b) in a.w[t..].iter().zip(a.lms) {
        let o = (b as usize * a.hk + a.kh) * d + c0;
        row_acc::<I, NV>(&mut acc, wc, &a.lm_v[o..o + w], full);
    }
    let dst = &mut out[c0..c0 + w];
    for (u, av) in acc.iter().enumerate() {
        if (u + 1) * LANES <= w {
            I::store(&mut dst[u * LANES..], *av);
        } else {
            I::store_partial(&mut dst[u * LANES..w], *av);
        }
    }
}

/// [`sparse_attention`] at an explicit SIMD level (falls back to scalar when the
/// level is unavailable); for tests and benchmarks comparing paths.
pub fn sparse_attention_at(
    level: SimdLevel,
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Tensor3> {
    p.validate()?;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let mut out = Tensor3::zeros(n, hq, d)?;
    if n == 0 {
        return Ok(out);
    }
    let lm = landmark_len(p, n, hk, d)?;
    let mut lm_k = vec![0.0f32; lm];
    let mut lm_v = vec![0.0f32; lm];
    if p.landmarks {
        block_means(k.as_slice(), n, hk * d, p.block_size, &mut lm_k);
        block_means(v.as_slice(), n, hk * d, p.block_size, &mut lm_v);
    }
    let e = p.max_edges_per_query(n);
    let mut idx = vec![0u32; e];
    let mut scores = vec![0.0f32; e];
    dispatch(
        level,
        SparseRows {
            ctx: Ctx::new(p, q, k, v, &lm_k, &lm_v),
            idx: &mut idx,
            scores: &mut scores,
            out: out.as_mut_slice(),
            rows: 0..n,
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::naive_sparse_attention;

    fn tensor(n: usize, h: usize, d: usize, seed: u32) -> Tensor3 {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let data = (0..n * h * d)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor3::from_vec(data, n, h, d).unwrap()
    }

    #[test]
    fn matches_naive_small() {
        for (n, hq, hk, d) in [(1, 1, 1, 1), (17, 4, 2, 5), (70, 2, 1, 33), (40, 3, 3, 64)] {
            let (q, k, v) = (
                tensor(n, hq, d, 1),
                tensor(n, hk, d, 2),
                tensor(n, hk, d, 3),
            );
            for causal in [true, false] {
                let p = SparsePattern {
                    window: 3,
                    block_size: 4,
                    global_tokens: vec![0, 9],
                    causal,
                    log_stride: true,
                    landmarks: true,
                };
                let a = sparse_attention(&p, &q, &k, &v).unwrap();
                let b = naive_sparse_attention(&p, &q, &k, &v).unwrap();
                for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
                    assert!((x - y).abs() <= 2e-6, "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn huge_finite_inputs_give_no_nan() {
        let n = 9;
        let q = Tensor3::from_vec(vec![3e38; n * 2], n, 1, 2).unwrap();
        let k = Tensor3::from_vec(
            (0..n * 2)
                .map(|i| if i % 2 == 0 { 3e38 } else { -3e38 })
                .collect(),
            n,
            1,
            2,
        )
        .unwrap();
        let out = sparse_attention(&SparsePattern::default(), &q, &k, &k).unwrap();
        assert!(out.as_slice().iter().all(|x| x.is_finite()));
    }

    #[test]
    fn into_checks_out_and_scratch() {
        let p = SparsePattern::default();
        let x = tensor(10, 2, 4, 7);
        let mut out = Tensor3::zeros(10, 2, 4).unwrap();
        let need = sparse_scratch_len(&p, 10, 2, 4).unwrap();
        let mut small = vec![0.0; need - 1];
        assert!(matches!(
            sparse_attention_into(&p, &x, &x, &x, &mut out, &mut small),
            Err(KernelError::ShapeMismatch {
                what: "sparse scratch",
                ..
            })
        ));
        let mut bad = Tensor3::zeros(10, 1, 4).unwrap();
        let mut s = vec![0.0; need];
        assert!(sparse_attention_into(&p, &x, &x, &x, &mut bad, &mut s).is_err());
        assert!(sparse_attention_into(&p, &x, &x, &x, &mut out, &mut s).is_ok());
        assert_eq!(out, sparse_attention(&p, &x, &x, &x).unwrap());
    }
}
