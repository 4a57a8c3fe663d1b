//! Attention forward (keeping the probabilities) and backward for training.
//!
//! For query `i`, head `h` (kv head `h / (Hq/Hkv)`) and candidates `j` (pattern tokens,
//! landmark blocks, or every allowed position when dense):
//! `sⱼ = q·kⱼ/√dh`, `pⱼ = softmax(s)ⱼ`, `out = Σ pⱼ vⱼ`. A landmark's key/value is the
//! mean of the keys/values of its block. Backward, with `g = dout`:
//! `dpⱼ = g·vⱼ`, `dsⱼ = pⱼ(dpⱼ − Σₖ pₖ dpₖ)`, `dq = Σ dsⱼ kⱼ/√dh`, `dkⱼ += dsⱼ q/√dh`,
//! `dvⱼ += pⱼ g`; landmark gradients are spread evenly over the block's tokens.
//! Candidate lists depend only on the pattern and `N`, so a [`AttnPlan`] is built once
//! per sequence length and shared by every window and head.
//!
//! Shapes: `q[N, Hq·dh]`; keys and values are *extended* `kx, vx[N + blocks, Hkv·dh]`:
//! rows `0..N` the tokens, rows `N + b` the landmark of block `b`, so candidate `c`
//! is simply row `c`. Probabilities take `Σᵢ mᵢ·Hq` for `mᵢ` candidates of query `i`.

use aether_kernel::simd::fast_exp;

use super::config::AttentionKind;
use super::ops::{combine_rows, dot_k, multiversion};

/// The candidates of every query of a sequence of length `n`, in CSR form.
///
/// A candidate `c < n` is token `c`; `c ≥ n` is the landmark of block `c − n`.
#[derive(Debug, Clone)]
pub struct AttnPlan {
    n: usize,
    offsets: Vec<usize>,
    cands: Vec<u32>,
    block_size: usize,
    blocks: usize,
}

impl AttnPlan {
    /// Enumerates the candidates of `kind` for a sequence of `n` positions.
    pub fn new(kind: &AttentionKind, n: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        let mut cands = Vec::new();
        offsets.push(0);
        let (mut block_size, mut blocks) = (1, 0);
        match kind {
            AttentionKind::Sparse(p) => {
                if p.landmarks && p.block_size > 0 {
                    block_size = p.block_size;
                    blocks = n.div_ceil(block_size);
                }
                for i in 0..n {
                    p.for_each_token(i, n, |j| cands.push(j as u32));
                    if blocks > 0 {
                        p.for_each_landmark(i, n, |b| cands.push((n + b) as u32));
                    }
                    offsets.push(cands.len());
                }
            }
            AttentionKind::Dense { causal } => {
                for i in 0..n {
                    let last = if *causal { i + 1 } else { n };
                    cands.extend(0..last as u32);
                    offsets.push(cands.len());
                }
            }
        }
        Self {
            n,
            offsets,
            cands,
            block_size,
            blocks,
        }
    }

    /// Sequence length the plan was built for.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the plan is for an empty sequence.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Total candidates over all queries (edges of one head).
    pub fn edges(&self) -> usize {
        self.cands.len()
    }

    /// Number of landmark blocks (0 without landmarks).
    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }
}

/// Head geometry of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub hq: usize,
    pub hkv: usize,
    pub dh: usize,
}

/// Fills the landmark rows `N..N+blocks` of `x[N + blocks, w]` with block means.
#[inline(always)]
fn block_means<const FMA: bool>(plan: &AttnPlan, x: &mut [f32], w: usize) {
    let n = plan.n;
    let (tokens, lms) = x.split_at_mut(n * w);
    for (b, o) in lms.chunks_exact_mut(w).enumerate().take(plan.blocks) {
        let lo = b * plan.block_size;
        let hi = ((b + 1) * plan.block_size).min(n);
        o.iter_mut().for_each(|v| *v = 0.0);
        let inv = 1.0 / (hi - lo) as f32;
        combine_rows::<FMA>(o, hi - lo, |_| inv, |t| (lo + t) * w, tokens);
    }
}

