//! Parity of `sparse_attention` with the reference crate `ruvllm_sparse_attention` 0.1.1
//! (`forward` for MHA, `forward_gqa` for GQA/MQA) and with the in-repo naive oracle,
//! over random shapes and pattern configs: N 0..600, dims 1..128 (odd included),
//! windows 0..N+5, block sizes 1..N+5, out-of-range globals, log-stride / landmarks
//! on and off, causal and bidirectional, GQA ratios 1..8. Max abs error ≤ 1e-5.

use aether_kernel::reference::naive_sparse_attention;
use aether_kernel::{sparse_attention, SparsePattern, Tensor3};
use proptest::prelude::*;
use ruvllm_sparse_attention as refc;
use ruvllm_sparse_attention::AttentionBackend;

fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn ref_config(p: &SparsePattern) -> refc::SparseAttentionConfig {
    refc::SparseAttentionConfig {
        window: p.window,
        block_size: p.block_size,
        global_tokens: p.global_tokens.clone(),
        causal: p.causal,
        use_log_stride: p.log_stride,
        use_landmarks: p.landmarks,
        sort_candidates: false,
    }
}

/// Runs ours and the reference on the same data; returns the max abs difference.
fn compare(p: &SparsePattern, n: usize, hq: usize, hk: usize, d: usize, seed: u64) -> f32 {
    let (qd, kd, vd) = (
        data(n * hq * d, seed),
        data(n * hk * d, seed + 1),
        data(n * hk * d, seed + 2),
    );
    let q = Tensor3::from_vec(qd.clone(), n, hq, d).unwrap();
    let k = Tensor3::from_vec(kd.clone(), n, hk, d).unwrap();
    let v = Tensor3::from_vec(vd.clone(), n, hk, d).unwrap();
    let ours = sparse_attention(p, &q, &k, &v).unwrap();
    let att = refc::SubquadraticSparseAttention::new(ref_config(p)).unwrap();
    let rq = refc::tensor::Tensor3::from_vec(qd, n, hq, d).unwrap();
    let rk = refc::tensor::Tensor3::from_vec(kd, n, hk, d).unwrap();
    let rv = refc::tensor::Tensor3::from_vec(vd, n, hk, d).unwrap();
    let theirs = if hq == hk {
        att.forward(&rq, &rk, &rv).unwrap()
    } else {
        att.forward_gqa(&rq, &rk, &rv).unwrap()
    };
    assert_eq!(theirs.data.len(), ours.as_slice().len());
    ours.as_slice()
        .iter()
        .zip(&theirs.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn pattern_strategy(n: usize) -> impl Strategy<Value = SparsePattern> {
    (
        0..n + 6,
        1..n + 6,
        prop::collection::vec(0..n + 20, 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(window, block_size, global_tokens, causal, log_stride, landmarks)| SparsePattern {
                window,
                block_size,
                global_tokens,
                causal,
                log_stride,
                landmarks,
            },
        )
}

fn case() -> impl Strategy<Value = (usize, usize, usize, usize, SparsePattern, u64)> {
    (
        0usize..600,
        1usize..=8,
        1usize..=4,
        1usize..128,
        any::<u64>(),
    )
        .prop_flat_map(|(n, ratio, hk, d, seed)| {
            // Keep q_heads · d modest so a case stays fast at N = 600.
            let hk = if n * hk * ratio * d > 600 * 64 * 4 {
                1
            } else {
                hk
            };
            (
                Just(n),
                Just(hk * ratio),
                Just(hk),
                Just(d),
                pattern_strategy(n),
                Just(seed),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn matches_reference_crate((n, hq, hk, d, p, seed) in case()) {
        let err = compare(&p, n, hq, hk, d, seed);
        prop_assert!(err <= 1e-5, "max abs err {err} n={n} hq={hq} hk={hk} d={d} {p:?}");
    }

    #[test]
    fn edge_count_matches_reference((n, p) in (0usize..700).prop_flat_map(|n| (Just(n), pattern_strategy(n)))) {
        let att = refc::SubquadraticSparseAttention::new(ref_config(&p)).unwrap();
        prop_assert_eq!(p.edges(n), att.estimate_sparse_edges(n));
    }

    #[test]
    fn matches_naive_oracle((n, hq, hk, d, p, seed) in case()) {
        let n = n.min(200);
        let q = Tensor3::from_vec(data(n * hq * d, seed), n, hq, d).unwrap();
        let k = Tensor3::from_vec(data(n * hk * d, seed + 1), n, hk, d).unwrap();
        let v = Tensor3::from_vec(data(n * hk * d, seed + 2), n, hk, d).unwrap();
        let a = sparse_attention(&p, &q, &k, &v).unwrap();
        let b = naive_sparse_attention(&p, &q, &k, &v).unwrap();
        for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
            prop_assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }
}

#[test]
fn edge_cases_match_reference() {
    let base = SparsePattern::default();
    let cases: Vec<(usize, usize, usize, usize, SparsePattern)> = vec![
        (0, 2, 1, 4, base.clone()),
        (1, 1, 1, 1, base.clone()),
        (
            50,
            4,
            4,
            7,
            SparsePattern {
                window: 60,
                block_size: 1,
                ..base.clone()
            },
        ),
        (
            333,
            8,
            1,
            127,
            SparsePattern {
                window: 0,
                block_size: 338,
                global_tokens: vec![5, 5, 1000, 0],
                causal: false,
                ..base.clone()
            },
        ),
        (
            513,
            6,
            2,
            32,
            SparsePattern {
                window: 16,
                block_size: 32,
                causal: false,
                ..base.clone()
            },
        ),
        (
            599,
            4,
            4,
            33,
            SparsePattern {
                window: 3,
                block_size: 7,
                global_tokens: vec![],
                log_stride: false,
                ..base
            },
        ),
    ];
    // The kernel runs query heads in groups of four: partial groups (hq 5, 6, 7),
    // several groups (hq 12) and GQA groups straddling them; window 0 (a single
    // window row) and a window covering everything (no extra tokens).
    let mut cases = cases;
    for (n, hq, hk, d, w) in [
        (97, 5, 1, 32, 0),
        (130, 6, 3, 17, 16),
        (64, 7, 7, 32, 100),
        (200, 12, 4, 33, 5),
    ] {
        for causal in [true, false] {
            cases.push((
                n,
                hq,
                hk,
                d,
                SparsePattern {
                    window: w,
                    block_size: 8,
                    global_tokens: vec![0, 3, 3, 500],
                    causal,
                    ..SparsePattern::default()
                },
            ));
        }
    }
    for (i, (n, hq, hk, d, p)) in cases.into_iter().enumerate() {
        let err = compare(&p, n, hq, hk, d, 77 + i as u64);
        assert!(err <= 1e-5, "case {i}: {err}");
    }
}

#[test]
fn errors_instead_of_panics() {
    let q = Tensor3::zeros(4, 3, 8).unwrap();
    let k = Tensor3::zeros(4, 2, 8).unwrap();
    assert!(sparse_attention(&SparsePattern::default(), &q, &k, &k).is_err());
    let bad = SparsePattern {
        block_size: 0,
        ..SparsePattern::default()
    };
    assert!(sparse_attention(&bad, &q, &q, &q).is_err());
}
