//! Attention for training: a thin adapter over the kernel's forward and backward.
//!
//! For query `i`, head `h` (kv head `h / (Hq/Hkv)`) and candidates `j` (pattern tokens,
//! landmark blocks, or every allowed position when dense):
//! `sⱼ = q·kⱼ/√dh`, `pⱼ = softmax(s)ⱼ`, `out = Σ pⱼ vⱼ`. The forward is
//! [`aether_kernel::sparse_attention_into`] / [`aether_kernel::dense_attention_into`],
//! the very code the deployed head runs; the backward is
//! [`aether_kernel::sparse_attention_backward_slices`] /
//! [`aether_kernel::dense_attention_backward_slices`] (the math is in
//! `aether_kernel::backward`), which recomputes the softmax instead of storing it.
//!
//! Shapes: `q, out, dq [N, Hq·dh]`, `k, v, dk, dv [N, Hkv·dh]`, row-major.

use aether_kernel::{
    dense_attention_backward_slices, dense_attention_into, dense_scratch_len,
    sparse_attention_backward_slices, sparse_attention_into, sparse_scratch_len, BackwardInputs,
    BackwardScratch, GradsMut, KernelError, SparsePattern, TensorMut, TensorRef,
};

use crate::config::AttentionBackend;

/// The attention a layer runs: the config's backend with its pattern (dense attention
/// uses only the pattern's `causal` flag).
pub(crate) type Kind<'a> = (AttentionBackend, &'a SparsePattern);

/// Head geometry of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub hq: usize,
    pub hkv: usize,
    pub dh: usize,
}

/// Reusable working memory of the kernel's forward and backward (grows to the largest
/// sequence seen, then allocation-free).
#[derive(Debug, Default, Clone)]
pub(crate) struct AttnScratch {
    fwd: Vec<f32>,
    bwd: BackwardScratch,
}

/// The architecture was validated (`HeadConfig::validate`: positive dimensions, block
/// size and a kv-head count dividing the query heads) and every buffer is sized here, so
/// the kernel cannot reject the call.
fn validated<T>(r: Result<T, KernelError>) -> T {
    match r {
        Ok(x) => x,
        Err(e) => unreachable!("kernel rejected a validated attention call: {e}"),
    }
}

/// Forward over `n` positions: `out = attn(q, k, v)` (overwritten, resized to `N·Hq·dh`).
///
/// `q`, `k`, `v` are lent to the kernel as borrowed views.
pub(crate) fn forward(
    (backend, p): Kind<'_>,
    hd: Heads,
    n: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    out: &mut Vec<f32>,
    scratch: &mut AttnScratch,
) {
    out.clear();
    out.resize(n * hd.hq * hd.dh, 0.0);
    let view = |x, h| validated(TensorRef::new(x, n, h, hd.dh));
    let (tq, tk, tv) = (view(q, hd.hq), view(k, hd.hkv), view(v, hd.hkv));
    let to = validated(TensorMut::new(out, n, hd.hq, hd.dh));
    let need = validated(match backend {
        AttentionBackend::Sparse => sparse_scratch_len(p, n, hd.hkv, hd.dh),
        AttentionBackend::Dense => dense_scratch_len(n, hd.hkv, hd.dh),
    });
    if scratch.fwd.len() < need {
        scratch.fwd.resize(need, 0.0);
    }
    validated(match backend {
        AttentionBackend::Sparse => sparse_attention_into(p, tq, tk, tv, to, &mut scratch.fwd),
        AttentionBackend::Dense => dense_attention_into(tq, tk, tv, p.causal, to, &mut scratch.fwd),
    });
}

