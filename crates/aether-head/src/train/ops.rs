//! Dense building blocks of the training forward and backward, row-major `[rows, cols]`.
//!
//! * `matmul`: `C[m,n] = A[m,k]·B[k,n]` in i-k-j order (one axpy per `A` element);
//! * `matmul_tn_acc`: `dW[k,n] += Aᵀ·G` for `A[m,k]`, `G[m,n]` (weight gradients);
//! * `matmul_nt_acc`: `dX[m,k] += G·Wᵀ` for `G[m,n]`, `W[k,n]` (input gradients);
//! * layer norm `y = (x − μ)·rstd·g + b`, `rstd = 1/√(σ² + 1e-5)`, and its backward
//!   `dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))` with `dx̂ = dy·g`;
//! * tanh-GELU and its derivative; the sinusoidal positional table.

/// `c = a·b` with `a[m,k]`, `b[k,n]`, `c[m,n]` (overwritten).
pub(crate) fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    c[..m * n].iter_mut().for_each(|x| *x = 0.0);
    matmul_acc(a, b, c, m, k, n);
}

/// `c += a·b` with `a[m,k]`, `b[k,n]`, `c[m,n]`: the kernel's dispatched routine (fused
/// multiply-add on AVX2+FMA and AVX-512 machines, as before).
pub(crate) fn matmul_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    aether_kernel::simd::gemm_acc(a, b, c, m, k, n)
}

/// `dw += aᵀ·g` with `a[m,k]`, `g[m,n]`, `dw[k,n]` (the kernel's dispatched routine).
pub(crate) fn matmul_tn_acc(a: &[f32], g: &[f32], dw: &mut [f32], m: usize, k: usize, n: usize) {
    aether_kernel::simd::gemm_tn_acc(a, g, dw, m, k, n)
}

/// `dx += g·wᵀ` with `g[m,n]`, `w[k,n]`, `dx[m,k]`: transposes `w` once, then [`matmul_acc`].
pub(crate) fn matmul_nt_acc(g: &[f32], w: &[f32], dx: &mut [f32], m: usize, k: usize, n: usize) {
    let mut wt = vec![0.0f32; k * n];
    for (kk, wrow) in w.chunks_exact(n).enumerate().take(k) {
        for (j, &x) in wrow.iter().enumerate() {
            wt[j * k + kk] = x;
        }
    }
    matmul_acc(g, &wt, dx, m, n, k);
}

pub(crate) use aether_kernel::simd::{add_rows, col_sum_acc};

/// Layer norm over each row of `x[m,d]`; keeps `x̂` and `rstd` for the backward.
pub(crate) fn layer_norm(
    x: &[f32],
    g: &[f32],
    b: &[f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
    y: &mut [f32],
    d: usize,
) {
    for (((xr, xh), r), yr) in x
        .chunks_exact(d)
        .zip(xhat.chunks_exact_mut(d))
        .zip(rstd.iter_mut())
        .zip(y.chunks_exact_mut(d))
    {
        // The statistics of the deployed layer norm, so both compute the same row.
        let (mean, rs) = crate::math::layer_norm_stats(xr);
        *r = rs;
        for ((((h, &xv), yv), &gv), &bv) in xh.iter_mut().zip(xr).zip(yr.iter_mut()).zip(g).zip(b) {
            *h = (xv - mean) * rs;
            *yv = *h * gv + bv;
        }
    }
}

/// Layer-norm backward: `dx += LNᵀ(dy)`, `dg += Σ dy·x̂`, `db += Σ dy`; `tmp` holds `d` floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_backward(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    g: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
    tmp: &mut [f32],
    d: usize,
) {
    let inv_d = 1.0 / d as f32;
    for (((dyr, xh), &rs), dxr) in dy
        .chunks_exact(d)
        .zip(xhat.chunks_exact(d))
        .zip(rstd)
        .zip(dx.chunks_exact_mut(d))
    {
        let mut s1 = 0.0f32;
        let mut s2 = 0.0f32;
        for c in 0..d {
            dg[c] += dyr[c] * xh[c];
            db[c] += dyr[c];
            let t = dyr[c] * g[c];
            tmp[c] = t;
            s1 += t;
            s2 += t * xh[c];
        }
        let (m1, m2) = (s1 * inv_d, s2 * inv_d);
        for c in 0..d {
            dxr[c] += rs * (tmp[c] - m1 - xh[c] * m2);
        }
    }
}

pub(crate) use crate::math::gelu_and_tanh;
use crate::math::{GELU_A, GELU_C};

/// `GELU(z)` (the inference function, [`crate::math::gelu`]).
#[cfg(test)]
#[inline]
pub(crate) fn gelu(z: f32) -> f32 {
    crate::math::gelu(z)
}

