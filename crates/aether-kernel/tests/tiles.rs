//! The AVX-512 query-tile path of causal sparse attention, forced on and off
//! (`Exec::query_tiles`): the same property battery against the reference crate
//! `ruvllm_sparse_attention` 0.1.1 and the naive f64 oracle (≤ 1e-5) both ways, the two
//! paths against each other, shapes that hit the tile (causal, `W ≤ 32`, `d` a multiple of
//! 16, `N ≥ 16` with tails) and shapes that do not; non-finite values reaching only the
//! queries that attend them; allocation-free `sparse_attention_into`; rayon bit-identical.
//!
//! Each test passes its `Exec` down and reads the per-call report, so they run in parallel.

use aether_kernel::reference::naive_sparse_attention;
use aether_kernel::simd::{Exec, Ran, SimdLevel};
use aether_kernel::{
    sparse_attention, sparse_attention_at, sparse_attention_into, sparse_attention_into_with,
    sparse_scratch_len, SparsePattern, Tensor3,
};
use proptest::prelude::*;
use ruvllm_sparse_attention as refc;
use ruvllm_sparse_attention::AttentionBackend;

mod counting;
use counting::allocs;

/// Whether the tile path can run here (it needs AVX-512 on x86-64).
fn tiles_possible() -> bool {
    cfg!(target_arch = "x86_64") && SimdLevel::Avx512.is_available()
}

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

fn qkv(n: usize, hq: usize, hk: usize, d: usize, seed: u64) -> (Tensor3, Tensor3, Tensor3) {
    (
        Tensor3::from_vec(data(n * hq * d, seed), n, hq, d).unwrap(),
        Tensor3::from_vec(data(n * hk * d, seed + 1), n, hk, d).unwrap(),
        Tensor3::from_vec(data(n * hk * d, seed + 2), n, hk, d).unwrap(),
    )
}

