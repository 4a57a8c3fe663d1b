//! The x86 F16C conversions of the f16 KV cache (`vcvtph2ps` / `vcvtps2ph`, 8 values at a
//! time), behind a token that proves the CPU has them.

use half::f16;

use super::f16::f16_bits_to_f32;

/// Proof that this CPU runs F16C and AVX: the conversions below are called only with one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F16cToken(());

impl F16cToken {
    /// A token when F16C and AVX are available: detected at run time under `std`
    /// (cached by the standard library), fixed at compile time without it.
    #[inline]
    pub(crate) fn new() -> Option<Self> {
        #[cfg(feature = "std")]
        let ok = std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(target_feature = "f16c", target_feature = "avx"));
        ok.then_some(F16cToken(()))
    }
}

/// [`gather_f16c`] behind the token that proves its CPU features.
#[inline]
pub(crate) fn gather(
    _: F16cToken,
    src: &[f16],
    rows: (&[usize], usize, usize),
    d: usize,
    dst: &mut [f32],
) {
    // SAFETY: an `F16cToken` exists only where F16C and AVX are available.
    unsafe { gather_f16c(src, rows, d, dst) }
}

/// [`store_f16c`] behind the token that proves its CPU features.
#[inline]
pub(crate) fn store(_: F16cToken, src: &[f32], dst: &mut [f16]) {
    // SAFETY: an `F16cToken` exists only where F16C and AVX are available.
    unsafe { store_f16c(src, dst) }
}

/// [`super::f16_rows_to_f32`] with `vcvtph2ps`, 8 halves at a time (exact, like
/// [`f16_bits_to_f32`], which converts each row's tail).
///
/// # Safety
/// The CPU must support F16C and AVX.
#[target_feature(enable = "avx,f16c")]
unsafe fn gather_f16c(src: &[f16], rows: (&[usize], usize, usize), d: usize, dst: &mut [f32]) {
    use core::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    let (slots, stride, add) = rows;
    for (&s, o) in slots.iter().zip(dst.chunks_exact_mut(d)) {
        let row = &src[s * stride + add..][..d];
        let (sp, dp) = (row.as_ptr(), o.as_mut_ptr());
        let mut i = 0;
        while i + 8 <= d {
            // SAFETY: `row` and `o` both hold `d >= i + 8` elements, so halves `i..i + 8`
            // (16 bytes; `f16` is `repr(transparent)` over `u16`) are readable and floats
            // `i..i + 8` writable; both intrinsics are unaligned; F16C and AVX are
            // guaranteed by this function's contract.
            unsafe {
                let h = _mm_loadu_si128(sp.add(i).cast::<__m128i>());
                _mm256_storeu_ps(dp.add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for (x, h) in o[i..].iter_mut().zip(&row[i..]) {
            *x = f16_bits_to_f32(h.to_bits());
        }
    }
}

/// `dst[i] = f16::from_f32(src[i])` with `vcvtps2ph` (round to nearest even, the same
/// rounding as `half`), 8 values at a time; the tail goes through `half`.
///
/// # Safety
/// The CPU must support F16C and AVX.
#[target_feature(enable = "avx,f16c")]
unsafe fn store_f16c(src: &[f32], dst: &mut [f16]) {
    use core::arch::x86_64::{
        __m128i, _mm256_cvtps_ph, _mm256_loadu_ps, _mm_storeu_si128, _MM_FROUND_TO_NEAREST_INT,
    };
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        let (s8, d8) = (&src[i..i + 8], &mut dst[i..i + 8]);
        // SAFETY: `s8` is 8 readable floats, `d8` 8 writable halves = 16 bytes (`f16` is
        // `repr(transparent)` over `u16`, every bit pattern valid); unaligned intrinsics;
        // F16C and AVX are guaranteed by this function's contract.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s8.as_ptr()));
            _mm_storeu_si128(d8.as_mut_ptr().cast::<__m128i>(), h);
        }
        i += 8;
    }
    for (d, &s) in dst[i..n].iter_mut().zip(&src[i..n]) {
        *d = f16::from_f32(s);
    }
}
