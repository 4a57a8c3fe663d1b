//! # aether-rvne
//!
//! The `.rvne` weight file format (v1 byte-exact, v2 self-describing).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