/// Backward over `n` positions: `dq`, `dk`, `dv` are overwritten (resized to the shapes
/// of `q`, `k`, `v`) with the gradients of `⟨dout, attn(q, k, v)⟩`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    (backend, p): Kind<'_>,
    hd: Heads,
    n: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    dout: &[f32],
    dq: &mut Vec<f32>,
    dk: &mut Vec<f32>,
    dv: &mut Vec<f32>,
    scratch: &mut AttnScratch,
) {
    for (g, len) in [
        (&mut *dq, q.len()),
        (&mut *dk, k.len()),
        (&mut *dv, v.len()),
    ] {
        g.clear();
        g.resize(len, 0.0);
    }
    let x = BackwardInputs {
        seq: n,
        q_heads: hd.hq,
        kv_heads: hd.hkv,
        dim: hd.dh,
        q,
        k,
        v,
        d_out: dout,
    };
    let g = GradsMut { dq, dk, dv };
    validated(match backend {
        AttentionBackend::Sparse => sparse_attention_backward_slices(p, &x, g, &mut scratch.bwd),
        AttentionBackend::Dense => {
            dense_attention_backward_slices(&x, p.causal, g, &mut scratch.bwd)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_kernel::reference::{naive_dense_attention, naive_sparse_attention};
    use aether_kernel::Tensor3;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::train::rng::Rng::new(seed);
        (0..len).map(|_| r.normal() as f32).collect()
    }

    /// `⟨g, attn(q, k, v)⟩` in f64 through the naive oracle.
    fn objective(kind: Kind<'_>, hd: Heads, n: usize, x: [&[f32]; 3], g: &[f32]) -> f64 {
        let t = |x: &[f32], h| Tensor3::from_vec(x.to_vec(), n, h, hd.dh).unwrap();
        let (q, k, v) = (t(x[0], hd.hq), t(x[1], hd.hkv), t(x[2], hd.hkv));
        let out = match kind {
            (AttentionBackend::Sparse, p) => naive_sparse_attention(p, &q, &k, &v).unwrap(),
            (AttentionBackend::Dense, p) => naive_dense_attention(&q, &k, &v, p.causal).unwrap(),
        };
        out.as_slice()
            .iter()
            .zip(g)
            .map(|(&o, &g)| f64::from(o) * f64::from(g))
            .sum()
    }

    /// The adapter's forward equals the naive oracle and its backward the central
    /// finite differences of the oracle, over random shapes and patterns (N 1..40,
    /// window ≥ N included, block size from 1, GQA ratios 1..4, odd head dims); the
    /// buffers it is handed back are untouched and a second call reuses the scratch.
    fn check(kind: Kind<'_>, n: usize, hd: Heads, seed: u64) -> Result<(), String> {
        let (wq, wkv) = (n * hd.hq * hd.dh, n * hd.hkv * hd.dh);
        let (q, k, v) = (data(wq, seed), data(wkv, seed + 1), data(wkv, seed + 2));
        let g = data(wq, seed + 3);
        let mut s = AttnScratch::default();
        let mut out = vec![7.0; 3];
        forward(kind, hd, n, (&q, &k, &v), &mut out, &mut s);
        let t = |x: &[f32], h| Tensor3::from_vec(x.to_vec(), n, h, hd.dh).unwrap();
        let want = match kind {
            (AttentionBackend::Sparse, p) => {
                naive_sparse_attention(p, &t(&q, hd.hq), &t(&k, hd.hkv), &t(&v, hd.hkv))
            }
            (AttentionBackend::Dense, p) => {
                naive_dense_attention(&t(&q, hd.hq), &t(&k, hd.hkv), &t(&v, hd.hkv), p.causal)
            }
        }
        .unwrap();
        for (a, b) in out.iter().zip(want.as_slice()) {
            if (a - b).abs() > 1e-4 * (1.0 + b.abs()) {
                return Err(format!("forward {a} vs {b}"));
            }
        }
        let (mut dq, mut dk, mut dv) = (vec![1.0; 2], vec![], vec![]);
        for _ in 0..2 {
            backward(
                kind,
                hd,
                n,
                (&q, &k, &v),
                &g,
                &mut dq,
                &mut dk,
                &mut dv,
                &mut s,
            );
        }
        let h = 1e-2f32;
        for (which, grad) in [(0usize, &dq), (1, &dk), (2, &dv)] {
            let mut x = [q.clone(), k.clone(), v.clone()];
            for idx in 0..grad.len() {
                let orig = x[which][idx];
                x[which][idx] = orig + h;
                let up = objective(kind, hd, n, [&x[0], &x[1], &x[2]], &g);
                x[which][idx] = orig - h;
                let dn = objective(kind, hd, n, [&x[0], &x[1], &x[2]], &g);
                x[which][idx] = orig;
                let fd = ((up - dn) / (2.0 * f64::from(h))) as f32;
                let a = grad[idx];
                if (a - fd).abs() > 2e-2 * (1.0 + fd.abs()) {
                    return Err(format!(
                        "d{} [{idx}]: {a} vs fd {fd}",
                        ["q", "k", "v"][which]
                    ));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn fixed_configs_match_oracle_and_finite_differences() {
        let small = SparsePattern {
            window: 2,
            block_size: 3,
            global_tokens: vec![0, 4],
            causal: false,
            log_stride: true,
            landmarks: true,
        };
        let dense = |causal| SparsePattern {
            causal,
            ..SparsePattern::default()
        };
        let kinds = [
            (AttentionBackend::Sparse, SparsePattern::default()),
            (AttentionBackend::Sparse, small.clone()),
            (
                AttentionBackend::Sparse,
                SparsePattern {
                    causal: true,
                    block_size: 1,
                    ..small
                },
            ),
            (AttentionBackend::Dense, dense(true)),
            (AttentionBackend::Dense, dense(false)),
        ];
        for (backend, p) in &kinds {
            for &n in &[1usize, 2, 7, 19] {
                for (hq, hkv, dh) in [(4, 1, 3), (2, 2, 5), (6, 2, 1)] {
                    let hd = Heads { hq, hkv, dh };
                    check((*backend, p), n, hd, n as u64)
                        .unwrap_or_else(|e| panic!("{backend:?} {p:?} n {n}: {e}"));
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn random_configs_match_oracle_and_finite_differences(
            n in 1usize..24,
            hkv in 1usize..3,
            ratio in 1usize..4,
            dh in 1usize..6,
            window in 0usize..30,
            block in 1usize..10,
            globals in proptest::collection::vec(0usize..30, 0..3),
            causal: bool,
            log_stride: bool,
            landmarks: bool,
            dense: bool,
            seed in 0u64..1000,
        ) {
            let p = SparsePattern {
                window,
                block_size: block,
                global_tokens: globals,
                causal,
                log_stride,
                landmarks,
            };
            let backend = if dense { AttentionBackend::Dense } else { AttentionBackend::Sparse };
            let hd = Heads { hq: hkv * ratio, hkv, dh };
            let r = check((backend, &p), n, hd, seed);
            proptest::prop_assert!(r.is_ok(), "{:?}", r);
        }
    }
}
