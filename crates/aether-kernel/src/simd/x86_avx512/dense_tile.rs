//! Register-blocked AVX-512 tile kernel for dense attention (x86-64 only).
//!
//! Same math as the parent module's generic kernel (`out_i = Σ_j softmax_j(q_i·k_j/√d) v_j`,
//! scores clamped to `±f32::MAX`, fast exp), a different schedule. Queries go in
//! blocks of [`ROWS`] = 8 rows of one head, keys in tiles of [`KEYS`] = 32 (two
//! vectors), packed once per call as `Kᵀ` tiles `kt[kh][t][c][32]`:
//!
//! - scores: `S[r][0..2] = Σ_c q_r[c] · Kᵀ[c][0..2]` in 16 vector accumulators (one
//!   broadcast per row and two key loads per `c`);
//! - online softmax per row with a **lazy maximum**: the running maximum `m_r` only
//!   moves when a score exceeds it by more than [`TAU`] (then exactly as before:
//!   `m' = max(m, rowmax S)`, the accumulator and denominator scaled by `e^{m−m'}`),
//!   so the common tile needs no horizontal reduction: `p = e^{S−m} ≤ e^TAU`. The
//!   denominator is kept per lane (`l_r` a vector) and summed once at the end;
//! - `O[r] += Σ_j p[r][j] · v_j` with values read in place from `v` (no packing), 16
//!   accumulators for `d` = 32 (chunks of 32 columns for larger `d`).
//!
//! Causal: key tiles past a block are never touched; the one tile holding the
//! block's diagonal masks its scores per row, and its values are added per row only
//! up to that row's own position (a masked key never touches an output, so a
//! non-finite value reaches only the queries that attend it). Covers `d` a multiple
//! of 16 up to [`MAX_DIM`], causal and bidirectional, any `N` (a short last block
//! computes padding rows that are never stored), GQA/MQA.

use core::arch::x86_64::*;

use super::Avx512Token;
use crate::simd::{fast_exp, transpose16, Avx512};

/// Query rows per block.
pub(crate) const ROWS: usize = 8;
/// Keys per tile.
pub(crate) const KEYS: usize = 32;
/// Largest head dimension the tile covers.
pub(crate) const MAX_DIM: usize = 128;
/// A score more than this above a row's running maximum moves the maximum (so
/// every weight `e^{s−m}` stays below `e^TAU`).
const TAU: f32 = 8.0;

/// Whether the tile kernel covers head dimension `d`.
pub(crate) fn supports(d: usize) -> bool {
    d > 0 && d.is_multiple_of(16) && d <= MAX_DIM
}

/// Packs keys `k [n][hk][d]` as transposed tiles: `kt[((kh·T + t)·d + c)·32 + l] =
/// k[32t + l][kh][c]` (`T = ⌈n/32⌉`), zero past `n`; `kt` holds at least
/// `hk · 32T · d` floats. Blocks of 16 keys × 16 dims go through a register transpose.
/// [`pack_keys_avx512`] behind the token that proves its CPU features.
pub(crate) fn pack_keys(_: Avx512Token, k: &[f32], n: usize, hk: usize, d: usize, kt: &mut [f32]) {
    // SAFETY: an `Avx512Token` exists only where AVX-512F, AVX2 and FMA were detected.
    unsafe { pack_keys_avx512(k, n, hk, d, kt) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn pack_keys_avx512(k: &[f32], n: usize, hk: usize, d: usize, kt: &mut [f32]) {
    let nt = n.div_ceil(KEYS);
    let stride = hk * d;
    let zero = _mm512_setzero_ps();
    for kh in 0..hk {
        for t in 0..nt {
            let tile = &mut kt[(kh * nt + t) * d * KEYS..][..d * KEYS];
            for l0 in (0..KEYS).step_by(16) {
                let j0 = t * KEYS + l0;
                let rows = n.saturating_sub(j0).min(16);
                for c0 in (0..d).step_by(16) {
                    let first = (j0 * hk + kh) * d + c0;
                    let r: [__m512; 16] = if rows == 16 {
                        // One bounds check for the 16 rows, so they stay in registers.
                        let xs = &k[first..first + 15 * stride + 16];
                        core::array::from_fn(|jj| ld(xs, jj * stride))
                    } else {
                        core::array::from_fn(|jj| {
                            if jj < rows {
                                ld(k, first + jj * stride)
                            } else {
                                zero
                            }
                        })
                    };
                    let tr = transpose16(r);
                    let ts = &mut tile[c0 * KEYS + l0..(c0 + 15) * KEYS + l0 + 16];
                    for (cc, tv) in tr.iter().enumerate() {
                        st(ts, cc * KEYS, *tv);
                    }
                }
            }
        }
    }
}

/// Inputs of one call.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// Queries `[n][hq][d]`.
    pub(crate) q: &'a [f32],
    /// Values `[n][hk][d]`.
    pub(crate) v: &'a [f32],
    /// Keys packed by [`pack_keys`].
    pub(crate) kt: &'a [f32],
    pub(crate) n: usize,
    pub(crate) hq: usize,
    pub(crate) hk: usize,
    pub(crate) d: usize,
    pub(crate) causal: bool,
    /// `1/√d`.
    pub(crate) scale: f32,
}

/// Loads 16 floats at `s[o..o + 16]` (bounds-checked).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn ld(s: &[f32], o: usize) -> __m512 {
    let s = &s[o..o + 16];
    // SAFETY: `s` holds exactly 16 floats (sliced above); AVX-512F is enabled on this fn.
    unsafe { _mm512_loadu_ps(s.as_ptr()) }
}