/// `d GELU / dz`.
#[cfg(test)]
#[inline]
pub(crate) fn gelu_grad(z: f32) -> f32 {
    gelu_grad_with_tanh(z, gelu_and_tanh(z).1)
}

/// `d GELU / dz` given `t` from [`gelu_and_tanh`].
#[inline]
pub(crate) fn gelu_grad_with_tanh(z: f32, t: f32) -> f32 {
    0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * z * z)
}

/// Sinusoidal table `[n, d]`: `pe(t)[2c] = sin(t/10000^(2c/d))`, `pe(t)[2c+1] = cos(…)`,
/// row `t` built by the deployed head's [`crate::math::add_positional_with`] (same bits).
pub(crate) fn positional_table(n: usize, d: usize) -> Vec<f32> {
    let steps = crate::math::positional_steps(d);
    let mut pe = vec![0.0f32; n * d];
    for (t, row) in pe.chunks_exact_mut(d).enumerate() {
        crate::math::add_positional_with(t, &steps, row);
    }
    pe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
            }
        }
        c
    }

    fn seq(len: usize, s: f32) -> Vec<f32> {
        (0..len).map(|i| ((i * 37 % 11) as f32 - 5.0) * s).collect()
    }

    #[test]
    fn matmuls_agree_with_naive() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (4, 2, 9), (0, 3, 2)] {
            let a = seq(m * k, 0.1);
            let b = seq(k * n, 0.3);
            let mut c = vec![1.0; m * n];
            matmul(&a, &b, &mut c, m, k, n);
            let want = naive(&a, &b, m, k, n);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-5);
            }
            // aᵀ·g with g = c: compare to naive on the transposed a.
            let mut at = vec![0.0; k * m];
            for i in 0..m {
                for t in 0..k {
                    at[t * m + i] = a[i * k + t];
                }
            }
            let mut dw = vec![0.0; k * n];
            matmul_tn_acc(&a, &c, &mut dw, m, k, n);
            for (x, y) in dw.iter().zip(&naive(&at, &c, k, m, n)) {
                assert!((x - y).abs() < 1e-4);
            }
            let mut bt = vec![0.0; n * k];
            for t in 0..k {
                for j in 0..n {
                    bt[j * k + t] = b[t * n + j];
                }
            }
            let mut dx = vec![0.0; m * k];
            matmul_nt_acc(&c, &b, &mut dx, m, k, n);
            for (x, y) in dx.iter().zip(&naive(&c, &bt, m, n, k)) {
                assert!((x - y).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn gelu_grad_matches_difference() {
        for &z in &[-4.0f32, -1.3, -0.2, 0.0, 0.4, 1.7, 3.0] {
            let h = 1e-2f64;
            let g = |z: f64| {
                0.5 * z
                    * (1.0
                        + ((2.0 / core::f64::consts::PI).sqrt() * (z + 0.044715 * z * z * z))
                            .tanh())
            };
            let fd = (g(z as f64 + h) - g(z as f64 - h)) / (2.0 * h);
            assert!((gelu_grad(z) as f64 - fd).abs() < 1e-4, "z {z}");
            assert!((gelu(z) as f64 - g(z as f64)).abs() < 1e-5);
        }
    }

    #[test]
    fn positional_table_formula() {
        let pe = positional_table(5, 5);
        assert_eq!(pe[0], 0.0);
        assert_eq!(pe[1], 1.0);
        assert!((pe[3 * 5] - 3f32.sin()).abs() < 1e-6);
        assert!((pe[3 * 5 + 3] - (3.0 / 10000f64.powf(2.0 / 5.0)).cos() as f32).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_and_positions_are_the_deployed_ones_bit_for_bit() {
        let (n, d) = (7, 6);
        let x = seq(n * d, 0.37);
        let g = seq(d, 0.11);
        let b = seq(d, -0.05);
        let (mut xhat, mut rstd, mut y) = (vec![0.0; n * d], vec![0.0; n], vec![0.0; n * d]);
        layer_norm(&x, &g, &b, &mut xhat, &mut rstd, &mut y, d);
        let mut pe = vec![0.0f32; d];
        let table = positional_table(n, d);
        for t in 0..n {
            let mut want = vec![0.0f32; d];
            crate::math::layer_norm(&x[t * d..(t + 1) * d], &g, &b, &mut want);
            assert_eq!(&y[t * d..(t + 1) * d], &want[..], "layer norm row {t}");
            pe.iter_mut().for_each(|v| *v = 0.0);
            crate::math::add_positional(t, &mut pe);
            assert_eq!(&table[t * d..(t + 1) * d], &pe[..], "positions row {t}");
        }
    }
}
