//! Sparse attention over the normative [`SparsePattern`]: `out = Σ_c softmax_c(q·k_c/√d)·v_c`
//! over each query's token and landmark candidates, MHA/GQA/MQA, `O(N·Hq·E·d)` with
//! `E ≈ W + |G| + 2·log₂N + 3` edges per query. How the row and query-tile kernels run
//! and the numerics (finite input never gives NaN; inputs are not scanned): docs/kernel.md.
//!
//! [`sparse_attention`] allocates its output and takes its scratch from a per-thread
//! pool (under `std`); [`sparse_attention_into`] runs allocation-free on caller memory
//! sized by [`sparse_scratch_len`]; the `*_with` variants take an explicit [`Exec`]. With
//! the `rayon` feature, `sparse_attention_par` splits the queries over threads with
//! bit-identical results.
//!
//! ```
//! use aether_kernel::{sparse_attention, SparsePattern, Tensor3};
//! let (n, h, d) = (8, 2, 4);
//! let x = Tensor3::from_vec((0..n * h * d).map(|i| (i % 7) as f32 * 0.1).collect(), n, h, d)?;
//! let out = sparse_attention(&SparsePattern::default(), &x, &x, &x)?;
//! assert_eq!(out.shape(), (n, h, d));
//! # Ok::<(), aether_kernel::KernelError>(())
//! ```

#[cfg(feature = "rayon")]
use alloc::{vec, vec::Vec};

use crate::error::{KernelError, Result};
use crate::pattern::SparsePattern;
#[cfg(target_arch = "x86_64")]
use crate::simd::sparse_tile as tile;
use crate::simd::{
    dispatch, dot4_g, dot_g, exp_shift_sum_g, scale_g, Avx512Token, Exec, Isa, Ran, SimdLevel,
    WithIsa, LANES,
};
use crate::tensor::{check_lens, check_qkv, check_views, Tensor3, TensorMut, TensorRef};

/// Floats of the transposed key and value planes of one kv head (the query-tile
/// path runs kv head by kv head), plus 16 to
/// place them on a 64-byte boundary (0 when it cannot cover `p`, `n`, `dim`, or off
/// x86-64).
fn tile_len(p: &SparsePattern, n: usize, kv_heads: usize, dim: usize) -> Result<usize> {
    #[cfg(target_arch = "x86_64")]
    if tile::supports(p, n, dim) {
        let _ = kv_heads;
        return tile::plane_row(n)
            .checked_mul(dim)
            .and_then(|x| x.checked_mul(2))
            .and_then(|x| x.checked_add(16))
            .ok_or(KernelError::Overflow {
                what: "sparse scratch",
            });
    }
    let _ = (p, n, kv_heads, dim);
    Ok(0)
}

/// Length (in f32) of the scratch [`sparse_attention_into`] needs for `n` positions.
///
/// Block means of keys and values (`2 · ceil(n/B) · kv_heads · dim` when landmarks
/// are on), `1 + 4` lists of `max_edges_per_query(n)` entries (candidate
/// indices; scores of a group of four heads) and, on x86-64 when the query-tile
/// path covers the shape (causal, `W ≤ 32`, `dim` a multiple of 16 up to 128,
/// `n ≥ 16`), transposed key and value planes of one kv head (`2 · dim · (32 + n) + 16`,
/// `n` rounded up to 16). Non-decreasing in `n`.
pub fn sparse_scratch_len(
    p: &SparsePattern,
    n: usize,
    kv_heads: usize,
    dim: usize,
) -> Result<usize> {
    p.validate()?;
    let lm = landmark_len(p, n, kv_heads, dim)?;
    let e = p.max_edges_per_query(n);
    let planes = tile_len(p, n, kv_heads, dim)?;
    lm.checked_mul(2)
        .and_then(|x| x.checked_add(e.checked_mul(1 + HEAD_GROUP)?))
        .and_then(|x| x.checked_add(planes))
        .ok_or(KernelError::Overflow {
            what: "sparse scratch",
        })
}

