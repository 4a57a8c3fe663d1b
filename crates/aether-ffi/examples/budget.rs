//! Node budget of the C ABI (README.md): heap bytes a context holds after
//! `ruv_temporal_init` for the AETHER default head at several windows, measured with a
//! counting allocator, and what dominates them.
//!
//! `cargo run -p aether-ffi --release --example budget`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use aether_ffi::{ruv_temporal_destroy, ruv_temporal_init, ESP_OK};
use aether_head::HeadConfig;
use aether_rvne::{reference_init_v1_bytes, DType, Dims, REFERENCE_SEED};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only updates an atomic counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::SeqCst);
        // SAFETY: same contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::SeqCst);
        // SAFETY: same contract.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::SeqCst);
        // SAFETY: same contract.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let blob = reference_init_v1_bytes(&Dims::AETHER_DEFAULT, REFERENCE_SEED, DType::F32).unwrap();
    // 16-aligned copy: the weights are borrowed, as from memory-mapped flash.
    let mut store = vec![0u128; blob.len().div_ceil(16)];
    // SAFETY: `store` holds at least `blob.len()` bytes.
    let aligned =
        unsafe { std::slice::from_raw_parts_mut(store.as_mut_ptr().cast::<u8>(), blob.len()) };
    aligned.copy_from_slice(&blob);
    let cfg = HeadConfig::aether_default();
    let (f, d, kw) = (cfg.features, cfg.d_model, cfg.kv_width());
    println!(
        "AETHER default head (F = D = {f}, Hq {}, Hkv {}, dh {}, L {}, C {}), f32 weights {} bytes borrowed",
        cfg.q_heads, cfg.kv_heads, cfg.head_dim, cfg.layers, cfg.classes, blob.len()
    );
    println!(
        "{:>6} {:>9} {:>8} {:>9} {:>8}   workspace: {:>7} {:>7} {:>8}",
        "window", "heap B", "ring", "workspace", "other", "x", "k+v", "rest"
    );
    for window in [32usize, 48, 64, 100, 128, 200, 256, 500] {
        let before = LIVE.load(Ordering::SeqCst);
        let mut ctx = std::ptr::null_mut();
        // SAFETY: `aligned` outlives the context (destroyed below).
        let e = unsafe {
            ruv_temporal_init(
                aligned.as_ptr(),
                aligned.len(),
                16,
                window as u32,
                4,
                &mut ctx,
            )
        };
        assert_eq!(e, ESP_OK);
        let heap = (LIVE.load(Ordering::SeqCst) - before) as usize;
        // SAFETY: `ctx` is live.
        let c = unsafe { (*ctx).context() };
        assert_eq!(c.head().owned_weight_bytes(), 0, "weights must be borrowed");
        let ring = window * f * 4;
        let ws = c.workspace_bytes();
        let x = window * d * 4;
        let kv = 2 * window * kw * 4;
        println!(
            "{window:>6} {heap:>9} {ring:>8} {ws:>9} {:>8}   {x:>18} {kv:>7} {:>8}",
            heap - ring - ws,
            ws - x - kv
        );
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
    }
    println!("\nwindow 256, smaller heads (F = D = 16, L 2, C 4):");
    println!("{:>14} {:>9} {:>9}", "Hq/Hkv/dh", "heap B", "weights B");
    for (hq, hkv, dh) in [(4usize, 1usize, 32usize), (4, 1, 16), (4, 1, 8), (2, 1, 8)] {
        let dims = Dims::v1(16, hq, hkv, dh, 2, 4);
        let blob = reference_init_v1_bytes(&dims, REFERENCE_SEED, DType::F32).unwrap();
        let mut store = vec![0u128; blob.len().div_ceil(16)];
        // SAFETY: `store` holds at least `blob.len()` bytes.
        let aligned =
            unsafe { std::slice::from_raw_parts_mut(store.as_mut_ptr().cast::<u8>(), blob.len()) };
        aligned.copy_from_slice(&blob);
        let before = LIVE.load(Ordering::SeqCst);
        let mut ctx = std::ptr::null_mut();
        // SAFETY: `aligned` outlives the context (destroyed below).
        let e = unsafe { ruv_temporal_init(aligned.as_ptr(), aligned.len(), 16, 256, 4, &mut ctx) };
        assert_eq!(e, ESP_OK);
        let heap = LIVE.load(Ordering::SeqCst) - before;
        println!(
            "{:>14} {heap:>9} {:>9}",
            format!("{hq}/{hkv}/{dh}"),
            blob.len()
        );
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
    }
}