/// `Σ x[i]` with eight accumulators in a fixed order.
#[inline(always)]
fn sum_k(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let c = x.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for ch in c {
        for l in 0..8 {
            acc[l] += ch[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

multiversion! {
    /// Forward: fills the landmark rows of `kx`, `vx`, then `probs` and `out[N, Hq·dh]`.
    pub(crate) fn forward(
        plan: &AttnPlan,
        hd: Heads,
        q: &[f32],
        kx: &mut [f32],
        vx: &mut [f32],
        probs: &mut [f32],
        out: &mut [f32],
    ) => forward_k
}

#[inline(always)]
fn forward_k<const FMA: bool>(
    plan: &AttnPlan,
    hd: Heads,
    q: &[f32],
    kx: &mut [f32],
    vx: &mut [f32],
    probs: &mut [f32],
    out: &mut [f32],
) {
    let n = plan.n;
    let (hq, dh) = (hd.hq, hd.dh);
    let wkv = hd.hkv * dh;
    let group = hq / hd.hkv;
    let scale = 1.0 / (dh as f32).sqrt();
    block_means::<FMA>(plan, kx, wkv);
    block_means::<FMA>(plan, vx, wkv);
    let (kx, vx) = (&*kx, &*vx);
    out[..n * hq * dh].iter_mut().for_each(|x| *x = 0.0);
    for i in 0..n {
        let cands = &plan.cands[plan.offsets[i]..plan.offsets[i + 1]];
        let m = cands.len();
        let pbase = plan.offsets[i] * hq;
        for h in 0..hq {
            let off = (h / group) * dh;
            let qr = &q[(i * hq + h) * dh..(i * hq + h + 1) * dh];
            let p = &mut probs[pbase + h * m..pbase + (h + 1) * m];
            let mut mx = f32::NEG_INFINITY;
            for (pj, &c) in p.iter_mut().zip(cands) {
                let r = c as usize * wkv + off;
                *pj = dot_k::<FMA>(qr, &kx[r..r + dh]) * scale;
                mx = mx.max(*pj);
            }
            // Exponentials first (a vectorisable loop), then a fixed-order 8-lane sum.
            p.iter_mut().for_each(|pj| *pj = fast_exp(*pj - mx));
            let inv = 1.0 / sum_k(p);
            p.iter_mut().for_each(|pj| *pj *= inv);
            let p: &[f32] = p;
            let o = &mut out[(i * hq + h) * dh..(i * hq + h + 1) * dh];
            combine_rows::<FMA>(o, m, |j| p[j], |j| cands[j] as usize * wkv + off, vx);
        }
    }
}

multiversion! {
    /// Backward: `dq[N, Hq·dh]` and the extended `dkx`, `dvx[N + blocks, Hkv·dh]` are
    /// overwritten; on return the landmark gradients are already spread into rows `0..N`.
    pub(crate) fn backward(
        plan: &AttnPlan,
        hd: Heads,
        q: &[f32],
        kx: &[f32],
        vx: &[f32],
        probs: &[f32],
        dout: &[f32],
        dq: &mut [f32],
        dkx: &mut [f32],
        dvx: &mut [f32],
    ) => backward_k
}

/// Grouped backward: `dq` rows accumulate in register tiles; each candidate's `dk`/`dv`
/// row is updated once per query with the sum over the group's query heads.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_k<const FMA: bool>(
    plan: &AttnPlan,
    hd: Heads,
    q: &[f32],
    kx: &[f32],
    vx: &[f32],
    probs: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dkx: &mut [f32],
    dvx: &mut [f32],
) {
    let n = plan.n;
    let (hq, hkv, dh) = (hd.hq, hd.hkv, hd.dh);
    let wkv = hkv * dh;
    let group = hq / hkv;
    let scale = 1.0 / (dh as f32).sqrt();
    let rows = n + plan.blocks;
    dq[..n * hq * dh].iter_mut().for_each(|x| *x = 0.0);
    dkx[..rows * wkv].iter_mut().for_each(|x| *x = 0.0);
    dvx[..rows * wkv].iter_mut().for_each(|x| *x = 0.0);
    let mmax = plan
        .offsets
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(0);
    let mut dsb = vec![0.0f32; group * mmax];
    for i in 0..n {
        let cands = &plan.cands[plan.offsets[i]..plan.offsets[i + 1]];
        let m = cands.len();
        let pbase = plan.offsets[i] * hq;
        for kh in 0..hkv {
            let off = kh * dh;
            let h0 = kh * group;
            for gi in 0..group {
                let h = h0 + gi;
                let row = (i * hq + h) * dh..(i * hq + h + 1) * dh;
                let g = &dout[row.clone()];
                let p = &probs[pbase + h * m..pbase + (h + 1) * m];
                let ds = &mut dsb[gi * m..(gi + 1) * m];
                let mut sum = 0.0f32;
                for ((dsj, &pj), &c) in ds.iter_mut().zip(p).zip(cands) {
                    let r = c as usize * wkv + off;
                    let dp = dot_k::<FMA>(g, &vx[r..r + dh]);
                    *dsj = dp;
                    sum += pj * dp;
                }
                for (dsj, &pj) in ds.iter_mut().zip(p) {
                    *dsj = pj * (*dsj - sum) * scale;
                }
                let ds: &[f32] = ds;
                combine_rows::<FMA>(
                    &mut dq[row],
                    m,
                    |j| ds[j],
                    |j| cands[j] as usize * wkv + off,
                    kx,
                );
            }
            let qbase = (i * hq + h0) * dh;
            let dsb = &dsb;
            for (j, &c) in cands.iter().enumerate() {
                let r = c as usize * wkv + off;
                combine_rows::<FMA>(
                    &mut dkx[r..r + dh],
                    group,
                    |gi| dsb[gi * m + j],
                    |gi| qbase + gi * dh,
                    q,
                );
                combine_rows::<FMA>(
                    &mut dvx[r..r + dh],
                    group,
                    |gi| probs[pbase + (h0 + gi) * m + j],
                    |gi| qbase + gi * dh,
                    dout,
                );
            }
        }
    }
    for d in [dkx, dvx] {
        let (tokens, lms) = d.split_at_mut(n * wkv);
        for (b, gl) in lms.chunks_exact(wkv).enumerate().take(plan.blocks) {
            let lo = b * plan.block_size;
            let hi = ((b + 1) * plan.block_size).min(n);
            let inv = 1.0 / (hi - lo) as f32;
            for t in lo..hi {
                combine_rows::<FMA>(&mut tokens[t * wkv..(t + 1) * wkv], 1, |_| inv, |_| 0, gl);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_kernel::reference::{naive_dense_attention, naive_sparse_attention};
    use aether_kernel::{SparsePattern, Tensor3};

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::train::rng::Rng::new(seed);
        (0..len).map(|_| r.normal() as f32).collect()
    }

    fn run(kind: &AttentionKind, n: usize, hd: Heads) -> (Vec<f32>, Vec<f32>) {
        let plan = AttnPlan::new(kind, n);
        let rows = n + plan.blocks();
        let q = data(n * hd.hq * hd.dh, 1);
        let mut kx = data(rows * hd.hkv * hd.dh, 2);
        let mut vx = data(rows * hd.hkv * hd.dh, 3);
        let mut probs = vec![0.0; plan.edges() * hd.hq];
        let mut out = vec![0.0; n * hd.hq * hd.dh];
        let (k, v) = (
            kx[..n * hd.hkv * hd.dh].to_vec(),
            vx[..n * hd.hkv * hd.dh].to_vec(),
        );
        forward(&plan, hd, &q, &mut kx, &mut vx, &mut probs, &mut out);
        let t = |x: Vec<f32>, h| Tensor3::from_vec(x, n, h, hd.dh).unwrap();
        let (tq, tk, tv) = (t(q, hd.hq), t(k, hd.hkv), t(v, hd.hkv));
        let want = match kind {
            AttentionKind::Sparse(p) => naive_sparse_attention(p, &tq, &tk, &tv).unwrap(),
            AttentionKind::Dense { causal } => {
                naive_dense_attention(&tq, &tk, &tv, *causal).unwrap()
            }
        };
        (out, want.into_vec())
    }

    #[test]
    fn forward_matches_kernel_oracle() {
        let small = SparsePattern {
            window: 2,
            block_size: 3,
            global_tokens: vec![0, 5],
            causal: false,
            log_stride: true,
            landmarks: true,
        };
        let kinds = [
            AttentionKind::default(),
            AttentionKind::Sparse(small.clone()),
            AttentionKind::Sparse(SparsePattern {
                causal: true,
                block_size: 1,
                ..small
            }),
            AttentionKind::Dense { causal: true },
            AttentionKind::Dense { causal: false },
        ];
        for kind in &kinds {
            for &n in &[0usize, 1, 2, 7, 40, 70] {
                for hd in [
                    Heads {
                        hq: 4,
                        hkv: 1,
                        dh: 3,
                    },
                    Heads {
                        hq: 2,
                        hkv: 2,
                        dh: 5,
                    },
                    Heads {
                        hq: 6,
                        hkv: 2,
                        dh: 1,
                    },
                ] {
                    let (got, want) = run(kind, n, hd);
                    for (a, b) in got.iter().zip(&want) {
                        assert!((a - b).abs() < 1e-4, "{kind:?} n {n}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// The training backward agrees with the kernel's `*_attention_backward` (the
    /// reference implementation of the attention gradients).
    #[test]
    fn backward_matches_kernel_backward() {
        use aether_kernel::{dense_attention_backward, sparse_attention_backward};
        let small = SparsePattern {
            window: 2,
            block_size: 3,
            global_tokens: vec![0, 4],
            causal: false,
            log_stride: true,
            landmarks: true,
        };
        let kinds = [
            AttentionKind::default(),
            AttentionKind::Sparse(small.clone()),
            AttentionKind::Sparse(SparsePattern {
                causal: true,
                ..small
            }),
            AttentionKind::Dense { causal: true },
            AttentionKind::Dense { causal: false },
        ];
        for kind in &kinds {
            for &n in &[1usize, 5, 37, 80] {
                for hd in [
                    Heads {
                        hq: 4,
                        hkv: 1,
                        dh: 32,
                    },
                    Heads {
                        hq: 4,
                        hkv: 2,
                        dh: 3,
                    },
                    Heads {
                        hq: 3,
                        hkv: 3,
                        dh: 9,
                    },
                ] {
                    let plan = AttnPlan::new(kind, n);
                    let rows = n + plan.blocks();
                    let w = hd.hkv * hd.dh;
                    let q = data(n * hd.hq * hd.dh, 4);
                    let mut kx = data(rows * w, 5);
                    let mut vx = data(rows * w, 6);
                    let g = data(n * hd.hq * hd.dh, 7);
                    let mut probs = vec![0.0; plan.edges() * hd.hq];
                    let mut out = vec![0.0; n * hd.hq * hd.dh];
                    forward(&plan, hd, &q, &mut kx, &mut vx, &mut probs, &mut out);
                    let (mut dq, mut dkx, mut dvx) =
                        (vec![0.0; q.len()], vec![0.0; rows * w], vec![0.0; rows * w]);
                    backward(
                        &plan, hd, &q, &kx, &vx, &probs, &g, &mut dq, &mut dkx, &mut dvx,
                    );
                    let t = |x: &[f32], h| Tensor3::from_vec(x.to_vec(), n, h, hd.dh).unwrap();
                    let (tq, tk, tv, tg) = (
                        t(&q, hd.hq),
                        t(&kx[..n * w], hd.hkv),
                        t(&vx[..n * w], hd.hkv),
                        t(&g, hd.hq),
                    );
                    let want = match kind {
                        AttentionKind::Sparse(p) => {
                            sparse_attention_backward(p, &tq, &tk, &tv, &tg).unwrap()
                        }
                        AttentionKind::Dense { causal } => {
                            dense_attention_backward(&tq, &tk, &tv, *causal, &tg).unwrap()
                        }
                    };
                    let pairs = [
                        (&dq[..], want.dq.as_slice(), "dq"),
                        (&dkx[..n * w], want.dk.as_slice(), "dk"),
                        (&dvx[..n * w], want.dv.as_slice(), "dv"),
                    ];
                    for (got, exp, what) in pairs {
                        for (a, b) in got.iter().zip(exp) {
                            assert!(
                                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                                "{kind:?} n {n} {what}: {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Random shapes and patterns (N 0..70, window ≥ N included, block size from 1,
        /// GQA ratios 1..4, odd head dims): forward equals the kernel oracle, backward
        /// equals the kernel backward.
        #[test]
        fn random_configs_match_the_kernel(
            n in 0usize..70,
            hkv in 1usize..3,
            ratio in 1usize..5,
            dh in 1usize..12,
            window in 0usize..80,
            block in 1usize..20,
            globals in proptest::collection::vec(0usize..80, 0..3),
            causal: bool,
            log_stride: bool,
            landmarks: bool,
            dense: bool,
        ) {
            use aether_kernel::{dense_attention_backward, sparse_attention_backward};
            let kind = if dense {
                AttentionKind::Dense { causal }
            } else {
                AttentionKind::Sparse(SparsePattern {
                    window,
                    block_size: block,
                    global_tokens: globals,
                    causal,
                    log_stride,
                    landmarks,
                })
            };
            let hd = Heads { hq: hkv * ratio, hkv, dh };
            let (got, want) = run(&kind, n, hd);
            for (a, b) in got.iter().zip(&want) {
                proptest::prop_assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()));
            }
            if n == 0 {
                return Ok(());
            }
            let plan = AttnPlan::new(&kind, n);
            let rows = n + plan.blocks();
            let w = hkv * dh;
            let q = data(n * hd.hq * dh, 11);
            let mut kx = data(rows * w, 12);
            let mut vx = data(rows * w, 13);
            let g = data(n * hd.hq * dh, 14);
            let mut probs = vec![0.0; plan.edges() * hd.hq];
            let mut out = vec![0.0; n * hd.hq * dh];
            forward(&plan, hd, &q, &mut kx, &mut vx, &mut probs, &mut out);
            let (mut dq, mut dkx, mut dvx) = (vec![0.0; q.len()], vec![0.0; rows * w], vec![0.0; rows * w]);
            backward(&plan, hd, &q, &kx, &vx, &probs, &g, &mut dq, &mut dkx, &mut dvx);
            let t = |x: &[f32], h| Tensor3::from_vec(x.to_vec(), n, h, dh).unwrap();
            let (tq, tk, tv, tg) = (t(&q, hd.hq), t(&kx[..n * w], hkv), t(&vx[..n * w], hkv), t(&g, hd.hq));
            let want = match &kind {
                AttentionKind::Sparse(p) => sparse_attention_backward(p, &tq, &tk, &tv, &tg).unwrap(),
                AttentionKind::Dense { causal } => dense_attention_backward(&tq, &tk, &tv, *causal, &tg).unwrap(),
            };
            for (got, exp) in [
                (&dq[..], want.dq.as_slice()),
                (&dkx[..n * w], want.dk.as_slice()),
                (&dvx[..n * w], want.dv.as_slice()),
            ] {
                for (a, b) in got.iter().zip(exp) {
                    proptest::prop_assert!((a - b).abs() < 2e-4 * (1.0 + b.abs()), "{} vs {}", a, b);
                }
            }
        }
    }
}
