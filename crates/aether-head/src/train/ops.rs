//! Dense building blocks of the training forward and backward, row-major `[rows, cols]`.
//!
//! * `matmul`: `C[m,n] = A[m,k]·B[k,n]` in i-k-j order (one axpy per `A` element);
//! * `matmul_tn_acc`: `dW[k,n] += Aᵀ·G` for `A[m,k]`, `G[m,n]` (weight gradients);
//! * `matmul_nt_acc`: `dX[m,k] += G·Wᵀ` for `G[m,n]`, `W[k,n]` (input gradients);
//! * layer norm `y = (x − μ)·rstd·g + b`, `rstd = 1/√(σ² + 1e-5)`, and its backward
//!   `dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))` with `dx̂ = dy·g`;
//! * tanh-GELU and its derivative; the sinusoidal positional table.

/// Defines `$name(args)`: runs `$body::<true>` compiled for AVX2 + FMA when the CPU has
/// both (std caches the detection), else the portable `$body::<false>`. One dispatch per
/// call of a whole matrix routine, never per vector.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) => $body:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    #[target_feature(enable = "avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn fast($($a: $t),*) {
                        $body::<true>($($a),*)
                    }
                    // SAFETY: AVX2 and FMA were detected on this CPU just above.
                    return unsafe { fast($($a),*) };
                }
            }
            $body::<false>($($a),*)
        }
    };
}

/// `c = a·b` with `a[m,k]`, `b[k,n]`, `c[m,n]` (overwritten).
pub(crate) fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    c[..m * n].iter_mut().for_each(|x| *x = 0.0);
    matmul_acc(a, b, c, m, k, n);
}

/// `acc[l] += x[l]·a` for a fixed-width tile (kept in registers by the caller's loop).
#[inline(always)]
fn fma_tile<const FMA: bool, const T: usize>(acc: &mut [f32; T], x: &[f32], a: f32) {
    let x: &[f32; T] = x[..T].try_into().expect("tile slice has T values");
    for l in 0..T {
        acc[l] = if FMA {
            x[l].mul_add(a, acc[l])
        } else {
            acc[l] + x[l] * a
        };
    }
}

/// `out[j..j+T] += Σ_t coef(t)·row(t)[j..j+T]` for every tile of `T` columns from `j`,
/// returning the first column not covered. The tile accumulates in registers.
#[inline(always)]
fn tiles<const FMA: bool, const T: usize>(
    out: &mut [f32],
    mut j: usize,
    terms: usize,
    coef: impl Fn(usize) -> f32,
    row: impl Fn(usize) -> usize,
    src: &[f32],
) -> usize {
    while j + T <= out.len() {
        let mut acc = [0.0f32; T];
        acc.copy_from_slice(&out[j..j + T]);
        for t in 0..terms {
            let o = row(t) + j;
            fma_tile::<FMA, T>(&mut acc, &src[o..o + T], coef(t));
        }
        out[j..j + T].copy_from_slice(&acc);
        j += T;
    }
    j
}

/// `out[n] += Σ_t coef(t)·src[row(t) ..][..n]` with 32- and 8-wide register tiles.
#[inline(always)]
pub(crate) fn combine_rows<const FMA: bool>(
    out: &mut [f32],
    terms: usize,
    coef: impl Fn(usize) -> f32 + Copy,
    row: impl Fn(usize) -> usize + Copy,
    src: &[f32],
) {
    let j = tiles::<FMA, 32>(out, 0, terms, coef, row, src);
    let j = tiles::<FMA, 8>(out, j, terms, coef, row, src);
    let j = tiles::<FMA, 1>(out, j, terms, coef, row, src);
    debug_assert_eq!(j, out.len());
}

#[inline(always)]
fn matmul_acc_k<const FMA: bool>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    for (arow, crow) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)).take(m) {
        combine_rows::<FMA>(crow, k, |t| arow[t], |t| t * n, b);
    }
}

multiversion! {
    /// `c += a·b` with `a[m,k]`, `b[k,n]`, `c[m,n]` (each row of `c` in register tiles).
    pub(crate) fn matmul_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) => matmul_acc_k
}

#[inline(always)]
fn matmul_tn_acc_k<const FMA: bool>(
    a: &[f32],
    g: &[f32],
    dw: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    for (kk, dwrow) in dw.chunks_exact_mut(n).enumerate().take(k) {
        combine_rows::<FMA>(dwrow, m, |i| a[i * k + kk], |i| i * n, g);
    }
}

multiversion! {
    /// `dw += aᵀ·g` with `a[m,k]`, `g[m,n]`, `dw[k,n]` (each row of `dw` in register tiles).
    pub(crate) fn matmul_tn_acc(a: &[f32], g: &[f32], dw: &mut [f32], m: usize, k: usize, n: usize) => matmul_tn_acc_k
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

#[inline(always)]
fn add_rows_k<const FMA: bool>(x: &mut [f32], b: &[f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        row.iter_mut().zip(b).for_each(|(r, &bv)| *r += bv);
    }
}

multiversion! {
    /// Adds `b[n]` to every row of `x[m,n]`.
    pub(crate) fn add_rows(x: &mut [f32], b: &[f32], n: usize) => add_rows_k
}

#[inline(always)]
fn col_sum_acc_k<const FMA: bool>(g: &[f32], db: &mut [f32], n: usize) {
    for row in g.chunks_exact(n) {
        db.iter_mut().zip(row).for_each(|(d, &r)| *d += r);
    }
}

multiversion! {
    /// `db += Σ_rows g` for `g[m,n]`.
    pub(crate) fn col_sum_acc(g: &[f32], db: &mut [f32], n: usize) => col_sum_acc_k
}

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
    let den = crate::math::positional_denominators(d);
    let mut pe = vec![0.0f32; n * d];
    for (t, row) in pe.chunks_exact_mut(d).enumerate() {
        crate::math::add_positional_with(t, &den, row);
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
