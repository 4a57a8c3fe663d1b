//! The AVX-512 dense tile kernel (`Exec::dense_tiles`) against the naive f64 oracle
//! and against the generic kernel, both ways: random shapes with N 0..300 (tails of
//! the 8-row blocks and 32-key tiles), `d` multiples of 16 up to 128 and odd dims
//! (which fall back), GQA/MQA ratios, causal and bidirectional; huge finite inputs,
//! non-finite values and queries; (feature `rayon`) parallel equals serial bit for
//! bit. On a CPU without AVX-512 both settings run the generic kernel (the per-call
//! report then says so, which the tests check). Every test passes its `Exec` down, so
//! they run in parallel.

use aether_kernel::reference::naive_dense_attention;
use aether_kernel::simd::{Exec, Ran};
use aether_kernel::{
    dense_attention_at, dense_attention_into_with, dense_scratch_len, SimdLevel, Tensor3,
};
use proptest::prelude::*;

mod common;
use common::{max_diff, tensor};

/// Whether the tile kernel serves head dim `d` on this machine.
fn tiles_expected(d: usize) -> bool {
    SimdLevel::detect() >= SimdLevel::Avx512 && d.is_multiple_of(16) && d <= 128
}

/// Dense attention at `level` with the tile kernel allowed or not, and its report.
fn run_at(
    level: SimdLevel,
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    causal: bool,
    tiles: bool,
) -> (Tensor3, Ran) {
    let (n, hq, d) = q.shape();
    let mut out = Tensor3::zeros(n, hq, d).unwrap();
    let mut scratch = vec![f32::NAN; dense_scratch_len(n, k.shape().1, d).unwrap()];
    let exec = Exec::at(level).with_dense_tiles(tiles);
    let ran = dense_attention_into_with(exec, q, k, v, causal, &mut out, &mut scratch).unwrap();
    (out, ran)
}

/// Dense attention at the detected level with the tile kernel on or off; checks the
/// report says the tile kernel ran exactly when it should have.
fn run(q: &Tensor3, k: &Tensor3, v: &Tensor3, causal: bool, tiles: bool) -> Tensor3 {
    let d = q.shape().2;
    let (out, ran) = run_at(SimdLevel::detect(), q, k, v, causal, tiles);
    let expect = tiles && q.shape().0 > 0 && tiles_expected(d);
    assert_eq!(ran.tiles, expect, "tile run, tiles={tiles} d={d}");
    assert_eq!(ran.level, SimdLevel::detect());
    out
}

fn shapes() -> impl Strategy<Value = (usize, usize, usize, usize, bool, u64)> {
    let dims = prop_oneof![
        3 => prop::sample::select(vec![16usize, 32, 48, 64, 96, 128]),
        1 => prop::sample::select(vec![1usize, 7, 17, 31, 33, 100, 144]),
    ];
    (
        0usize..300,
        prop::sample::select(vec![1usize, 2, 3, 4, 8]),
        1usize..=3,
        dims,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, ratio, hk, d, causal, seed)| (n, hk * ratio, hk, d, causal, seed))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn both_paths_match_naive((n, hq, hk, d, causal, seed) in shapes(), amp in prop::sample::select(vec![0.5f32, 1.0, 3.0])) {
        let q = tensor(n, hq, d, seed, amp);
        let k = tensor(n, hk, d, seed + 1, amp);
        let v = tensor(n, hk, d, seed + 2, 1.0);
        let want = naive_dense_attention(&q, &k, &v, causal).unwrap();
        let on = run(&q, &k, &v, causal, true);
        let off = run(&q, &k, &v, causal, false);
        let (e_on, e_off) = (max_diff(&on, &want), max_diff(&off, &want));
        prop_assert!(e_on <= 1e-5, "tiles on: err {e_on} n={n} hq={hq} hk={hk} d={d} causal={causal}");
        prop_assert!(e_off <= 1e-5, "tiles off: err {e_off} n={n} hq={hq} hk={hk} d={d} causal={causal}");
    }
}

