//! Optimised dense attention: flash-style tiles with an online softmax.
//!
//! Shapes as in [`crate::sparse`]: `q [N][Hq][d]`, `k, v [N][Hkv][d]`, `Hkv | Hq`
//! (query head `h` reads kv head `h / (Hq/Hkv)`), output `[N][Hq][d]`:
//!
//! `out_i = Σ_{j ∈ J(i)} softmax_j(q_i·k_j / √d) · v_j`, `J(i) = 0..=i` when causal, else `0..N`.
//!
//! The generic kernel (every SIMD level and shape): keys are packed once per call
//! tile-transposed (`[Hkv][N'/64][d][64]`) and values row-padded (`[Hkv][N'][d']`,
//! `d'` a multiple of 16). Queries go in
//! tiles of [`DENSE_BQ`] against key tiles of [`DENSE_BK`]: a register-blocked
//! microkernel computes the `4 × 64` score tile (16 vector accumulators), the
//! online softmax rescales the running maximum, denominator and accumulator
//! (`m' = max(m, rowmax S)`, `l' = l·e^{m−m'} + Σ e^{S−m'}`), and the `4 × d`
//! accumulator takes `P·V`. No `N × N` score matrix exists; memory is
//! `O(N·Hkv·d)`. Causal key tiles past the query tile are skipped; on the diagonal
//! tile each row takes only its own keys (masked scores are `-∞`, and masked values
//! are skipped, not weighted by 0, so a non-finite future value cannot reach it). Numerics as in [`crate::sparse`]: scores clamped to
//! `±f32::MAX`, max subtraction, so finite input never yields NaN.
//!
//! On AVX-512 with `d` a multiple of 16 (≤ 128) a register-blocked tile kernel runs
//! instead (the SIMD module's `dense_tile`: 8 query rows × 32 keys, keys packed as `Kᵀ` tiles,
//! values read in place, a lazy running maximum so the common tile needs no
//! horizontal reduction, causal masking only on the diagonal tile, whose masked keys
//! never touch an output). An [`Exec`] with `dense_tiles: false` switches it off
//! (tests compare both); [`dense_attention_into_with`] reports whether it ran.
//! [`dense_attention`] takes its scratch from a per-thread pool (under `std`).
//!
//! ```
//! use aether_kernel::{dense_attention, Tensor3};
//! let x = Tensor3::from_vec((0..48).map(|i| (i % 5) as f32 * 0.2).collect(), 6, 2, 4)?;
//! let out = dense_attention(&x, &x, &x, true)?;
//! assert_eq!(out.shape(), (6, 2, 4));
//! # Ok::<(), aether_kernel::KernelError>(())
//! ```

#[cfg(feature = "rayon")]
use alloc::vec;

use crate::error::{KernelError, Result};
#[cfg(target_arch = "x86_64")]
use crate::simd::{dense_tile as tile, Avx512Token};
use crate::simd::{dispatch, fast_exp, Exec, Isa, Ran, SimdLevel, WithIsa, LANES};
use crate::sparse::check_out;
use crate::tensor::{check_qkv, check_views, Tensor3, TensorMut, TensorRef};

/// Queries per tile.
pub const DENSE_BQ: usize = 4;
/// Keys per tile.
pub const DENSE_BK: usize = 64;
/// Queries per block: the block's softmax state stays in L1 while each key/value
/// tile is streamed once per block.
pub const DENSE_QB: usize = 32;
/// Rows of per-block state (the block plus room for a short last tile).
const QROWS: usize = DENSE_QB + DENSE_BQ;
const KV: usize = DENSE_BK / LANES;

/// The proof of AVX-512 when the tile kernel runs: AVX-512 level (and detected),
/// dense tiles allowed by `exec`, head dim `d` covered.
#[cfg(target_arch = "x86_64")]
fn use_tiles(exec: Exec, d: usize) -> Option<Avx512Token> {
    if exec.dense_tiles && exec.level == SimdLevel::Avx512 && tile::supports(d) {
        return Avx512Token::new();
    }
    None
}

/// Runs all rows on the tile kernel with `kt` (at least `hk · d · N'` floats, `N'` =
/// N rounded up to 64) for the packed keys.
#[cfg(target_arch = "x86_64")]
fn run_tiles(
    tok: Avx512Token,
    q: TensorRef<'_>,
    k: TensorRef<'_>,
    v: TensorRef<'_>,
    causal: bool,
    out: &mut TensorMut<'_>,
    kt: &mut [f32],
) {
    let n = q.shape().0;
    let tc = tile_ctx(tok, q, k, v, causal, kt);
    tile::run(tok, &tc, out.as_mut_slice(), 0..n);
}

