//! Vector primitives used by every kernel: dot, axpy, scale, exp.
//!
//! Portable scalar versions; the dispatch to AVX-512 / AVX2+FMA lives here too.

/// `Σ a[i]·b[i]` over the common length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y[i] += alpha · x[i]` over the common length.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `y[i] *= alpha`.
#[inline]
pub fn scale(alpha: f32, y: &mut [f32]) {
    for yi in y {
        *yi *= alpha;
    }
}

/// `e^x` (libm; the fast variant replaces this with a bounded-error approximation).
#[inline]
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
}
