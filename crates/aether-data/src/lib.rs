//! # aether-data
//!
//! Dataset folders, node wire formats, feature extraction and the CSI simulator.
//!
//! * [`dataset`]: the dataset folder (`DATA/<class>/<recording>.csv`) and `.npy`
//!   readers, the CSV writer, windowing, splits by recording, k-fold, groups;
//! * [`wire`]: raw CSI frames, feature-state and classification packets;
//! * [`features`]: the raw CSI → per-frame feature extractor;
//! * [`readers`]: CSI files of other tools (Intel 5300 `.dat`, esp-csi serial logs);
//! * [`sim`]: the physical multipath CSI simulator;
//! * [`rng`]: the seedable generator behind every seeded operation.
//!
//! Nothing here prints; the only file access is the dataset reader (the format
//! readers take bytes).
#![deny(missing_docs)]

pub mod dataset;
pub mod features;
pub mod npy;
pub mod readers;
pub mod rng;
pub mod sim;
pub mod wire;

pub use dataset::{DataError, Dataset, LoadReport, Recording};