#[test]
fn every_length_around_block_and_tile_edges() {
    for n in (0..=70).chain([95, 96, 97, 127, 128, 129, 255, 256, 257]) {
        for (hq, hk, d) in [(4, 4, 32), (4, 1, 16), (6, 2, 48)] {
            let q = tensor(n, hq, d, n as u64, 1.0);
            let k = tensor(n, hk, d, n as u64 + 1, 1.0);
            let v = tensor(n, hk, d, n as u64 + 2, 1.0);
            for causal in [true, false] {
                let want = naive_dense_attention(&q, &k, &v, causal).unwrap();
                for tiles in [true, false] {
                    let got = run(&q, &k, &v, causal, tiles);
                    let err = max_diff(&got, &want);
                    assert!(
                        err <= 1e-5,
                        "err {err} n={n} d={d} causal={causal} tiles={tiles}"
                    );
                }
            }
        }
    }
}

#[test]
fn huge_finite_inputs_give_no_nan_both_ways() {
    for (n, d) in [(70, 32), (33, 16), (9, 128)] {
        let q = tensor(n, 2, d, 5, 3e38);
        let k = tensor(n, 1, d, 6, 3e38);
        let v = tensor(n, 1, d, 7, 1e30);
        for causal in [true, false] {
            for tiles in [true, false] {
                let out = run(&q, &k, &v, causal, tiles);
                assert!(
                    out.as_slice().iter().all(|x| x.is_finite()),
                    "n={n} d={d} causal={causal} tiles={tiles}"
                );
            }
        }
    }
}

#[test]
fn large_score_ranges_rescale_correctly() {
    // Scores growing along the sequence force the running maximum to move (by far
    // more than the lazy threshold) in every tile; scores shrinking never move it.
    let (n, d) = (200, 32);
    for sign in [1.0f32, -1.0] {
        let q = Tensor3::from_vec(vec![1.0; n * d], n, 1, d).unwrap();
        let kd: Vec<f32> = (0..n * d)
            .map(|i| sign * (i / d) as f32 * 0.9 + (i % 7) as f32 * 0.01)
            .collect();
        let k = Tensor3::from_vec(kd, n, 1, d).unwrap();
        let v = tensor(n, 1, d, 9, 1.0);
        for causal in [true, false] {
            let want = naive_dense_attention(&q, &k, &v, causal).unwrap();
            for tiles in [true, false] {
                let err = max_diff(&run(&q, &k, &v, causal, tiles), &want);
                assert!(err <= 1e-5, "err {err} sign={sign} causal={causal}");
            }
        }
    }
}

#[test]
fn nan_query_row_attends_uniformly_both_ways() {
    // A NaN score clamps to −f32::MAX like every other score of that row: the row
    // averages its values (the existing contract), on both paths.
    let (n, d) = (50, 32);
    let mut qd = tensor(n, 1, d, 3, 1.0).as_slice().to_vec();
    let row = 37;
    qd[row * d] = f32::NAN;
    let q = Tensor3::from_vec(qd, n, 1, d).unwrap();
    let k = tensor(n, 1, d, 4, 1.0);
    let v = tensor(n, 1, d, 5, 1.0);
    let on = run(&q, &k, &v, true, true);
    let off = run(&q, &k, &v, true, false);
    for c in 0..d {
        let mean = (0..=row).map(|j| v.as_slice()[j * d + c]).sum::<f32>() / (row + 1) as f32;
        for out in [&on, &off] {
            assert!((out.as_slice()[row * d + c] - mean).abs() <= 1e-5);
        }
    }
    assert!(max_diff(&on, &off) <= 1e-5);
}

