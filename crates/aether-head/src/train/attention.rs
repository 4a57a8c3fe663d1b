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
//! Shapes: `q[N, Hq·dh]`, `k, v[N, Hkv·dh]`, landmarks `[blocks, Hkv·dh]`,
//! probabilities `Σᵢ mᵢ·Hq` for `mᵢ` candidates of query `i`.

use aether_kernel::simd::axpy;

use super::ops::dot;

use super::config::AttentionKind;

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

/// Landmark means `[blocks, Hkv·dh]` of `x[N, Hkv·dh]`.
fn block_means(plan: &AttnPlan, x: &[f32], w: usize, out: &mut [f32]) {
    let n = plan.n;
    for (b, o) in out.chunks_exact_mut(w).enumerate().take(plan.blocks) {
        let lo = b * plan.block_size;
        let hi = ((b + 1) * plan.block_size).min(n);
        o.iter_mut().for_each(|v| *v = 0.0);
        for t in lo..hi {
            axpy(1.0, &x[t * w..(t + 1) * w], o);
        }
        let inv = 1.0 / (hi - lo) as f32;
        o.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Forward: fills `kl`, `vl` (landmarks), `probs` and `out[N, Hq·dh]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    plan: &AttnPlan,
    hd: Heads,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    kl: &mut [f32],
    vl: &mut [f32],
    probs: &mut [f32],
    out: &mut [f32],
) {
    let n = plan.n;
    let (hq, dh) = (hd.hq, hd.dh);
    let wkv = hd.hkv * dh;
    let group = hq / hd.hkv;
    let scale = 1.0 / (dh as f32).sqrt();
    block_means(plan, k, wkv, kl);
    block_means(plan, v, wkv, vl);
    out[..n * hq * dh].iter_mut().for_each(|x| *x = 0.0);
    for i in 0..n {
        let cands = &plan.cands[plan.offsets[i]..plan.offsets[i + 1]];
        let m = cands.len();
        let pbase = plan.offsets[i] * hq;
        for h in 0..hq {
            let koff = (h / group) * dh;
            let qr = &q[(i * hq + h) * dh..(i * hq + h + 1) * dh];
            let p = &mut probs[pbase + h * m..pbase + (h + 1) * m];
            let mut mx = f32::NEG_INFINITY;
            for (pj, &c) in p.iter_mut().zip(cands) {
                let c = c as usize;
                let kr = if c < n {
                    &k[c * wkv + koff..c * wkv + koff + dh]
                } else {
                    &kl[(c - n) * wkv + koff..(c - n) * wkv + koff + dh]
                };
                *pj = dot(qr, kr) * scale;
                mx = mx.max(*pj);
            }
            let mut z = 0.0f32;
            for pj in p.iter_mut() {
                *pj = (*pj - mx).exp();
                z += *pj;
            }
            let inv = 1.0 / z;
            let o = &mut out[(i * hq + h) * dh..(i * hq + h + 1) * dh];
            for (pj, &c) in p.iter_mut().zip(cands) {
                *pj *= inv;
                let c = c as usize;
                let vr = if c < n {
                    &v[c * wkv + koff..c * wkv + koff + dh]
                } else {
                    &vl[(c - n) * wkv + koff..(c - n) * wkv + koff + dh]
                };
                axpy(*pj, vr, o);
            }
        }
    }
}

/// Backward: `dq[N,Hq·dh]`, `dk`, `dv[N,Hkv·dh]` are overwritten; `dkl`, `dvl` are scratch
/// of the landmark shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    plan: &AttnPlan,
    hd: Heads,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    kl: &[f32],
    vl: &[f32],
    probs: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dkl: &mut [f32],
    dvl: &mut [f32],
) {
    let n = plan.n;
    let (hq, dh) = (hd.hq, hd.dh);
    let wkv = hd.hkv * dh;
    let group = hq / hd.hkv;
    let scale = 1.0 / (dh as f32).sqrt();
    dq[..n * hq * dh].iter_mut().for_each(|x| *x = 0.0);
    dk[..n * wkv].iter_mut().for_each(|x| *x = 0.0);
    dv[..n * wkv].iter_mut().for_each(|x| *x = 0.0);
    let lm = plan.blocks * wkv;
    dkl[..lm].iter_mut().for_each(|x| *x = 0.0);
    dvl[..lm].iter_mut().for_each(|x| *x = 0.0);
    let mut ds: Vec<f32> = Vec::new();
    for i in 0..n {
        let cands = &plan.cands[plan.offsets[i]..plan.offsets[i + 1]];
        let m = cands.len();
        let pbase = plan.offsets[i] * hq;
        ds.clear();
        ds.resize(m, 0.0);
        for h in 0..hq {
            let koff = (h / group) * dh;
            let row = (i * hq + h) * dh..(i * hq + h + 1) * dh;
            let g = &dout[row.clone()];
            let qr = &q[row.clone()];
            let p = &probs[pbase + h * m..pbase + (h + 1) * m];
            let mut sum = 0.0f32;
            for ((dsj, &pj), &c) in ds.iter_mut().zip(p).zip(cands) {
                let c = c as usize;
                let vr = if c < n {
                    &v[c * wkv + koff..c * wkv + koff + dh]
                } else {
                    &vl[(c - n) * wkv + koff..(c - n) * wkv + koff + dh]
                };
                let dp = dot(g, vr);
                *dsj = dp;
                sum += pj * dp;
            }
            let dqr = &mut dq[row];
            for ((dsj, &pj), &c) in ds.iter_mut().zip(p).zip(cands) {
                let s = pj * (*dsj - sum) * scale;
                let c = c as usize;
                let (kr, dkr, dvr) = if c < n {
                    let r = c * wkv + koff..c * wkv + koff + dh;
                    (&k[r.clone()], &mut dk[r.clone()], &mut dv[r])
                } else {
                    let r = (c - n) * wkv + koff..(c - n) * wkv + koff + dh;
                    (&kl[r.clone()], &mut dkl[r.clone()], &mut dvl[r])
                };
                axpy(s, kr, dqr);
                axpy(s, qr, dkr);
                axpy(pj, g, dvr);
            }
        }
    }
    for b in 0..plan.blocks {
        let lo = b * plan.block_size;
        let hi = ((b + 1) * plan.block_size).min(n);
        let inv = 1.0 / (hi - lo) as f32;
        let (gk, gv) = (&dkl[b * wkv..(b + 1) * wkv], &dvl[b * wkv..(b + 1) * wkv]);
        for t in lo..hi {
            axpy(inv, gk, &mut dk[t * wkv..(t + 1) * wkv]);
            axpy(inv, gv, &mut dv[t * wkv..(t + 1) * wkv]);
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
        let q = data(n * hd.hq * hd.dh, 1);
        let k = data(n * hd.hkv * hd.dh, 2);
        let v = data(n * hd.hkv * hd.dh, 3);
        let lm = plan.blocks() * hd.hkv * hd.dh;
        let (mut kl, mut vl) = (vec![0.0; lm], vec![0.0; lm]);
        let mut probs = vec![0.0; plan.edges() * hd.hq];
        let mut out = vec![0.0; n * hd.hq * hd.dh];
        forward(
            &plan, hd, &q, &k, &v, &mut kl, &mut vl, &mut probs, &mut out,
        );
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
}