/// Query heads whose softmax phases run interleaved (the scratch holds this many score lists).
const HEAD_GROUP: usize = 4;

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
    sparse_attention_with(Exec::detect(), p, q, k, v)
}

/// [`sparse_attention`] run as `exec` says (level, query tiles); scratch from the
/// per-thread pool.
pub fn sparse_attention_with(
    exec: Exec,
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Tensor3> {
    p.validate()?;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let mut out = Tensor3::zeros(n, hq, d)?;
    crate::scratch::with_scratch(sparse_scratch_len(p, n, hk, d)?, |s| {
        sparse_attention_into_with(exec, p, q, k, v, &mut out, s)
    })?;
    Ok(out)
}

/// Allocation-free [`sparse_attention`]: writes into `out` (shape `[N][Hq][d]`)
/// using `scratch` (at least [`sparse_scratch_len`] values; contents ignored).
///
/// The tensors are `&Tensor3`s or borrowed views ([`TensorRef`], [`TensorMut`]) of
/// slices the caller owns.
pub fn sparse_attention_into<'a>(
    p: &SparsePattern,
    q: impl Into<TensorRef<'a>>,
    k: impl Into<TensorRef<'a>>,
    v: impl Into<TensorRef<'a>>,
    out: impl Into<TensorMut<'a>>,
    scratch: &mut [f32],
) -> Result<()> {
    sparse_attention_into_with(Exec::detect(), p, q, k, v, out, scratch).map(|_| ())
}

/// [`sparse_attention_into`] run as `exec` says; reports what ran.
pub fn sparse_attention_into_with<'a>(
    exec: Exec,
    p: &SparsePattern,
    q: impl Into<TensorRef<'a>>,
    k: impl Into<TensorRef<'a>>,
    v: impl Into<TensorRef<'a>>,
    out: impl Into<TensorMut<'a>>,
    scratch: &mut [f32],
) -> Result<Ran> {
    let (q, k, v, mut out) = (q.into(), k.into(), v.into(), out.into());
    p.validate()?;
    let (n, hq, hk, d) = check_views(q, k, v)?;
    check_out(out.shape(), n, hq, d)?;
    let need = sparse_scratch_len(p, n, hk, d)?;
    if scratch.len() < need {
        return Err(KernelError::ShapeMismatch {
            what: "sparse scratch",
            expected: need,
            got: scratch.len(),
        });
    }
    let level = exec.level.effective();
    if n == 0 {
        return Ok(Ran {
            level,
            tiles: false,
        });
    }
    let lm = landmark_len(p, n, hk, d)?;
    let (lm_k, rest) = scratch.split_at_mut(lm);
    let (lm_v, rest) = rest.split_at_mut(lm);
    if p.landmarks {
        block_means(level, k.as_slice(), n, hk * d, p.block_size, lm_k);
        block_means(level, v.as_slice(), n, hk * d, p.block_size, lm_v);
    }
    let e = p.max_edges_per_query(n);
    let (idx, rest) = rest.split_at_mut(e);
    let (scores, rest) = rest.split_at_mut(e * HEAD_GROUP);
    let planes = &mut rest[..tile_len(p, n, hk, d)?];
    let ctx = Ctx::new(p, q, k, v, lm_k, lm_v);
    let tiled = prepare_tiles(exec, &ctx, planes);
    let tiles = tiled.is_some();
    run_rows(
        level,
        ctx,
        tiled,
        crate::simd::as_u32(idx),
        scores,
        out.as_mut_slice(),
        0..n,
    );
    Ok(Ran { level, tiles })
}

/// The proof of AVX-512 when the query-tile path runs on this call: AVX-512 level
/// (and detected), tiles allowed by `exec`, shape covered.
fn tiles_on(exec: Exec, ctx: &Ctx<'_>) -> Option<Avx512Token> {
    #[cfg(target_arch = "x86_64")]
    if exec.level == SimdLevel::Avx512 && exec.query_tiles && tile::supports(ctx.p, ctx.n, ctx.d) {
        return Avx512Token::new();
    }
    let _ = (exec, ctx);
    None
}

