//! f16 ⇄ f32 conversion of the f16 KV cache: the exact portable loader and the
//! dispatch to the x86 F16C instructions (`x86_f16c`) where they exist. Both paths give
//! the same bits (round to nearest even on store, exact on load).

use half::f16;

/// Exact f16 → f32 for finite halves: shift exponent and mantissa into place and rescale by
/// 2^112 (subnormal halves become exact normal floats). Branch-free, so it vectorises.
#[inline(always)]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let mag = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(mag.to_bits() | sign)
}

/// Whether the F16C conversion instructions (and AVX) are available: detected at run time
/// under `std`, fixed at compile time without it; always `false` off x86-64.
pub(crate) fn f16c_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::x86_f16c::F16cToken::new().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Converts the rows `src[slots[c]·stride + add..][..d]` into `dst[c·d..][..d]`; with F16C
/// when `hw` and present (same bits either way).
pub(crate) fn f16_rows_to_f32(
    hw: bool,
    src: &[f16],
    rows: (&[usize], usize, usize),
    d: usize,
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if hw {
        if let Some(tok) = super::x86_f16c::F16cToken::new() {
            super::x86_f16c::gather(tok, src, rows, d, dst);
            return;
        }
    }
    let _ = hw;
    let (slots, stride, add) = rows;
    for (&s, o) in slots.iter().zip(dst.chunks_exact_mut(d)) {
        for (x, h) in o.iter_mut().zip(&src[s * stride + add..][..d]) {
            *x = f16_bits_to_f32(h.to_bits());
        }
    }
}

/// `dst[i] = f16::from_f32(src[i])` over the common length; with F16C when `hw` and
/// present (the same rounding as `half`).
pub(crate) fn f32_to_f16(hw: bool, src: &[f32], dst: &mut [f16]) {
    #[cfg(target_arch = "x86_64")]
    if hw {
        if let Some(tok) = super::x86_f16c::F16cToken::new() {
            super::x86_f16c::store(tok, src, dst);
            return;
        }
    }
    let _ = hw;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s);
    }
}
