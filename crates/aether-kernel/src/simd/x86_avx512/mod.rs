//! The AVX-512F implementation of the 16-lane vector trait (one `__m512` per vector),
//! its 16 × 16 transpose, the `#[target_feature]` entry point of the dispatcher and the
//! sparse and dense tile kernels, which run only here.

use super::*;
use core::arch::x86_64::*;

pub(crate) mod dense_tile;
pub(crate) mod sparse_tile;

/// Proof that this CPU runs AVX-512F, AVX2 and FMA: the tile kernels, whose
/// `#[target_feature]` bodies need exactly that, are called only with one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Token(());

impl Avx512Token {
    /// A token when [`SimdLevel::detect`] found AVX-512F (with AVX2 and FMA).
    pub(crate) fn new() -> Option<Self> {
        (SimdLevel::detect() >= SimdLevel::Avx512).then_some(Avx512Token(()))
    }
}

/// AVX-512F implementation.
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

impl Isa for Avx512 {
    type V = __m512;
    const FUSED: bool = true;
    #[inline(always)]
    fn zero() -> __m512 {
        // SAFETY: only reached inside `run_avx512`, which requires AVX-512F (detected).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn splat(x: f32) -> __m512 {
        // SAFETY: as in `zero`.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn load(s: &[f32]) -> __m512 {
        let s = &s[..LANES];
        // SAFETY: `s` holds 16 floats (sliced above); AVX-512F as in `zero`.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> __m512 {
        let n = s.len().min(LANES);
        let m: __mmask16 = ((1u32 << n) - 1) as u16;
        // SAFETY: the mask enables exactly the first `n <= s.len()` lanes, so no
        // byte outside `s` is read (masked lanes do not fault); AVX-512F as in `zero`.
        unsafe { _mm512_maskz_loadu_ps(m, s.as_ptr()) }
    }
    #[inline(always)]
    fn store(s: &mut [f32], v: __m512) {
        let s = &mut s[..LANES];
        // SAFETY: `s` holds 16 floats; AVX-512F as in `zero`.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn store_partial(s: &mut [f32], v: __m512) {
        let n = s.len().min(LANES);
        let m: __mmask16 = ((1u32 << n) - 1) as u16;
        // SAFETY: only the first `n <= s.len()` lanes are written; AVX-512F as in `zero`.
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), m, v) }
    }
    #[inline(always)]
    fn add(a: __m512, b: __m512) -> __m512 {
        // SAFETY: as in `zero`.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn mul(a: __m512, b: __m512) -> __m512 {
        // SAFETY: as in `zero`.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: as in `zero`.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn max(a: __m512, b: __m512) -> __m512 {
        // SAFETY: as in `zero`. vmaxps returns the second operand when either is NaN.
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn min(a: __m512, b: __m512) -> __m512 {
        // SAFETY: as in `zero`.
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn reduce_add(a: __m512) -> f32 {
        // SAFETY: as in `zero`.
        unsafe {
            let lo = _mm512_castps512_ps256(a);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
            let s8 = _mm256_add_ps(lo, hi);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
            _mm_cvtss_f32(s1)
        }
    }
    #[inline(always)]
    fn reduce_add4(a: [__m512; 4]) -> [f32; 4] {
        // SAFETY: as in `zero`.
        unsafe {
            let [a, b, c, d] = a;
            // Quarters: [a.q0+a.q2, a.q1+a.q3, b.q0+b.q2, b.q1+b.q3], same for c, d.
            let ab = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
            );
            let cd = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(c, d),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(c, d),
            );
            // Quarter k now holds four partial sums of input k.
            let s = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(ab, cd),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(ab, cd),
            );
            let t = _mm512_add_ps(s, _mm512_permute_ps::<0b10_11_00_01>(s));
            let t = _mm512_add_ps(t, _mm512_permute_ps::<0b01_00_11_10>(t));
            let mut out = [0.0f32; LANES];
            _mm512_storeu_ps(out.as_mut_ptr(), t);
            [out[0], out[4], out[8], out[12]]
        }
    }
    #[inline(always)]
    fn reduce_max(a: __m512) -> f32 {
        // SAFETY: as in `zero`.
        unsafe { _mm512_reduce_max_ps(a) }
    }
    #[inline(always)]
    fn keep_first(a: __m512, count: usize, fill: f32) -> __m512 {
        let n = count.min(LANES);
        let m: __mmask16 = ((1u32 << n) - 1) as u16;
        // SAFETY: as in `zero`.
        unsafe { _mm512_mask_blend_ps(m, _mm512_set1_ps(fill), a) }
    }
    #[inline(always)]
    fn exp(x: __m512) -> __m512 {
        // SAFETY: as in `zero`; same algorithm as `fast_exp`.
        unsafe {
            let lo = _mm512_set1_ps(EXP_LO);
            let xc = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(EXP_HI));
            let (y, fx) = Avx512::exp_poly(xc);
            let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(
                _mm512_cvttps_epi32(fx),
                _mm512_set1_epi32(127),
            ));
            let res = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
            let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo);
            _mm512_mask_blend_ps(under, res, _mm512_setzero_ps())
        }
    }
}

