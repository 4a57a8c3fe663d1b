//! # aether-kernel
//!
//! Attention math for the AETHER temporal head, `no_std` + `alloc`:
//! [`Tensor3`] (row-major `[seq][heads][dim]`), the normative [`SparsePattern`],
//! sparse and dense attention with MHA/GQA/MQA, streaming [`KvCache`]s and the
//! backward pass.
//!
//! Output at position `i`, query head `h` (kv head `h / (Hq/Hkv)`):
//! `out = Σⱼ softmax(q·kⱼ/√d) vⱼ` over the pattern's candidates of `i`.
//!
//! Entry points: [`sparse_attention`] / [`dense_attention`] (allocating),
//! [`sparse_attention_into`] / [`dense_attention_into`] (caller-owned output and
//! scratch sized by [`sparse_scratch_len`] / [`dense_scratch_len`], no allocation),
//! `*_par` with the `rayon` feature (bit-identical to serial). SIMD dispatch
//! (AVX-512, AVX2+FMA, scalar) lives in [`simd`]; features: `std` (runtime CPU
//! detection, default) and `rayon`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

extern crate alloc;

pub mod backward;
pub mod cache;
pub mod dense;
pub mod error;
pub mod fallible;
pub mod pattern;
pub mod reference;
mod scratch;
pub mod simd;
pub mod sparse;
pub mod tensor;

pub use backward::*;
pub use cache::*;
pub use dense::*;
pub use error::{KernelError, Result};
pub use pattern::SparsePattern;
pub use simd::SimdLevel;
pub use sparse::*;
pub use tensor::{check_qkv, Tensor3, TensorMut, TensorRef};
