//! The storage element of a KV cache: `f32`, or IEEE half with exact conversion (F16C
//! behind the SIMD module where the CPU has it).

use super::*;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// Storage element of a KV cache (`f32` or `half::f16`); arithmetic is always f32.
pub trait KvElem: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    /// Short name of the storage type ("f32", "f16").
    const NAME: &'static str;
    /// Whether `x` is finite and stays finite once stored.
    fn representable(x: f32) -> bool;
    /// Rounds `src` into `dst` (equal lengths); `hw` allows the x86 F16C instructions
    /// (used only when present; the result is the same either way).
    fn store(src: &[f32], dst: &mut [Self], hw: bool);
    /// `src` as f32: borrowed for f32, converted into `buf` for f16.
    fn load<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];
    /// `src` as f32 without conversion, when the storage is f32.
    fn direct(src: &[Self]) -> Option<&[f32]>;
    /// Converts the rows `src[slots[c]·stride + add..][..dim]` into `dst[c·dim..][..dim]`;
    /// `hw` allows the x86 F16C instructions (used only when present; same result).
    fn gather(src: &[Self], rows: (&[usize], usize, usize), dim: usize, dst: &mut [f32], hw: bool);
}

impl KvElem for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn representable(x: f32) -> bool {
        x.is_finite()
    }
    #[inline]
    fn store(src: &[f32], dst: &mut [f32], _: bool) {
        dst.copy_from_slice(src);
    }
    #[inline(always)]
    fn load<'a>(src: &'a [f32], _buf: &'a mut [f32]) -> &'a [f32] {
        src
    }
    #[inline(always)]
    fn direct(src: &[f32]) -> Option<&[f32]> {
        Some(src)
    }
    #[inline]
    fn gather(src: &[f32], rows: (&[usize], usize, usize), d: usize, dst: &mut [f32], _: bool) {
        let (slots, stride, add) = rows;
        for (&s, o) in slots.iter().zip(dst.chunks_exact_mut(d)) {
            o.copy_from_slice(&src[s * stride + add..][..d]);
        }
    }
}

impl KvElem for f16 {
    const NAME: &'static str = "f16";
    #[inline]
    fn representable(x: f32) -> bool {
        // Magnitudes from 65520 up round to infinity; NaN fails the comparison.
        x.abs() < 65520.0
    }
    #[inline]
    fn store(src: &[f32], dst: &mut [f16], hw: bool) {
        simd::f32_to_f16(hw, src, dst);
    }
    #[inline(always)]
    fn load<'a>(src: &'a [f16], buf: &'a mut [f32]) -> &'a [f32] {
        let buf = &mut buf[..src.len()];
        for (b, s) in buf.iter_mut().zip(src) {
            *b = simd::f16_bits_to_f32(s.to_bits());
        }
        buf
    }
    #[inline(always)]
    fn direct(_src: &[f16]) -> Option<&[f32]> {
        None
    }
    #[inline]
    fn gather(src: &[f16], rows: (&[usize], usize, usize), d: usize, dst: &mut [f32], hw: bool) {
        simd::f16_rows_to_f32(hw, src, rows, d, dst);
    }
}
