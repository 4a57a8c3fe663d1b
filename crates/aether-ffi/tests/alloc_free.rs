//! A counting global allocator proves that `ruv_temporal_push` and
//! `ruv_temporal_classify` never allocate (success and error paths), that destroy frees
//! everything init allocated, and that an allocator refusal at init is
//! `ESP_ERR_NO_MEM` with nothing leaked. Counters are per thread, so the tests of this
//! binary can run in parallel.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

use aether_ffi::*;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static REFUSE_ABOVE: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Allocations still granted before every further one is refused.
    static REFUSE_AFTER: Cell<usize> = const { Cell::new(usize::MAX) };
}

// SAFETY: forwards to the system allocator; the thread-local counters are const-initialised
// `Cell`s without destructors, so touching them never allocates or recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if refuse(l.size()) {
            return ptr::null_mut();
        }
        ALLOCS.with(|a| a.set(a.get() + 1));
        grow(l.size() as isize);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if refuse(l.size()) {
            return ptr::null_mut();
        }
        ALLOCS.with(|a| a.set(a.get() + 1));
        grow(l.size() as isize);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.with(|v| v.set(v.get() - l.size() as isize));
        // SAFETY: `p` came from `System` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if refuse(new) {
            return ptr::null_mut();
        }
        ALLOCS.with(|a| a.set(a.get() + 1));
        grow(new as isize - l.size() as isize);
        // SAFETY: `p` came from `System` with `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

/// Whether to refuse an allocation of `size` bytes (counting it against `REFUSE_AFTER`).
fn refuse(size: usize) -> bool {
    let spent = REFUSE_AFTER.with(|r| {
        let left = r.get();
        r.set(left.saturating_sub(1));
        left == 0
    });
    spent || size > REFUSE_ABOVE.with(|r| r.get())
}

/// Adds `by` to the live bytes and raises the peak.
fn grow(by: isize) {
    let now = LIVE.with(|v| {
        v.set(v.get() + by);
        v.get()
    });
    PEAK.with(|p| p.set(p.get().max(now)));
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(|a| a.get())
}

fn live() -> isize {
    LIVE.with(|v| v.get())
}

fn init(blob: &[u8], f: u32, w: u32, c: u32) -> (i32, *mut ruv_temporal_ctx) {
    let mut ctx = ptr::null_mut();
    // SAFETY: `blob` outlives the context in every caller.
    let e = unsafe { ruv_temporal_init(blob.as_ptr(), blob.len(), f, w, c, &mut ctx) };
    (e, ctx)
}

#[test]
fn push_and_classify_allocate_nothing() {
    let cases: Vec<(Vec<u8>, usize, usize)> = std::iter::once((common::seeded_v1(), 16, 4))
        .chain(
            common::trained_cases()
                .into_iter()
                .chain(common::int8_cases())
                .map(|(_, b, f, c)| (b, f, c)),
        )
        .collect();
    for (blob, f, c) in cases {
        let blob = common::Aligned::new(&blob);
        let window = 24u32;
        let frames = common::frames(60, f, 5);
        let mut bad = frames[..f].to_vec();
        bad[0] = f32::NAN;
        let mut out = vec![0.0f32; c];
        let base = live();
        let (e, ctx) = init(blob.bytes(), f as u32, window, c as u32);
        assert_eq!(e, ESP_OK);
        let before = allocs();
        // SAFETY: `ctx` is live, frames hold F floats, `out` holds C floats.
        unsafe {
            assert_eq!(
                ruv_temporal_classify(ctx, out.as_mut_ptr(), c as u32),
                ESP_ERR_INVALID_STATE
            );
            for (k, fr) in frames.chunks(f).enumerate() {
                assert_eq!(ruv_temporal_push(ctx, fr.as_ptr()), ESP_OK);
                assert_eq!(ruv_temporal_push(ctx, bad.as_ptr()), ESP_ERR_INVALID_ARG);
                if k % 5 == 0 {
                    assert_eq!(
                        ruv_temporal_classify(ctx, out.as_mut_ptr(), c as u32),
                        ESP_OK
                    );
                    assert_eq!(
                        ruv_temporal_classify(ctx, out.as_mut_ptr(), c as u32 + 1),
                        ESP_ERR_INVALID_ARG
                    );
                }
            }
            assert_eq!(ruv_temporal_push(ctx, ptr::null()), ESP_ERR_INVALID_ARG);
        }
        assert_eq!(allocs(), before, "push/classify allocated");
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
        assert_eq!(live(), base, "destroy leaves nothing allocated");
    }
}

