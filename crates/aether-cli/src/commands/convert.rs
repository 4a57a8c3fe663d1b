//! `aether convert IN OUT`: between `.rvne` v1, `.rvne` v2 and safetensors, bit-exact.
//!
//! Tensor names are those of docs/model.md in every format. Model metadata (dims,
//! architecture, pattern, names, provenance) travels as one JSON document: in a
//! safetensors file it is the value of the `aether` key of the header's `__metadata__`
//! map; `--meta FILE` reads the same document (any subset of its sections) from a side
//! file and overrides what the input says; pattern/pooling flags override both.
//!
//! ```json
//! {"dims": {"input_dim": 16, "d_model": 16, "q_heads": 4, "kv_heads": 1, "head_dim": 32,
//!           "layers": 2, "classes": 4, "mlp_hidden": 0},
//!  "architecture": {"input_norm": false, "embed": false, "positional": "none",
//!                   "pre_norm": false, "biases": false, "final_norm": false,
//!                   "pooling": "mean", "attention": "sparse", "running_norm": false},
//!  "pattern": {"window": 32, "block_size": 16, "global_tokens": [0], "causal": true,
//!              "log_stride": true, "landmarks": true},
//!  "class_names": ["wave", "circle"], "feature_names": [], "metadata": [["key", "value"]]}
//! ```
//!
//! The output location is checked before the input is read. A model with a NaN or
//! infinite weight (or one beyond f16 range when writing f16) is refused, and a `.rvne`
//! output must load in the inference head exactly as `classify` and `eval` will load
//! it, so what `convert` writes, they run.

use std::path::PathBuf;

use aether_rvne::{AttentionBackend, DType, ModelFile, Pooling};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::args::DTypeArg;
use crate::fsutil::{check_output_file, read_model_file, write_atomic};
use crate::values;
use aether_pipeline::model_formats::{
    apply_meta_json, check_weights, encode, is_v1_names_refusal, load_any, Format, MissingMetadata,
    WeightError,
};

/// Pooling choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingArg {
    /// Mean over positions.
    Mean,
    /// Last position.
    Last,
}

/// Attention backend on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttentionArg {
    /// Sparse pattern.
    Sparse,
    /// Dense.
    Dense,
}

/// Arguments of `aether convert`.
#[derive(clap::Args)]
pub struct Args {
    /// Input: .rvne (v1 or v2) or safetensors.
    pub input: PathBuf,
    /// Output file (written atomically).
    pub output: PathBuf,
    /// Output format (default: safetensors for a `.safetensors` OUT, else v2).
    #[arg(long, value_enum)]
    pub to: Option<Format>,
    /// Output dtype (default: the input's).
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
    /// JSON side file with model metadata overriding the input's (see module docs).
    #[arg(long)]
    pub meta: Option<PathBuf>,
    /// Sparse pattern: local window W, 0..=1048576.
    #[arg(long, value_parser = values::count(0, values::MAX_PATTERN))]
    pub window: Option<usize>,
    /// Sparse pattern: landmark block size B, 1..=1048576.
    #[arg(long, value_parser = values::count(1, values::MAX_PATTERN))]
    pub block_size: Option<usize>,
    /// Sparse pattern: global token positions (each 0..=1048576), comma-separated (empty for none).
    #[arg(long, value_delimiter = ',', num_args = 0.., value_parser = values::count(0, values::MAX_PATTERN))]
    pub globals: Option<Vec<usize>>,
    /// Sparse pattern: causal.
    #[arg(long)]
    pub causal: Option<bool>,
    /// Sparse pattern: log-stride look-back.
    #[arg(long)]
    pub log_stride: Option<bool>,
    /// Sparse pattern: block landmarks.
    #[arg(long)]
    pub landmarks: Option<bool>,
    /// Pooling over time.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// Attention backend.
    #[arg(long, value_enum)]
    pub attention: Option<AttentionArg>,
    /// Class names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub class_names: Option<Vec<String>>,
    /// Feature names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub feature_names: Option<Vec<String>>,
    /// Add a free metadata entry KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// For v1 output: drop class/feature names and free metadata (v1 cannot hold them).
    #[arg(long)]
    pub strip_names: bool,
}