/// The region of `buf` (`len + 16` floats) of `len` floats from its first 64-byte
/// boundary. Plane rows are multiples of 16 floats, so from there the tile path's
/// window vectors and log-stride loads never split cache lines.
fn aligned(buf: &mut [f32]) -> &mut [f32] {
    let len = buf.len().saturating_sub(16);
    let skip = buf.as_ptr().align_offset(64).min(16);
    &mut buf[skip..skip + len]
}

/// Key planes for the query-tile path from the call's scratch (`tile_len` floats),
/// when the path runs on this call.
fn prepare_tiles<'a>(
    exec: Exec,
    ctx: &Ctx<'_>,
    buf: &'a mut [f32],
) -> Option<(Avx512Token, Planes<'a>)> {
    let tok = tiles_on(exec, ctx)?;
    (!buf.is_empty()).then(|| (tok, Planes::One(aligned(buf))))
}

/// Transposed key and value planes (`[kv head][k, v][c][16 + j]`, see the `tile` submodule).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Planes<'a> {
    /// Every kv head's planes, filled (shared by the rayon path's chunks).
    #[cfg_attr(not(feature = "rayon"), allow(dead_code))]
    All(&'a [f32]),
    /// Room for one kv head's planes; the tile path fills it head by head.
    One(&'a mut [f32]),
}

/// Runs query rows `rows` (`out` holds exactly those rows): whole 16-query tiles
/// from a 16-aligned start on the query-tile path when `planes` is given, the
/// rest on the row kernel at `level`.
fn run_rows(
    level: SimdLevel,
    ctx: Ctx<'_>,
    planes: Option<(Avx512Token, Planes<'_>)>,
    idx: &mut [u32],
    scores: &mut [f32],
    out: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    let row_len = ctx.hq * ctx.d;
    let start = match planes {
        Some((tok, pl)) => run_tiles(tok, ctx, pl, idx, scores, out, rows.clone()),
        None => rows.start,
    };
    if start < rows.end {
        let o0 = (start - rows.start) * row_len;
        dispatch(
            level,
            SparseRows {
                ctx,
                idx,
                scores,
                out: &mut out[o0..],
                rows: start..rows.end,
            },
        );
    }
}

/// Transposes every kv head's key and value planes into `a` (`2 · hk · d · plane_row(n)` floats).
#[cfg(feature = "rayon")]
fn fill_planes(tok: Avx512Token, ctx: &Ctx<'_>, a: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let len = ctx.d * tile::plane_row(ctx.n);
        for (kh, pair) in a.chunks_exact_mut(2 * len).enumerate().take(ctx.hk) {
            let (pk, pv) = pair.split_at_mut(len);
            tile::transpose_head(tok, ctx.k, ctx.n, ctx.hk, kh, ctx.d, pk);
            tile::transpose_head(tok, ctx.v, ctx.n, ctx.hk, kh, ctx.d, pv);
        }
    }
    let _ = (tok, ctx, a);
}

/// The query-tile part of [`run_rows`]: whole tiles from a 16-aligned `rows.start`;
/// returns the first row it left to the row kernel.
#[cfg(target_arch = "x86_64")]
fn run_tiles(
    tok: Avx512Token,
    ctx: Ctx<'_>,
    pl: Planes<'_>,
    idx: &mut [u32],
    scores: &mut [f32],
    out: &mut [f32],
    rows: core::ops::Range<usize>,
) -> usize {
    let start = rows.start;
    if !start.is_multiple_of(tile::TILE) {
        return start;
    }
    let end = start + (rows.end - start) / tile::TILE * tile::TILE;
    if end > start {
        let o = &mut out[..(end - start) * ctx.hq * ctx.d];
        tile::run(tok, ctx, pl, idx, scores, o, start..end);
    }
    end
}

/// Off x86-64 no planes are ever prepared: every row runs on the row kernel.
#[cfg(not(target_arch = "x86_64"))]
fn run_tiles(
    _: Avx512Token,
    _: Ctx<'_>,
    _: Planes<'_>,
    _: &mut [u32],
    _: &mut [f32],
    _: &mut [f32],
    rows: core::ops::Range<usize>,
) -> usize {
    rows.start
}

/// Output and landmarks of the parallel entry point, after validation.
#[cfg(feature = "rayon")]
struct Setup {
    /// Zeroed output `[N][Hq][d]`.
    out: Tensor3,
    /// Sequence length `N`.
    n: usize,
    /// Block means of `k` (empty when `N == 0` or landmarks are off).
    lm_k: Vec<f32>,
    /// Block means of `v` (empty when `N == 0` or landmarks are off).
    lm_v: Vec<f32>,
}

/// Validates `p` and the q/k/v shapes, allocates the zeroed output and, for
/// `N > 0`, computes the landmark block means of `k` and `v` (at `level`).
#[cfg(feature = "rayon")]
fn setup(
    level: SimdLevel,
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Setup> {
    p.validate()?;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let out = Tensor3::zeros(n, hq, d)?;
    let lm = if n == 0 {
        0
    } else {
        landmark_len(p, n, hk, d)?
    };
    let mut lm_k = vec![0.0f32; lm];
    let mut lm_v = vec![0.0f32; lm];
    if n > 0 && p.landmarks {
        block_means(level, k.as_slice(), n, hk * d, p.block_size, &mut lm_k);
        block_means(level, v.as_slice(), n, hk * d, p.block_size, &mut lm_v);
    }
    Ok(Setup { out, n, lm_k, lm_v })
}

/// [`sparse_attention`] with queries split over the rayon pool; bit-identical to serial.
#[cfg(feature = "rayon")]
pub fn sparse_attention_par(
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Tensor3> {
    sparse_attention_par_with(Exec::detect(), p, q, k, v)
}

/// [`sparse_attention_par`] run as `exec` says (level, query tiles).
#[cfg(feature = "rayon")]
pub fn sparse_attention_par_with(
    exec: Exec,
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Tensor3> {
    use rayon::prelude::*;
    p.validate()?;
    check_qkv(q, k, v)?;
    let level = exec.level.effective();
    let Setup {
        mut out,
        n,
        lm_k,
        lm_v,
    } = setup(level, p, q, k, v)?;
    if n == 0 {
        return Ok(out);
    }
    let (hq, d) = (out.heads(), out.dim());
    let e = p.max_edges_per_query(n);
    let ctx = Ctx::new(p, q.view(), k.view(), v.view(), &lm_k, &lm_v);
    // The chunks share every kv head's key and value planes, transposed once here.
    let mut all: Vec<f32>;
    let shared: Option<(Avx512Token, &[f32])> = match tiles_on(exec, &ctx) {
        Some(tok) => {
            all = vec![0.0f32; tile_len(p, n, 1, d)? * k.heads()];
            let a = aligned(&mut all);
            fill_planes(tok, &ctx, a);
            Some((tok, a))
        }
        None => None,
    };
    // A multiple of the query tile, so every chunk sees the serial run's tiles.
    const ROWS: usize = 64;
    out.as_mut_slice()
        .par_chunks_mut(ROWS * hq * d)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let mut idx = vec![0u32; e];
            let mut scores = vec![0.0f32; e * HEAD_GROUP];
            let r0 = ci * ROWS;
            let r1 = (r0 + ROWS).min(n);
            let pl = shared.map(|(tok, a)| (tok, Planes::All(a)));
            run_rows(level, ctx, pl, &mut idx, &mut scores, chunk, r0..r1);
        });
    Ok(out)
}

pub(crate) fn check_out(
    (on, oh, od): (usize, usize, usize),
    n: usize,
    hq: usize,
    d: usize,
) -> Result<()> {
    check_lens(&[
        ("out.seq", n, on),
        ("out.heads", hq, oh),
        ("out.dim", d, od),
    ])
}

/// Mean of every block of `bs` rows of width `w`: `out[b][..] = Σ rows / count`.
///
/// Accumulates in f32 in row order, then divides (the reference crate's order); the
/// sums run 16 lanes at a time at `level`, held in registers where the width allows
/// (every level gives the same bits: the same adds in the same order; an exact
/// `1·x + y` FMA is the plain add). A column whose sum overflows is recomputed
/// as `Σ (x / count)`, so finite keys and values give finite means.
pub(crate) fn block_means(
    level: SimdLevel,
    x: &[f32],
    n: usize,
    w: usize,
    bs: usize,
    out: &mut [f32],
) {
    dispatch(level, BlockMeans { x, n, w, bs, out });
}

/// [`block_means`] as a computation for [`dispatch`].
struct BlockMeans<'a> {
    x: &'a [f32],
    n: usize,
    w: usize,
    bs: usize,
    out: &'a mut [f32],
}

impl WithIsa for BlockMeans<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let BlockMeans { x, n, w, bs, out } = self;
        for (b, ob) in out.chunks_exact_mut(w).enumerate() {
            let lo = b * bs;
            let hi = (lo + bs).min(n);
            let rows = &x[lo * w..hi * w];
            // Columns 128 at a time, the sums held in registers over the block's rows.
            let mut c0 = 0;
            while c0 < w {
                let width = (w - c0).min(8 * LANES);
                let dst = &mut ob[c0..c0 + width];
                match width / LANES {
                    8 => sum_rows::<I, 8>(rows, w, c0, dst),
                    7 if width % LANES == 0 => sum_rows::<I, 7>(rows, w, c0, dst),
                    6 if width % LANES == 0 => sum_rows::<I, 6>(rows, w, c0, dst),
                    5 if width % LANES == 0 => sum_rows::<I, 5>(rows, w, c0, dst),
                    4 if width % LANES == 0 => sum_rows::<I, 4>(rows, w, c0, dst),
                    3 if width % LANES == 0 => sum_rows::<I, 3>(rows, w, c0, dst),
                    2 if width % LANES == 0 => sum_rows::<I, 2>(rows, w, c0, dst),
                    1 if width % LANES == 0 => sum_rows::<I, 1>(rows, w, c0, dst),
                    _ => {
                        dst.iter_mut().for_each(|o| *o = 0.0);
                        for row in rows.chunks_exact(w) {
                            crate::simd::axpy_g::<I>(1.0, &row[c0..c0 + width], dst, width);
                        }
                    }
                }
                c0 += width;
            }
            let cnt = (hi - lo) as f32;
            ob.iter_mut().for_each(|o| *o /= cnt);
            if !ob.iter().all(|o| o.is_finite()) {
                // The f32 sum overflowed (or the block holds a non-finite value): redo
                // those columns as Σ (x / count), which stays within the inputs' range.
                for (c, o) in ob.iter_mut().enumerate() {
                    if !o.is_finite() {
                        *o = (lo..hi).map(|t| x[t * w + c] / cnt).sum();
                    }
                }
            }
        }
    }
}