/// Stores 16 floats to `s[o..o + 16]` (bounds-checked).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn st(s: &mut [f32], o: usize, v: __m512) {
    let s = &mut s[o..o + 16];
    // SAFETY: `s` holds exactly 16 floats (sliced above); AVX-512F is enabled on this fn.
    unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
}

/// Per-block buffers (reused across blocks; only the first `d` columns are used).
struct Bufs {
    /// `Qᵀ` of the block, pre-scaled: `qt[c][r]`; padding rows are zero.
    qt: [[f32; ROWS]; MAX_DIM],
    /// Output accumulators `o[r·d + c]`.
    o: [f32; ROWS * MAX_DIM],
}

/// Runs query rows `rows` (`rows.start` a multiple of [`ROWS`]) of every head into
/// `out` (exactly those rows, `[rows][hq][d]`); callers check AVX-512F, AVX2 and FMA.
/// [`run_avx512`] behind the token that proves its CPU features.
pub(crate) fn run(_: Avx512Token, c: &Ctx<'_>, out: &mut [f32], rows: core::ops::Range<usize>) {
    // SAFETY: an `Avx512Token` exists only where AVX-512F, AVX2 and FMA were detected.
    unsafe { run_avx512(c, out, rows) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn run_avx512(c: &Ctx<'_>, out: &mut [f32], rows: core::ops::Range<usize>) {
    let group = c.hq / c.hk;
    let mut b = Bufs {
        qt: [[0.0; ROWS]; MAX_DIM],
        o: [0.0; ROWS * MAX_DIM],
    };
    for h in 0..c.hq {
        let kh = h / group;
        let mut q0 = rows.start;
        while q0 < rows.end {
            let nb = (rows.end - q0).min(ROWS);
            block(c, h, kh, q0, nb, rows.start, out, &mut b);
            q0 += ROWS;
        }
    }
}

/// Query rows `q0 .. q0 + nb` (`nb ≤ 8`) of head `h` (kv head `kh`); `out` starts at row `r0`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
fn block(
    c: &Ctx<'_>,
    h: usize,
    kh: usize,
    q0: usize,
    nb: usize,
    r0: usize,
    out: &mut [f32],
    b: &mut Bufs,
) {
    let (n, d, hk) = (c.n, c.d, c.hk);
    let qt = &mut b.qt[..d];
    for r in 0..ROWS {
        if r < nb {
            let src = &c.q[((q0 + r) * c.hq + h) * d..][..d];
            for (qc, &x) in qt.iter_mut().zip(src) {
                qc[r] = x * c.scale;
            }
        } else {
            qt.iter_mut().for_each(|qc| qc[r] = 0.0);
        }
    }
    let qt = &*qt;
    let o = &mut b.o[..ROWS * d];
    o.fill(0.0);
    let mut m = [f32::NEG_INFINITY; ROWS];
    let mut l = [_mm512_setzero_ps(); ROWS];
    let mut p = [[0.0f32; KEYS]; ROWS];
    let nt = n.div_ceil(KEYS);
    let kend = if c.causal { (q0 + ROWS).min(n) } else { n };
    let (lo, hi) = (_mm512_set1_ps(-f32::MAX), _mm512_set1_ps(f32::MAX));
    let tau = _mm512_set1_ps(TAU);
    let vstride = hk * d;
    let vbase = kh * d;
    for jt in (0..kend).step_by(KEYS) {
        let kcnt = (kend - jt).min(KEYS);
        let t = jt / KEYS;
        let ktile = &c.kt[(kh * nt + t) * d * KEYS..][..d * KEYS];
        let s = scores(qt, ktile);
        // Causal: this tile holds the block's diagonal (jt ≤ q0: both are multiples of 8).
        let diag = c.causal && jt + KEYS > q0;
        for (r, sr) in s.iter().enumerate() {
            let valid = if c.causal {
                ((q0 + r + 1).min(n) - jt).min(KEYS)
            } else {
                kcnt
            };
            let mut s0 = _mm512_min_ps(_mm512_max_ps(sr[0], lo), hi);
            let mut s1 = _mm512_min_ps(_mm512_max_ps(sr[1], lo), hi);
            if valid < KEYS {
                let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
                let k0 = ((1u32 << valid.min(16)) - 1) as u16;
                let k1 = ((1u32 << valid.saturating_sub(16)) - 1) as u16;
                s0 = _mm512_mask_blend_ps(k0, ninf, s0);
                s1 = _mm512_mask_blend_ps(k1, ninf, s1);
            }
            let mut mv = _mm512_set1_ps(m[r]);
            let mut d0 = _mm512_sub_ps(s0, mv);
            let mut d1 = _mm512_sub_ps(s1, mv);
            let over = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d0, tau)
                | _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d1, tau);
            if over != 0 {
                let mn = m[r].max(_mm512_reduce_max_ps(_mm512_max_ps(s0, s1)));
                let corr = fast_exp(m[r] - mn);
                let cv = _mm512_set1_ps(corr);
                l[r] = _mm512_mul_ps(l[r], cv);
                for x in o[r * d..(r + 1) * d].chunks_exact_mut(16) {
                    st(x, 0, _mm512_mul_ps(ld(x, 0), cv));
                }
                m[r] = mn;
                mv = _mm512_set1_ps(mn);
                d0 = _mm512_sub_ps(s0, mv);
                d1 = _mm512_sub_ps(s1, mv);
            }
            let e0 = Avx512::exp_scalef(d0);
            let e1 = Avx512::exp_scalef(d1);
            l[r] = _mm512_add_ps(l[r], _mm512_add_ps(e0, e1));
            st(&mut p[r], 0, e0);
            st(&mut p[r], 16, e1);
        }
        // Keys every row of the block attends; on the diagonal tile the rest per row.
        let full = if diag { q0 - jt } else { kcnt };
        let vt = &c.v[jt * vstride..];
        pv(o, &p, vt, vstride, vbase, 0..full, d);
        if diag {
            for (r, pr) in p.iter().enumerate().take(nb) {
                let end = (q0 + r + 1).min(n) - jt;
                let orow = &mut o[r * d..(r + 1) * d];
                for j in full..end.min(KEYS) {
                    let pb = _mm512_set1_ps(pr[j]);
                    let vrow = &vt[j * vstride + vbase..][..d];
                    for (cc, x) in orow.chunks_exact_mut(16).enumerate() {
                        st(x, 0, _mm512_fmadd_ps(pb, ld(vrow, cc * 16), ld(x, 0)));
                    }
                }
            }
        }
    }
    for (r, lr) in l.iter().enumerate().take(nb) {
        let sum = _mm512_reduce_add_ps(*lr);
        let inv = _mm512_set1_ps(if sum > 0.0 { 1.0 / sum } else { 0.0 });
        let dst = ((q0 + r - r0) * c.hq + h) * d;
        let orow = &o[r * d..(r + 1) * d];
        for cc in (0..d).step_by(16) {
            st(out, dst + cc, _mm512_mul_ps(ld(orow, cc), inv));
        }
    }
}

