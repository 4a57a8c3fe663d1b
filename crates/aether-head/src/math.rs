//! Row-level building blocks shared by the full forward, the stream and training.
//!
//! Every function works on one position (one row) so the full forward and the
//! streaming path run the same arithmetic in the same order.
//! - [`vec_mat`]: `out[o] = Σᵢ x[i]·W[i, o] (+ b[o])`, `W` row-major `[in, out]`.
//! - [`layer_norm`]: `(x − mean) / sqrt(var + 1e-5) · g + b` (population variance).
//! - [`gelu`]: `0.5 z (1 + tanh(√(2/π)(z + 0.044715 z³)))`.
//! - [`add_positional`]: `x[2c] += sin(t / 10000^(2c/D))`, `x[2c+1] += cos(…)`.

/// LayerNorm epsilon (docs/model.md).
pub const LN_EPS: f32 = 1e-5;

/// `Σ a[i]·b[i]` over the common length, eight independent accumulators.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y[i] += alpha · x[i]` over the common length.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `out = x·W (+ bias)` for one row: `x[in]`, `W[in × out]` row-major, `out[out]`.
///
/// Lengths are the caller's invariant (checked when the model is built). On x86-64
/// with `std`, an AVX2 build of the same body is chosen at run time; Rust never fuses
/// `a·b + c`, so every path gives the same bits.
#[inline]
pub fn vec_mat(x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { x86_64_avx2_vec_mat(x, w, bias, out, false) };
        return;
    }
    vec_mat_body(x, w, bias, out, false);
}

/// `out += x·W (+ bias)` for one row (residual update); see [`vec_mat`].
#[inline]
pub fn vec_mat_add(x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { x86_64_avx2_vec_mat(x, w, bias, out, true) };
        return;
    }
    vec_mat_body(x, w, bias, out, true);
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn x86_64_avx2_vec_mat(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    accumulate: bool,
) {
    vec_mat_body(x, w, bias, out, accumulate);
}

/// The one portable body of [`vec_mat`] / [`vec_mat_add`].
#[inline(always)]
fn vec_mat_body(x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32], accumulate: bool) {
    let n_out = out.len();
    if !accumulate {
        out.iter_mut().for_each(|o| *o = 0.0);
    }
    if let Some(b) = bias {
        for (o, bi) in out.iter_mut().zip(b) {
            *o += bi;
        }
    }
    if n_out == 0 {
        return;
    }
    let rows = x.len().min(w.len() / n_out);
    // Blocks of 16 output columns stay in registers across all rows (rows ascending, as
    // in the plain loop, so the bits do not depend on the blocking).
    let mut c = 0;
    while c + 16 <= n_out {
        let mut acc = [0.0f32; 16];
        acc.copy_from_slice(&out[c..c + 16]);
        for (i, xi) in x[..rows].iter().enumerate() {
            let wr = &w[i * n_out + c..i * n_out + c + 16];
            for k in 0..16 {
                acc[k] += *xi * wr[k];
            }
        }
        out[c..c + 16].copy_from_slice(&acc);
        c += 16;
    }
    for (o, col) in out[c..].iter_mut().zip(c..n_out) {
        for (i, xi) in x[..rows].iter().enumerate() {
            *o += *xi * w[i * n_out + col];
        }
    }
}

/// LayerNorm of one row into `out` (same length as `x`).
pub fn layer_norm(x: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / libm::sqrtf(var + LN_EPS);
    for (((o, xi), gi), bi) in out.iter_mut().zip(x).zip(g).zip(b) {
        *o = (xi - mean) * inv * gi + bi;
    }
}

