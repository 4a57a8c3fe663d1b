//! # aether-data
//!
//! Dataset folders, node wire formats, feature extraction and the CSI simulator.
#![deny(missing_docs)]