/// `dst[c] = Σ_rows row[c0 + c]` for `16·NV` columns, in row order, in registers.
#[inline(always)]
fn sum_rows<I: Isa, const NV: usize>(rows: &[f32], w: usize, c0: usize, dst: &mut [f32]) {
    let mut acc = [I::zero(); NV];
    for row in rows.chunks_exact(w) {
        let r = &row[c0..c0 + NV * LANES];
        for (u, a) in acc.iter_mut().enumerate() {
            *a = I::add(*a, I::load(&r[u * LANES..]));
        }
    }
    for (u, a) in acc.iter().enumerate() {
        I::store(&mut dst[u * LANES..], *a);
    }
}

/// Shared read-only inputs of one sparse call.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) p: &'a SparsePattern,
    pub(crate) n: usize,
    pub(crate) hq: usize,
    pub(crate) hk: usize,
    pub(crate) d: usize,
    pub(crate) scale: f32,
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) lm_k: &'a [f32],
    pub(crate) lm_v: &'a [f32],
}

impl<'a> Ctx<'a> {
    fn new(
        p: &'a SparsePattern,
        q: TensorRef<'a>,
        k: TensorRef<'a>,
        v: TensorRef<'a>,
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
pub(crate) struct SparseRows<'a> {
    pub(crate) ctx: Ctx<'a>,
    pub(crate) idx: &'a mut [u32],
    pub(crate) scores: &'a mut [f32],
    pub(crate) out: &'a mut [f32],
    pub(crate) rows: core::ops::Range<usize>,
}

impl WithIsa for SparseRows<'_> {
    type Output = ();
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
            // The local window is a contiguous run of rows; only the other
            // candidates (globals, log-stride, landmarks) go through `idx`.
            let (lo, hi) = p.window_range(i, n);
            let win = hi - lo + 1;
            let t = extra_tokens(p, i, n, lo, hi, idx);
            let mut e = t;
            p.for_each_landmark(i, n, |b| {
                if let Some(slot) = idx.get_mut(e) {
                    *slot = b as u32;
                    e += 1;
                }
            });
            let (tok, lms) = idx[..e].split_at(t);
            let total = win + e;
            let stride = scores.len() / HEAD_GROUP;
            if total > stride {
                // Unreachable: scratch holds `max_edges_per_query(n)` ≥ `total` per head.
                continue;
            }
            // Heads in groups of HEAD_GROUP, phase by phase: the short dependent
            // chains (max, exp, sum, divide) of different heads then overlap.
            let mut h0 = 0;
            while h0 < hq {
                let hn = HEAD_GROUP.min(hq - h0);
                let mut ms = [0.0f32; HEAD_GROUP];
                for (hh, (sc, m)) in scores
                    .chunks_exact_mut(stride)
                    .zip(&mut ms)
                    .take(hn)
                    .enumerate()
                {
                    let h = h0 + hh;
                    let kh = h / group;
                    let qo = (i * hq + h) * d;
                    let qrow = &q[qo..qo + d];
                    let sc = &mut sc[..total];
                    let (sw, rest) = sc.split_at_mut(win);
                    let (st, sl) = rest.split_at_mut(t);
                    window_scores::<I>(qrow, k, lo, hk, kh, d, sw);
                    scores_into::<I>(qrow, tok, k, hk, kh, d, st);
                    scores_into::<I>(qrow, lms, lm_k, hk, kh, d, sl);
                    *m = scale_clamp_max::<I>(sc, scale);
                }
                let mut sums = [0.0f32; HEAD_GROUP];
                for ((sc, s), &m) in scores
                    .chunks_exact_mut(stride)
                    .zip(&mut sums)
                    .zip(&ms)
                    .take(hn)
                {
                    *s = exp_shift_sum_g::<I>(&mut sc[..total], -m);
                }
                for (sc, &s) in scores.chunks_exact_mut(stride).zip(&sums).take(hn) {
                    scale_g::<I>(1.0 / s, &mut sc[..total]);
                }
                for (hh, sc) in scores.chunks_exact(stride).take(hn).enumerate() {
                    let h = h0 + hh;
                    let kh = h / group;
                    let oo = ((i - r0) * hq + h) * d;
                    let orow = &mut out[oo..oo + d];
                    weighted_rows::<I>(&sc[..total], lo, win, tok, lms, v, lm_v, hk, kh, d, orow);
                }
                h0 += hn;
            }
        }
    }
}

