//! Argument groups shared by several verbs (flattened into their `Args`).

use aether_head::live::{KvPrecision, StreamSettings, DEFAULT_CAPACITY};
use aether_head::EvictionPolicy;
use aether_rvne::BlobView;
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
