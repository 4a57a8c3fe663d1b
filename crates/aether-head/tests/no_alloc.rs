//! `forward_into`, `Stream::push` and `RollingWindow::{push, classify}` allocate nothing
//! once built (a per-thread counting global allocator proves it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use aether_head::{
    AttentionBackend, EvictionPolicy, HeadConfig, Pooling, RollingWindow, Stream, TemporalHead,
    Workspace,
};

/// Counts the allocations of the current thread while its `COUNTING` flag is set (the test
/// harness's other threads allocate freely without being counted).
struct Counting;

thread_local! {
    // Const initialised, without destructors: reading or setting them never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one allocation when this thread is counting.
fn bump() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts, in
// thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result and the allocations it made on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get))
}

#[test]
fn hot_paths_do_not_allocate() {
    // The counter sees this thread's allocations.
    assert_eq!(count(|| drop(std::hint::black_box(vec![1u8]))).1, 1);
    for (backend, pooling, mlp) in [
        (AttentionBackend::Sparse, Pooling::Mean, 0),
        (AttentionBackend::Dense, Pooling::Last, 8),
    ] {
        let mut cfg = HeadConfig::aether_default();
        cfg.attention = backend;
        cfg.pooling = pooling;
        cfg.mlp_hidden = mlp;
        cfg.pre_norm = mlp > 0;
        cfg.final_norm = true;
        let flat: Vec<f32> = (0..cfg.num_weights().unwrap())
            .map(|i| {
                ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2
                    + if i % 97 == 0 { 1.0 } else { 0.0 }
            })
            .collect();
        let head = TemporalHead::from_flat(cfg, &flat).unwrap();
        let frames: Vec<f32> = (0..300 * 16)
            .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
            .collect();
        let mut logits = [0.0f32; 4];
        for mut ws in [
            Workspace::new(&head, 300).unwrap(),
            Workspace::compact(&head, 300).unwrap(),
        ] {
            let (r, n) = count(|| head.forward_into(&frames, &mut ws, &mut logits));
            r.unwrap();
            assert_eq!(
                n,
                0,
                "forward_into allocated (compact: {})",
                ws.is_compact()
            );
            let (r, n) = count(|| head.forward_into(&frames[..100 * 16], &mut ws, &mut logits));
            r.unwrap();
            assert_eq!(n, 0, "shorter forward_into allocated");
        }

        let mut s = Stream::new(&head, 200, EvictionPolicy::SlidingWindow).unwrap();
        let (_, n) = count(|| {
            for f in frames.chunks(16) {
                s.push(&head, f).unwrap();
            }
        });
        assert_eq!(n, 0, "Stream::push allocated");

        let mut rw = RollingWindow::compact(&head, 100).unwrap();
        let (_, n) = count(|| {
            for f in frames.chunks(16) {
                rw.push(f).unwrap();
            }
            rw.classify(&head, &mut logits).unwrap();
        });
        assert_eq!(n, 0, "RollingWindow allocated");
    }
}
