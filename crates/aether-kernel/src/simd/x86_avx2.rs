//! The AVX2 + FMA implementation of the 16-lane vector trait (two `__m256` halves per
//! vector) and the `#[target_feature]` entry point of the dispatcher.

use super::*;
use core::arch::x86_64::*;

/// AVX2 + FMA implementation (16 lanes as two 8-lane halves).
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

impl Avx2 {
    #[inline(always)]
    fn mask8(count: usize) -> __m256 {
        // SAFETY: only reached inside `run_avx2`, which requires AVX2 + FMA (detected).
        unsafe {
            let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let c = _mm256_set1_epi32(count.min(8) as i32);
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(c, iota))
        }
    }

    #[inline(always)]
    fn exp8(x: __m256) -> __m256 {
        // SAFETY: as in `mask8`; same algorithm as `fast_exp`.
        unsafe {
            let lo = _mm256_set1_ps(EXP_LO);
            let xc = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(EXP_HI));
            let t = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5));
            let fx = _mm256_floor_ps(t);
            let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_HI), xc);
            let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_LO), r);
            let mut y = _mm256_set1_ps(P0);
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P1));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P2));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P3));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P4));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P5));
            let r2 = _mm256_mul_ps(r, r);
            y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
            let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvttps_epi32(fx),
                _mm256_set1_epi32(127),
            ));
            let res = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
            let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
            _mm256_andnot_ps(under, res)
        }
    }
}

impl Isa for Avx2 {
    type V = (__m256, __m256);
    const FUSED: bool = true;
    #[inline(always)]
    fn zero() -> Self::V {
        // SAFETY: as in `Avx2::mask8`.
        unsafe { (_mm256_setzero_ps(), _mm256_setzero_ps()) }
    }
    #[inline(always)]
    fn splat(x: f32) -> Self::V {
        // SAFETY: as in `Avx2::mask8`.
        unsafe { (_mm256_set1_ps(x), _mm256_set1_ps(x)) }
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self::V {
        let s = &s[..LANES];
        // SAFETY: `s` holds 16 floats; AVX2 as in `Avx2::mask8`.
        unsafe {
            (
                _mm256_loadu_ps(s.as_ptr()),
                _mm256_loadu_ps(s.as_ptr().add(8)),
            )
        }
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> Self::V {
        let mut buf = [0.0f32; LANES];
        let n = s.len().min(LANES);
        buf[..n].copy_from_slice(&s[..n]);
        Self::load(&buf)
    }
    #[inline(always)]
    fn store(s: &mut [f32], v: Self::V) {
        let s = &mut s[..LANES];
        // SAFETY: `s` holds 16 floats; AVX2 as in `Avx2::mask8`.
        unsafe {
            _mm256_storeu_ps(s.as_mut_ptr(), v.0);
            _mm256_storeu_ps(s.as_mut_ptr().add(8), v.1);
        }
    }
    #[inline(always)]
    fn store_partial(s: &mut [f32], v: Self::V) {
        let mut buf = [0.0f32; LANES];
        Self::store(&mut buf, v);
        let n = s.len().min(LANES);
        s[..n].copy_from_slice(&buf[..n]);
    }
    #[inline(always)]
    fn add(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: as in `Avx2::mask8`.
        unsafe { (_mm256_add_ps(a.0, b.0), _mm256_add_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn mul(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: as in `Avx2::mask8`.
        unsafe { (_mm256_mul_ps(a.0, b.0), _mm256_mul_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        // SAFETY: as in `Avx2::mask8` (FMA detected with AVX2).
        unsafe {
            (
                _mm256_fmadd_ps(a.0, b.0, c.0),
                _mm256_fmadd_ps(a.1, b.1, c.1),
            )
        }
    }
    #[inline(always)]
    fn max(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: as in `Avx2::mask8`.
        unsafe { (_mm256_max_ps(a.0, b.0), _mm256_max_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn min(a: Self::V, b: Self::V) -> Self::V {
        // SAFETY: as in `Avx2::mask8`.
        unsafe { (_mm256_min_ps(a.0, b.0), _mm256_min_ps(a.1, b.1)) }
    }
    #[inline(always)]
    fn reduce_add(a: Self::V) -> f32 {
        // SAFETY: as in `Avx2::mask8`.
        unsafe {
            let s8 = _mm256_add_ps(a.0, a.1);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
            _mm_cvtss_f32(s1)
        }
    }
    #[inline(always)]
    fn reduce_max(a: Self::V) -> f32 {
        // SAFETY: as in `Avx2::mask8`.
        unsafe {
            let s8 = _mm256_max_ps(a.0, a.1);
            let s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
            let s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_max_ss(s2, _mm_shuffle_ps(s2, s2, 1));
            _mm_cvtss_f32(s1)
        }
    }
    #[inline(always)]
    fn keep_first(a: Self::V, count: usize, fill: f32) -> Self::V {
        let m0 = Self::mask8(count);
        let m1 = Self::mask8(count.saturating_sub(8));
        // SAFETY: as in `Avx2::mask8`.
        unsafe {
            let f = _mm256_set1_ps(fill);
            (_mm256_blendv_ps(f, a.0, m0), _mm256_blendv_ps(f, a.1, m1))
        }
    }
    #[inline(always)]
    fn exp(x: Self::V) -> Self::V {
        (Self::exp8(x.0), Self::exp8(x.1))
    }
}

/// Runs `w` with the AVX2+FMA body.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run_avx2<W: WithIsa>(w: W) -> W::Output {
    w.run::<Avx2>()
}