/// Writes the non-window token candidates of query `i` (globals in list order,
/// then log-stride positions by increasing stride) into `idx`; returns how many.
///
/// The same set as [`SparsePattern::for_each_token`] minus the window `[lo, hi]`.
fn extra_tokens(
    p: &SparsePattern,
    i: usize,
    n: usize,
    lo: usize,
    hi: usize,
    idx: &mut [u32],
) -> usize {
    let mut t = 0usize;
    let mut push = |j: usize| {
        if let Some(slot) = idx.get_mut(t) {
            *slot = j as u32;
            t += 1;
        }
    };
    let in_window = |j: usize| j >= lo && j <= hi;
    let g = &p.global_tokens;
    for (gi, &gj) in g.iter().enumerate() {
        if gj < n && (!p.causal || gj <= i) && !in_window(gj) && !g[..gi].contains(&gj) {
            push(gj);
        }
    }
    if p.log_stride {
        let mut s = 1usize;
        while s < n {
            if i >= s && !in_window(i - s) && !g.contains(&(i - s)) {
                push(i - s);
            }
            if !p.causal && i + s < n && !in_window(i + s) && !g.contains(&(i + s)) {
                push(i + s);
            }
            match s.checked_mul(2) {
                Some(x) => s = x,
                None => break,
            }
        }
    }
    t
}

