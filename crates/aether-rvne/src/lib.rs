//! # aether-rvne
//!
//! The `.rvne` weight file of the AETHER temporal head: byte-exact v1 (docs/rvne-format.md), a
//! self-describing, CRC-protected v2 (docs/rvne-format.md), a zero-copy `no_std` reader
//! that needs no allocator, and (feature `alloc`) an owned model with canonical writers
//! and the reference initialisation recipe.
//!
//! ```
//! use aether_rvne::{reference_init, BlobView, DType, Dims, ModelFile, ModelMeta, REFERENCE_SEED};
//! let model = reference_init(&ModelMeta::v1_defaults(Dims::AETHER_DEFAULT), REFERENCE_SEED, DType::F32).unwrap();
//! let v1 = model.to_v1_bytes(DType::F32).unwrap();
//! assert_eq!(v1.len(), 41_244);
//! let view = BlobView::parse(&v1).unwrap();
//! assert!(view.meta().defaults_assumed);
//! let v2 = ModelFile::from_view(&view).unwrap().to_v2_bytes(DType::F32).unwrap();
//! let back = ModelFile::from_bytes(&v2).unwrap();
//! assert_eq!(back.to_v1_bytes(DType::F32).unwrap(), v1);
//! ```
//!
//! Tensor names and shapes follow docs/model.md (`layers.{l}.wq`, `classifier.w`, …); a
//! v1 file exposes the same names.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
// Errors carry inline tensor names and shapes so the parser needs no allocator; they are
// returned on the cold path only, so their size (~150 bytes) is not worth boxing.
#![allow(clippy::result_large_err)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod error;
mod init;
mod meta;
mod name;
mod quant;
mod view;
#[cfg(feature = "alloc")]
mod writer;

pub use error::{Error, Result};
#[cfg(feature = "alloc")]
pub use init::{reference_init, reference_init_v1_bytes};
pub use init::{XorShift64Star, REFERENCE_SEED};
pub use meta::{
    feature, Architecture, AttentionBackend, DType, Dims, ModelMeta, Part, PatternSpec, Pooling,
    Positional, Role, Shape, TensorKind, TensorSpec, TensorSpecs, INPUT_Q_COLS, LN_Q_COLS,
    MAX_GLOBALS, MAX_RANK, POS_Q_COLS, RQ_COLS,
};
pub use name::{Name, MAX_NAME_LEN};
#[cfg(feature = "alloc")]
pub use quant::QuantRecord;
pub use quant::{
    quant_record_len, quant_scale_count, LayerQuant, QuantView, EXP_RANGE, MAX_GELU_SHIFT,
    MAX_LOGIT_SHIFT, QUANT_SCHEME, SHIFT_RANGE,
};
pub use view::{
    align_up, crc32, tag, BlobView, KeyValues, TensorView, Tensors, ALIGN, FOOTER_LEN, MAGIC,
    MAX_LIST_NAMES, MAX_RECORDS, V1_HEADER_LEN, V2_HEADER_LEN,
};
#[cfg(feature = "alloc")]
pub use writer::{ModelFile, QuantModelFile, QuantTensor, Tensor, TensorData};
