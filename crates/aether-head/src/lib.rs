//! # aether-head
//!
//! The AETHER temporal head (docs/model.md) over a `.rvne` blob, `no_std` + `alloc`.
//!
//! ```text
//! frames u[N, F] ─► norm, embed, +pe ─► L × (LN, q/k/v, sparse|dense attention, ·Wo, MLP)
//!                ─► final LN ─► pool (mean | last) ─► ·Wc ─► logits[C]
//! ```
//!
//! - [`TemporalHead`]: weights borrowed from the blob when they are aligned f32
//!   (zero-copy), owned otherwise; [`TemporalHead::forward`], [`TemporalHead::embed`],
//!   [`TemporalHead::forward_batch`], and [`TemporalHead::forward_into`] which does not
//!   allocate given a [`Workspace`].
//! - [`Stream`] / [`StreamF16`]: exact token-by-token streaming through per-layer kernel KV caches,
//!   `O(L·(W + log T)·d)` per frame, no allocation after construction.
//! - [`RollingWindow`]: classify the last `N` frames on demand (firmware style).
//! - [`LiveStream`]: a stream over a bounded horizon with [`StreamSettings`], what
//!   `aether classify --stream` and `aether serve` run.
//!
//! ```
//! use aether_head::{EvictionPolicy, HeadConfig, Stream, TemporalHead};
//! let cfg = HeadConfig::bare(aether_head::Dims { input_dim: 2, d_model: 2, q_heads: 2, kv_heads: 1, head_dim: 4, layers: 1, classes: 3, mlp_hidden: 0 });
//! let flat: Vec<f32> = (0..cfg.num_weights().unwrap()).map(|i| (i % 7) as f32 * 0.05 - 0.15).collect();
//! let head = TemporalHead::from_flat(cfg, &flat)?;
//! let frames = [0.1, 0.2, 0.3, -0.4, 0.5, 0.0];
//! let logits = head.forward(&frames)?;
//! let mut s = Stream::new(&head, 16, EvictionPolicy::Error)?;
//! for f in frames.chunks(2) { s.push(&head, f)?; }
//! assert!(logits.iter().zip(s.logits()).all(|(a, b)| (a - b).abs() < 1e-5));
//! # Ok::<(), aether_head::HeadError>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

extern crate alloc;

mod absorbed;
mod attention;
pub mod blob;
pub mod config;
pub mod error;
pub mod live;
pub mod math;
pub mod model;
pub mod stream;
pub mod weights;

#[cfg(feature = "train")]
pub mod train;

pub use aether_kernel::EvictionPolicy;
pub use aether_rvne::{Dims, Role, TensorKind, TensorSpec};
pub use config::{AttentionBackend, HeadConfig, Pooling, Positional};
pub use error::{HeadError, Result};
pub use live::{KvPrecision, LiveStream, StreamSettings};
pub use math::{RunningNorm, RUNNING_NORM_FLOOR};
pub use model::{check_frames, TemporalHead, Workspace};
pub use stream::{RollingWindow, Stream, StreamF16, StreamOf};
pub use weights::{LayerWeights, Mlp, Norm, Param, Weights};