struct Dims {
    n_pad: usize,
    d16: usize,
    kt: usize,
    vp: usize,
    /// Per-tile memory: pre-scaled queries, accumulators, probabilities.
    work: usize,
}

fn dims(n: usize, kv_heads: usize, dim: usize) -> Result<Dims> {
    let ovf = KernelError::Overflow {
        what: "dense scratch",
    };
    let n_pad = n.checked_next_multiple_of(DENSE_BK).ok_or(ovf.clone())?;
    let d16 = dim.checked_next_multiple_of(LANES).ok_or(ovf.clone())?;
    let kt = kv_heads
        .checked_mul(dim)
        .and_then(|x| x.checked_mul(n_pad))
        .ok_or(ovf.clone())?;
    let vp = kv_heads
        .checked_mul(n_pad)
        .and_then(|x| x.checked_mul(d16))
        .ok_or(ovf.clone())?;
    let work = dim
        .checked_add(d16)
        .and_then(|x| x.checked_add(2))
        .and_then(|x| x.checked_mul(QROWS))
        .and_then(|x| x.checked_add(DENSE_BQ * DENSE_BK))
        .ok_or(ovf)?;
    Ok(Dims {
        n_pad,
        d16,
        kt,
        vp,
        work,
    })
}

/// Length (in f32) of the scratch [`dense_attention_into`] needs.
///
/// Packed keys and values (`≈ 2 · N · Hkv · d`, N rounded up to 64, d to 16) plus one tile's work memory.
pub fn dense_scratch_len(n: usize, kv_heads: usize, dim: usize) -> Result<usize> {
    let dm = dims(n, kv_heads, dim)?;
    dm.kt
        .checked_add(dm.vp)
        .and_then(|x| x.checked_add(dm.work))
        .ok_or(KernelError::Overflow {
            what: "dense scratch",
        })
}

/// Dense (full or causal) attention (allocates the output); GQA/MQA when `k.heads` divides `q.heads`.
pub fn dense_attention(q: &Tensor3, k: &Tensor3, v: &Tensor3, causal: bool) -> Result<Tensor3> {
    dense_attention_with(Exec::detect(), q, k, v, causal)
}

/// [`dense_attention`] run as `exec` says (level, dense tiles); scratch from the
/// per-thread pool.
pub fn dense_attention_with(
    exec: Exec,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
) -> Result<Tensor3> {
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let mut out = Tensor3::zeros(n, hq, d)?;
    crate::scratch::with_scratch(dense_scratch_len(n, hk, d)?, |s| {
        dense_attention_into_with(exec, q, k, v, causal, &mut out, s)
    })?;
    Ok(out)
}

/// Allocation-free [`dense_attention`] into `out` using `scratch` (≥ [`dense_scratch_len`]).
///
/// The tensors are `&Tensor3`s or borrowed views ([`TensorRef`], [`TensorMut`]) of
/// slices the caller owns.
pub fn dense_attention_into<'a>(
    q: impl Into<TensorRef<'a>>,
    k: impl Into<TensorRef<'a>>,
    v: impl Into<TensorRef<'a>>,
    causal: bool,
    out: impl Into<TensorMut<'a>>,
    scratch: &mut [f32],
) -> Result<()> {
    dense_attention_into_with(Exec::detect(), q, k, v, causal, out, scratch).map(|_| ())
}

/// [`dense_attention`] at an explicit SIMD level (scalar when unavailable); for tests and benchmarks.
pub fn dense_attention_at(
    level: SimdLevel,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
) -> Result<Tensor3> {
    dense_attention_with(Exec::at(level), q, k, v, causal)
}

