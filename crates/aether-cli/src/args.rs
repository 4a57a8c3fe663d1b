//! Argument groups shared by several verbs (flattened into their `Args`).

use aether_data::features::FeatureConfig;
use aether_head::live::{KvPrecision, StreamSettings, DEFAULT_CAPACITY};
use aether_head::EvictionPolicy;
use aether_rvne::BlobView;
use aether_rvne::DType;
use anyhow::{bail, Result};

use crate::values::{self, MAX_POSITIONS};

/// KV cache storage of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvArg {
    /// f32 keys and values.
    F32,
    /// f16 keys and values (half the memory).
    F16,
}

/// What a continuous stream does when its caches are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvictionArg {
    /// Drop the oldest position.
    Sliding,
    /// Drop the least-attended positions (H2O), keeping `--recent` newest ones.
    HeavyHitter,
    /// Refuse the frame.
    Error,
}

/// Stream settings shared by `aether classify --stream` and `aether serve`, with the same
/// defaults, so both give the same numbers on the same frames (docs/serve.md).
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Frames of context per output: two streams restart in turn every N frames, so each
    /// output is the model over the last N/2..N frames (exact, bounded memory). Default:
    /// the model's training window (`data.window`), else 256. 0 = one stream from the
    /// first frame (see --capacity, --eviction).
    #[arg(long, value_name = "N", value_parser = values::count(0, values::MAX_POSITIONS))]
    pub horizon: Option<usize>,
    /// With --horizon 0: KV positions per layer.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY,
          value_parser = values::count(1, values::MAX_POSITIONS))]
    pub capacity: usize,
    /// With --horizon 0: what a full cache does.
    #[arg(long, value_enum, default_value_t = EvictionArg::Sliding)]
    pub eviction: EvictionArg,
    /// With --eviction heavy-hitter: newest positions never evicted.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = values::count(0, values::MAX_POSITIONS))]
    pub recent: usize,
    /// KV cache storage.
    #[arg(long, value_enum, default_value_t = KvArg::F32)]
    pub kv: KvArg,
}

impl StreamArgs {
    /// The settings for the model in `view` (its training window is the default horizon).
    pub fn settings(&self, view: &BlobView<'_>) -> Result<StreamSettings> {
        let horizon = match self.horizon {
            Some(h) => h,
            None => aether_serve::model::default_horizon(view),
        };
        if horizon == 1 || horizon > MAX_POSITIONS {
            bail!(
                "--horizon {horizon}: must be 0 (one continuous stream) or in 2..={MAX_POSITIONS}"
            );
        }
        let eviction = match self.eviction {
            EvictionArg::Sliding => EvictionPolicy::SlidingWindow,
            EvictionArg::Error => EvictionPolicy::Error,
            EvictionArg::HeavyHitter => {
                if self.recent >= self.capacity {
                    bail!(
                        "--recent {} must be below --capacity {}",
                        self.recent,
                        self.capacity
                    );
                }
                EvictionPolicy::HeavyHitter {
                    recent: self.recent,
                }
            }
        };
        Ok(StreamSettings {
            horizon,
            capacity: self.capacity,
            eviction,
            kv: match self.kv {
                KvArg::F32 => KvPrecision::F32,
                KvArg::F16 => KvPrecision::F16,
            },
        })
    }
}

/// Storage dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> DType {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F16 => DType::F16,
        }
    }
}

/// Feature-extraction flags shared by `aether simulate` and `aether features`.
#[derive(clap::Args)]
pub struct FeatureArgs {
    /// Subcarrier bands per antenna in the feature extractor, 1..=512.
    #[arg(long, default_value_t = aether_data::features::DEFAULT_BANDS,
          value_parser = values::count(1, values::MAX_BANDS))]
    pub bands: usize,
    /// Leave out the per-frame log-gain feature.
    #[arg(long)]
    pub no_gain: bool,
    /// Leave out the per-frame motion features (same as `--motion-lags 0`).
    #[arg(long)]
    pub no_motion: bool,
    /// Motion features per antenna, 0..=16: log RMS band change over lags 1, 2, 4, … frames.
    #[arg(long, default_value_t = aether_data::features::DEFAULT_MOTION_LAGS,
          value_parser = values::count(0, values::MAX_MOTION_LAGS))]
    pub motion_lags: usize,
}

impl FeatureArgs {
    /// The extractor configuration these flags select.
    pub(crate) fn config(&self) -> FeatureConfig {
        FeatureConfig {
            bands: self.bands,
            gain: !self.no_gain,
            motion: if self.no_motion { 0 } else { self.motion_lags },
        }
    }
}

/// The `.rvne` version `train` writes: v2 (everything) or v1 (bare architecture only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RvneVersion {
    /// Version 1: the bare v1 architecture, no names or metadata.
    V1,
    /// Version 2: self-describing.
    V2,
}

impl RvneVersion {
    /// The name on the command line and in reports (`v1`, `v2`).
    pub fn name(self) -> &'static str {
        match self {
            RvneVersion::V1 => "v1",
            RvneVersion::V2 => "v2",
        }
    }
}

/// Written by hand rather than derived: the values carry no help text, so `--help`
/// lists them on one line (`[possible values: v1, v2]`).
impl clap::ValueEnum for RvneVersion {
    fn value_variants<'a>() -> &'a [Self] {
        &[RvneVersion::V1, RvneVersion::V2]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}
