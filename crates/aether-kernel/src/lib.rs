//! # aether-kernel
//!
//! Attention math for the AETHER temporal head, `no_std` + `alloc`:
//! [`Tensor3`] (row-major `[seq][heads][dim]`), the normative [`SparsePattern`],
//! sparse and dense attention with MHA/GQA/MQA, streaming [`KvCache`]s and the
//! backward pass.
//!
//! Output at position `i`, query head `h` (kv head `h / (Hq/Hkv)`):
//! `out = Σⱼ softmax(q·kⱼ/√d) vⱼ` over the pattern's candidates of `i`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

extern crate alloc;

pub mod backward;
pub mod cache;
pub mod dense;
pub mod error;
pub mod pattern;
pub mod reference;
pub mod simd;
pub mod sparse;
pub mod tensor;

pub use backward::*;
pub use cache::*;
pub use dense::*;
pub use error::{KernelError, Result};
pub use pattern::SparsePattern;
pub use sparse::*;
pub use tensor::{check_qkv, Tensor3};
