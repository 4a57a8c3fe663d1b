//! The ranges the `aether` command line accepts for options that are not training options
//! (those live in `aether_pipeline::values`); the binding refuses the same values, so no
//! argument can ask for an absurd allocation. Kept equal to `crates/aether-cli/src/values.rs`.

/// Most recordings per class of the simulator (`--recordings`).
pub const MAX_RECORDINGS: usize = 20_000;
/// Most subcarrier bands per antenna of the feature extractor (`--bands`).
pub const MAX_BANDS: usize = 512;
/// Most motion lags of the feature extractor (`--motion-lags`).
pub const MAX_MOTION_LAGS: usize = aether_data::features::MAX_MOTION_LAGS;
/// Most stream positions: horizon, KV capacity, heavy-hitter `recent`.
pub const MAX_POSITIONS: usize = 1 << 20;
/// Most folds of k-fold cross-validation (`--kfold`).
pub const MAX_FOLDS: usize = 1_000;
/// Most training seeds of a protocol (`--seeds`).
pub const MAX_SEEDS: usize = 100;
/// Most calibration windows of the quantiser (`--calib-windows`).
pub const MAX_CALIB_WINDOWS: usize = 100_000;
