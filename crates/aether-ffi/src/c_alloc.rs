//! The `no_std` global allocator: every allocation goes to the firmware's
//! `ruv_temporal_alloc(size, align)` and `ruv_temporal_free(ptr, size, align)`
//! (declared in `include/ruv_temporal.h`; README.md shows an ESP-IDF implementation).
//! Reallocation is allocate + copy + free (the default of `GlobalAlloc`); init is the
//! only caller that allocates.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

extern "C" {
    /// Returns `size` bytes aligned to `align` (a power of two), or NULL.
    fn ruv_temporal_alloc(size: usize, align: usize) -> *mut c_void;
    /// Frees a block returned by `ruv_temporal_alloc(size, align)`.
    fn ruv_temporal_free(ptr: *mut c_void, size: usize, align: usize);
}

/// Forwards the Rust allocator to the C hooks.
pub(crate) struct CAlloc;

// SAFETY: the hooks' contract (ruv_temporal.h) is the GlobalAlloc contract: a block of
// at least `size` bytes aligned to `align`, or NULL; `free` receives exactly what
// `alloc` returned with the same size and alignment.
unsafe impl GlobalAlloc for CAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain call into the firmware's hook.
        unsafe { ruv_temporal_alloc(layout.size(), layout.align()).cast() }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc contract).
        unsafe { ruv_temporal_free(ptr.cast(), layout.size(), layout.align()) }
    }
}

#[cfg(all(not(feature = "std"), not(test)))]
#[global_allocator]
static ALLOCATOR: CAlloc = CAlloc;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static LIVE: AtomicUsize = AtomicUsize::new(0);

    // Test doubles for the firmware hooks, over the system allocator.
    #[no_mangle]
    extern "C" fn ruv_temporal_alloc(size: usize, align: usize) -> *mut c_void {
        let Ok(layout) = Layout::from_size_align(size, align) else {
            return core::ptr::null_mut();
        };
        LIVE.fetch_add(size, Ordering::SeqCst);
        // SAFETY: the callers below never ask for zero bytes.
        unsafe { std::alloc::System.alloc(layout).cast() }
    }

    #[no_mangle]
    extern "C" fn ruv_temporal_free(ptr: *mut c_void, size: usize, align: usize) {
        LIVE.fetch_sub(size, Ordering::SeqCst);
        // SAFETY: `ptr` came from the hook above with this size and alignment.
        unsafe {
            std::alloc::System.dealloc(ptr.cast(), Layout::from_size_align_unchecked(size, align))
        }
    }

    #[test]
    fn forwards_size_and_alignment_to_the_hooks() {
        for (size, align) in [(1usize, 1usize), (40, 4), (64, 64), (4096, 16)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { CAlloc.alloc(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            assert_eq!(LIVE.load(Ordering::SeqCst), size);
            // SAFETY: freshly allocated with `layout`.
            unsafe {
                p.write_bytes(0xAB, size);
                CAlloc.dealloc(p, layout);
            }
            assert_eq!(LIVE.load(Ordering::SeqCst), 0);
        }
    }
}
