//! # aether-ffi
//!
//! The `ruv_temporal_*` C ABI of the firmware (`include/ruv_temporal.h`) over [`aether_head`]: push one frame at the feature
//! rate, classify the last `window_len` frames about once a second.
//!
//! ```text
//! ruv_temporal_init(blob, len, F, N, C, &ctx)   parse + validate the .rvne (v1/v2), borrow
//!                                               the weights, allocate ring [N·F] + Workspace
//! ruv_temporal_push(ctx, frame[F])              copy into the ring: O(F), no allocation
//! ruv_temporal_classify(ctx, logits[C], C)      rotate the ring to time order, then
//!                                               TemporalHead::forward_compact_into
//!                                               (compact workspace) over the last
//!                                               min(filled, N) frames: no allocation
//! ruv_temporal_destroy(ctx)                     free everything (NULL: no-op)
//! ruv_temporal_kernel_self_test()               a tiny known-answer forward
//! ```
//!
//! [`Context`] is the same machine as a safe Rust API (the C functions are thin,
//! NULL-checking wrappers); [`Error`] says what failed and [`Error::status`] which
//! `esp_err_t` code the C caller sees.
//!
//! ```
//! use aether_ffi::{Context, ESP_ERR_INVALID_STATE};
//! use aether_rvne::{reference_init_v1_bytes, DType, Dims, REFERENCE_SEED};
//! let blob = reference_init_v1_bytes(&Dims::AETHER_DEFAULT, REFERENCE_SEED, DType::F32).unwrap();
//! let mut ctx = Context::new(&blob, 16, 32, 4).unwrap();
//! let mut logits = [0.0f32; 4];
//! assert_eq!(ctx.classify(&mut logits).unwrap_err().status(), ESP_ERR_INVALID_STATE);
//! ctx.push(&[0.25; 16]).unwrap();
//! ctx.classify(&mut logits).unwrap();
//! assert_eq!(logits.to_vec(), ctx.head().unwrap().forward(&[0.25; 16]).unwrap());
//! ```
//!
//! Without the `std` feature the crate is `no_std`: it brings its own `#[panic_handler]`
//! and a `#[global_allocator]` that calls the firmware's `ruv_temporal_alloc` /
//! `ruv_temporal_free` (README.md).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
// `Error` carries the format crate's inline error (~150 bytes, no heap): failing calls,
// including push and classify, must not allocate, and errors are the cold path.
#![allow(clippy::result_large_err)]

extern crate alloc;

mod abi;
#[cfg(any(not(feature = "std"), test))]
mod c_alloc;
mod context;
mod selftest;
mod status;

pub use abi::{
    ruv_temporal_classify, ruv_temporal_ctx, ruv_temporal_destroy, ruv_temporal_init,
    ruv_temporal_kernel_self_test, ruv_temporal_push,
};
pub use context::{Context, MAX_WINDOW};
pub use selftest::{kernel_self_test, SELF_TEST_FRAMES, SELF_TEST_LOGITS};
pub use status::{
    esp_err_t, status_of_blob_error, status_of_head_error, Error, ESP_ERR_INVALID_ARG,
    ESP_ERR_INVALID_CRC, ESP_ERR_INVALID_SIZE, ESP_ERR_INVALID_STATE, ESP_ERR_INVALID_VERSION,
    ESP_ERR_NOT_SUPPORTED, ESP_ERR_NO_MEM, ESP_FAIL, ESP_OK,
};

#[cfg(feature = "std")]
pub use abi::panics_caught;

/// A `no_std` build is a C library: a panic (none is reachable from bad input; the host
/// tests fuzz every entry point) parks the calling task, where the firmware's task
/// watchdog reports it. Unwinding is unavailable on these targets (`panic = "abort"`).
#[cfg(all(not(feature = "std"), not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
