//! `BlobView::parse` and every read accessor allocate nothing (a counting global
//! allocator sees zero allocations while they run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use aether_rvne::{BlobView, DType};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn parse_and_read_without_allocating() {
    let files: [&[u8]; 4] = [
        include_bytes!("../testdata/aether_default_v1.rvne"),
        include_bytes!("../testdata/tiny_v1_f16.rvne"),
        include_bytes!("../testdata/full_v2_f32.rvne"),
        include_bytes!("../testdata/full_v2_f16.rvne"),
    ];
    let mut out = [0f32; 4096];
    let before = ALLOCS.load(Ordering::SeqCst);
    let mut checksum = 0f32;
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
    let after = ALLOCS.load(Ordering::SeqCst);
    assert!(checksum.is_finite());
    assert_eq!(
        after - before,
        0,
        "parse/read allocated {} times",
        after - before
    );
}
