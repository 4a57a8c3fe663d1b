//! Node budget of the C ABI (README.md): heap bytes a context holds after
//! `ruv_temporal_init` for the AETHER default head at several windows, measured with a
//! counting allocator, and what dominates them; classify latency (thread CPU time) on
//! this host; the arithmetic of one classify counted from the configuration and the
//! pattern, and a cycle estimate for an ESP32-S3 (240 MHz, single-precision FPU).
//!
//! `cargo run -p aether-ffi --release --example budget`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use aether_ffi::{
    ruv_temporal_classify, ruv_temporal_destroy, ruv_temporal_init, ruv_temporal_push, ESP_OK,
};
use aether_head::{AttentionBackend, HeadConfig, Workspace};
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

/// Thread CPU time in nanoseconds (the machine is shared: wall time would count others).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Operation counts of one classify over `n` frames in aether-head's compact layout.
#[derive(Default, Debug)]
struct Ops {
    /// Multiply-adds of the matrix products, scores and weighted sums.
    macs: u64,
    /// `fast_exp` calls (one per candidate, head and layer).
    exps: u64,
    /// Attention candidates (query, head, layer).
    candidates: u64,
}

/// Counts the arithmetic of `TemporalHead::forward_into` with a compact workspace,
/// following the code path (absorbed layer inputs or stored keys/values).
fn count_ops(cfg: &HeadConfig, n: usize) -> Ops {
    let (f, d, dh) = (cfg.features as u64, cfg.d_model as u64, cfg.head_dim as u64);
    let (qw, kw, hid) = (
        cfg.q_width() as u64,
        cfg.kv_width() as u64,
        cfg.mlp_hidden as u64,
    );
    let absorbed = Workspace::compact_absorbs(cfg);
    let mut o = Ops::default();
    if cfg.embed {
        o.macs += n as u64 * f * d;
    }
    for _ in 0..cfg.layers {
        for t in 0..n {
            let mut ne = 0u64;
            match cfg.attention {
                AttentionBackend::Sparse => {
                    cfg.pattern.for_each_token(t, n, |_| ne += 1);
                    if cfg.pattern.landmarks {
                        cfg.pattern.for_each_landmark(t, n, |_| ne += 1);
                    }
                }
                AttentionBackend::Dense => {
                    ne = if cfg.pattern.causal {
                        t as u64 + 1
                    } else {
                        n as u64
                    }
                }
            }
            let hq = cfg.q_heads as u64;
            o.candidates += ne * hq;
            o.exps += ne * hq;
            o.macs += d * qw + qw * d + 2 * d * hid; // q, Wo, MLP
            o.macs += if absorbed {
                // q' = Wk_g·q_a, scores q'·h_c, Σ w_c h_c, ·Wv_g
                hq * (d * dh + 2 * ne * d + d * dh)
            } else {
                // k and v of the row, scores q·k_c, Σ w_c v_c
                2 * d * kw + hq * 2 * ne * dh
            };
        }
    }
    o.macs += d * cfg.classes as u64;
    o
}