/// [`dense_attention_into`] run as `exec` says; reports what ran.
pub fn dense_attention_into_with<'a>(
    exec: Exec,
    q: impl Into<TensorRef<'a>>,
    k: impl Into<TensorRef<'a>>,
    v: impl Into<TensorRef<'a>>,
    causal: bool,
    out: impl Into<TensorMut<'a>>,
    scratch: &mut [f32],
) -> Result<Ran> {
    let (q, k, v, mut out) = (q.into(), k.into(), v.into(), out.into());
    let level = exec.level.effective();
    let (n, hq, hk, d) = check_views(q, k, v)?;
    check_out(out.shape(), n, hq, d)?;
    let need = dense_scratch_len(n, hk, d)?;
    if scratch.len() < need {
        return Err(KernelError::ShapeMismatch {
            what: "dense scratch",
            expected: need,
            got: scratch.len(),
        });
    }
    if n == 0 {
        return Ok(Ran {
            level,
            tiles: false,
        });
    }
    let dm = dims(n, hk, d)?;
    let (kt, rest) = scratch.split_at_mut(dm.kt);
    #[cfg(target_arch = "x86_64")]
    if let Some(tok) = use_tiles(exec, d) {
        run_tiles(tok, q, k, v, causal, &mut out, kt);
        return Ok(Ran { level, tiles: true });
    }
    let (vp, rest) = rest.split_at_mut(dm.vp);
    pack(k.as_slice(), v.as_slice(), n, hk, d, &dm, kt, vp);
    dispatch(
        level,
        DenseRows {
            ctx: DenseCtx::new(q, hk, causal, &dm, kt, vp),
            work: &mut rest[..dm.work],
            out: out.as_mut_slice(),
            rows: 0..n,
        },
    );
    Ok(Ran {
        level,
        tiles: false,
    })
}

/// [`dense_attention`] with query tiles split over the rayon pool; bit-identical to serial.
#[cfg(feature = "rayon")]
pub fn dense_attention_par(q: &Tensor3, k: &Tensor3, v: &Tensor3, causal: bool) -> Result<Tensor3> {
    dense_attention_par_with(Exec::detect(), q, k, v, causal)
}

/// [`dense_attention_par`] run as `exec` says (level, dense tiles).
#[cfg(feature = "rayon")]
pub fn dense_attention_par_with(
    exec: Exec,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
) -> Result<Tensor3> {
    use rayon::prelude::*;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let mut out = Tensor3::zeros(n, hq, d)?;
    if n == 0 {
        return Ok(out);
    }
    let dm = dims(n, hk, d)?;
    let level = exec.level.effective();
    let mut kt = vec![0.0f32; dm.kt];
    #[cfg(target_arch = "x86_64")]
    if let Some(tok) = use_tiles(exec, d) {
        let tc = tile_ctx(tok, q.view(), k.view(), v.view(), causal, &mut kt);
        const ROWS: usize = DENSE_QB;
        out.as_mut_slice()
            .par_chunks_mut(ROWS * hq * d)
            .enumerate()
            .for_each(|(ci, chunk)| {
                let r0 = ci * ROWS;
                tile::run(tok, &tc, chunk, r0..(r0 + ROWS).min(n));
            });
        return Ok(out);
    }
    let mut vp = vec![0.0f32; dm.vp];
    pack(k.as_slice(), v.as_slice(), n, hk, d, &dm, &mut kt, &mut vp);
    let ctx = DenseCtx::new(q.view(), hk, causal, &dm, &kt, &vp);
    const ROWS: usize = DENSE_QB;
    out.as_mut_slice()
        .par_chunks_mut(ROWS * hq * d)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let mut work = vec![0.0f32; dm.work];
            let r0 = ci * ROWS;
            dispatch(
                level,
                DenseRows {
                    ctx,
                    work: &mut work,
                    out: chunk,
                    rows: r0..(r0 + ROWS).min(n),
                },
            );
        });
    Ok(out)
}

/// Packs the keys for the tile kernel (after [`use_tiles`]) into `kt` (`hk · d · N'`
/// floats, `N'` a multiple of 64: room for `⌈N/32⌉` tiles of 32 keys) and returns its context.
#[cfg(target_arch = "x86_64")]
fn tile_ctx<'a>(
    tok: Avx512Token,
    q: TensorRef<'a>,
    k: TensorRef<'_>,
    v: TensorRef<'a>,
    causal: bool,
    kt: &'a mut [f32],
) -> tile::Ctx<'a> {
    let (n, hq, d) = q.shape();
    let hk = k.shape().1;
    tile::pack_keys(tok, k.as_slice(), n, hk, d, kt);
    tile::Ctx {
        q: q.as_slice(),
        v: v.as_slice(),
        kt,
        n,
        hq,
        hk,
        d,
        causal,
        scale: 1.0 / libm::sqrtf(d as f32),
    }
}

