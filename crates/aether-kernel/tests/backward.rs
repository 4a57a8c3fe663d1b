//! Attention backward against a naive f64 backward, and both against finite differences.
//!
//! The chain of trust: an f64 forward (checked equal to `reference::naive_*`) →
//! its straightforward f64 backward (checked against central finite differences) →
//! the fast f32 backward (checked against the f64 backward over random configs).

use aether_kernel::reference::{naive_dense_attention, naive_sparse_attention};
use aether_kernel::{
    dense_attention, dense_attention_backward, dense_attention_backward_into,
    dense_attention_backward_slices, sparse_attention, sparse_attention_backward,
    sparse_attention_backward_into, sparse_attention_backward_slices, AttentionGrads,
    BackwardInputs, BackwardScratch, GradsMut, KernelError, SparsePattern, Tensor3,
};
use proptest::prelude::*;

/// Which keys each query attends.
#[derive(Clone, Copy)]
enum Attn<'a> {
    Sparse(&'a SparsePattern),
    Dense { causal: bool },
}

/// An attention problem in f64: `[n][hq][d]` queries, `[n][hk][d]` keys and values.
#[derive(Clone)]
struct Prob {
    n: usize,
    hq: usize,
    hk: usize,
    d: usize,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
}

struct Grads64 {
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
}

/// Deterministic values in `[-amp, amp]` from a seed (xorshift).
fn values(len: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * amp
        })
        .collect()
}

fn tensor(n: usize, h: usize, d: usize, seed: u64, amp: f32) -> Tensor3 {
    Tensor3::from_vec(values(n * h * d, seed, amp), n, h, d).unwrap()
}

fn to64(t: &Tensor3) -> Vec<f64> {
    t.as_slice().iter().map(|&x| f64::from(x)).collect()
}

impl Prob {
    fn from_tensors(q: &Tensor3, k: &Tensor3, v: &Tensor3) -> Self {
        let (n, hq, d) = q.shape();
        Self {
            n,
            hq,
            hk: k.heads(),
            d,
            q: to64(q),
            k: to64(k),
            v: to64(v),
        }
    }

    /// Token candidates and landmark blocks of query `i`.
    fn cands(&self, a: Attn<'_>, i: usize) -> (Vec<usize>, Vec<usize>) {
        match a {
            Attn::Sparse(p) => (
                p.token_candidates(i, self.n),
                p.landmark_candidates(i, self.n),
            ),
            Attn::Dense { causal } => ((0..if causal { i + 1 } else { self.n }).collect(), vec![]),
        }
    }

    /// Token ranges of every block (empty when the attention has no landmarks).
    fn blocks(&self, a: Attn<'_>) -> Vec<(usize, usize)> {
        match a {
            Attn::Sparse(p) if p.landmarks => (0..self.n.div_ceil(p.block_size))
                .map(|b| (b * p.block_size, ((b + 1) * p.block_size).min(self.n)))
                .collect(),
            _ => vec![],
        }
    }

    fn means(&self, x: &[f64], blocks: &[(usize, usize)]) -> Vec<f64> {
        let row = self.hk * self.d;
        let mut out = vec![0.0; blocks.len() * row];
        for (b, &(lo, hi)) in blocks.iter().enumerate() {
            for t in lo..hi {
                for c in 0..row {
                    out[b * row + c] += x[t * row + c] / (hi - lo) as f64;
                }
            }
        }
        out
    }