/// Runs `aether convert`.
pub fn run(args: Args) -> Result<()> {
    check_output_file(&args.output)?;
    let bytes = read_model_file(&args.input)?;
    let mut model = load_any(&bytes, args.meta.is_some()).map_err(|e| {
        let hint = if e.is::<MissingMetadata>() {
            "; pass --meta FILE.json with the model description (see `aether convert --help`)"
        } else {
            ""
        };
        anyhow!("{}: {e:#}{hint}", args.input.display())
    })?;
    if let Some(p) = &args.meta {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", p.display()))?;
        apply_meta_json(&mut model, &v).with_context(|| format!("{}", p.display()))?;
    }
    apply_flags(&mut model, &args)?;
    let format = args.to.unwrap_or_else(|| {
        if args.output.extension().is_some_and(|e| e == "safetensors") {
            Format::Safetensors
        } else {
            Format::V2
        }
    });
    let dtype = args.dtype.map(DType::from).unwrap_or(model.dtype);
    check_weights(&model, dtype).map_err(|e| {
        let hint = match e {
            WeightError::BeyondF16 { .. } => "; keep --dtype f32",
            _ => "",
        };
        anyhow!("{}: {e}{hint}", args.input.display())
    })?;
    let out = encode(&mut model, format, dtype, args.strip_names).map_err(|e| {
        let hint = if is_v1_names_refusal(&e) {
            " (pass --strip-names to drop them)"
        } else {
            ""
        };
        anyhow!("{e:#}{hint}")
    })?;
    if format != Format::Safetensors {
        aether_head::TemporalHead::from_blob(&out)
            .context("the converted model would not load in `aether classify` / `eval`")?;
    }
    write_atomic(&args.output, &out)?;
    println!(
        "wrote {} ({} bytes, {}, {})",
        args.output.display(),
        out.len(),
        match format {
            Format::V1 => "rvne v1",
            Format::V2 => "rvne v2",
            Format::Safetensors => "safetensors",
        },
        dtype
    );
    Ok(())
}

fn apply_flags(model: &mut ModelFile, a: &Args) -> Result<()> {
    let p = &mut model.meta.pattern;
    let before = (*p, model.meta.arch);
    if let Some(w) = a.window {
        p.window = w;
    }
    if let Some(b) = a.block_size {
        p.block_size = b;
    }
    if let Some(g) = &a.globals {
        p.set_globals(g)?;
    }
    if let Some(c) = a.causal {
        p.causal = c;
    }
    if let Some(v) = a.log_stride {
        p.log_stride = v;
    }
    if let Some(v) = a.landmarks {
        p.landmarks = v;
    }
    if let Some(v) = a.pooling {
        model.meta.arch.pooling = match v {
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Last => Pooling::Last,
        };
    }
    if let Some(v) = a.attention {
        model.meta.arch.attention = match v {
            AttentionArg::Sparse => AttentionBackend::Sparse,
            AttentionArg::Dense => AttentionBackend::Dense,
        };
    }
    if before != (model.meta.pattern, model.meta.arch) {
        model.meta.defaults_assumed = false;
    }
    if let Some(n) = &a.class_names {
        model.class_names = n.clone();
    }
    if let Some(n) = &a.feature_names {
        model.feature_names = n.clone();
    }
    for kv in &a.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        match model.metadata.iter_mut().find(|(mk, _)| mk == k) {
            Some(e) => e.1 = v.to_string(),
            None => model.metadata.push((k.to_string(), v.to_string())),
        }
    }
    if model.meta.pattern.block_size == 0 {
        bail!("--block-size must be > 0");
    }
    Ok(())
}