/// `out[c] = q · k[lo + c]` (head `kh`) for the contiguous window rows, four at a time.
#[inline(always)]
fn window_scores<I: Isa>(
    q: &[f32],
    k: &[f32],
    lo: usize,
    hk: usize,
    kh: usize,
    d: usize,
    out: &mut [f32],
) {
    let stride = hk * d;
    let base = (lo * hk + kh) * d;
    let rows = &k[base..base + (out.len() - 1) * stride + d];
    let row = |c: usize| &rows[c * stride..c * stride + d];
    let mut oc = out.chunks_exact_mut(4);
    let mut c = 0;
    for o4 in &mut oc {
        let s = dot4_g::<I>(q, [row(c), row(c + 1), row(c + 2), row(c + 3)], d);
        o4.copy_from_slice(&s);
        c += 4;
    }
    for o in oc.into_remainder() {
        *o = dot_g::<I>(q, row(c), d);
        c += 1;
    }
}

/// `out[c] = q · rows[idx[c]]` (rows of width `hk·d`, head `kh`), four at a time.
#[inline(always)]
fn scores_into<I: Isa>(
    q: &[f32],
    idx: &[u32],
    rows: &[f32],
    hk: usize,
    kh: usize,
    d: usize,
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
        o4.copy_from_slice(&s);
    }
    for (o, &j) in oc.into_remainder().iter_mut().zip(ic.remainder()) {
        *o = dot_g::<I>(q, row(j), d);
    }
}

