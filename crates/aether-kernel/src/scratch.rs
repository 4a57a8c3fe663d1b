//! Scratch for the allocating kernel calls: a per-thread pool under `std`, so a
//! plain [`crate::sparse_attention`] or [`crate::dense_attention`] reuses the
//! previous call's transposed planes and work memory instead of allocating them
//! again (the `*_into` calls take caller memory and never come here).

use alloc::vec;

/// Largest scratch (in f32) the pool keeps between calls (16 MiB); bigger requests
/// are allocated for the call and freed after it.
#[cfg(feature = "std")]
const POOL_MAX: usize = 1 << 22;

/// Runs `f` on a scratch slice of exactly `len` floats (contents unspecified).
#[cfg(feature = "std")]
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    use core::cell::RefCell;
    use std::vec::Vec;
    std::thread_local! {
        static POOL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    if len > POOL_MAX {
        return f(&mut vec![0.0f32; len]);
    }
    POOL.with(|pool| match pool.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entered on this thread (a kernel called from inside `f`): a fresh buffer.
        Err(_) => f(&mut vec![0.0f32; len]),
    })
}

/// Runs `f` on a fresh zeroed scratch slice of `len` floats (no pool without `std`).
#[cfg(not(feature = "std"))]
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    f(&mut vec![0.0f32; len])
}
