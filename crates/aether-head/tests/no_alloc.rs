//! `forward_into`, `Stream::push` and `RollingWindow::{push, classify}` allocate nothing
//! once built (a counting global allocator proves it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use aether_head::{
    Backend, EvictionPolicy, HeadConfig, Pooling, RollingWindow, Stream, TemporalHead, Workspace,
};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.load(Ordering::SeqCst);
    let r = f();
    (r, ALLOCS.load(Ordering::SeqCst) - before)
}

#[test]
fn hot_paths_do_not_allocate() {
    for (backend, pooling, mlp) in [
        (Backend::Sparse, Pooling::Mean, 0),
        (Backend::Dense, Pooling::Last, 8),
    ] {
        let mut cfg = HeadConfig::aether_default();
        cfg.backend = backend;
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
