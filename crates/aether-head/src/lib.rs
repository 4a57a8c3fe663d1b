//! # aether-head
//!
//! The AETHER temporal head over a `.rvne` blob.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(feature = "train")]
pub mod train;