/// Initialises a context on `aligned` with `window`, returns it and the heap it took.
fn init(aligned: &[u8], window: usize) -> (*mut aether_ffi::ruv_temporal_ctx, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    let mut ctx = std::ptr::null_mut();
    // SAFETY: `aligned` outlives the context (the caller destroys it first).
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
    (ctx, (LIVE.load(Ordering::SeqCst) - before) as usize)
}

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
        "{:>6} {:>9} {:>8} {:>9} {:>8}   workspace: {:>7} {:>9} {:>8} {:>9}",
        "window", "heap B", "ring", "workspace", "other", "x", "h or k+v", "rest", "layout"
    );
    for window in [32usize, 64, 128, 200, 256, 500, 512] {
        let (ctx, heap) = init(aligned, window);
        // SAFETY: `ctx` is live.
        let c = unsafe { (*ctx).context() };
        assert_eq!(
            c.head().expect("f32 model").owned_weight_bytes(),
            0,
            "weights must be borrowed"
        );
        let absorbed = c.workspace().expect("f32 model").is_absorbed();
        let ring = window * f * 4;
        let ws = c.workspace_bytes();
        let x = window * d * 4;
        let per_pos = if absorbed {
            window * d * 4
        } else {
            2 * window * kw * 4
        };
        println!(
            "{window:>6} {heap:>9} {ring:>8} {ws:>9} {:>8}   {x:>18} {per_pos:>9} {:>8} {:>9}",
            heap - ring - ws,
            ws - x - per_pos,
            if absorbed { "absorbed" } else { "k, v" }
        );
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
    }

    println!("\nclassify, full window, thread CPU time per call (this host):");
    println!(
        "{:>6} {:>10} {:>10} {:>6}",
        "window", "median µs", "min µs", "calls"
    );
    for window in [128usize, 256, 512] {
        let (ctx, _) = init(aligned, window);
        let frames: Vec<f32> = (0..(window + 7) * 16)
            .map(|i| ((i / 16) as f32 * 0.1 + (i % 16) as f32 * 0.3).sin())
            .collect();
        for fr in frames.chunks(16) {
            // SAFETY: live context, 16 floats.
            assert_eq!(unsafe { ruv_temporal_push(ctx, fr.as_ptr()) }, ESP_OK);
        }
        let mut logits = [0.0f32; 4];
        let calls = 200;
        let mut t = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t0 = thread_cpu_ns();
            // SAFETY: live context, 4 writable floats.
            let e = unsafe { ruv_temporal_classify(ctx, logits.as_mut_ptr(), 4) };
            t.push(thread_cpu_ns() - t0);
            assert_eq!(e, ESP_OK);
        }
        t.sort_unstable();
        println!(
            "{window:>6} {:>10.1} {:>10.1} {calls:>6}",
            t[calls / 2] as f64 / 1e3,
            t[0] as f64 / 1e3
        );
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
    }

    println!("\narithmetic of one classify (compact path) and an ESP32-S3 estimate (240 MHz):");
    println!("  cycles = c_mac · MACs + c_exp · exps + 12 · candidates (gather, max, index)");
    println!(
        "{:>6} {:>10} {:>8} {:>10}   {:>22} {:>22}",
        "window", "MACs", "exps", "cand.", "compiled (3 / 30) ms", "DSP-class (1.2 / 20) ms"
    );
    for window in [100usize, 128, 256, 512] {
        let o = count_ops(&cfg, window);
        let est = |c_mac: f64, c_exp: f64| {
            (c_mac * o.macs as f64 + c_exp * o.exps as f64 + 12.0 * o.candidates as f64) / 240e3
        };
        println!(
            "{window:>6} {:>10} {:>8} {:>10}   {:>22.1} {:>22.1}",
            o.macs,
            o.exps,
            o.candidates,
            est(3.0, 30.0),
            est(1.2, 20.0)
        );
    }

    println!("\nwindow 256, smaller heads (F = D = 16, L 2, C 4):");
    println!("{:>14} {:>9} {:>9}", "Hq/Hkv/dh", "heap B", "weights B");
    for (hq, hkv, dh) in [(4usize, 1usize, 32usize), (4, 1, 16), (4, 1, 8), (2, 1, 8)] {
        let dims = Dims {
            input_dim: 16,
            d_model: 16,
            q_heads: hq,
            kv_heads: hkv,
            head_dim: dh,
            layers: 2,
            classes: 4,
            mlp_hidden: 0,
        };
        let blob = reference_init_v1_bytes(&dims, REFERENCE_SEED, DType::F32).unwrap();
        let mut store = vec![0u128; blob.len().div_ceil(16)];
        // SAFETY: `store` holds at least `blob.len()` bytes.
        let aligned =
            unsafe { std::slice::from_raw_parts_mut(store.as_mut_ptr().cast::<u8>(), blob.len()) };
        aligned.copy_from_slice(&blob);
        let (ctx, heap) = init(aligned, 256);
        println!(
            "{:>14} {heap:>9} {:>9}",
            format!("{hq}/{hkv}/{dh}"),
            blob.len()
        );
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
    }
}
