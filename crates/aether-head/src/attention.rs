//! Allocation-free attention of one query position, shared by the full forward and
//! the stream so both run identical arithmetic.
//!
//! For query position `i` of a sequence of `n`, query head `h` (kv head
//! `h / (Hq/Hkv)`): `out = Σ_c softmax_c(q·k_c / √dh) · v_c` over the candidates `c`:
//! the sparse pattern's tokens then landmarks (block means), or every position
//! `j ≤ i` (causal) / `j < n` for the dense backend. Candidates older than
//! `tok_min` / `blk_min` (evicted from a cache) are skipped.

use aether_kernel::simd::fast_exp;
use aether_kernel::SparsePattern;

use crate::config::AttentionBackend;
use crate::math::{axpy, dot};

/// Where the keys, values and landmark means of a sequence live; rows are `Hkv·dh` wide.
pub(crate) trait KvSource {
    /// Keys of position `j`.
    fn key(&self, j: usize) -> &[f32];
    /// Values of position `j`.
    fn value(&self, j: usize) -> &[f32];
    /// Landmark (mean) key of block `b`.
    fn lkey(&self, b: usize) -> &[f32];
    /// Landmark (mean) value of block `b`.
    fn lvalue(&self, b: usize) -> &[f32];
}

/// A whole sequence stored contiguously `[n][Hkv·dh]`, with its block means.
pub(crate) struct SeqKv<'s> {
    pub k: &'s [f32],
    pub v: &'s [f32],
    pub lk: &'s [f32],
    pub lv: &'s [f32],
    pub width: usize,
}

impl KvSource for SeqKv<'_> {
    #[inline]
    fn key(&self, j: usize) -> &[f32] {
        &self.k[j * self.width..(j + 1) * self.width]
    }
    #[inline]
    fn value(&self, j: usize) -> &[f32] {
        &self.v[j * self.width..(j + 1) * self.width]
    }
    #[inline]
    fn lkey(&self, b: usize) -> &[f32] {
        &self.lk[b * self.width..(b + 1) * self.width]
    }
    #[inline]
    fn lvalue(&self, b: usize) -> &[f32] {
        &self.lv[b * self.width..(b + 1) * self.width]
    }
}

