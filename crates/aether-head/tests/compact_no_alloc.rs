//! Both compact layouts (absorbed layer inputs, stored keys/values) run
//! `forward_into`, `forward_compact_into` and `RollingWindow::{push, classify}` without
//! allocating once built (a per-thread counting global allocator proves it), over configurations
//! with every option on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use aether_head::{
    AttentionBackend, HeadConfig, Pooling, Positional, RollingWindow, TemporalHead, Workspace,
};

struct Counting;

thread_local! {
    // Per thread: the test harness's other threads may allocate meanwhile. Const
    // initialised and without a destructor, so reading it never allocates.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    ALLOCS.with(|a| a.set(a.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
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

fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

#[test]
fn compact_layouts_do_not_allocate() {
    // The counter sees this thread's allocations.
    assert_eq!(count(|| drop(std::hint::black_box(vec![1u8]))).1, 1);
    // (d_model, backend, pooling): D 8 < 2·Hkv·dh = 16 is absorbed, D 24 stores k/v.
    for (d, backend, pooling) in [
        (8usize, AttentionBackend::Sparse, Pooling::Mean),
        (8, AttentionBackend::Dense, Pooling::Last),
        (24, AttentionBackend::Sparse, Pooling::Last),
        (24, AttentionBackend::Dense, Pooling::Mean),
    ] {
        let mut cfg = HeadConfig::bare(aether_head::Dims {
            input_dim: 6,
            d_model: 6,
            q_heads: 4,
            kv_heads: 2,
            head_dim: 4,
            layers: 2,
            classes: 3,
            mlp_hidden: 0,
        });
        cfg.embed = true;
        cfg.d_model = d;
        cfg.input_norm = true;
        cfg.positional = Positional::Sinusoidal;
        cfg.pre_norm = true;
        cfg.biases = true;
        cfg.mlp_hidden = 10;
        cfg.final_norm = true;
        cfg.attention = backend;
        cfg.pooling = pooling;
        cfg.pattern.block_size = 4;
        cfg.pattern.window = 5;
        let flat: Vec<f32> = (0..cfg.num_weights().unwrap())
            .map(|i| (i * 7919 % 1000) as f32 / 1000.0 * 0.3 + 0.05) // positive: input.std > 0
            .collect();
        let head = TemporalHead::from_flat(cfg, &flat).unwrap();
        let frames: Vec<f32> = (0..90 * 6).map(|i| ((i % 11) as f32 - 5.0) * 0.2).collect();
        let mut ws = Workspace::compact(&head, 90).unwrap();
        assert_eq!(ws.is_absorbed(), d == 8);
        let mut logits = [0.0f32; 3];
        for len in [90usize, 1, 37] {
            let (r, n) = count(|| head.forward_into(&frames[..len * 6], &mut ws, &mut logits));
            r.unwrap();
            assert_eq!(n, 0, "forward_into allocated (d {d}, len {len})");
            let (r, n) =
                count(|| head.forward_compact_into(&frames[..len * 6], &mut ws, &mut logits));
            r.unwrap();
            assert_eq!(n, 0, "forward_compact_into allocated (d {d}, len {len})");
        }
        let mut rw = RollingWindow::compact(&head, 40).unwrap();
        let (_, n) = count(|| {
            for (k, f) in frames.chunks(6).enumerate() {
                rw.push(f).unwrap();
                if k % 7 == 0 {
                    rw.classify(&head, &mut logits).unwrap();
                }
            }
        });
        assert_eq!(n, 0, "compact RollingWindow allocated (d {d})");
        assert!(logits.iter().all(|x| x.is_finite()));
    }
}