fn reference(p: &SparsePattern, q: &Tensor3, k: &Tensor3, v: &Tensor3) -> Vec<f32> {
    let att = refc::SubquadraticSparseAttention::new(refc::SparseAttentionConfig {
        window: p.window,
        block_size: p.block_size,
        global_tokens: p.global_tokens.clone(),
        causal: p.causal,
        use_log_stride: p.log_stride,
        use_landmarks: p.landmarks,
        sort_candidates: false,
    })
    .unwrap();
    let t = |x: &Tensor3| {
        let (n, h, d) = x.shape();
        refc::tensor::Tensor3::from_vec(x.as_slice().to_vec(), n, h, d).unwrap()
    };
    let (rq, rk, rv) = (t(q), t(k), t(v));
    let out = if q.heads() == k.heads() {
        att.forward(&rq, &rk, &rv)
    } else {
        att.forward_gqa(&rq, &rk, &rv)
    };
    out.unwrap().data
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Sparse attention run as `exec` says (caller-style NaN-filled scratch) and its report.
fn run_with(
    exec: Exec,
    p: &SparsePattern,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
) -> (Tensor3, Ran) {
    let (n, hq, d) = q.shape();
    let mut out = Tensor3::zeros(n, hq, d).unwrap();
    let mut scratch = vec![f32::NAN; sparse_scratch_len(p, n, k.heads(), d).unwrap()];
    let ran = sparse_attention_into_with(exec, p, q, k, v, &mut out, &mut scratch).unwrap();
    (out, ran)
}

/// Sparse attention at the detected level with the tile path on (`true`) or off.
fn with_tiles(on: bool, p: &SparsePattern, q: &Tensor3, k: &Tensor3, v: &Tensor3) -> Tensor3 {
    let (out, ran) = run_with(Exec::detect().with_query_tiles(on), p, q, k, v);
    assert!(on || !ran.tiles, "switched off, yet it ran");
    out
}

/// Shapes and patterns the tile covers (causal, W ≤ 32, d ∈ 16·{1..8}) with N ≥ 16
/// including tails, plus a share of near misses (W > 32, bidirectional, d not a multiple of 16).
fn tile_case() -> impl Strategy<Value = (usize, usize, usize, usize, SparsePattern, u64)> {
    (
        0usize..330,
        1usize..=4,
        1usize..=3,
        prop_oneof![
            4 => (1usize..=8).prop_map(|m| 16 * m),
            1 => 1usize..70,
        ],
        prop_oneof![4 => 0usize..=32, 1 => 33usize..60],
        any::<u64>(),
    )
        .prop_flat_map(|(n, ratio, hk, d, window, seed)| {
            let hk = if n * hk * ratio * d > 330 * 64 * 3 {
                1
            } else {
                hk
            };
            (
                Just(n),
                Just(hk * ratio),
                Just(hk),
                Just(d),
                (
                    1..n + 40,
                    prop::collection::vec(0..n + 20, 0..4),
                    prop_oneof![5 => Just(true), 1 => Just(false)],
                    any::<bool>(),
                    any::<bool>(),
                )
                    .prop_map(
                        move |(block_size, global_tokens, causal, log_stride, landmarks)| {
                            SparsePattern {
                                window,
                                block_size,
                                global_tokens,
                                causal,
                                log_stride,
                                landmarks,
                            }
                        },
                    ),
                Just(seed),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn both_paths_match_the_oracles((n, hq, hk, d, p, seed) in tile_case()) {
        let (q, k, v) = qkv(n, hq, hk, d, seed);
        let want = reference(&p, &q, &k, &v);
        let naive = naive_sparse_attention(&p, &q, &k, &v).unwrap();
        let on = with_tiles(true, &p, &q, &k, &v);
        let off = with_tiles(false, &p, &q, &k, &v);
        for (name, out) in [("tiles on", &on), ("tiles off", &off)] {
            let e = max_diff(out.as_slice(), &want);
            prop_assert!(e <= 1e-5, "{name}: ref err {e} n={n} hq={hq} hk={hk} d={d} {p:?}");
            let e = max_diff(out.as_slice(), naive.as_slice());
            prop_assert!(e <= 1e-5, "{name}: naive err {e} n={n} hq={hq} hk={hk} d={d} {p:?}");
        }
        let e = max_diff(on.as_slice(), off.as_slice());
        prop_assert!(e <= 2e-6, "on vs off {e} n={n} hq={hq} hk={hk} d={d} {p:?}");
    }
}

#[test]
fn the_tile_path_runs_on_covered_shapes_only() {
    let p = SparsePattern {
        window: 16,
        block_size: 32,
        ..SparsePattern::default()
    };
    let (q, k, v) = qkv(100, 4, 2, 32, 5);
    let (on, ran) = run_with(Exec::detect(), &p, &q, &k, &v);
    assert_eq!(ran.tiles, tiles_possible());
    let off = with_tiles(false, &p, &q, &k, &v);
    assert!(max_diff(on.as_slice(), off.as_slice()) <= 2e-6);
    // Uncovered: bidirectional, W 33, d 33, N < 16, below the AVX-512 level.
    let uncovered = [
        (
            SparsePattern {
                causal: false,
                ..p.clone()
            },
            100,
            32,
        ),
        (
            SparsePattern {
                window: 33,
                ..p.clone()
            },
            100,
            32,
        ),
        (p.clone(), 100, 33),
        (p.clone(), 15, 32),
    ];
    for (pp, n, d) in uncovered {
        let (q, k, v) = qkv(n, 2, 1, d, 9);
        let (_, ran) = run_with(Exec::detect(), &pp, &q, &k, &v);
        assert!(!ran.tiles, "n={n} d={d} {pp:?}");
    }
    let (scalar, ran) = run_with(Exec::at(SimdLevel::Scalar), &p, &q, &k, &v);
    assert!(!ran.tiles && ran.level == SimdLevel::Scalar);
    assert_eq!(
        scalar,
        sparse_attention_at(SimdLevel::Scalar, &p, &q, &k, &v).unwrap()
    );
    assert!(max_diff(on.as_slice(), scalar.as_slice()) <= 2e-6);
}

#[test]
fn tiles_whose_step_list_overflows_fall_back_to_rows() {
    // 150 distinct globals: more broadcast steps than a tile plan holds, from the
    // tiles that see them all on; earlier tiles still fit.
    let p = SparsePattern {
        window: 8,
        block_size: 4,
        global_tokens: (0..300).step_by(2).collect(),
        ..SparsePattern::default()
    };
    let (q, k, v) = qkv(400, 2, 1, 32, 13);
    let on = sparse_attention(&p, &q, &k, &v).unwrap();
    let off = with_tiles(false, &p, &q, &k, &v);
    let naive = naive_sparse_attention(&p, &q, &k, &v).unwrap();
    assert!(max_diff(on.as_slice(), off.as_slice()) <= 2e-6);
    assert!(max_diff(on.as_slice(), naive.as_slice()) <= 1e-5);
    assert!(max_diff(on.as_slice(), &reference(&p, &q, &k, &v)) <= 1e-5);
}

#[test]
fn forced_levels_agree_with_tiles_on_and_off() {
    for (n, hq, hk, d, w) in [
        (64, 4, 4, 32, 16),
        (77, 4, 2, 16, 3),
        (250, 6, 3, 64, 0),
        (130, 4, 1, 32, 32),
        (99, 2, 2, 48, 23),
    ] {
        let p = SparsePattern {
            window: w,
            block_size: 8,
            global_tokens: vec![0, 5, 5, 40],
            ..SparsePattern::default()
        };
        let (q, k, v) = qkv(n, hq, hk, d, 21);
        let scalar = sparse_attention_at(SimdLevel::Scalar, &p, &q, &k, &v).unwrap();
        for level in SimdLevel::ALL.into_iter().filter(|l| l.is_available()) {
            for on in [true, false] {
                let exec = Exec::at(level).with_query_tiles(on);
                let (out, ran) = run_with(exec, &p, &q, &k, &v);
                assert_eq!(ran.level, level);
                let e = max_diff(out.as_slice(), scalar.as_slice());
                assert!(e <= 2e-6, "{level:?} tiles {on}: {e}");
            }
        }
    }
}

#[test]
fn non_finite_values_reach_only_the_queries_that_attend_them() {
    let (n, d) = (96, 32);
    let p = SparsePattern {
        window: 4,
        block_size: 16,
        global_tokens: vec![],
        causal: true,
        log_stride: true,
        landmarks: false,
    };
    let (q, k, v) = qkv(n, 1, 1, d, 3);
    let mut vd = v.as_slice().to_vec();
    let mut kd = k.as_slice().to_vec();
    // Row 40: an infinite value component; row 70: a NaN key.
    vd[40 * d + 3] = f32::INFINITY;
    kd[70 * d + 5] = f32::NAN;
    let v = Tensor3::from_vec(vd, n, 1, d).unwrap();
    let k = Tensor3::from_vec(kd, n, 1, d).unwrap();
    let on = with_tiles(true, &p, &q, &k, &v);
    let off = with_tiles(false, &p, &q, &k, &v);
    for i in 0..n {
        let attends_40 = p.token_candidates(i, n).contains(&40);
        for (name, out) in [("on", &on), ("off", &off)] {
            let row = &out.as_slice()[i * d..(i + 1) * d];
            assert_eq!(
                row.iter().all(|x| x.is_finite()),
                !attends_40,
                "tiles {name}, query {i}"
            );
        }
    }
}

#[test]
fn huge_finite_inputs_give_no_nan_on_the_tile() {
    let (n, d) = (48, 16);
    let q = Tensor3::from_vec(vec![3e38; n * d], n, 1, d).unwrap();
    let k = Tensor3::from_vec(
        (0..n * d)
            .map(|i| if i % 3 == 0 { 3e38 } else { -3e38 })
            .collect(),
        n,
        1,
        d,
    )
    .unwrap();
    let p = SparsePattern {
        window: 16,
        ..SparsePattern::default()
    };
    // Landmark block sums overflow here (16 rows of ±3e38); means must stay finite.
    let (out, ran) = run_with(Exec::detect(), &p, &q, &k, &k);
    assert_eq!(ran.tiles, tiles_possible());
    assert_eq!(out, sparse_attention(&p, &q, &k, &k).unwrap());
    assert!(out.as_slice().iter().all(|x| x.is_finite()));
    let off = with_tiles(false, &p, &q, &k, &k);
    assert!(off.as_slice().iter().all(|x| x.is_finite()));
}

#[test]
fn into_allocates_nothing_on_the_tile_path() {
    let b = allocs();
    std::hint::black_box(vec![1u8; 16]);
    assert!(allocs() > b);
    let p = SparsePattern {
        window: 16,
        block_size: 32,
        ..SparsePattern::default()
    };
    let (n, hq, hk, d) = (300, 4, 4, 32);
    let (q, k, v) = qkv(n, hq, hk, d, 8);
    let mut out = Tensor3::zeros(n, hq, d).unwrap();
    // Sized for a longer sequence, as a model workspace would be.
    let mut scratch = vec![f32::NAN; sparse_scratch_len(&p, 512, hk, d).unwrap()];
    let want = sparse_attention(&p, &q, &k, &v).unwrap();
    let before = allocs();
    for _ in 0..3 {
        sparse_attention_into(&p, &q, &k, &v, &mut out, &mut scratch).unwrap();
    }
    assert_eq!(allocs() - before, 0);
    let ran = sparse_attention_into_with(Exec::detect(), &p, &q, &k, &v, &mut out, &mut scratch);
    assert_eq!(ran.unwrap().tiles, tiles_possible());
    assert_eq!(out, want);
    // Any alignment of the caller's scratch gives the same bits.
    let need = sparse_scratch_len(&p, n, hk, d).unwrap();
    let mut big = vec![0.0f32; need + 7];
    for skip in 0..8 {
        let mut o = Tensor3::zeros(n, hq, d).unwrap();
        sparse_attention_into(&p, &q, &k, &v, &mut o, &mut big[skip..skip + need]).unwrap();
        assert_eq!(o, want, "scratch offset {skip}");
    }
}

#[cfg(feature = "rayon")]
#[test]
fn parallel_equals_serial_bit_for_bit_on_the_tile() {
    use aether_kernel::sparse_attention_par;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for (n, hq, hk, d) in [(16, 1, 1, 16), (200, 4, 2, 32), (333, 4, 4, 64)] {
        let (q, k, v) = qkv(n, hq, hk, d, 31);
        let p = SparsePattern {
            window: 16,
            block_size: 32,
            global_tokens: vec![0, 100],
            ..SparsePattern::default()
        };
        let par = pool.install(|| sparse_attention_par(&p, &q, &k, &v).unwrap());
        assert_eq!(par, sparse_attention(&p, &q, &k, &v).unwrap());
    }
}