/// `s[c] = clamp(scale · s[c], ±f32::MAX)` in place (NaN → `-f32::MAX`), returning
/// the maximum (`-f32::MAX` for an empty slice).
#[inline(always)]
fn scale_clamp_max<I: Isa>(s: &mut [f32], scale: f32) -> f32 {
    let (sv, lo, hi) = (I::splat(scale), I::splat(-f32::MAX), I::splat(f32::MAX));
    let mut m = lo;
    let len = s.len();
    let mut c = 0;
    while c < len {
        let rem = len - c;
        let x = if rem >= LANES {
            I::load(&s[c..])
        } else {
            I::load_partial(&s[c..])
        };
        // `max` first: a NaN lane of the product becomes -MAX; ±inf saturate.
        let x = I::min(I::max(I::mul(x, sv), lo), hi);
        if rem >= LANES {
            I::store(&mut s[c..], x);
            m = I::max(x, m);
        } else {
            I::store_partial(&mut s[c..], x);
            m = I::max(I::keep_first(x, rem, -f32::MAX), m);
        }
        c += LANES;
    }
    I::reduce_max(m)
}

/// `out = Σ_c w[c] · row_c` over the window rows `lo..lo + win` of `v`, the token
/// rows `tok` of `v`, then the landmark rows `lms` of `lm_v`, 64 columns at a time
/// held in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn weighted_rows<I: Isa>(
    w: &[f32],
    lo: usize,
    win: usize,
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
            lo,
            win,
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
    lo: usize,
    win: usize,
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
    if a.width == NV * LANES {
        cols_full::<I, NV, true>(a, out)
    } else {
        cols_full::<I, NV, false>(a, out)
    }
}