#[test]
fn non_finite_value_reaches_only_the_queries_that_attend_it() {
    // Causal: an infinite or NaN value at key j leaves every query i < j untouched.
    if !tiles_expected(32) {
        return;
    }
    let (n, hk, d) = (100, 2, 32);
    let q = tensor(n, 4, d, 1, 1.0);
    let k = tensor(n, hk, d, 2, 1.0);
    let clean = tensor(n, hk, d, 3, 1.0);
    let base = run(&q, &k, &clean, true, true);
    for (j, bad) in [
        (5usize, f32::INFINITY),
        (40, f32::NAN),
        (66, f32::NEG_INFINITY),
    ] {
        let mut vd = clean.as_slice().to_vec();
        vd[(j * hk + 1) * d + 3] = bad;
        let v = Tensor3::from_vec(vd, n, hk, d).unwrap();
        let out = run(&q, &k, &v, true, true);
        let row = 4 * d;
        assert_eq!(
            out.as_slice()[..j * row],
            base.as_slice()[..j * row],
            "j={j}"
        );
        // Query heads of kv head 0 never read the bad value either.
        for i in j..n {
            let r = &out.as_slice()[i * row..i * row + 2 * d];
            assert_eq!(r, &base.as_slice()[i * row..i * row + 2 * d], "i={i}");
        }
    }
}

#[test]
fn non_finite_future_value_stays_out_of_earlier_queries_on_every_path() {
    // The generic kernel too (every SIMD level, tiles off, odd dims): a masked key's
    // probability is 0, and 0 · ∞ must not reach the earlier queries of a diagonal tile.
    for d in [32usize, 7] {
        let (n, hk) = (150, 2);
        let q = tensor(n, 4, d, 1, 1.0);
        let k = tensor(n, hk, d, 2, 1.0);
        let clean = tensor(n, hk, d, 3, 1.0);
        for tiles in [true, false] {
            for level in SimdLevel::ALL {
                let base = run_at(level, &q, &k, &clean, true, tiles).0;
                for (j, bad) in [
                    (3usize, f32::INFINITY),
                    (70, f32::NAN),
                    (129, f32::NEG_INFINITY),
                ] {
                    let mut vd = clean.as_slice().to_vec();
                    vd[(j * hk + 1) * d + d / 2] = bad;
                    let v = Tensor3::from_vec(vd, n, hk, d).unwrap();
                    let out = run_at(level, &q, &k, &v, true, tiles).0;
                    let row = 4 * d;
                    assert_eq!(
                        out.as_slice()[..j * row],
                        base.as_slice()[..j * row],
                        "d {d} tiles {tiles} {level:?} j {j}"
                    );
                }
            }
        }
    }
}

#[test]
fn lower_simd_levels_never_take_the_tile_path() {
    let (q, k, v) = (
        tensor(40, 2, 32, 1, 1.0),
        tensor(40, 1, 32, 2, 1.0),
        tensor(40, 1, 32, 3, 1.0),
    );
    let want = naive_dense_attention(&q, &k, &v, true).unwrap();
    for level in [SimdLevel::Scalar, SimdLevel::Avx2Fma] {
        let (got, ran) = run_at(level, &q, &k, &v, true, true);
        assert!(!ran.tiles, "{level:?}");
        assert_eq!(ran.level, level.effective());
        assert_eq!(got, dense_attention_at(level, &q, &k, &v, true).unwrap());
        assert!(max_diff(&got, &want) <= 1e-5);
    }
}

#[cfg(feature = "rayon")]
#[test]
fn parallel_equals_serial_bit_for_bit_both_ways() {
    use aether_kernel::dense_attention_par_with;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for (n, hq, hk, d) in [
        (1, 1, 1, 16),
        (77, 4, 2, 32),
        (201, 6, 3, 48),
        (130, 2, 1, 17),
    ] {
        let (q, k, v) = (
            tensor(n, hq, d, 21, 1.0),
            tensor(n, hk, d, 22, 1.0),
            tensor(n, hk, d, 23, 1.0),
        );
        for causal in [true, false] {
            for tiles in [true, false] {
                let serial = run(&q, &k, &v, causal, tiles);
                let exec = Exec::detect().with_dense_tiles(tiles);
                let par =
                    pool.install(|| dense_attention_par_with(exec, &q, &k, &v, causal).unwrap());
                assert_eq!(par, serial, "n={n} d={d} causal={causal} tiles={tiles}");
            }
        }
    }
}