/// The 8 × 32 score tile `S[r][..] = Σ_c qt[c][r] · Kᵀ[c][..]` (16 accumulators).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn scores(qt: &[[f32; ROWS]], ktile: &[f32]) -> [[__m512; 2]; ROWS] {
    let mut s = [[_mm512_setzero_ps(); 2]; ROWS];
    let (kc, _) = ktile.as_chunks::<KEYS>();
    for (qc, kc) in qt.iter().zip(kc) {
        let k0 = ld(kc, 0);
        let k1 = ld(kc, 16);
        for (sr, &x) in s.iter_mut().zip(qc) {
            let qb = _mm512_set1_ps(x);
            sr[0] = _mm512_fmadd_ps(qb, k0, sr[0]);
            sr[1] = _mm512_fmadd_ps(qb, k1, sr[1]);
        }
    }
    s
}

/// `O[r] += Σ_{j ∈ keys} p[r][j] · v_j` for all 8 rows, `v_j = vt[j·vstride + vbase ..][..d]`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn pv(
    o: &mut [f32],
    p: &[[f32; KEYS]; ROWS],
    vt: &[f32],
    vstride: usize,
    vbase: usize,
    keys: core::ops::Range<usize>,
    d: usize,
) {
    if keys.is_empty() {
        return;
    }
    let keys = keys.start..keys.end.min(KEYS);
    let mut c0 = 0;
    while c0 < d {
        if c0 + 32 <= d {
            let mut a: [[__m512; 2]; ROWS] =
                core::array::from_fn(|r| [ld(o, r * d + c0), ld(o, r * d + c0 + 16)]);
            for j in keys.clone() {
                let vr = &vt[j * vstride + vbase + c0..][..32];
                let v0 = ld(vr, 0);
                let v1 = ld(vr, 16);
                for (ar, pr) in a.iter_mut().zip(p) {
                    let pb = _mm512_set1_ps(pr[j]);
                    ar[0] = _mm512_fmadd_ps(pb, v0, ar[0]);
                    ar[1] = _mm512_fmadd_ps(pb, v1, ar[1]);
                }
            }
            for (r, ar) in a.iter().enumerate() {
                st(o, r * d + c0, ar[0]);
                st(o, r * d + c0 + 16, ar[1]);
            }
            c0 += 32;
        } else {
            let mut a: [__m512; ROWS] = core::array::from_fn(|r| ld(o, r * d + c0));
            for j in keys.clone() {
                let v0 = ld(vt, j * vstride + vbase + c0);
                for (ar, pr) in a.iter_mut().zip(p) {
                    *ar = _mm512_fmadd_ps(_mm512_set1_ps(pr[j]), v0, *ar);
                }
            }
            for (r, ar) in a.iter().enumerate() {
                st(o, r * d + c0, *ar);
            }
            c0 += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{Isa, SimdLevel};

    #[test]
    fn exp_scalef_is_bit_identical_to_the_isa_exp() {
        if SimdLevel::detect() < SimdLevel::Avx512 {
            return;
        }
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn check() {
            let mut xs: Vec<f32> = (0..=200_000)
                .map(|i| -100.0 + i as f32 * 0.000_94)
                .collect();
            xs.extend([
                f32::NEG_INFINITY,
                -87.3,
                -87.29,
                0.0,
                -0.0,
                8.0,
                88.0,
                -f32::MAX,
            ]);
            for ch in xs.chunks(16) {
                let mut a = [0.0f32; 16];
                a[..ch.len()].copy_from_slice(ch);
                let v = ld(&a, 0);
                let (mut e, mut f) = ([0.0f32; 16], [0.0f32; 16]);
                st(&mut e, 0, Avx512::exp_scalef(v));
                st(&mut f, 0, <Avx512 as Isa>::exp(v));
                for ((x, y), z) in a.iter().zip(e).zip(f) {
                    assert_eq!(y.to_bits(), z.to_bits(), "x = {x}: {y} vs {z}");
                }
            }
        }
        // SAFETY: `detect` reported AVX-512F, AVX2 and FMA above.
        unsafe { check() }
    }
}
