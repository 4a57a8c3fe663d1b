//! `aether init [OPTIONS] OUT`: a deterministic model from the reference recipe
//! (FACTS.md). With no options it writes the reference v1 blob byte for byte
//! (41,244 bytes, SHA-256 `7c6c074e…2d49d`). Every dimension is range-checked while
//! the arguments are parsed, and the model's size is checked against
//! [`MAX_INIT_PARAMETERS`] before anything is allocated.

use std::path::PathBuf;

use aether_rvne::{reference_init, DType, Dims, ModelMeta, REFERENCE_SEED};
use anyhow::{bail, Context, Result};

use crate::args::DTypeArg;
use crate::fsutil::{check_output_file, write_atomic};
use crate::values;

/// Most parameters `aether init` writes (1 GiB of f32; the model and its encoding are
/// both held in memory).
pub const MAX_INIT_PARAMETERS: usize = 1 << 28;

/// `.rvne` version to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    /// v1 (byte-compatible with the original).
    V1,
    /// v2 (self-describing).
    V2,
}

/// Arguments of `aether init`.
#[derive(clap::Args)]
pub struct Args {
    /// Output file (written atomically).
    pub output: PathBuf,
    /// Generator seed (decimal or 0x-hex; 0 means the reference seed).
    #[arg(long, default_value = "0xC5110007DEADBEEF", value_parser = values::seed)]
    pub seed: u64,
    /// File format.
    #[arg(long, value_enum, default_value = "v1")]
    pub format: Version,
    /// Weight dtype.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Input features per frame F (= model width in v1), 1..=4096.
    #[arg(long, default_value_t = Dims::AETHER_DEFAULT.input_dim,
          value_parser = values::count(1, 4096))]
    pub input_dim: usize,
    /// Query heads Hq, 1..=256.
    #[arg(long, default_value_t = Dims::AETHER_DEFAULT.q_heads,
          value_parser = values::count(1, 256))]
    pub q_heads: usize,
    /// Key/value heads Hkv (divides Hq), 1..=256.
    #[arg(long, default_value_t = Dims::AETHER_DEFAULT.kv_heads,
          value_parser = values::count(1, 256))]
    pub kv_heads: usize,
    /// Head dimension dh, 1..=1024.
    #[arg(long, default_value_t = Dims::AETHER_DEFAULT.head_dim,
          value_parser = values::count(1, 1024))]
    pub head_dim: usize,
    /// Layers L, 1..=256.
    #[arg(long, default_value_t = Dims::AETHER_DEFAULT.layers,
          value_parser = values::count(1, 256))]
    pub layers: usize,
    /// Classes C, 2..=65536.
    #[arg(long, default_value_t = Dims::AETHER_DEFAULT.classes,
          value_parser = values::count(2, 65_536))]
    pub classes: usize,
}

/// Runs `aether init`.
pub fn run(a: Args) -> Result<()> {
    let dims = Dims::v1(
        a.input_dim,
        a.q_heads,
        a.kv_heads,
        a.head_dim,
        a.layers,
        a.classes,
    );
    let dtype = DType::from(a.dtype);
    let meta = ModelMeta::v1_defaults(dims);
    meta.validate().context("invalid model shape")?;
    let params = meta.parameter_count();
    if params > MAX_INIT_PARAMETERS {
        bail!(
            "these dims make {params} parameters, more than the {MAX_INIT_PARAMETERS} aether init writes (1 GiB of f32); choose smaller dims"
        );
    }
    check_output_file(&a.output)?;
    let model = reference_init(&meta, a.seed, dtype).context("invalid model shape")?;
    let bytes = match a.format {
        Version::V1 => model.to_v1_bytes(dtype)?,
        Version::V2 => {
            let mut m = model;
            m.meta.defaults_assumed = false;
            m.metadata.push((
                "init".into(),
                format!(
                    "reference recipe, seed 0x{:016X}",
                    if a.seed == 0 { REFERENCE_SEED } else { a.seed }
                ),
            ));
            m.to_v2_bytes(dtype)?
        }
    };
    write_atomic(&a.output, &bytes)?;
    println!(
        "wrote {} ({} bytes, rvne {}, {}, {} parameters)",
        a.output.display(),
        bytes.len(),
        match a.format {
            Version::V1 => "v1",
            Version::V2 => "v2",
        },
        dtype,
        meta.parameter_count()
    );
    Ok(())
}
