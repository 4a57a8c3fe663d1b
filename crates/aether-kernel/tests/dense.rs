//! The optimised dense kernel against the naive f64 oracle (random shapes, GQA/MQA,
//! odd dims, N across tile boundaries, causal and bidirectional), its equality with
//! `sparse_attention` when the pattern saturates, the `*_into` variants (a counting
//! allocator proves they allocate nothing), and
//! (feature `rayon`) bit-identical parallel results for both kernels.

use aether_kernel::reference::naive_dense_attention;
use aether_kernel::{
    dense_attention, dense_attention_into, dense_scratch_len, sparse_attention, KernelError,
    SparsePattern, Tensor3,
};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;
use common::{max_diff, tensor};

/// Counts allocations made by the current thread while armed (other test threads
/// allocate freely without being counted).
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers every operation to `System`; the counters are thread-local cells
// with const initialisers, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

fn shapes() -> impl Strategy<Value = (usize, usize, usize, usize, bool, u64)> {
    (
        0usize..300,
        1usize..=4,
        1usize..=3,
        1usize..100,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, ratio, hk, d, causal, seed)| (n, hk * ratio, hk, d, causal, seed))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dense_matches_naive((n, hq, hk, d, causal, seed) in shapes(), amp in prop::sample::select(vec![0.5f32, 1.0, 2.0])) {
        let q = tensor(n, hq, d, seed, amp);
        let k = tensor(n, hk, d, seed + 1, amp);
        let v = tensor(n, hk, d, seed + 2, 1.0);
        let a = dense_attention(&q, &k, &v, causal).unwrap();
        let b = naive_dense_attention(&q, &k, &v, causal).unwrap();
        let err = max_diff(&a, &b);
        prop_assert!(err <= 1e-5, "err {err} n={n} hq={hq} hk={hk} d={d} causal={causal}");
    }

    #[test]
    fn saturated_sparse_equals_dense((n, hq, hk, d, causal, seed) in shapes(), extra in 0usize..5, log_stride in any::<bool>(), bs in 1usize..40) {
        let p = SparsePattern {
            window: n + extra,
            block_size: bs,
            global_tokens: vec![0, 3, 1000],
            causal,
            log_stride,
            landmarks: false,
        };
        let q = tensor(n, hq, d, seed, 1.0);
        let k = tensor(n, hk, d, seed + 1, 1.0);
        let v = tensor(n, hk, d, seed + 2, 1.0);
        let s = sparse_attention(&p, &q, &k, &v).unwrap();
        let dn = dense_attention(&q, &k, &v, causal).unwrap();
        prop_assert!(max_diff(&s, &dn) <= 1e-5);
    }
}

#[test]
fn into_variant_is_shape_checked_and_equal() {
    let (q, k, v) = (
        tensor(70, 4, 33, 1, 1.0),
        tensor(70, 2, 33, 2, 1.0),
        tensor(70, 2, 33, 3, 1.0),
    );
    let need = dense_scratch_len(70, 2, 33).unwrap();
    let mut scratch = vec![f32::NAN; need];
    let mut out = Tensor3::zeros(70, 4, 33).unwrap();
    dense_attention_into(&q, &k, &v, true, &mut out, &mut scratch).unwrap();
    assert_eq!(out, dense_attention(&q, &k, &v, true).unwrap());
    let mut short = vec![0.0; need - 1];
    assert!(matches!(
        dense_attention_into(&q, &k, &v, true, &mut out, &mut short),
        Err(KernelError::ShapeMismatch {
            what: "dense scratch",
            ..
        })
    ));
    let mut wrong = Tensor3::zeros(70, 2, 33).unwrap();
    assert!(dense_attention_into(&q, &k, &v, true, &mut wrong, &mut scratch).is_err());
}

#[test]
fn into_variants_do_not_allocate() {
    use aether_kernel::{sparse_attention_into, sparse_scratch_len};
    let (q, k, v) = (
        tensor(300, 4, 32, 1, 1.0),
        tensor(300, 1, 32, 2, 1.0),
        tensor(300, 1, 32, 3, 1.0),
    );
    let p = SparsePattern::default();
    let mut out = Tensor3::zeros(300, 4, 32).unwrap();
    let mut ss = vec![0.0; sparse_scratch_len(&p, 300, 1, 32).unwrap()];
    let mut ds = vec![0.0; dense_scratch_len(300, 1, 32).unwrap()];
    // Warm up (one-time SIMD detection), then count.
    sparse_attention_into(&p, &q, &k, &v, &mut out, &mut ss).unwrap();
    let n = allocations(|| {
        sparse_attention_into(&p, &q, &k, &v, &mut out, &mut ss).unwrap();
        dense_attention_into(&q, &k, &v, true, &mut out, &mut ds).unwrap();
    });
    assert_eq!(n, 0);
    assert!(allocations(|| drop(dense_attention(&q, &k, &v, true).unwrap())) > 0);
}

#[test]
fn extreme_finite_inputs_never_give_nan() {
    let n = 70;
    let q = tensor(n, 2, 8, 5, 3e38);
    let k = tensor(n, 1, 8, 6, 3e38);
    let v = tensor(n, 1, 8, 7, 1e30);
    for causal in [true, false] {
        let out = dense_attention(&q, &k, &v, causal).unwrap();
        assert!(out.as_slice().iter().all(|x| x.is_finite()));
    }
}

#[cfg(feature = "rayon")]
mod par {
    use super::*;
    use aether_kernel::{dense_attention_par, sparse_attention_par};

    #[test]
    fn parallel_equals_serial_bit_for_bit() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (n, hq, hk, d) in [(0, 2, 1, 4), (1, 1, 1, 1), (201, 4, 2, 32), (333, 3, 3, 17)] {
            let (q, k, v) = (
                tensor(n, hq, d, 11, 1.0),
                tensor(n, hk, d, 12, 1.0),
                tensor(n, hk, d, 13, 1.0),
            );
            for causal in [true, false] {
                let p = SparsePattern {
                    window: 7,
                    block_size: 5,
                    global_tokens: vec![0, 50],
                    causal,
                    log_stride: true,
                    landmarks: true,
                };
                let (sp, dp) = pool.install(|| {
                    (
                        sparse_attention_par(&p, &q, &k, &v).unwrap(),
                        dense_attention_par(&q, &k, &v, causal).unwrap(),
                    )
                });
                assert_eq!(sp, sparse_attention(&p, &q, &k, &v).unwrap());
                assert_eq!(dp, dense_attention(&q, &k, &v, causal).unwrap());
            }
        }
    }
}
