//! The portable scalar implementation of the 16-lane vector trait (the reference path,
//! and the only one on microcontrollers).

use super::*;

/// Portable scalar implementation (the reference path).
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

/// Scalar fast exp, the same algorithm as the vector paths (error bound in the module docs).
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    // Comparisons, not `clamp` (which panics on NaN) nor `f32::max`/`min` (libcalls
    // `fmaxf`/`fminf` on ARMv7E-M); the same values, a NaN input maps to EXP_LO.
    let lo = if x > EXP_LO { x } else { EXP_LO };
    let xc = if lo < EXP_HI { lo } else { EXP_HI };
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

/// `[f(0), …, f(LANES − 1)]` by a plain loop: `core::array::from_fn` is not always
/// inlined (on thumbv7em LTO kept its `try_from_fn` out of line, a call and a copy
/// through memory per vector operation).
#[inline(always)]
fn lanes(f: impl Fn(usize) -> f32) -> [f32; LANES] {
    let mut v = [0.0; LANES];
    for (i, x) in v.iter_mut().enumerate() {
        *x = f(i);
    }
    v
}

impl Isa for Scalar {
    type V = [f32; LANES];
    const FUSED: bool = false;
    const SCALAR: bool = true;
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
        lanes(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn mul(a: Self::V, b: Self::V) -> Self::V {
        lanes(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        lanes(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn max(a: Self::V, b: Self::V) -> Self::V {
        lanes(|i| if a[i] > b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn min(a: Self::V, b: Self::V) -> Self::V {
        lanes(|i| if a[i] < b[i] { a[i] } else { b[i] })
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
        lanes(|i| if i < count { a[i] } else { fill })
    }
    #[inline(always)]
    fn exp(x: Self::V) -> Self::V {
        lanes(|i| fast_exp(x[i]))
    }
}