/// Static shape of one attention call.
#[derive(Clone, Copy)]
pub(crate) struct AttnShape {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Scratch capacity (candidates per query) for sequences up to `max_len`.
pub(crate) fn scratch_len(p: &SparsePattern, backend: AttentionBackend, max_len: usize) -> usize {
    match backend {
        AttentionBackend::Sparse => p.max_edges_per_query(max_len).max(1),
        AttentionBackend::Dense => max_len.max(1),
    }
}

/// Means of every block of `B` rows of `x` (`[n][width]`) into `out` (`[ceil(n/B)][width]`).
///
/// Rows are summed in ascending order and divided by the block's count: the stream's
/// cache computes its landmarks the same way, so the two agree bit for bit.
pub(crate) fn block_means(x: &[f32], n: usize, width: usize, bs: usize, out: &mut [f32]) {
    let blocks = n.div_ceil(bs);
    for b in 0..blocks {
        let lo = b * bs;
        let hi = ((b + 1) * bs).min(n);
        let o = &mut out[b * width..(b + 1) * width];
        o.iter_mut().for_each(|v| *v = 0.0);
        for t in lo..hi {
            for (ov, xv) in o.iter_mut().zip(&x[t * width..(t + 1) * width]) {
                *ov += xv;
            }
        }
        let cnt = (hi - lo) as f32;
        o.iter_mut().for_each(|v| *v /= cnt);
    }
}

/// Collects the candidates of query `i` of `n` into `idx` (at most `cap` of them):
/// the pattern's tokens `≥ tok_min` first, then its landmark blocks `≥ blk_min` (sparse),
/// or every position `j ≤ i` (causal) / `j < n` from `tok_min` (dense). Returns
/// `(candidates, tokens)`: entries `tokens..candidates` are block indices.
#[allow(clippy::too_many_arguments)]
pub(crate) fn candidates(
    p: &SparsePattern,
    backend: AttentionBackend,
    i: usize,
    n: usize,
    tok_min: usize,
    blk_min: usize,
    idx: &mut [usize],
    cap: usize,
) -> (usize, usize) {
    let cap = idx.len().min(cap);
    let mut ne = 0usize;
    let ntok;
    match backend {
        AttentionBackend::Sparse => {
            p.for_each_token(i, n, |j| {
                if j >= tok_min && ne < cap {
                    idx[ne] = j;
                    ne += 1;
                }
            });
            ntok = ne;
            p.for_each_landmark(i, n, |b| {
                if b >= blk_min && ne < cap {
                    idx[ne] = b;
                    ne += 1;
                }
            });
        }
        AttentionBackend::Dense => {
            let last = if p.causal { i + 1 } else { n };
            for j in tok_min..last {
                if ne < cap {
                    idx[ne] = j;
                    ne += 1;
                }
            }
            ntok = ne;
        }
    }
    (ne, ntok)
}

/// Attention output of query `i` (all heads, `q_row` is `Hq·dh`) into `out` (`Hq·dh`).
///
/// `idx` and `scores` are caller scratch of at least [`scratch_len`] elements.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_one<S: KvSource>(
    p: &SparsePattern,
    backend: AttentionBackend,
    shape: AttnShape,
    i: usize,
    n: usize,
    tok_min: usize,
    blk_min: usize,
    q_row: &[f32],
    src: &S,
    idx: &mut [usize],
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (ne, ntok) = candidates(p, backend, i, n, tok_min, blk_min, idx, scores.len());
    let dh = shape.head_dim;
    let group = shape.q_heads / shape.kv_heads;
    let scale = 1.0 / libm::sqrtf(dh as f32);
    for h in 0..shape.q_heads {
        let kh = h / group;
        let (lo, hi) = (kh * dh, (kh + 1) * dh);
        let qh = &q_row[h * dh..(h + 1) * dh];
        let mut m = f32::NEG_INFINITY;
        for c in 0..ne {
            let key = if c < ntok {
                src.key(idx[c])
            } else {
                src.lkey(idx[c])
            };
            let s = dot(qh, &key[lo..hi]) * scale;
            scores[c] = s;
            m = m.max(s);
        }
        let mut z = 0.0f32;
        for s in &mut scores[..ne] {
            *s = fast_exp(*s - m);
            z += *s;
        }
        let inv = 1.0 / z;
        let oh = &mut out[h * dh..(h + 1) * dh];
        oh.iter_mut().for_each(|o| *o = 0.0);
        for c in 0..ne {
            let val = if c < ntok {
                src.value(idx[c])
            } else {
                src.lvalue(idx[c])
            };
            axpy(scores[c] * inv, &val[lo..hi], oh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_kernel::reference::{naive_dense_attention, naive_sparse_attention};
    use aether_kernel::Tensor3;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[allow(clippy::too_many_arguments)]
    fn run(
        p: &SparsePattern,
        backend: AttentionBackend,
        n: usize,
        hq: usize,
        hk: usize,
        d: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
    ) -> Vec<f32> {
        let w = hk * d;
        let blocks = n.div_ceil(p.block_size);
        let (mut lk, mut lv) = (vec![0.0; blocks * w], vec![0.0; blocks * w]);
        block_means(k, n, w, p.block_size, &mut lk);
        block_means(v, n, w, p.block_size, &mut lv);
        let src = SeqKv {
            k,
            v,
            lk: &lk,
            lv: &lv,
            width: w,
        };
        let sl = scratch_len(p, backend, n);
        let (mut idx, mut sc) = (vec![0usize; sl], vec![0.0f32; sl]);
        let mut out = vec![0.0f32; n * hq * d];
        let shape = AttnShape {
            q_heads: hq,
            kv_heads: hk,
            head_dim: d,
        };
        for i in 0..n {
            attend_one(
                p,
                backend,
                shape,
                i,
                n,
                0,
                0,
                &q[i * hq * d..(i + 1) * hq * d],
                &src,
                &mut idx,
                &mut sc,
                &mut out[i * hq * d..(i + 1) * hq * d],
            );
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_naive_oracle(
            n in 1usize..80, kvh in 1usize..3, group in 1usize..4, d in 1usize..9,
            window in 0usize..20, bs in 1usize..12, causal: bool, log_stride: bool,
            landmarks: bool, g in proptest::option::of(0usize..10), seed in 0u64..1000,
        ) {
            let hq = kvh * group;
            let p = SparsePattern { window, block_size: bs, global_tokens: g.into_iter().collect(),
                causal, log_stride, landmarks };
            let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut r = |len: usize| -> Vec<f32> { (0..len).map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0 }).collect() };
            let (q, k, v) = (r(n * hq * d), r(n * kvh * d), r(n * kvh * d));
            let qt = Tensor3::from_vec(q.clone(), n, hq, d).unwrap();
            let kt = Tensor3::from_vec(k.clone(), n, kvh, d).unwrap();
            let vt = Tensor3::from_vec(v.clone(), n, kvh, d).unwrap();
            let want = naive_sparse_attention(&p, &qt, &kt, &vt).unwrap();
            let got = run(&p, AttentionBackend::Sparse, n, hq, kvh, d, &q, &k, &v);
            for (a, b) in got.iter().zip(want.as_slice()) { prop_assert!((a - b).abs() < 1e-5, "{a} vs {b}"); }
            let want = naive_dense_attention(&qt, &kt, &vt, causal).unwrap();
            let got = run(&p, AttentionBackend::Dense, n, hq, kvh, d, &q, &k, &v);
            for (a, b) in got.iter().zip(want.as_slice()) { prop_assert!((a - b).abs() < 1e-5, "{a} vs {b}"); }
        }
    }
}
