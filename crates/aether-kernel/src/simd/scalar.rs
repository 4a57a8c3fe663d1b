//! The portable scalar implementation of the 16-lane vector trait (the reference path,
//! and the only one on microcontrollers).

use super::*;

/// Portable scalar implementation (the reference path).
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

/// Scalar fast exp, the same algorithm as the vector paths (error bound in the module docs).
#[inline(always)]
// max/min on purpose: unlike `clamp`, they never panic and map a NaN input to a bound.
#[allow(clippy::manual_clamp)]
pub fn fast_exp(x: f32) -> f32 {
    let xc = x.max(EXP_LO).min(EXP_HI);
    let t = xc * LOG2E + 0.5;
    let mut fi = t as i32;
    if (fi as f32) > t {
        fi -= 1;
    }
    let fx = fi as f32;
    let r = xc - fx * LN2_HI - fx * LN2_LO;
    let mut y = P0;
    y = y * r + P1;
    y = y * r + P2;
    y = y * r + P3;
    y = y * r + P4;
    y = y * r + P5;
    let y = y * r * r + r + 1.0;
    let pow2 = f32::from_bits(((fi + 127) as u32) << 23);
    if x < EXP_LO {
        0.0
    } else {
        y * pow2
    }
}

impl Isa for Scalar {
    type V = [f32; LANES];
    const FUSED: bool = false;
    #[inline(always)]
    fn zero() -> Self::V {
        [0.0; LANES]
    }
    #[inline(always)]
    fn splat(x: f32) -> Self::V {
        [x; LANES]
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self::V {
        let mut v = [0.0; LANES];
        v.copy_from_slice(&s[..LANES]);
        v
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> Self::V {
        let mut v = [0.0; LANES];
        let n = s.len().min(LANES);
        v[..n].copy_from_slice(&s[..n]);
        v
    }
    #[inline(always)]
    fn store(s: &mut [f32], v: Self::V) {
        s[..LANES].copy_from_slice(&v);
    }
    #[inline(always)]
    fn store_partial(s: &mut [f32], v: Self::V) {
        let n = s.len().min(LANES);
        s[..n].copy_from_slice(&v[..n]);
    }
    #[inline(always)]
    fn add(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn mul(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn max(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| if a[i] > b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn min(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| if a[i] < b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn reduce_add(a: Self::V) -> f32 {
        // Pairwise, like the vector paths' tree reduction.
        let mut w = a;
        let mut len = LANES;
        while len > 1 {
            len /= 2;
            for i in 0..len {
                w[i] += w[i + len];
            }
        }
        w[0]
    }
    #[inline(always)]
    fn reduce_max(a: Self::V) -> f32 {
        a.iter()
            .copied()
            .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
    }
    #[inline(always)]
    fn keep_first(a: Self::V, count: usize, fill: f32) -> Self::V {
        core::array::from_fn(|i| if i < count { a[i] } else { fill })
    }
    #[inline(always)]
    fn exp(x: Self::V) -> Self::V {
        core::array::from_fn(|i| fast_exp(x[i]))
    }
}
