//! The AVX-512 query-tile path of causal sparse attention, forced on and off
//! (`set_query_tiles`): the same property battery against the reference crate
//! `ruvllm_sparse_attention` 0.1.1 and the naive f64 oracle (≤ 1e-5) both ways, the two
//! paths against each other, shapes that hit the tile (causal, `W ≤ 32`, `d` a multiple of
//! 16, `N ≥ 16` with tails) and shapes that do not; non-finite values reaching only the
//! queries that attend them; allocation-free `sparse_attention_into`; rayon bit-identical.
//!
//! Toggling the path is process-wide, so every test here holds one lock.

use std::sync::Mutex;

use aether_kernel::reference::naive_sparse_attention;
use aether_kernel::simd::{self, SimdLevel};
use aether_kernel::{
    query_tile_runs, set_query_tiles, sparse_attention, sparse_attention_at, sparse_attention_into,
    sparse_scratch_len, SparsePattern, Tensor3,
};
use proptest::prelude::*;
use ruvllm_sparse_attention as refc;
use ruvllm_sparse_attention::AttentionBackend;

static TOGGLE: Mutex<()> = Mutex::new(());

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

/// Runs `f` with the tile path on (`true`) or off, restoring it on.
fn with_tiles<T>(on: bool, f: impl FnOnce() -> T) -> T {
    set_query_tiles(on);
    let r = f();
    set_query_tiles(true);
    r
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
        let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
        let (q, k, v) = qkv(n, hq, hk, d, seed);
        let want = reference(&p, &q, &k, &v);
        let naive = naive_sparse_attention(&p, &q, &k, &v).unwrap();
        let on = with_tiles(true, || sparse_attention(&p, &q, &k, &v).unwrap());
        let off = with_tiles(false, || sparse_attention(&p, &q, &k, &v).unwrap());
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
    let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
    let p = SparsePattern {
        window: 16,
        block_size: 32,
        ..SparsePattern::default()
    };
    let (q, k, v) = qkv(100, 4, 2, 32, 5);
    let before = query_tile_runs();
    let on = sparse_attention(&p, &q, &k, &v).unwrap();
    assert_eq!(query_tile_runs() > before, tiles_possible());
    let before = query_tile_runs();
    let off = with_tiles(false, || sparse_attention(&p, &q, &k, &v).unwrap());
    assert_eq!(query_tile_runs(), before, "switched off, yet it ran");
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
        let before = query_tile_runs();
        sparse_attention(&pp, &q, &k, &v).unwrap();
        assert_eq!(query_tile_runs(), before, "n={n} d={d} {pp:?}");
    }
    let before = query_tile_runs();
    let scalar = sparse_attention_at(SimdLevel::Scalar, &p, &q, &k, &v).unwrap();
    assert_eq!(query_tile_runs(), before);
    assert!(max_diff(on.as_slice(), scalar.as_slice()) <= 2e-6);
}

#[test]
fn tiles_whose_step_list_overflows_fall_back_to_rows() {
    let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
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
    let off = with_tiles(false, || sparse_attention(&p, &q, &k, &v).unwrap());
    let naive = naive_sparse_attention(&p, &q, &k, &v).unwrap();
    assert!(max_diff(on.as_slice(), off.as_slice()) <= 2e-6);
    assert!(max_diff(on.as_slice(), naive.as_slice()) <= 1e-5);
    assert!(max_diff(on.as_slice(), &reference(&p, &q, &k, &v)) <= 1e-5);
}

#[test]
fn forced_levels_agree_with_tiles_on_and_off() {
    let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
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
                assert!(simd::force_level(Some(level)));
                let out = with_tiles(on, || sparse_attention(&p, &q, &k, &v).unwrap());
                assert!(simd::force_level(None));
                let e = max_diff(out.as_slice(), scalar.as_slice());
                assert!(e <= 2e-6, "{level:?} tiles {on}: {e}");
            }
        }
    }
}

#[test]
fn non_finite_values_reach_only_the_queries_that_attend_them() {
    let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
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
    let on = with_tiles(true, || sparse_attention(&p, &q, &k, &v).unwrap());
    let off = with_tiles(false, || sparse_attention(&p, &q, &k, &v).unwrap());
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
    let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
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
    let before = query_tile_runs();
    let out = sparse_attention(&p, &q, &k, &k).unwrap();
    assert_eq!(query_tile_runs() > before, tiles_possible());
    assert!(out.as_slice().iter().all(|x| x.is_finite()));
    let off = with_tiles(false, || sparse_attention(&p, &q, &k, &k).unwrap());
    assert!(off.as_slice().iter().all(|x| x.is_finite()));
}

#[test]
fn into_allocates_nothing_on_the_tile_path() {
    let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
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
    let runs = query_tile_runs();
    let before = allocs();
    for _ in 0..3 {
        sparse_attention_into(&p, &q, &k, &v, &mut out, &mut scratch).unwrap();
    }
    assert_eq!(allocs() - before, 0);
    assert_eq!(query_tile_runs() >= runs + 3, tiles_possible());
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
    let _g = TOGGLE.lock().unwrap_or_else(|e| e.into_inner());
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