/// LayerNorm of one row in place.
pub fn layer_norm_in_place(x: &mut [f32], g: &[f32], b: &[f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / libm::sqrtf(var + LN_EPS);
    for ((xi, gi), bi) in x.iter_mut().zip(g).zip(b) {
        *xi = (*xi - mean) * inv * gi + bi;
    }
}

/// The tanh approximation of GELU.
#[inline]
pub fn gelu(z: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    0.5 * z * (1.0 + libm::tanhf(C * (z + 0.044_715 * z * z * z)))
}

/// Adds the sinusoidal positional signal of position `t` to the row `x` (width `D`).
///
/// Computed in f64 and rounded once, so every platform gets the same f32 values.
pub fn add_positional(t: usize, x: &mut [f32]) {
    let d = x.len() as f64;
    for (i, xi) in x.iter_mut().enumerate() {
        let c2 = (i & !1) as f64;
        let angle = t as f64 / libm::pow(10000.0, c2 / d);
        let pe = if i % 2 == 0 {
            libm::sin(angle)
        } else {
            libm::cos(angle)
        };
        *xi += pe as f32;
    }
}

/// `(u − mean) / std` per feature, in place.
pub fn normalise_input(u: &mut [f32], mean: &[f32], std: &[f32]) {
    for ((ui, m), s) in u.iter_mut().zip(mean).zip(std) {
        *ui = (*ui - m) / s;
    }
}

/// Numerically stable softmax of `logits` into `out`.
pub fn softmax(logits: &[f32], out: &mut [f32]) {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = libm::expf(l - m);
        z += *o;
    }
    for o in out.iter_mut() {
        *o /= z;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_on_odd_lengths() {
        for n in [0usize, 1, 7, 8, 9, 33] {
            let a: alloc::vec::Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: alloc::vec::Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn vec_mat_is_row_major_x_times_w() {
        // x = [1, 2], W = [[1, 2, 3], [4, 5, 6]] -> [9, 12, 15]
        let mut out = [0.0f32; 3];
        vec_mat(&[1.0, 2.0], &[1., 2., 3., 4., 5., 6.], None, &mut out);
        assert_eq!(out, [9.0, 12.0, 15.0]);
        vec_mat(
            &[1.0, 2.0],
            &[1., 2., 3., 4., 5., 6.],
            Some(&[1., 1., 1.]),
            &mut out,
        );
        assert_eq!(out, [10.0, 13.0, 16.0]);
        vec_mat_add(&[1.0, 0.0], &[1., 2., 3., 4., 5., 6.], None, &mut out);
        assert_eq!(out, [11.0, 15.0, 19.0]);
    }

    #[test]
    fn dispatched_vec_mat_equals_portable_body_bit_for_bit() {
        for (n_in, n_out) in [(1usize, 1usize), (3, 5), (16, 128), (17, 33), (128, 16)] {
            let x: alloc::vec::Vec<f32> = (0..n_in).map(|i| (i as f32 * 0.37).sin()).collect();
            let w: alloc::vec::Vec<f32> =
                (0..n_in * n_out).map(|i| (i as f32 * 0.11).cos()).collect();
            let b: alloc::vec::Vec<f32> = (0..n_out).map(|i| i as f32 * 0.01).collect();
            for acc in [false, true] {
                let mut fast = alloc::vec![0.5f32; n_out];
                let mut slow = fast.clone();
                if acc {
                    vec_mat_add(&x, &w, Some(&b), &mut fast);
                } else {
                    vec_mat(&x, &w, Some(&b), &mut fast);
                }
                vec_mat_body(&x, &w, Some(&b), &mut slow, acc);
                assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn layer_norm_zero_mean_unit_var() {
        let x = [1.0f32, 2.0, 3.0, 6.0];
        let mut o = [0.0; 4];
        layer_norm(&x, &[1.0; 4], &[0.0; 4], &mut o);
        let m: f32 = o.iter().sum::<f32>() / 4.0;
        let v: f32 = o.iter().map(|x| x * x).sum::<f32>() / 4.0;
        assert!(m.abs() < 1e-6 && (v - 1.0).abs() < 1e-4);
        let mut y = x;
        layer_norm_in_place(&mut y, &[1.0; 4], &[0.0; 4]);
        assert_eq!(y, o);
    }

    #[test]
    fn gelu_and_positional_values() {
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu(-1.0) + 0.158_808).abs() < 1e-5);
        let mut x = [0.0f32; 4];
        add_positional(0, &mut x);
        assert_eq!(x, [0.0, 1.0, 0.0, 1.0]);
        let mut x = [0.0f32; 4];
        add_positional(3, &mut x);
        // c = 0: sin(3), cos(3); c = 1: 3 / 10000^(2/4) = 0.03.
        assert!((x[0] - 3f32.sin()).abs() < 1e-6 && (x[1] - 3f32.cos()).abs() < 1e-6);
        assert!((x[2] - 0.03f32.sin()).abs() < 1e-6 && (x[3] - 0.03f32.cos()).abs() < 1e-6);
    }
}
