//! The `extern "C"` functions of `include/ruv_temporal.h`: NULL and alignment checks,
//! then the safe [`Context`]. Every function returns an `esp_err_t`; none unwinds into C
//! (host build: a panic is caught and becomes `ESP_FAIL`; `no_std`: the panic handler
//! parks the task — the host tests fuzz every entry point and no panic is reachable).

use alloc::alloc::{alloc, Layout};
use alloc::boxed::Box;

use crate::context::Context;
use crate::status::{esp_err_t, Error, ESP_OK};

/// The opaque context behind `ruv_temporal_ctx_t *` (C sees an incomplete struct).
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct ruv_temporal_ctx {
    // 'static stands for "until ruv_temporal_destroy": the caller keeps the weight
    // buffer alive and unmodified until then (ruv_temporal.h).
    inner: Context<'static>,
}

impl ruv_temporal_ctx {
    /// The safe context inside.
    pub fn context(&self) -> &Context<'static> {
        &self.inner
    }
}

#[cfg(feature = "std")]
static PANICS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Panics caught at the C boundary since the process started (host build). The tests
/// fuzz every entry point and assert this stays 0.
#[cfg(feature = "std")]
pub fn panics_caught() -> usize {
    PANICS.load(core::sync::atomic::Ordering::Relaxed)
}

#[cfg(feature = "std")]
fn guard(f: impl FnOnce() -> Result<(), Error>) -> esp_err_t {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => ESP_OK,
        Ok(Err(e)) => e.status(),
        Err(_) => {
            PANICS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            Error::Panicked.status()
        }
    }
}

#[cfg(not(feature = "std"))]
fn guard(f: impl FnOnce() -> Result<(), Error>) -> esp_err_t {
    match f() {
        Ok(()) => ESP_OK,
        Err(e) => e.status(),
    }
}

/// `ctx` as a reference after the NULL and alignment checks.
///
/// # Safety
/// A non-NULL `ctx` must come from [`ruv_temporal_init`] and not be destroyed.
unsafe fn ctx_mut<'c>(ctx: *mut ruv_temporal_ctx) -> Result<&'c mut ruv_temporal_ctx, Error> {
    if ctx.is_null() {
        return Err(Error::Null { arg: "ctx" });
    }
    if !ctx.is_aligned() {
        return Err(Error::Misaligned { arg: "ctx" });
    }
    // SAFETY: non-NULL and aligned; the caller guarantees it is a live context owned by
    // the calling task (one task per context, ruv_temporal.h).
    Ok(unsafe { &mut *ctx })
}

/// Creates a context: validates the `.rvne` blob `weights[0..weights_len]` (v1 or v2),
/// checks `input_dim` and `n_classes` against it and allocates the ring of `window_len`
/// frames and all forward scratch. On success `*out_ctx` is the new context; on failure
/// it is NULL.
///
/// # Safety
/// `out_ctx` is NULL or points to writable storage for one pointer; `weights` is NULL or
/// points to `weights_len` readable bytes that stay valid and unmodified until
/// [`ruv_temporal_destroy`] (the context borrows them).
#[no_mangle]
pub unsafe extern "C" fn ruv_temporal_init(
    weights: *const u8,
    weights_len: usize,
    input_dim: u32,
    window_len: u32,
    n_classes: u32,
    out_ctx: *mut *mut ruv_temporal_ctx,
) -> esp_err_t {
    guard(|| {
        if out_ctx.is_null() {
            return Err(Error::Null { arg: "out_ctx" });
        }
        if !out_ctx.is_aligned() {
            return Err(Error::Misaligned { arg: "out_ctx" });
        }
        // SAFETY: non-NULL and aligned; the caller guarantees it is writable.
        unsafe { out_ctx.write(core::ptr::null_mut()) };
        if weights.is_null() {
            return Err(Error::Null { arg: "weights" });
        }
        if weights_len > isize::MAX as usize {
            return Err(Error::BlobTooLarge { len: weights_len });
        }
        // SAFETY: non-NULL, at most isize::MAX bytes; the caller guarantees
        // `weights_len` readable bytes that live, unmodified, until destroy, which is
        // what the 'static borrow inside the context stands for.
        let blob: &'static [u8] = unsafe { core::slice::from_raw_parts(weights, weights_len) };
        let inner = Context::new(blob, input_dim, window_len, n_classes)?;
        let layout = Layout::new::<ruv_temporal_ctx>();
        // SAFETY: the layout of a non-zero-sized type.
        let p = unsafe { alloc(layout) }.cast::<ruv_temporal_ctx>();
        if p.is_null() {
            return Err(Error::NoMem {
                bytes: Some(layout.size()),
            });
        }
        // SAFETY: `p` is a fresh allocation of the global allocator with the layout of
        // `ruv_temporal_ctx`, so writing one value and later `Box::from_raw` are valid;
        // `out_ctx` was checked above.
        unsafe {
            p.write(ruv_temporal_ctx { inner });
            out_ctx.write(p);
        }
        Ok(())
    })
}

