//! Naive reference implementations: the in-repo oracle every fast path is tested against.
//!
//! Straightforward loops in f64, no blocking, no SIMD, allocation per query. Slow on
//! purpose: obviously correct is their only job.

use alloc::vec::Vec;

use crate::error::Result;
use crate::pattern::SparsePattern;
use crate::tensor::{check_qkv, Tensor3};

/// Mean key (or value) of every block, `[blocks][heads][dim]` as f64; block `b`
/// covers tokens `[b·B, min((b+1)·B, n))`.
pub fn block_means(x: &Tensor3, block_size: usize) -> Vec<f64> {
    let (n, h, d) = x.shape();
    if block_size == 0 {
        return Vec::new();
    }
    let blocks = n.div_ceil(block_size);
    let mut out = alloc::vec![0.0f64; blocks * h * d];
    for b in 0..blocks {
        let lo = b * block_size;
        let hi = ((b + 1) * block_size).min(n);
        let cnt = (hi - lo) as f64;
        for t in lo..hi {
            for (o, &xv) in out[b * h * d..(b + 1) * h * d]
                .iter_mut()
                .zip(x.row(t).unwrap_or(&[]))
            {
                *o += f64::from(xv) / cnt;
            }
        }
    }
    out
}

fn softmax_weighted(scores: &[f64], values: &[&[f64]], d: usize, out: &mut [f32]) {
    if scores.is_empty() {
        out.iter_mut().for_each(|o| *o = 0.0);
        return;
    }
    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = scores.iter().map(|s| libm::exp(s - m)).collect();
    let z: f64 = w.iter().sum();
    for (c, o) in out.iter_mut().enumerate().take(d) {
        let acc: f64 = w.iter().zip(values).map(|(wi, v)| wi * v[c]).sum();
        *o = (acc / z) as f32;
    }
}

fn dot64(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * y).sum()
}

/// Naive sparse attention over the pattern's candidates (tokens and landmarks).
pub fn naive_sparse_attention(
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> Result<Tensor3> {
    p.validate()?;
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let group = hq / hk;
    let scale = 1.0 / libm::sqrt(d as f64);
    let to64 = |t: &Tensor3| {
        t.as_slice()
            .iter()
            .map(|&x| f64::from(x))
            .collect::<Vec<f64>>()
    };
    let (k64, v64) = (to64(k), to64(v));
    let (kl, vl) = (block_means(k, p.block_size), block_means(v, p.block_size));
    let mut out = Tensor3::zeros(n, hq, d)?;
    for i in 0..n {
        for h in 0..hq {
            let kh = h / group;
            let qrow = q.head(i, h).unwrap_or(&[]);
            let mut scores = Vec::new();
            let mut vals: Vec<&[f64]> = Vec::new();
            p.for_each_token(i, n, |j| {
                let off = (j * hk + kh) * d;
                scores.push(dot64(qrow, &k64[off..off + d]) * scale);
                vals.push(&v64[off..off + d]);
            });
            p.for_each_landmark(i, n, |b| {
                let off = (b * hk + kh) * d;
                scores.push(dot64(qrow, &kl[off..off + d]) * scale);
                vals.push(&vl[off..off + d]);
            });
            let o = &mut out.as_mut_slice()[(i * hq + h) * d..(i * hq + h + 1) * d];
            softmax_weighted(&scores, &vals, d, o);
        }
    }
    Ok(out)
}

/// Naive dense attention (full softmax over all keys, or over `j ≤ i` when causal).
pub fn naive_dense_attention(
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
) -> Result<Tensor3> {
    let (n, hq, hk, d) = check_qkv(q, k, v)?;
    let group = hq / hk;
    let scale = 1.0 / libm::sqrt(d as f64);
    let v64: Vec<f64> = v.as_slice().iter().map(|&x| f64::from(x)).collect();
    let k64: Vec<f64> = k.as_slice().iter().map(|&x| f64::from(x)).collect();
    let mut out = Tensor3::zeros(n, hq, d)?;
    for i in 0..n {
        for h in 0..hq {
            let kh = h / group;
            let qrow = q.head(i, h).unwrap_or(&[]);
            let last = if causal { i + 1 } else { n };
            let scores: Vec<f64> = (0..last)
                .map(|j| dot64(qrow, &k64[(j * hk + kh) * d..(j * hk + kh + 1) * d]) * scale)
                .collect();
            let vals: Vec<&[f64]> = (0..last)
                .map(|j| &v64[(j * hk + kh) * d..(j * hk + kh + 1) * d])
                .collect();
            let o = &mut out.as_mut_slice()[(i * hq + h) * d..(i * hq + h + 1) * d];
            softmax_weighted(&scores, &vals, d, o);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturated_sparse_equals_dense() {
        let n = 9;
        let q = Tensor3::from_vec(
            (0..n * 2 * 3)
                .map(|x| ((x * 7 % 11) as f32) * 0.1)
                .collect(),
            n,
            2,
            3,
        )
        .unwrap();
        let k = Tensor3::from_vec(
            (0..n * 3).map(|x| ((x * 5 % 13) as f32) * 0.1).collect(),
            n,
            1,
            3,
        )
        .unwrap();
        let v = Tensor3::from_vec(
            (0..n * 3).map(|x| ((x * 3 % 7) as f32) - 3.0).collect(),
            n,
            1,
            3,
        )
        .unwrap();
        for causal in [true, false] {
            let p = SparsePattern {
                window: n,
                block_size: 4,
                global_tokens: alloc::vec![0],
                causal,
                log_stride: true,
                landmarks: false,
            };
            let s = naive_sparse_attention(&p, &q, &k, &v).unwrap();
            let dn = naive_dense_attention(&q, &k, &v, causal).unwrap();
            for (a, b) in s.as_slice().iter().zip(dn.as_slice()) {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }
}