#[test]
fn init_allocates_each_buffer_once() {
    // Window 4096: the ring, x and the layer inputs h are 256 KiB each. The peak during
    // init is what stays allocated, plus small temporaries: nothing is allocated to be
    // released again (no probing of the allocator).
    let blob = common::Aligned::new(&common::seeded_v1());
    let cases = std::iter::once((blob.bytes().to_vec(), 16u32, 4u32)).chain(
        common::int8_cases()
            .into_iter()
            .map(|(_, q, f, c)| (q, f as u32, c as u32)),
    );
    for (bytes, f, c) in cases {
        let b = common::Aligned::new(&bytes);
        let base = live();
        PEAK.with(|p| p.set(base));
        let (e, ctx) = init(b.bytes(), f, 4096, c);
        assert_eq!(e, ESP_OK);
        let (kept, peak) = (live() - base, PEAK.with(|p| p.get()) - base);
        assert!(kept >= 4096 * f as isize * 4, "{kept} bytes kept");
        assert!(
            peak - kept < 4096,
            "peak {peak} bytes during init, {kept} kept"
        );
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
    }
}

#[test]
fn failed_init_leaks_nothing() {
    let blob = common::Aligned::new(&common::seeded_v1());
    let base = live();
    let mut bad = blob.bytes().to_vec();
    bad[30] ^= 1;
    assert_eq!(init(&bad, 16, 8, 4).0, ESP_ERR_INVALID_CRC);
    assert_eq!(init(blob.bytes(), 16, 8, 5).0, ESP_ERR_INVALID_ARG);
    assert_eq!(live(), base + bad.capacity() as isize);
}

#[test]
fn allocator_refusal_is_no_mem() {
    let blob = common::Aligned::new(&common::seeded_v1());
    let base = live();
    // The ring, x and the layer inputs h are each window·16·4 = 256 KiB at window 4096.
    REFUSE_ABOVE.with(|r| r.set(64 * 1024));
    let (e, ctx) = init(blob.bytes(), 16, 4096, 4);
    REFUSE_ABOVE.with(|r| r.set(usize::MAX));
    assert_eq!(e, ESP_ERR_NO_MEM);
    assert!(ctx.is_null());
    assert_eq!(live(), base, "nothing leaked");
    // An int8 blob: its ring (window·F·4) is the largest buffer.
    for (_, q, f, c) in common::int8_cases() {
        let q = common::Aligned::new(&q);
        let base = live();
        REFUSE_ABOVE.with(|r| r.set(64 * 1024));
        let (e, ctx) = init(q.bytes(), f as u32, 8192, c as u32);
        REFUSE_ABOVE.with(|r| r.set(usize::MAX));
        assert_eq!((e, ctx), (ESP_ERR_NO_MEM, ptr::null_mut()));
        assert_eq!(live(), base, "nothing leaked");
    }
    // Refusing every allocation, or all but the first few (each small table of init
    // is fallible too): still a clean NO_MEM, float and int8 alike.
    let int8 = common::int8_cases()
        .into_iter()
        .map(|(_, q, f, c)| (q, f as u32, c as u32));
    for (bytes, f, c) in std::iter::once((blob.bytes().to_vec(), 16u32, 4u32)).chain(int8) {
        let b = common::Aligned::new(&bytes);
        let base = live();
        let mut built = false;
        for allowed in 0..64 {
            REFUSE_AFTER.with(|r| r.set(allowed));
            let (e, ctx) = init(b.bytes(), f, 8, c);
            REFUSE_AFTER.with(|r| r.set(usize::MAX));
            if e == ESP_OK {
                assert!(allowed > 0, "init needs at least one allocation");
                // SAFETY: live context, not used afterwards.
                unsafe { ruv_temporal_destroy(ctx) };
                built = true;
                break;
            }
            assert_eq!(
                (e, ctx),
                (ESP_ERR_NO_MEM, ptr::null_mut()),
                "{allowed} allowed"
            );
            assert_eq!(live(), base, "{allowed} allowed: nothing leaked");
        }
        assert!(built, "init needs more than 64 allocations");
    }
    assert_eq!(panics_caught(), 0);
}