/// Packs keys tile-transposed, `kt[kh][j / 64][c][j % 64] = k[j][kh][c]` (one contiguous
/// `d × 64` block per key tile, so a tile never strides across cache sets), and `vp[kh][j][c] = v[j][kh][c]`, zero padded.
#[allow(clippy::too_many_arguments)]
fn pack(
    k: &[f32],
    v: &[f32],
    n: usize,
    hk: usize,
    d: usize,
    dm: &Dims,
    kt: &mut [f32],
    vp: &mut [f32],
) {
    kt.iter_mut().for_each(|x| *x = 0.0);
    vp.iter_mut().for_each(|x| *x = 0.0);
    for j in 0..n {
        for kh in 0..hk {
            let src = (j * hk + kh) * d;
            let krow = &k[src..src + d];
            for (c, &x) in krow.iter().enumerate() {
                kt[((kh * dm.n_pad + j - j % DENSE_BK) * d) + c * DENSE_BK + j % DENSE_BK] = x;
            }
            let dst = (kh * dm.n_pad + j) * dm.d16;
            vp[dst..dst + d].copy_from_slice(&v[src..src + d]);
        }
    }
}

#[derive(Clone, Copy)]
struct DenseCtx<'a> {
    causal: bool,
    n: usize,
    n_pad: usize,
    hq: usize,
    hk: usize,
    d: usize,
    d16: usize,
    scale: f32,
    q: &'a [f32],
    kt: &'a [f32],
    vp: &'a [f32],
}

impl<'a> DenseCtx<'a> {
    fn new(
        q: TensorRef<'a>,
        hk: usize,
        causal: bool,
        dm: &Dims,
        kt: &'a [f32],
        vp: &'a [f32],
    ) -> Self {
        let (n, hq, d) = q.shape();
        DenseCtx {
            causal,
            n,
            n_pad: dm.n_pad,
            hq,
            hk,
            d,
            d16: dm.d16,
            scale: 1.0 / libm::sqrtf(d as f32),
            q: q.as_slice(),
            kt,
            vp,
        }
    }
}

struct DenseRows<'a> {
    ctx: DenseCtx<'a>,
    work: &'a mut [f32],
    out: &'a mut [f32],
    rows: core::ops::Range<usize>,
}

impl WithIsa for DenseRows<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let DenseRows {
            ctx: c,
            work,
            out,
            rows,
        } = self;
        let (d, d16) = (c.d, c.d16);
        let (qs, rest) = work.split_at_mut(QROWS * d);
        let (acc, rest) = rest.split_at_mut(QROWS * d16);
        let (m, rest) = rest.split_at_mut(QROWS);
        let (l, ptile) = rest.split_at_mut(QROWS);
        let group = c.hq / c.hk;
        let r0 = rows.start;
        let mut b0 = rows.start;
        while b0 < rows.end {
            let nb = (rows.end - b0).min(DENSE_QB);
            // Rows `nb..` of the block state are padding (zero queries), never stored.
            let limit = |r: usize| if c.causal { b0 + r + 1 } else { c.n };
            for h in 0..c.hq {
                let kh = h / group;
                for (r, qr) in qs.chunks_exact_mut(d).enumerate() {
                    if r < nb {
                        let src = ((b0 + r) * c.hq + h) * d;
                        for (dst, &x) in qr.iter_mut().zip(&c.q[src..src + d]) {
                            *dst = x * c.scale;
                        }
                    } else {
                        qr.iter_mut().for_each(|x| *x = 0.0);
                    }
                }
                acc.iter_mut().for_each(|x| *x = 0.0);
                m.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                l.iter_mut().for_each(|x| *x = 0.0);
                let kend = if c.causal { b0 + nb } else { c.n };
                let mut jt = 0;
                while jt < kend {
                    let kbase = (kh * c.n_pad + jt) * d;
                    let kcnt = (kend - jt).min(DENSE_BK);
                    let vbase = (kh * c.n_pad + jt) * d16;
                    let vtile = &c.vp[vbase..vbase + kcnt * d16];
                    let mut rt = 0;
                    while rt < nb {
                        // Causal: a tile whose first key is past its last query is fully masked.
                        if c.causal && jt >= limit((rt + DENSE_BQ).min(nb) - 1) {
                            rt += DENSE_BQ;
                            continue;
                        }
                        let s =
                            score_tile::<I>(&qs[rt * d..], &c.kt[kbase..kbase + d * DENSE_BK], d);
                        for (r, row) in s.iter().enumerate() {
                            let rr = rt + r;
                            let valid = limit(rr).saturating_sub(jt);
                            softmax_row::<I>(
                                row,
                                valid,
                                &mut m[rr],
                                &mut l[rr],
                                &mut acc[rr * d16..(rr + 1) * d16],
                                &mut ptile[r * DENSE_BK..(r + 1) * DENSE_BK],
                            );
                        }
                        // Causal diagonal tile: row `r` may use only its first `lim[r]`
                        // keys. A masked key has probability 0, but 0 · ∞ would still be
                        // NaN, so masked keys are skipped rather than weighted by 0.
                        let lim: [usize; DENSE_BQ] =
                            core::array::from_fn(|r| limit(rt + r).saturating_sub(jt).min(kcnt));
                        let acc_t = &mut acc[rt * d16..(rt + DENSE_BQ) * d16];
                        if lim.iter().all(|&x| x == kcnt) {
                            pv_tile::<I>(acc_t, ptile, vtile, kcnt, d16);
                        } else {
                            pv_tile_rows::<I>(acc_t, ptile, vtile, &lim, d16);
                        }
                        rt += DENSE_BQ;
                    }
                    jt += DENSE_BK;
                }
                for r in 0..nb {
                    let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
                    let dst = ((b0 + r - r0) * c.hq + h) * d;
                    for (o, &a) in out[dst..dst + d].iter_mut().zip(&acc[r * d16..r * d16 + d]) {
                        *o = a * inv;
                    }
                }
            }
            b0 += nb;
        }
    }
}

