//! # aether-ffi
//!
//! The `ruv_temporal_*` C ABI.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