impl Avx512 {
    /// The shared core of [`Isa::exp`] and [`Avx512::exp_scalef`] for a clamped `xc`:
    /// `fx = ⌊xc·log₂e + ½⌋`, `r = xc − fx·ln 2` (two-part constant) and the degree-7
    /// polynomial `y ≈ e^r`, so `e^xc ≈ y · 2^fx`.
    #[inline(always)]
    fn exp_poly(xc: __m512) -> (__m512, __m512) {
        // SAFETY: as in `zero` (only reached where AVX-512F is enabled).
        unsafe {
            let t = _mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5));
            let fx = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(t);
            let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_HI), xc);
            let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_LO), r);
            let mut y = _mm512_set1_ps(P0);
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P1));
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P2));
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P3));
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P4));
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P5));
            let r2 = _mm512_mul_ps(r, r);
            y = _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
            (y, fx)
        }
    }

    /// [`Isa::exp`] for `x ≤ 88` (`x < −87.3`, `−∞` and NaN give 0): the same
    /// reduction and polynomial, the power of two applied by `vscalefps` (four
    /// instructions fewer); bit-identical to [`Isa::exp`] on `[−87.3, 88]`.
    /// Used by the dense tile kernel, whose inputs are `≤ 8`.
    #[inline(always)]
    pub(crate) fn exp_scalef(x: __m512) -> __m512 {
        // SAFETY: as in `zero` (only called where AVX-512F is enabled).
        unsafe {
            let lo = _mm512_set1_ps(EXP_LO);
            let (y, fx) = Avx512::exp_poly(_mm512_max_ps(x, lo));
            let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, lo);
            _mm512_maskz_scalef_ps(keep, y, fx)
        }
    }
}

/// Transposes a 16 × 16 block held as 16 rows: `out[c]` = column `c` of the rows `r`
/// (unpack, in-lane shuffles, then 128-bit lane shuffles). Used by the sparse and
/// dense tile kernels.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub(crate) fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // Per 128-bit lane q: u[4g + m] holds column 4q + m of rows 4g .. 4g + 4.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_shuffle_ps::<0x44>(a, c);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(b, d);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
    }
    for h in 0..2 {
        for m in 0..4 {
            let (a, b) = (u[8 * h + m], u[8 * h + 4 + m]);
            t[8 * h + m] = _mm512_shuffle_f32x4::<0x88>(a, b);
            t[8 * h + 4 + m] = _mm512_shuffle_f32x4::<0xDD>(a, b);
        }
    }
    let mut o = [_mm512_setzero_ps(); 16];
    for m in 0..8 {
        o[m] = _mm512_shuffle_f32x4::<0x88>(t[m], t[8 + m]);
        o[8 + m] = _mm512_shuffle_f32x4::<0xDD>(t[m], t[8 + m]);
    }
    o
}

/// Runs `w` with the AVX-512 body.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn run_avx512<W: WithIsa>(w: W) -> W::Output {
    w.run::<Avx512>()
}