    /// Softmax weights of row (i, h) and the candidate row offsets `(offset, is_landmark)`.
    fn row_weights(
        &self,
        a: Attn<'_>,
        kl: &[f64],
        i: usize,
        h: usize,
    ) -> (Vec<f64>, Vec<(usize, bool)>) {
        let (d, kh) = (self.d, h / (self.hq / self.hk));
        let (toks, lms) = self.cands(a, i);
        let rows: Vec<(usize, bool)> = toks
            .iter()
            .map(|&j| ((j * self.hk + kh) * d, false))
            .chain(lms.iter().map(|&b| ((b * self.hk + kh) * d, true)))
            .collect();
        let qo = (i * self.hq + h) * d;
        let scale = 1.0 / (d as f64).sqrt();
        let s: Vec<f64> = rows
            .iter()
            .map(|&(o, lm)| {
                let key = if lm { &kl[o..o + d] } else { &self.k[o..o + d] };
                (0..d).map(|c| self.q[qo + c] * key[c]).sum::<f64>() * scale
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        (e.iter().map(|x| x / z).collect(), rows)
    }

    fn forward(&self, a: Attn<'_>) -> Vec<f64> {
        let blocks = self.blocks(a);
        let (kl, vl) = (self.means(&self.k, &blocks), self.means(&self.v, &blocks));
        let d = self.d;
        let mut out = vec![0.0; self.n * self.hq * d];
        for i in 0..self.n {
            for h in 0..self.hq {
                let (w, rows) = self.row_weights(a, &kl, i, h);
                let oo = (i * self.hq + h) * d;
                for (&wc, &(o, lm)) in w.iter().zip(&rows) {
                    let val = if lm { &vl[o..o + d] } else { &self.v[o..o + d] };
                    for c in 0..d {
                        out[oo + c] += wc * val[c];
                    }
                }
            }
        }
        out
    }

    /// The straightforward backward: per row, dw_c = g·v_c, ds = w ⊙ (dw − Σ w dw),
    /// then landmark gradients spread uniformly over their blocks.
    fn backward(&self, a: Attn<'_>, g: &[f64]) -> Grads64 {
        let blocks = self.blocks(a);
        let (kl, vl) = (self.means(&self.k, &blocks), self.means(&self.v, &blocks));
        let d = self.d;
        let scale = 1.0 / (d as f64).sqrt();
        let mut dq = vec![0.0; self.q.len()];
        let mut dk = vec![0.0; self.k.len()];
        let mut dv = vec![0.0; self.v.len()];
        let mut dkl = vec![0.0; kl.len()];
        let mut dvl = vec![0.0; vl.len()];
        for i in 0..self.n {
            for h in 0..self.hq {
                let (w, rows) = self.row_weights(a, &kl, i, h);
                let qo = (i * self.hq + h) * d;
                let dw: Vec<f64> = rows
                    .iter()
                    .map(|&(o, lm)| {
                        let val = if lm { &vl[o..o + d] } else { &self.v[o..o + d] };
                        (0..d).map(|c| g[qo + c] * val[c]).sum()
                    })
                    .collect();
                let dsum: f64 = w.iter().zip(&dw).map(|(a, b)| a * b).sum();
                for ((&wc, &dwc), &(o, lm)) in w.iter().zip(&dw).zip(&rows) {
                    let ds = wc * (dwc - dsum);
                    let (key, dkey, dval) = if lm {
                        (&kl[o..o + d], &mut dkl, &mut dvl)
                    } else {
                        (&self.k[o..o + d], &mut dk, &mut dv)
                    };
                    for c in 0..d {
                        dq[qo + c] += ds * key[c] * scale;
                        dkey[o + c] += ds * self.q[qo + c] * scale;
                        dval[o + c] += wc * g[qo + c];
                    }
                }
            }
        }
        let row = self.hk * d;
        for (b, &(lo, hi)) in blocks.iter().enumerate() {
            for t in lo..hi {
                for c in 0..row {
                    dk[t * row + c] += dkl[b * row + c] / (hi - lo) as f64;
                    dv[t * row + c] += dvl[b * row + c] / (hi - lo) as f64;
                }
            }
        }
        Grads64 { dq, dk, dv }
    }

    /// `Σ forward ⊙ r`.
    fn loss(&self, a: Attn<'_>, r: &[f64]) -> f64 {
        self.forward(a).iter().zip(r).map(|(o, r)| o * r).sum()
    }
}

/// Central finite differences of `Σ out ⊙ r` in f64 against the naive f64 backward.
fn check_f64_fd(p: &Prob, a: Attn<'_>, seed: u64) {
    let r: Vec<f64> = values(p.n * p.hq * p.d, seed, 1.0)
        .into_iter()
        .map(f64::from)
        .collect();
    let g = p.backward(a, &r);
    let eps = 1e-5;
    for which in 0..3 {
        let len = [p.q.len(), p.k.len(), p.v.len()][which];
        for idx in 0..len {
            let mut plus = p.clone();
            let mut minus = p.clone();
            for (pp, s) in [(&mut plus, eps), (&mut minus, -eps)] {
                [&mut pp.q, &mut pp.k, &mut pp.v][which][idx] += s;
            }
            let fd = (plus.loss(a, &r) - minus.loss(a, &r)) / (2.0 * eps);
            let an = [&g.dq, &g.dk, &g.dv][which][idx];
            assert!(
                (fd - an).abs() <= 1e-7 + 1e-6 * an.abs(),
                "tensor {which} idx {idx}: fd {fd} analytic {an}"
            );
        }
    }
}

fn pattern(window: usize, bs: usize, causal: bool, log: bool, lm: bool) -> SparsePattern {
    SparsePattern {
        window,
        block_size: bs,
        global_tokens: vec![0, 5, 500],
        causal,
        log_stride: log,
        landmarks: lm,
    }
}

/// Fast f32 gradients within a relative tolerance of the f64 oracle.
fn assert_close(fast: &AttentionGrads, want: &Grads64, tol: f64, ctx: &str) {
    for (name, a, b) in [
        ("dq", &fast.dq, &want.dq),
        ("dk", &fast.dk, &want.dk),
        ("dv", &fast.dv, &want.dv),
    ] {
        assert_eq!(a.as_slice().len(), b.len(), "{ctx} {name} length");
        let big = b.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        for (idx, (&x, &y)) in a.as_slice().iter().zip(b).enumerate() {
            assert!(
                x.is_finite() && (f64::from(x) - y).abs() <= tol * big,
                "{ctx} {name}[{idx}]: fast {x} oracle {y} (scale {big})"
            );
        }
    }
}

#[test]
fn f64_forward_matches_reference_oracle() {
    let (q, k, v) = (
        tensor(21, 4, 5, 1, 1.0),
        tensor(21, 2, 5, 2, 1.0),
        tensor(21, 2, 5, 3, 1.0),
    );
    let prob = Prob::from_tensors(&q, &k, &v);
    for causal in [true, false] {
        for lm in [true, false] {
            let p = pattern(2, 4, causal, true, lm);
            let want = naive_sparse_attention(&p, &q, &k, &v).unwrap();
            for (a, b) in prob.forward(Attn::Sparse(&p)).iter().zip(want.as_slice()) {
                assert!((a - f64::from(*b)).abs() < 1e-6);
            }
        }
        let want = naive_dense_attention(&q, &k, &v, causal).unwrap();
        for (a, b) in prob
            .forward(Attn::Dense { causal })
            .iter()
            .zip(want.as_slice())
        {
            assert!((a - f64::from(*b)).abs() < 1e-6);
        }
    }
}

#[test]
fn naive_backward_matches_finite_differences() {
    let mut seed = 10;
    // (n, hq, hk, d, pattern): landmarks with partial last blocks, GQA, bidirectional.
    let cases = [
        (9, 2, 1, 3, pattern(1, 2, true, true, true)),
        (11, 3, 3, 2, pattern(2, 3, false, true, true)),
        (7, 4, 2, 3, pattern(0, 1, true, false, true)),
        (8, 2, 2, 4, pattern(1, 3, false, false, false)),
        (6, 2, 1, 1, pattern(9, 9, false, true, true)),
    ];
    for (n, hq, hk, d, p) in cases {
        seed += 3;
        let prob = Prob::from_tensors(
            &tensor(n, hq, d, seed, 1.5),
            &tensor(n, hk, d, seed + 1, 1.5),
            &tensor(n, hk, d, seed + 2, 1.5),
        );
        check_f64_fd(&prob, Attn::Sparse(&p), seed);
    }
    for causal in [true, false] {
        let prob = Prob::from_tensors(
            &tensor(6, 4, 3, 40, 1.5),
            &tensor(6, 2, 3, 41, 1.5),
            &tensor(6, 2, 3, 42, 1.5),
        );
        check_f64_fd(&prob, Attn::Dense { causal }, 43);
    }
}

#[test]
fn f32_backward_matches_f32_finite_differences() {
    // L = Σ out ⊙ R with the f32-in / f32-out reference forward; perturb f32 inputs.
    let (n, hq, hk, d) = (10, 2, 1, 4);
    let (q, k, v) = (
        tensor(n, hq, d, 7, 1.0),
        tensor(n, hk, d, 8, 1.0),
        tensor(n, hk, d, 9, 1.0),
    );
    let r = tensor(n, hq, d, 10, 1.0);
    let loss = |out: Tensor3| -> f64 {
        out.as_slice()
            .iter()
            .zip(r.as_slice())
            .map(|(&o, &w)| f64::from(o) * f64::from(w))
            .sum()
    };
    let p = pattern(1, 3, true, true, true);
    let sparse = sparse_attention_backward(&p, &q, &k, &v, &r).unwrap();
    let dense = dense_attention_backward(&q, &k, &v, false, &r).unwrap();
    let eps = 1e-2f32;
    for (idx, which) in [
        (0, 0),
        (7, 0),
        (33, 0),
        (2, 1),
        (13, 1),
        (38, 1),
        (5, 2),
        (29, 2),
    ] {
        let fd = |f: &dyn Fn(&Tensor3, &Tensor3, &Tensor3) -> Tensor3| {
            let mut lp = [q.clone(), k.clone(), v.clone()];
            let mut lm = lp.clone();
            lp[which].as_mut_slice()[idx] += eps;
            lm[which].as_mut_slice()[idx] -= eps;
            (loss(f(&lp[0], &lp[1], &lp[2])) - loss(f(&lm[0], &lm[1], &lm[2])))
                / (2.0 * f64::from(eps))
        };
        let pick = |g: &AttentionGrads| f64::from([&g.dq, &g.dk, &g.dv][which].as_slice()[idx]);
        // Through the oracle forward (f64 inside) and through the production f32 kernels.
        let checks: [(&str, f64, f64); 4] = [
            (
                "naive sparse",
                fd(&|q, k, v| naive_sparse_attention(&p, q, k, v).unwrap()),
                pick(&sparse),
            ),
            (
                "naive dense",
                fd(&|q, k, v| naive_dense_attention(q, k, v, false).unwrap()),
                pick(&dense),
            ),
            (
                "kernel sparse",
                fd(&|q, k, v| sparse_attention(&p, q, k, v).unwrap()),
                pick(&sparse),
            ),
            (
                "kernel dense",
                fd(&|q, k, v| dense_attention(q, k, v, false).unwrap()),
                pick(&dense),
            ),
        ];
        for (what, fd, an) in checks {
            assert!(
                (fd - an).abs() < 2e-3,
                "{what} {which}/{idx}: fd {fd} vs analytic {an}"
            );
        }
    }
}

#[test]
fn dense_equals_saturated_sparse() {
    let (n, hq, hk, d) = (37, 6, 2, 7);
    let (q, k, v, g) = (
        tensor(n, hq, d, 1, 1.0),
        tensor(n, hk, d, 2, 1.0),
        tensor(n, hk, d, 3, 1.0),
        tensor(n, hq, d, 4, 1.0),
    );
    for causal in [true, false] {
        let p = pattern(n, 4, causal, true, false);
        let s = sparse_attention_backward(&p, &q, &k, &v, &g).unwrap();
        let dn = dense_attention_backward(&q, &k, &v, causal, &g).unwrap();
        for (a, b) in [(&s.dq, &dn.dq), (&s.dk, &dn.dk), (&s.dv, &dn.dv)] {
            for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }
}

#[test]
fn empty_and_single_position() {
    let p = SparsePattern::default();
    let e = Tensor3::zeros(0, 4, 3).unwrap();
    let ek = Tensor3::zeros(0, 2, 3).unwrap();
    let g = sparse_attention_backward(&p, &e, &ek, &ek, &e).unwrap();
    assert_eq!(
        (g.dq.shape(), g.dk.shape(), g.dv.shape()),
        ((0, 4, 3), (0, 2, 3), (0, 2, 3))
    );
    let g = dense_attention_backward(&e, &ek, &ek, false, &e).unwrap();
    assert_eq!(g.dq.shape(), (0, 4, 3));

    // One position: the only weight is 1, so dq = dk = 0 and dv sums d_out over the group.
    let (q, k, v, d_out) = (
        tensor(1, 4, 3, 1, 1.0),
        tensor(1, 2, 3, 2, 1.0),
        tensor(1, 2, 3, 3, 1.0),
        tensor(1, 4, 3, 4, 1.0),
    );
    for lm in [true, false] {
        for causal in [true, false] {
            let pp = pattern(0, 1, causal, true, lm);
            let gs = sparse_attention_backward(&pp, &q, &k, &v, &d_out).unwrap();
            let gd = dense_attention_backward(&q, &k, &v, causal, &d_out).unwrap();
            for g in [gs, gd] {
                let dout = d_out.as_slice();
                assert!(g.dq.as_slice().iter().all(|x| x.abs() < 1e-6));
                assert!(g.dk.as_slice().iter().all(|x| x.abs() < 1e-6));
                for kh in 0..2 {
                    for c in 0..3 {
                        // Landmark of the single block is the token itself: weights split
                        // between token and landmark but their value gradients both land on it.
                        let want = dout[(2 * kh) * 3 + c] + dout[(2 * kh + 1) * 3 + c];
                        let got = g.dv.as_slice()[kh * 3 + c];
                        assert!((want - got).abs() < 1e-5, "{want} vs {got}");
                    }
                }
            }
        }
    }
}

#[test]
fn shape_errors_are_typed() {
    let p = SparsePattern::default();
    let (q, k) = (tensor(5, 4, 3, 1, 1.0), tensor(5, 2, 3, 2, 1.0));
    let cases = [
        (tensor(5, 4, 2, 3, 1.0), "d_out.dim", 3, 2),
        (tensor(5, 2, 3, 3, 1.0), "d_out.heads", 4, 2),
        (tensor(6, 4, 3, 3, 1.0), "d_out.seq", 5, 6),
    ];
    for (d_out, what, expected, got) in cases {
        let want = Err(KernelError::ShapeMismatch {
            what,
            expected,
            got,
        });
        assert_eq!(sparse_attention_backward(&p, &q, &k, &k, &d_out), want);
        assert_eq!(dense_attention_backward(&q, &k, &k, true, &d_out), want);
    }
    let k3 = tensor(5, 3, 3, 2, 1.0);
    assert_eq!(
        sparse_attention_backward(&p, &q, &k3, &k3, &q),
        Err(KernelError::HeadsNotDivisible {
            q_heads: 4,
            kv_heads: 3
        })
    );
    let mut s = BackwardScratch::new();
    let mut g = AttentionGrads::zeros(5, 4, 2, 3).unwrap();
    g.dq = Tensor3::zeros(5, 4, 4).unwrap();
    assert!(matches!(
        dense_attention_backward_into(&q, &k, &k, false, &q, &mut g, &mut s),
        Err(KernelError::ShapeMismatch { what: "dq.dim", .. })
    ));
    g.dq = Tensor3::zeros(5, 4, 3).unwrap();
    g.dv = Tensor3::zeros(4, 2, 3).unwrap();
    assert!(matches!(
        sparse_attention_backward_into(&p, &q, &k, &k, &q, &mut g, &mut s),
        Err(KernelError::ShapeMismatch { what: "dv.seq", .. })
    ));
}

#[test]
fn every_simd_level_matches_the_f64_oracle() {
    use aether_kernel::simd::SimdLevel;
    use aether_kernel::{dense_attention_backward_at, sparse_attention_backward_at};
    // dim 37: two full 16-lane chunks and a 5-lane tail; MQA and GQA.
    for (hq, hk) in [(4, 1), (6, 3)] {
        let (n, d) = (45, 37);
        let (q, k, v, g) = (
            tensor(n, hq, d, 11, 1.5),
            tensor(n, hk, d, 12, 1.5),
            tensor(n, hk, d, 13, 1.5),
            tensor(n, hq, d, 14, 1.0),
        );
        let prob = Prob::from_tensors(&q, &k, &v);
        let p = pattern(4, 5, true, true, true);
        let want_s = prob.backward(Attn::Sparse(&p), &to64(&g));
        let want_d = prob.backward(Attn::Dense { causal: false }, &to64(&g));
        for level in SimdLevel::ALL {
            // An unavailable level would fall back; only the available ones prove a path.
            if level.effective() != level {
                continue;
            }
            let s = sparse_attention_backward_at(level, &p, &q, &k, &v, &g).unwrap();
            let dn = dense_attention_backward_at(level, &q, &k, &v, false, &g).unwrap();
            assert_close(&s, &want_s, 2e-5, &format!("sparse {level:?}"));
            assert_close(&dn, &want_d, 2e-5, &format!("dense {level:?}"));
        }
    }
}

#[test]
fn slice_api_equals_tensor_api_and_checks_lengths() {
    let (n, hq, hk, d) = (30, 4, 2, 9);
    let (q, k, v, g) = (
        tensor(n, hq, d, 21, 1.0),
        tensor(n, hk, d, 22, 1.0),
        tensor(n, hk, d, 23, 1.0),
        tensor(n, hq, d, 24, 1.0),
    );
    let x = BackwardInputs {
        seq: n,
        q_heads: hq,
        kv_heads: hk,
        dim: d,
        q: q.as_slice(),
        k: k.as_slice(),
        v: v.as_slice(),
        d_out: g.as_slice(),
    };
    let p = pattern(3, 4, false, true, true);
    let mut s = BackwardScratch::new();
    let (mut dq, mut dk, mut dv) = (
        vec![0.0; n * hq * d],
        vec![0.0; n * hk * d],
        vec![0.0; n * hk * d],
    );
    let mut run = |sparse: bool, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]| {
        let gm = GradsMut { dq, dk, dv };
        if sparse {
            sparse_attention_backward_slices(&p, &x, gm, &mut s)
        } else {
            dense_attention_backward_slices(&x, true, gm, &mut s)
        }
    };
    run(true, &mut dq, &mut dk, &mut dv).unwrap();
    let t = sparse_attention_backward(&p, &q, &k, &v, &g).unwrap();
    assert_eq!(
        (&dq[..], &dk[..], &dv[..]),
        (t.dq.as_slice(), t.dk.as_slice(), t.dv.as_slice())
    );
    for b in [&mut dq, &mut dk, &mut dv] {
        b.fill(0.0);
    }
    run(false, &mut dq, &mut dk, &mut dv).unwrap();
    let t = dense_attention_backward(&q, &k, &v, true, &g).unwrap();
    assert_eq!(
        (&dq[..], &dk[..], &dv[..]),
        (t.dq.as_slice(), t.dk.as_slice(), t.dv.as_slice())
    );

    let short = vec![0.0; n * hk * d - 1];
    let err = |x: &BackwardInputs<'_>, dk: &mut [f32]| {
        let (mut dq, mut dv) = (vec![0.0; n * hq * d], vec![0.0; n * hk * d]);
        let gm = GradsMut {
            dq: &mut dq,
            dk,
            dv: &mut dv,
        };
        sparse_attention_backward_slices(&p, x, gm, &mut BackwardScratch::new()).unwrap_err()
    };
    let mismatch = |what, got| KernelError::ShapeMismatch {
        what,
        expected: n * hk * d,
        got,
    };
    assert_eq!(
        err(&BackwardInputs { v: &short, ..x }, &mut dk),
        mismatch("v", n * hk * d - 1)
    );
    assert_eq!(err(&x, &mut dk[1..]), mismatch("dk", n * hk * d - 1));
    assert_eq!(
        err(&BackwardInputs { kv_heads: 3, ..x }, &mut dk),
        KernelError::HeadsNotDivisible {
            q_heads: 4,
            kv_heads: 3
        }
    );
    assert_eq!(
        err(&BackwardInputs { kv_heads: 0, ..x }, &mut dk),
        KernelError::ZeroDim { what: "kv_heads" }
    );
    assert_eq!(
        err(&BackwardInputs { dim: 0, ..x }, &mut dk),
        KernelError::ZeroDim { what: "dim" }
    );
    assert_eq!(
        err(
            &BackwardInputs {
                seq: usize::MAX,
                ..x
            },
            &mut dk
        ),
        KernelError::Overflow { what: "tensor" }
    );
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    hk: usize,
    ratio: usize,
    d: usize,
    p: SparsePattern,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (0usize..80, 1usize..=2, 1usize..=4, 1usize..=40).prop_flat_map(|(n, hk, ratio, d)| {
        (
            0..n + 4,
            1..n + 4,
            proptest::collection::vec(0..n + 6, 0..3),
            any::<(bool, bool, bool)>(),
            any::<u64>(),
        )
            .prop_map(move |(window, bs, globals, (causal, log, lm), seed)| Case {
                n,
                hk,
                ratio,
                d,
                p: SparsePattern {
                    window,
                    block_size: bs,
                    global_tokens: globals,
                    causal,
                    log_stride: log,
                    landmarks: lm,
                },
                seed,
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn fast_sparse_backward_matches_naive_f64(c in case()) {
        let hq = c.hk * c.ratio;
        let (q, k, v, g) = (
            tensor(c.n, hq, c.d, c.seed, 1.5),
            tensor(c.n, c.hk, c.d, c.seed ^ 1, 1.5),
            tensor(c.n, c.hk, c.d, c.seed ^ 2, 1.5),
            tensor(c.n, hq, c.d, c.seed ^ 3, 1.0),
        );
        let fast = sparse_attention_backward(&c.p, &q, &k, &v, &g).unwrap();
        let want = Prob::from_tensors(&q, &k, &v).backward(Attn::Sparse(&c.p), &to64(&g));
        assert_close(&fast, &want, 2e-5, &format!("{c:?}"));
    }

    #[test]
    fn fast_dense_backward_matches_naive_f64(c in case()) {
        let hq = c.hk * c.ratio;
        let (q, k, v, g) = (
            tensor(c.n, hq, c.d, c.seed, 1.5),
            tensor(c.n, c.hk, c.d, c.seed ^ 1, 1.5),
            tensor(c.n, c.hk, c.d, c.seed ^ 2, 1.5),
            tensor(c.n, hq, c.d, c.seed ^ 3, 1.0),
        );
        let a = Attn::Dense { causal: c.p.causal };
        let fast = dense_attention_backward(&q, &k, &v, c.p.causal, &g).unwrap();
        let want = Prob::from_tensors(&q, &k, &v).backward(a, &to64(&g));
        assert_close(&fast, &want, 2e-5, &format!("{c:?}"));
    }

    #[test]
    fn into_variant_with_reused_scratch_accumulates(c in case(), c2 in case()) {
        // One scratch across two differently shaped problems, accumulating twice.
        let mut s = BackwardScratch::new();
        for c in [&c2, &c] {
            let hq = c.hk * c.ratio;
            let (q, k, v, g) = (
                tensor(c.n, hq, c.d, c.seed, 1.0),
                tensor(c.n, c.hk, c.d, c.seed ^ 1, 1.0),
                tensor(c.n, c.hk, c.d, c.seed ^ 2, 1.0),
                tensor(c.n, hq, c.d, c.seed ^ 3, 1.0),
            );
            let once = sparse_attention_backward(&c.p, &q, &k, &v, &g).unwrap();
            let mut acc = AttentionGrads::zeros_like(&q, &k).unwrap();
            for _ in 0..2 {
                sparse_attention_backward_into(&c.p, &q, &k, &v, &g, &mut acc, &mut s).unwrap();
            }
            for (a, b) in [(&acc.dq, &once.dq), (&acc.dk, &once.dk), (&acc.dv, &once.dv)] {
                for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
                    prop_assert!((x - 2.0 * y).abs() <= 1e-5 * (1.0 + y.abs()));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn naive_backward_matches_finite_differences_random(
        n in 1usize..9, hk in 1usize..=2, ratio in 1usize..=3, d in 1usize..4,
        window in 0usize..10, bs in 1usize..10, causal: bool, log: bool, lm: bool, seed: u64,
    ) {
        let hq = hk * ratio;
        let p = pattern(window, bs, causal, log, lm);
        let prob = Prob::from_tensors(
            &tensor(n, hq, d, seed, 1.5),
            &tensor(n, hk, d, seed ^ 1, 1.5),
            &tensor(n, hk, d, seed ^ 2, 1.5),
        );
        check_f64_fd(&prob, Attn::Sparse(&p), seed ^ 3);
    }
}
