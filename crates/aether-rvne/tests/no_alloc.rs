//! `BlobView::parse` and every read accessor allocate nothing (a counting global
//! allocator sees zero allocations on this thread while they run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use aether_rvne::{BlobView, DType};

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
fn parse_and_read_without_allocating() {
    // The counter sees this thread's allocations.
    assert_eq!(count(|| drop(std::hint::black_box(vec![1u8]))).1, 1);
    let files: [&[u8]; 4] = [
        include_bytes!("../testdata/aether_default_v1.rvne"),
        include_bytes!("../testdata/tiny_v1_f16.rvne"),
        include_bytes!("../testdata/full_v2_f32.rvne"),
        include_bytes!("../testdata/full_v2_f16.rvne"),
    ];
    let mut out = [0f32; 4096];
    let mut checksum = 0f32;
    let ((), n) = count(|| {
        for b in files {
            let v = BlobView::parse(b).unwrap();
            for t in v.tensors() {
                let n = t.len();
                t.read_f32_into(&mut out[..n]).unwrap();
                checksum += out[..n].iter().sum::<f32>();
                let again = v.tensor(t.name()).unwrap();
                assert_eq!(again.offset(), t.offset());
            }
            for i in 0..v.meta().dims.classes {
                let _ = v.class_name(i);
            }
            for _ in v.metadata() {}
            let _ = v.dtype() == Some(DType::F32);
            // Refusals allocate nothing either.
            assert!(BlobView::parse(&b[..b.len() - 1]).is_err());
        }
    });
    assert!(checksum.is_finite());
    assert_eq!(n, 0, "parse/read allocated {n} times");
}
