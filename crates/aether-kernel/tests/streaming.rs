//! Streaming KV caches against the naive oracle: token-by-token push + decode equals causal
//! sparse attention at every position; f16 error bound; eviction policies follow their
//! documented semantics (pattern on absolute positions restricted to what is retained).

use aether_kernel::reference::naive_sparse_attention;
use aether_kernel::simd::SimdLevel;
use aether_kernel::sparse_attention;
use aether_kernel::{
    EvictionPolicy, KernelError, KvCache, KvCacheF16, KvCacheOf, KvElem, SparsePattern, Tensor3,
};
use proptest::prelude::*;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Case {
    t: usize,
    hq: usize,
    hk: usize,
    d: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Case {
    fn new(t: usize, hk: usize, group: usize, d: usize, seed: u64) -> Self {
        let hq = hk * group;
        Self {
            t,
            hq,
            hk,
            d,
            q: values(t * hq * d, seed),
            k: values(t * hk * d, seed ^ 0xabc),
            v: values(t * hk * d, seed ^ 0x123),
        }
    }
    fn krow(&self, i: usize) -> &[f32] {
        &self.k[i * self.hk * self.d..(i + 1) * self.hk * self.d]
    }
    fn vrow(&self, i: usize) -> &[f32] {
        &self.v[i * self.hk * self.d..(i + 1) * self.hk * self.d]
    }
    fn qrow(&self, i: usize) -> &[f32] {
        &self.q[i * self.hq * self.d..(i + 1) * self.hq * self.d]
    }
    /// Oracle over the prefix `0..n`.
    fn oracle(&self, p: &SparsePattern, n: usize) -> Tensor3 {
        let (hq, hk, d) = (self.hq, self.hk, self.d);
        let q = Tensor3::from_vec(self.q[..n * hq * d].to_vec(), n, hq, d).unwrap();
        let k = Tensor3::from_vec(self.k[..n * hk * d].to_vec(), n, hk, d).unwrap();
        let v = Tensor3::from_vec(self.v[..n * hk * d].to_vec(), n, hk, d).unwrap();
        naive_sparse_attention(p, &q, &k, &v).unwrap()
    }
}

/// Streams the case through `cache`; returns every decoded row, `[t][hq·d]` flattened.
fn stream<S: KvElem>(c: &Case, p: &SparsePattern, cache: &mut KvCacheOf<S>) -> Vec<f32> {
    let w = c.hq * c.d;
    let mut out = vec![0.0f32; c.t * w];
    for i in 0..c.t {
        cache.push(c.krow(i), c.vrow(i)).unwrap();
        cache
            .decode(p, c.qrow(i), &mut out[i * w..(i + 1) * w])
            .unwrap();
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn pattern_strategy(t: usize) -> impl Strategy<Value = SparsePattern> {
    (
        0..t + 6,
        1..t + 6,
        proptest::collection::vec(0..t + 10, 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(window, block_size, global_tokens, log_stride, landmarks)| SparsePattern {
                window,
                block_size,
                global_tokens,
                causal: true,
                log_stride,
                landmarks,
            },
        )
}

fn case_strategy() -> impl Strategy<Value = (usize, usize, usize, usize, u64, SparsePattern)> {
    (1usize..90).prop_flat_map(|t| {
        (
            Just(t),
            1usize..3,
            1usize..10,
            // Odd dims, dims below, at and between multiples of 16 (SIMD tails).
            prop_oneof![1usize..10, 10usize..70],
            any::<u64>(),
            pattern_strategy(t),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// f32: token-by-token decode equals causal sparse attention at every position.
    #[test]
    fn f32_decode_equals_causal_sparse_attention((t, hk, group, d, seed, p) in case_strategy()) {
        let c = Case::new(t, hk, group, d, seed);
        let mut cache = KvCache::new(t, hk, d, p.block_size);
        let got = stream(&c, &p, &mut cache);
        let want = c.oracle(&p, t);
        let err = max_abs_diff(&got, want.as_slice());
        prop_assert!(err <= 1e-5, "max abs err {err}");
        let (hq, d2) = (c.hq, c.d);
        let fast = sparse_attention(
            &p,
            &Tensor3::from_vec(c.q.clone(), t, hq, d2).unwrap(),
            &Tensor3::from_vec(c.k.clone(), t, hk, d2).unwrap(),
            &Tensor3::from_vec(c.v.clone(), t, hk, d2).unwrap(),
        ).unwrap();
        let err = max_abs_diff(&got, fast.as_slice());
        prop_assert!(err <= 1e-5, "vs sparse_attention: max abs err {err}");
        prop_assert_eq!(cache.len(), t);
        prop_assert_eq!(cache.push(c.krow(0), c.vrow(0)), Err(KernelError::CapacityExceeded { capacity: t }));
    }

    /// f16 storage stays within the documented first-order bound of the f32 result:
    /// `max|v|·2⁻¹¹·(1 + 2·√d·max|q|·max|k|)` (plus 25 % for second-order terms).
    #[test]
    fn f16_decode_error_is_bounded((t, hk, group, d, seed, p) in case_strategy()) {
        let c = Case::new(t, hk, group, d, seed);
        let got = stream(&c, &p, &mut KvCacheF16::new(t, hk, d, p.block_size));
        let want = c.oracle(&p, t);
        let err = max_abs_diff(&got, want.as_slice());
        let bound = 1.25 * f32::powi(2.0, -11) * (1.0 + 2.0 * (d as f32).sqrt()) + 1e-5;
        prop_assert!(err <= bound, "f16 max abs err {err} > bound {bound}");
    }

    /// A non-causal pattern decodes row T−1 of bidirectional attention over the prefix.
    #[test]
    fn noncausal_decode_is_last_row_of_bidirectional_prefix(
        (t, hk, group, d, seed, p) in (1usize..30).prop_flat_map(|t| (
            Just(t), 1usize..3, 1usize..5, 1usize..6, any::<u64>(), pattern_strategy(t)))
    ) {
        let p = SparsePattern { causal: false, ..p };
        let c = Case::new(t, hk, group, d, seed);
        let got = stream(&c, &p, &mut KvCache::new(t, hk, d, p.block_size));
        let w = c.hq * c.d;
        for n in 1..=t {
            let want = c.oracle(&p, n);
            let err = max_abs_diff(&got[(n - 1) * w..n * w], &want.as_slice()[(n - 1) * w..n * w]);
            prop_assert!(err <= 1e-5, "n={n} err {err}");
        }
    }

    /// Eviction policies: while nothing is evicted the output is exact; afterwards it equals
    /// the pattern on absolute positions restricted to the retained tokens and landmark blocks
    /// (landmarks are means over all tokens of their block). Memory stays bounded.
    #[test]
    fn eviction_follows_documented_semantics(
        (t, hk, group, d, seed, p) in case_strategy(),
        cap_frac in 0.1f64..1.0,
        h2o in any::<bool>(),
        recent_frac in 0.0f64..1.0,
    ) {
        let t = t + 40;
        let c = Case::new(t, hk, group, d, seed);
        let cap = ((t as f64 * cap_frac) as usize).max(1);
        let policy = if h2o {
            EvictionPolicy::HeavyHitter { recent: ((cap as f64 * recent_frac) as usize).min(cap - 1) }
        } else {
            EvictionPolicy::SlidingWindow
        };
        let mut cache = KvCache::with_policy(cap, hk, d, p.block_size, policy);
        let model = Model::new(&c, &p, cache.landmark_blocks().end);
        let full = c.oracle(&p, t);
        let w = c.hq * c.d;
        let mut out = vec![0.0f32; w];
        let mut bytes = None;
        let mut model = model;
        for i in 0..t {
            let before: Vec<usize> = cache.positions().collect();
            let mass_before: Vec<f32> = before.iter().map(|&j| cache.attention_mass(j).unwrap_or(0.0)).collect();
            if let Err(e) = cache.push(c.krow(i), c.vrow(i)) {
                // Only possible under H2O when every retained position is protected.
                prop_assert_eq!(e, KernelError::CapacityExceeded { capacity: cap });
                let EvictionPolicy::HeavyHitter { recent } = policy else {
                    return Err(TestCaseError::fail("sliding window refused a push"));
                };
                prop_assert_eq!(cache.positions().collect::<Vec<_>>(), before.clone());
                for (x, &j) in before.iter().enumerate() {
                    prop_assert!(x + recent >= before.len() || p.global_tokens.contains(&j));
                }
                break;
            }
            prop_assert!(cache.len() <= cap);
            let after: Vec<usize> = cache.positions().collect();
            prop_assert_eq!(*after.last().unwrap(), i);
            if let EvictionPolicy::HeavyHitter { recent } = policy {
                // The `recent` newest positions and pinned globals survive; victims had the
                // lowest mass among the evictable positions.
                for j in i.saturating_sub(recent)..=i {
                    prop_assert!(cache.contains(j), "recent position {j} evicted at {i}");
                }
                for &g in &p.global_tokens {
                    if g < i && before.contains(&g) {
                        prop_assert!(cache.contains(g), "global {g} evicted");
                    }
                }
                let evicted: Vec<usize> = (0..before.len()).filter(|&x| !after.contains(&before[x])).collect();
                let protected_from = before.len().saturating_sub(recent);
                for &e in &evicted {
                    for (x, &j) in before.iter().enumerate().take(protected_from) {
                        if after.contains(&j) && !p.global_tokens.contains(&j) {
                            prop_assert!(mass_before[e] <= mass_before[x],
                                "evicted {} (mass {}) while keeping {} (mass {})", before[e], mass_before[e], j, mass_before[x]);
                        }
                    }
                }
            } else {
                let first = (i + 1).saturating_sub(cap);
                prop_assert_eq!(after, (first..=i).collect::<Vec<_>>());
            }
            cache.decode(&p, c.qrow(i), &mut out).unwrap();
            let want = model.decode(&cache, i);
            let err = max_abs_diff(&out, &want);
            prop_assert!(err <= 1e-5, "i={} err {}", i, err);
            if i < cap {
                let e = max_abs_diff(&out, &full.as_slice()[i * w..(i + 1) * w]);
                prop_assert!(e <= 1e-5, "before any eviction i={i} err {e}");
            }
            if i >= cap {
                // Memory is fixed once the cache is full and the scratch is sized.
                let b = cache.bytes();
                prop_assert_eq!(*bytes.get_or_insert(b), b);
            }
        }
        if h2o {
            for j in cache.positions() {
                let m = cache.attention_mass(j).unwrap();
                let want = model.mass[j] as f32;
                prop_assert!((m - want).abs() <= 1e-4 * (1.0 + want), "mass of {j}: {m} vs {want}");
            }
        }
    }
}

/// The documented post-eviction semantics, computed naively in f64 from the full history.
struct Model<'a> {
    c: &'a Case,
    p: &'a SparsePattern,
    /// Cumulative mass per absolute position (summed over query heads).
    mass: Vec<f64>,
}

impl<'a> Model<'a> {
    fn new(c: &'a Case, p: &'a SparsePattern, _lm: usize) -> Self {
        Self {
            c,
            p,
            mass: vec![0.0; c.t],
        }
    }

    fn decode<S: KvElem>(&mut self, cache: &KvCacheOf<S>, i: usize) -> Vec<f32> {
        let (c, p) = (self.c, self.p);
        let (hq, hk, d) = (c.hq, c.hk, c.d);
        let n = i + 1;
        let group = hq / hk;
        let mut toks = Vec::new();
        p.for_each_token(i, n, |j| {
            if cache.contains(j) {
                toks.push(j)
            }
        });
        let mut blocks = Vec::new();
        let lm = cache.landmark_blocks();
        p.for_each_landmark(i, n, |b| {
            if lm.contains(&b) {
                blocks.push(b)
            }
        });
        let bs = p.block_size;
        let mean = |x: &[f32], b: usize, kh: usize, e: usize| -> f64 {
            (b * bs..(b + 1) * bs)
                .map(|t| f64::from(x[(t * hk + kh) * d + e]))
                .sum::<f64>()
                / bs as f64
        };
        let mut out = vec![0.0f32; hq * d];
        for h in 0..hq {
            let kh = h / group;
            let q = &c.q[(i * hq + h) * d..(i * hq + h + 1) * d];
            let mut keys: Vec<Vec<f64>> = Vec::new();
            let mut vals: Vec<Vec<f64>> = Vec::new();
            for &j in &toks {
                keys.push(
                    (0..d)
                        .map(|e| f64::from(c.k[(j * hk + kh) * d + e]))
                        .collect(),
                );
                vals.push(
                    (0..d)
                        .map(|e| f64::from(c.v[(j * hk + kh) * d + e]))
                        .collect(),
                );
            }
            for &b in &blocks {
                keys.push((0..d).map(|e| mean(&c.k, b, kh, e)).collect());
                vals.push((0..d).map(|e| mean(&c.v, b, kh, e)).collect());
            }
            let s: Vec<f64> = keys
                .iter()
                .map(|k| {
                    k.iter().zip(q).map(|(a, &b)| a * f64::from(b)).sum::<f64>() / (d as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = w.iter().sum();
            for (x, &j) in toks.iter().enumerate() {
                self.mass[j] += w[x] / z;
            }
            for e in 0..d {
                let acc: f64 = w.iter().zip(&vals).map(|(wi, v)| wi * v[e]).sum();
                out[h * d + e] = (acc / z) as f32;
            }
        }
        out
    }
}

/// Sliding window with a pattern whose reach fits the capacity (no log-stride, no globals
/// outside the window, no landmarks): identical to full sparse attention forever.
#[test]
fn sliding_window_with_enough_capacity_is_exact_forever() {
    let (t, w) = (300, 7);
    let c = Case::new(t, 1, 4, 8, 7);
    let p = SparsePattern {
        window: w,
        block_size: 4,
        global_tokens: vec![],
        causal: true,
        log_stride: false,
        landmarks: false,
    };
    let got = stream(
        &c,
        &p,
        &mut KvCache::with_policy(w + 1, 1, 8, 4, EvictionPolicy::SlidingWindow),
    );
    let err = max_abs_diff(&got, c.oracle(&p, t).as_slice());
    assert!(err <= 1e-5, "err {err}");
    // Landmarks are kept for `capacity / B + 2` complete blocks, beyond the evicted tokens:
    // with the local landmark blocks only (no log-stride) decode stays exact too.
    let p = SparsePattern {
        landmarks: true,
        ..p
    };
    let got = stream(
        &c,
        &p,
        &mut KvCache::with_policy(w + 1, 1, 8, 4, EvictionPolicy::SlidingWindow),
    );
    let err = max_abs_diff(&got, c.oracle(&p, t).as_slice());
    assert!(err <= 1e-5, "landmarks err {err}");
}

/// Heavy hitter with no evictable position refuses the push without changing anything.
#[test]
fn heavy_hitter_with_everything_protected_refuses() {
    let p = SparsePattern {
        block_size: 2,
        global_tokens: vec![0],
        ..SparsePattern::default()
    };
    let mut cache = KvCache::with_policy(3, 1, 1, 2, EvictionPolicy::HeavyHitter { recent: 2 });
    let mut out = [0.0f32];
    for t in 0..3 {
        cache.push(&[t as f32], &[t as f32]).unwrap();
        cache.decode(&p, &[1.0], &mut out).unwrap();
    }
    // Position 0 is a pinned global, 1 and 2 are the recent window.
    assert_eq!(
        cache.push(&[3.0], &[3.0]),
        Err(KernelError::CapacityExceeded { capacity: 3 })
    );
    assert_eq!(cache.positions().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(cache.total(), 3);
}

/// Reset makes a cache behave like a fresh one.
#[test]
fn reset_then_restream_is_identical() {
    let c = Case::new(50, 2, 2, 5, 3);
    let p = SparsePattern {
        window: 4,
        block_size: 3,
        ..SparsePattern::default()
    };
    let mut cache = KvCacheF16::with_policy(20, 2, 5, 3, EvictionPolicy::SlidingWindow);
    let a = stream(&c, &p, &mut cache);
    cache.reset();
    let b = stream(&c, &p, &mut cache);
    assert_eq!(a, b);
}

/// Every SIMD level available here (set on each cache) gives the oracle's result.
#[test]
fn every_simd_level_decodes_exactly() {
    for level in SimdLevel::ALL {
        if !level.is_available() {
            continue;
        }
        for (t, hk, group, d, w, bs) in [
            (70, 1, 4, 32, 8, 4),
            (45, 2, 3, 17, 3, 5),
            (33, 1, 1, 1, 0, 1),
            (50, 3, 2, 40, 60, 7),
            // Four-head MQA/GQA chunks with odd and non-multiple-of-16 dims and remainders.
            (60, 1, 4, 33, 5, 3),
            (40, 2, 5, 16, 9, 4),
            (55, 1, 8, 47, 12, 6),
            (35, 1, 9, 64, 2, 2),
        ] {
            let c = Case::new(t, hk, group, d, (t * d) as u64);
            let p = SparsePattern {
                window: w,
                block_size: bs,
                global_tokens: vec![0, 5],
                causal: true,
                log_stride: true,
                landmarks: true,
            };
            let want = c.oracle(&p, t);
            let mut cache = KvCache::new(t, hk, d, bs).with_level(level);
            assert_eq!(cache.level(), level, "{} never ran", level.name());
            let got = stream(&c, &p, &mut cache);
            let err = max_abs_diff(&got, want.as_slice());
            assert!(err <= 1e-5, "{}: f32 err {err}", level.name());
            let mut cache = KvCacheF16::new(t, hk, d, bs).with_level(level);
            let got = stream(&c, &p, &mut cache);
            let err = max_abs_diff(&got, want.as_slice());
            assert!(err <= 1e-2, "{}: f16 err {err}", level.name());
        }
    }
}

/// An f16 cache holds fewer bytes than the f32 cache of the same shape, for small and large
/// capacities, once its decode scratch is sized (the f16 row conversion works in fixed-size
/// chunks, so its scratch does not grow with the pattern's worst case).
#[test]
fn f16_cache_is_smaller_than_f32_cache_of_the_same_shape() {
    let aether = SparsePattern::default();
    let local = SparsePattern {
        window: 200,
        landmarks: false,
        ..SparsePattern::default()
    };
    for (p, hk, group, d) in [(&aether, 1, 4, 32), (&aether, 4, 1, 32), (&local, 2, 3, 17)] {
        for cap in [2usize, 3, 8, 16, 120, 256, 1000, 20_000] {
            let c = Case::new(cap.min(300), hk, group, d, cap as u64);
            let mut s32 = KvCache::new(cap, hk, d, p.block_size);
            let mut s16 = KvCacheF16::new(cap, hk, d, p.block_size);
            s32.reserve_decode(p, hk * group).unwrap();
            s16.reserve_decode(p, hk * group).unwrap();
            stream(&c, p, &mut s32);
            stream(&c, p, &mut s16);
            let (b32, b16) = (s32.bytes(), s16.bytes());
            assert!(
                b16 < b32,
                "cap {cap} hk {hk} d {d}: f16 {b16} B vs f32 {b32} B"
            );
        }
    }
}

/// On keys and values that f16 represents exactly (and no landmark means, which are rounded
/// differently), the f16 cache decodes bit-identically to the f32 cache: the chunked row
/// conversion changes neither the values nor the summation order. Windows above the chunk
/// size put chunk boundaries inside the token candidates.
#[test]
fn f16_decode_is_bit_identical_to_f32_on_half_representable_rows() {
    for (t, hk, group, d, window, globals) in [
        (150, 1, 4, 32, 100, vec![0]),
        (120, 2, 5, 17, 70, vec![0, 3, 90]),
        (90, 1, 9, 47, 33, vec![]),
        (80, 3, 1, 1, 64, vec![1]),
    ] {
        let mut c = Case::new(t, hk, group, d, (t * d) as u64);
        for x in c.k.iter_mut().chain(c.v.iter_mut()) {
            *x = half::f16::from_f32(*x).to_f32();
        }
        let p = SparsePattern {
            window,
            block_size: 8,
            global_tokens: globals,
            causal: true,
            log_stride: true,
            landmarks: false,
        };
        let a = stream(&c, &p, &mut KvCache::new(t, hk, d, 8));
        let b = stream(&c, &p, &mut KvCacheF16::new(t, hk, d, 8));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "t {t} hk {hk} group {group} d {d} window {window}"
        );
    }
}
