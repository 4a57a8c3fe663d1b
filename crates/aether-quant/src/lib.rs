//! # aether-quant
//!
//! The integer AETHER temporal head for nodes without an FPU (docs/int8.md), `no_std` +
//! `alloc`: int8 weights with per-output-channel scales, i16 activations, int8 KV
//! caches, i32 accumulators, requantisation by fixed-point multipliers, layer norm,
//! GELU, softmax and the running normalisation in fixed point with small lookup tables.
//! No float arithmetic anywhere on the integer path: input frames enter as their
//! IEEE-754 bits, logits leave as i32 (and as f32 assembled from integers).
//!
//! - [`QuantHead`]: an int8 `.rvne` v2 blob (feature bit 10), tensors borrowed.
//! - [`QuantHead::forward_into`] with a [`QWorkspace`]: the whole-window forward.
//! - [`QStream`] / [`QLiveStream`]: streaming through int8 KV caches, **bit-exact**:
//!   push-by-push logits equal the whole-window forward over the same frames.
//! - `calib` feature: [`quantize`] (post-training quantisation with calibration
//!   windows) and the float reference it calibrates with.
//!
//! Supported: every docs/model.md option (input norm, embedding, positional signal,
//! pre-norm, biases, MLP, final norm, mean / last pooling, sparse / dense attention,
//! running normalisation), with every matrix input width, the head dimension and the MLP
//! width at most [`MAX_K`] = 511 (i32 accumulation); larger models are
//! [`QuantError::Unsupported`].
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

extern crate alloc;

pub mod error;
pub mod fixed;
pub mod forward;
pub mod lut;
pub mod model;
pub mod stream;

#[cfg(feature = "calib")]
pub mod quantize;

pub use error::{QuantError, Result};
pub use forward::QWorkspace;
pub use model::{IntRunningNorm, KvRows, QLayer, QMat, QuantHead, MAX_K};
pub use stream::{QLiveStream, QStream};