/// Online-softmax update of one query row with one score tile row: clamps to
/// `±f32::MAX`, masks lanes `>= valid` to `-∞`, rescales `l` and `acc` to the new
/// maximum and writes the tile's probabilities to `p`.
#[inline(always)]
fn softmax_row<I: Isa>(
    row: &[I::V; KV],
    valid: usize,
    m: &mut f32,
    l: &mut f32,
    acc: &mut [f32],
    p: &mut [f32],
) {
    let mut x = *row;
    let mut mx = I::splat(f32::NEG_INFINITY);
    for (t, xt) in x.iter_mut().enumerate() {
        let cl = I::min(I::max(*xt, I::splat(-f32::MAX)), I::splat(f32::MAX));
        let cnt = valid.saturating_sub(t * LANES);
        *xt = if cnt >= LANES {
            cl
        } else {
            I::keep_first(cl, cnt, f32::NEG_INFINITY)
        };
        mx = I::max(*xt, mx);
    }
    let m_new = m.max(I::reduce_max(mx));
    if m_new == f32::NEG_INFINITY {
        p[..DENSE_BK].iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let corr = fast_exp(*m - m_new);
    let shift = I::splat(-m_new);
    let mut sum = I::zero();
    for (t, xt) in x.iter().enumerate() {
        let e = I::exp(I::add(*xt, shift));
        sum = I::add(sum, e);
        I::store(&mut p[t * LANES..], e);
    }
    *l = *l * corr + I::reduce_add(sum);
    if corr != 1.0 {
        let cv = I::splat(corr);
        for ch in acc.chunks_exact_mut(LANES) {
            let y = I::mul(I::load(ch), cv);
            I::store(ch, y);
        }
    }
    *m = m_new;
}

/// `S[r][t] = Σ_c qs[r][c] · kt[c][16t ..]` over one packed `d × 64` key tile: the 4 × 64 score tile in 16 accumulators.
#[inline(always)]
fn score_tile<I: Isa>(qs: &[f32], kt: &[f32], d: usize) -> [[I::V; KV]; DENSE_BQ] {
    let mut s = [[I::zero(); KV]; DENSE_BQ];
    for c in 0..d {
        let row = &kt[c * DENSE_BK..(c + 1) * DENSE_BK];
        let kv: [I::V; KV] = core::array::from_fn(|t| I::load(&row[t * LANES..]));
        for (r, sr) in s.iter_mut().enumerate() {
            let qb = I::splat(qs[r * d + c]);
            for (st, &kvt) in sr.iter_mut().zip(&kv) {
                *st = I::fma(qb, kvt, *st);
            }
        }
    }
    s
}

/// `acc[r][..] += Σ_j p[r][j] · vp[j][..]` for the `kcnt` keys of one tile.
#[inline(always)]
fn pv_tile<I: Isa>(acc: &mut [f32], ptile: &[f32], vp: &[f32], kcnt: usize, d16: usize) {
    let mut c0 = 0;
    while c0 < d16 {
        if c0 + 2 * LANES <= d16 {
            let mut a: [[I::V; 2]; DENSE_BQ] = core::array::from_fn(|r| {
                [
                    I::load(&acc[r * d16 + c0..]),
                    I::load(&acc[r * d16 + c0 + LANES..]),
                ]
            });
            for j in 0..kcnt {
                let vr = &vp[j * d16 + c0..j * d16 + c0 + 2 * LANES];
                let v0 = I::load(vr);
                let v1 = I::load(&vr[LANES..]);
                for (r, ar) in a.iter_mut().enumerate() {
                    let pb = I::splat(ptile[r * DENSE_BK + j]);
                    ar[0] = I::fma(pb, v0, ar[0]);
                    ar[1] = I::fma(pb, v1, ar[1]);
                }
            }
            for (r, ar) in a.iter().enumerate() {
                I::store(&mut acc[r * d16 + c0..], ar[0]);
                I::store(&mut acc[r * d16 + c0 + LANES..], ar[1]);
            }
            c0 += 2 * LANES;
        } else {
            let mut a: [I::V; DENSE_BQ] = core::array::from_fn(|r| I::load(&acc[r * d16 + c0..]));
            for j in 0..kcnt {
                let v0 = I::load(&vp[j * d16 + c0..]);
                for (r, ar) in a.iter_mut().enumerate() {
                    *ar = I::fma(I::splat(ptile[r * DENSE_BK + j]), v0, *ar);
                }
            }
            for (r, ar) in a.iter().enumerate() {
                I::store(&mut acc[r * d16 + c0..], *ar);
            }
            c0 += LANES;
        }
    }
}

/// [`pv_tile`] with a key count per row: `acc[r][..] += Σ_{j < lim[r]} p[r][j] · vp[j][..]`
/// (the causal diagonal tile, where later keys must not be touched at all).
#[inline(always)]
fn pv_tile_rows<I: Isa>(
    acc: &mut [f32],
    ptile: &[f32],
    vp: &[f32],
    lim: &[usize; DENSE_BQ],
    d16: usize,
) {
    for (r, &kr) in lim.iter().enumerate() {
        let ar = &mut acc[r * d16..(r + 1) * d16];
        for (j, vr) in vp.chunks_exact(d16).take(kr).enumerate() {
            let pb = I::splat(ptile[r * DENSE_BK + j]);
            for (a, v) in ar.chunks_exact_mut(LANES).zip(vr.chunks_exact(LANES)) {
                let y = I::fma(pb, I::load(v), I::load(a));
                I::store(a, y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::naive_dense_attention;

    fn tensor(n: usize, h: usize, d: usize, seed: u32) -> Tensor3 {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
        let data = (0..n * h * d)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 4.0 - 2.0
            })
            .collect();
        Tensor3::from_vec(data, n, h, d).unwrap()
    }

    #[test]
    fn matches_naive_across_tiles() {
        for (n, hq, hk, d) in [
            (1, 1, 1, 1),
            (5, 2, 1, 3),
            (67, 4, 2, 32),
            (130, 2, 2, 17),
            (64, 1, 1, 48),
        ] {
            let (q, k, v) = (
                tensor(n, hq, d, 1),
                tensor(n, hk, d, 2),
                tensor(n, hk, d, 3),
            );
            for causal in [true, false] {
                let a = dense_attention(&q, &k, &v, causal).unwrap();
                let b = naive_dense_attention(&q, &k, &v, causal).unwrap();
                for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
                    assert!((x - y).abs() <= 2e-5, "n={n} d={d} {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn empty_and_bad_shapes() {
        let e = Tensor3::zeros(0, 2, 4).unwrap();
        assert_eq!(
            dense_attention(&e, &e, &e, true).unwrap().shape(),
            (0, 2, 4)
        );
        let q = tensor(3, 3, 4, 1);
        let k = tensor(3, 2, 4, 2);
        assert!(matches!(
            dense_attention(&q, &k, &k, true),
            Err(KernelError::HeadsNotDivisible { .. })
        ));
    }
}