/// [`cols`] with `FULL` = whether the group's width is exactly `NV` vectors.
#[inline(always)]
fn cols_full<I: Isa, const NV: usize, const FULL: bool>(a: &Cols<'_>, out: &mut [f32]) {
    // Two accumulator sets (even / odd candidates) hide the FMA latency chain.
    let mut acc = [I::zero(); NV];
    let mut acc2 = [I::zero(); NV];
    let full = FULL;
    let (win, t, d, c0, w) = (a.win, a.tok.len(), a.d, a.c0, a.width);
    let stride = a.hk * d;
    let base = (a.lo * a.hk + a.kh) * d + c0;
    let wrows = &a.v[base..base + (win - 1) * stride + w];
    let mut ww = a.w[..win].chunks_exact(2);
    let mut r = 0;
    for w2 in &mut ww {
        row_acc::<I, NV>(&mut acc, w2[0], &wrows[r..r + w], full);
        row_acc::<I, NV>(&mut acc2, w2[1], &wrows[r + stride..r + stride + w], full);
        r += 2 * stride;
    }
    for &wc in ww.remainder() {
        row_acc::<I, NV>(&mut acc, wc, &wrows[r..r + w], full);
    }
    let wt = &a.w[win..];
    let voff = |j: u32| (j as usize * a.hk + a.kh) * d + c0;
    let mut wp = wt[..t].chunks_exact(2);
    let mut jp = a.tok.chunks_exact(2);
    for (w2, j2) in (&mut wp).zip(&mut jp) {
        let (o0, o1) = (voff(j2[0]), voff(j2[1]));
        row_acc::<I, NV>(&mut acc, w2[0], &a.v[o0..o0 + w], full);
        row_acc::<I, NV>(&mut acc2, w2[1], &a.v[o1..o1 + w], full);
    }
    for (&wc, &j) in wp.remainder().iter().zip(jp.remainder()) {
        let o = voff(j);
        row_acc::<I, NV>(&mut acc, wc, &a.v[o..o + w], full);
    }
    for (&wc, &b) in wt[t..].iter().zip(a.lms) {
        let o = voff(b);
        row_acc::<I, NV>(&mut acc2, wc, &a.lm_v[o..o + w], full);
    }
    let dst = &mut out[c0..c0 + w];
    for (u, (av, bv)) in acc.iter().zip(&acc2).enumerate() {
        let s = I::add(*av, *bv);
        if (u + 1) * LANES <= w {
            I::store(&mut dst[u * LANES..], s);
        } else {
            I::store_partial(&mut dst[u * LANES..w], s);
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
    sparse_attention_with(Exec::at(level), p, q, k, v)
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
    fn window_plus_extras_is_the_token_set() {
        // The kernel enumerates the window as a range and the rest via `extra_tokens`;
        // together they must be exactly `for_each_token`'s set, each position once.
        for causal in [true, false] {
            for n in [1usize, 2, 9, 64, 130] {
                for w in [0usize, 1, 5, 40, 200] {
                    for globals in [vec![], vec![0], vec![3, 3, 0, 500, 7]] {
                        let p = SparsePattern {
                            window: w,
                            block_size: 4,
                            global_tokens: globals,
                            causal,
                            log_stride: n % 2 == 0 || w == 1,
                            landmarks: true,
                        };
                        let mut idx = vec![0u32; p.max_edges_per_query(n)];
                        for i in 0..n {
                            let (lo, hi) = p.window_range(i, n);
                            let t = extra_tokens(&p, i, n, lo, hi, &mut idx);
                            let mut ours: Vec<usize> = (lo..=hi).collect();
                            ours.extend(idx[..t].iter().map(|&j| j as usize));
                            let mut want = p.token_candidates(i, n);
                            assert_eq!(ours.len(), want.len(), "i={i} n={n} {p:?}");
                            ours.sort_unstable();
                            want.sort_unstable();
                            assert_eq!(ours, want, "i={i} n={n} {p:?}");
                        }
                    }
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
