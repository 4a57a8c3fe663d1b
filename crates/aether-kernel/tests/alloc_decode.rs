//! A counting global allocator proves that `push` + `decode` allocate nothing after warm-up,
//! for f32 and f16 storage and every eviction policy (including eviction steps).

use aether_kernel::{EvictionPolicy, KvCache, KvCacheF16, KvCacheOf, KvElem, SparsePattern};

mod counting;
use counting::allocs;

fn run<S: KvElem>(mut cache: KvCacheOf<S>, p: &SparsePattern, q_heads: usize, steps: usize) {
    let (hk, d) = (cache.kv_heads(), cache.dim());
    let rows: Vec<Vec<f32>> = (0..64)
        .map(|t| {
            (0..hk * d)
                .map(|e| ((t * 31 + e * 7) % 19) as f32 * 0.05 - 0.4)
                .collect()
        })
        .collect();
    let q: Vec<f32> = (0..q_heads * d).map(|e| (e % 5) as f32 * 0.1).collect();
    let mut out = vec![0.0f32; q_heads * d];
    // Warm-up: the first decode sizes the scratch for this pattern.
    cache.push(&rows[0], &rows[1]).unwrap();
    cache.decode(p, &q, &mut out).unwrap();
    let bytes = cache.bytes();
    let before = allocs();
    for t in 1..steps {
        let r = &rows[t % rows.len()];
        cache.push(r, r).unwrap();
        cache.decode(p, &q, &mut out).unwrap();
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "{} {:?}: allocations during push+decode",
        cache.storage(),
        cache.policy()
    );
    assert_eq!(cache.bytes(), bytes);
    assert!(out.iter().all(|x| x.is_finite()));
}

#[test]
fn push_and_decode_allocate_nothing_after_warm_up() {
    // The counter sees allocations on this thread (so a zero below means something).
    let b = allocs();
    std::hint::black_box(vec![1u8; 16]);
    assert!(allocs() > b);
    let p = SparsePattern::default();
    let policies = [
        EvictionPolicy::Error,
        EvictionPolicy::SlidingWindow,
        EvictionPolicy::HeavyHitter { recent: 40 },
    ];
    for policy in policies {
        let steps = if policy == EvictionPolicy::Error {
            3000
        } else {
            5000
        };
        run(KvCache::with_policy(3000, 1, 32, 16, policy), &p, 4, steps);
        run(
            KvCacheF16::with_policy(3000, 2, 7, 16, policy),
            &p,
            8,
            steps,
        );
        // The AETHER shape in f16 (converted rows) and GQA 5:1 (a four-head chunk plus one).
        run(
            KvCacheF16::with_policy(3000, 1, 32, 16, policy),
            &p,
            4,
            steps,
        );
        run(KvCache::with_policy(3000, 2, 33, 16, policy), &p, 10, steps);
    }
}