/// Copies one frame of `input_dim` floats into the ring, dropping the oldest frame when
/// the window is full. O(input_dim), no allocation. NaN/Inf: `ESP_ERR_INVALID_ARG` and
/// the ring is unchanged.
///
/// # Safety
/// `ctx` is NULL or a live context; `frame` is NULL or points to `input_dim` readable floats.
#[no_mangle]
pub unsafe extern "C" fn ruv_temporal_push(
    ctx: *mut ruv_temporal_ctx,
    frame: *const f32,
) -> esp_err_t {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let ctx = unsafe { ctx_mut(ctx) }?;
        if frame.is_null() {
            return Err(Error::Null { arg: "frame" });
        }
        if !frame.is_aligned() {
            return Err(Error::Misaligned { arg: "frame" });
        }
        let f = ctx.inner.features();
        // SAFETY: non-NULL, aligned, `input_dim` = F readable floats by the caller contract.
        let frame = unsafe { core::slice::from_raw_parts(frame, f) };
        ctx.inner.push(frame)
    })
}

/// Runs the forward over the last `min(pushed, window_len)` frames in time order and
/// writes `n_classes` logits. No allocation. Before any push: `ESP_ERR_INVALID_STATE`;
/// wrong `n_classes` or NULL: `ESP_ERR_INVALID_ARG`. `logits` is untouched on error.
///
/// # Safety
/// `ctx` is NULL or a live context; `logits` is NULL or points to `n_classes` writable floats.
#[no_mangle]
pub unsafe extern "C" fn ruv_temporal_classify(
    ctx: *mut ruv_temporal_ctx,
    logits: *mut f32,
    n_classes: u32,
) -> esp_err_t {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let ctx = unsafe { ctx_mut(ctx) }?;
        if logits.is_null() {
            return Err(Error::Null { arg: "logits" });
        }
        let c = ctx.inner.classes();
        if usize::try_from(n_classes).ok() != Some(c) {
            return Err(Error::Classes {
                blob: c,
                given: n_classes,
            });
        }
        if !logits.is_aligned() {
            return Err(Error::Misaligned { arg: "logits" });
        }
        // SAFETY: non-NULL, aligned, `n_classes` = C writable floats by the caller contract.
        let out = unsafe { core::slice::from_raw_parts_mut(logits, c) };
        ctx.inner.classify(out)
    })
}

/// Frees the context and everything it allocated; NULL is a no-op. The weight buffer
/// may be released after this returns.
///
/// # Safety
/// `ctx` is NULL or a live context from [`ruv_temporal_init`], not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ruv_temporal_destroy(ctx: *mut ruv_temporal_ctx) {
    if ctx.is_null() || !ctx.is_aligned() {
        return;
    }
    let _ = guard(|| {
        // SAFETY: `ctx` was allocated by ruv_temporal_init with the global allocator and
        // the layout of `ruv_temporal_ctx`; the caller hands it back exactly once.
        drop(unsafe { Box::from_raw(ctx) });
        Ok(())
    });
}

/// Runs a tiny known-answer forward (crate::kernel_self_test): `ESP_OK` when the logits
/// match the committed values, `ESP_FAIL` otherwise.
#[no_mangle]
pub extern "C" fn ruv_temporal_kernel_self_test() -> esp_err_t {
    guard(crate::selftest::kernel_self_test)
}
