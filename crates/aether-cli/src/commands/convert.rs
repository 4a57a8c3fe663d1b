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

use std::collections::HashMap;
use std::path::PathBuf;

use aether_rvne::{
    AttentionBackend, BlobView, DType, Dims, ModelFile, ModelMeta, Pooling, Positional, Tensor,
    MAGIC,
};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::fsutil::{check_output_file, read_model_file, write_atomic};
use crate::values;

/// A safetensors file without the `aether` model description; callers add how to supply it.
#[derive(Debug)]
pub struct MissingMetadata;

impl std::fmt::Display for MissingMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "safetensors file has no `{SAFETENSORS_META_KEY}` metadata (the model description: dims, architecture, pattern)"
        )
    }
}

impl std::error::Error for MissingMetadata {}

/// Key of the safetensors `__metadata__` entry holding the model JSON.
pub const SAFETENSORS_META_KEY: &str = "aether";

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `.rvne` version 1 (fixed architecture; refused if the model needs more).
    V1,
    /// `.rvne` version 2 (self-describing).
    V2,
    /// safetensors (docs/model.md tensor names, model JSON in the metadata map).
    Safetensors,
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
    check_weights(&model, dtype).with_context(|| format!("{}", args.input.display()))?;
    let out = encode(&mut model, format, dtype, args.strip_names)?;
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

/// Refuses weights a model cannot run with: NaN or infinite values, and with `f16`
/// storage, values beyond its range (±65504).
pub fn check_weights(model: &ModelFile, dtype: DType) -> Result<()> {
    for t in &model.tensors {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            bail!(
                "tensor {}: value {} at index {i} is not finite; a model needs finite weights",
                t.name,
                t.data[i]
            );
        }
        if dtype == DType::F16 {
            if let Some(i) = t
                .data
                .iter()
                .position(|v| v.abs() > f32::from(half::f16::MAX))
            {
                bail!(
                    "tensor {}: value {} at index {i} is beyond f16 range (±65504); keep --dtype f32",
                    t.name,
                    t.data[i]
                );
            }
        }
    }
    Ok(())
}

/// Encodes `model` in `format`.
pub fn encode(model: &mut ModelFile, format: Format, dtype: DType, strip: bool) -> Result<Vec<u8>> {
    Ok(match format {
        Format::V1 => {
            if strip {
                model.class_names.clear();
                model.feature_names.clear();
                model.metadata.clear();
            }
            model.to_v1_bytes(dtype).map_err(|e| {
                let hint = if matches!(e, aether_rvne::Error::NotV1Expressible { reason } if reason.contains("names")) {
                    " (pass --strip-names to drop them)"
                } else {
                    ""
                };
                anyhow!("{e}{hint}")
            })?
        }
        Format::V2 => model.to_v2_bytes(dtype)?,
        Format::Safetensors => to_safetensors(model, dtype)?,
    })
}

/// Reads a `.rvne` (by magic) or safetensors file into an owned model. Without embedded
/// metadata a safetensors file is only accepted when `meta_follows` (a side file will
/// supply it); dims are then inferred from the tensor shapes as a starting point.
pub fn load_any(bytes: &[u8], meta_follows: bool) -> Result<ModelFile> {
    if bytes.len() >= 4 && u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == MAGIC {
        let view = BlobView::parse(bytes)?;
        if view.is_int8() {
            bail!("an int8 model (written by `aether quantize`) cannot be converted: convert the float model, then quantize it again");
        }
        return Ok(ModelFile::from_view(&view)?);
    }
    from_safetensors(bytes, meta_follows)
}

fn to_safetensors(model: &ModelFile, dtype: DType) -> Result<Vec<u8>> {
    model.check_tensors()?;
    let st_dtype = match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::I8 | DType::I32 => bail!("safetensors output stores f32 or f16, not {dtype}"),
    };
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .tensors
        .iter()
        .map(|t| {
            let b: Vec<u8> = match dtype {
                DType::F32 => t
                    .data
                    .iter()
                    .flat_map(|v| v.to_bits().to_le_bytes())
                    .collect(),
                DType::F16 | DType::I8 | DType::I32 => t
                    .data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
                    .collect(),
            };
            (t.name.clone(), t.shape.clone(), b)
        })
        .collect();
    let views = data
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(st_dtype, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut md = HashMap::new();
    md.insert(
        SAFETENSORS_META_KEY.to_string(),
        meta_to_json(model).to_string(),
    );
    Ok(safetensors::serialize(views, &Some(md))?)
}

fn from_safetensors(bytes: &[u8], meta_follows: bool) -> Result<ModelFile> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("neither a .rvne file nor safetensors ({e:?})"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow!("safetensors header: {e:?}"))?;
    let json_meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SAFETENSORS_META_KEY))
        .map(|s| serde_json::from_str::<Value>(s))
        .transpose()
        .context("safetensors metadata `aether` is not valid JSON")?;
    let mut dtype = None;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let dt = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            other => bail!("tensor {name}: dtype {other:?} unsupported (f32 or f16 only)"),
        };
        if dtype.is_some_and(|d| d != dt) {
            dtype = Some(DType::F32);
        } else if dtype.is_none() {
            dtype = Some(dt);
        }
        let data: Vec<f32> = match dt {
            DType::F32 | DType::I8 | DType::I32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            DType::F16 => view
                .data()
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
        };
        tensors.push(Tensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    let mut model = ModelFile {
        meta: infer_meta(&tensors),
        dtype: dtype.unwrap_or(DType::F32),
        class_names: Vec::new(),
        feature_names: Vec::new(),
        metadata: Vec::new(),
        tensors,
    };
    match json_meta {
        Some(v) => apply_meta_json(&mut model, &v)?,
        None if meta_follows => {}
        None => return Err(MissingMetadata.into()),
    }
    Ok(model)
}

/// A v1-style starting point read off the shapes (`layers.0.wq`, `classifier.w`).
fn infer_meta(tensors: &[Tensor]) -> ModelMeta {
    let shape = |n: &str| {
        tensors
            .iter()
            .find(|t| t.name == n)
            .map(|t| t.shape.clone())
    };
    let layers = (0..)
        .take_while(|l| tensors.iter().any(|t| t.name == format!("layers.{l}.wq")))
        .count();
    let mut dims = Dims::AETHER_DEFAULT;
    if let (Some(q), Some(k), Some(c)) = (
        shape("layers.0.wq"),
        shape("layers.0.wk"),
        shape("classifier.w"),
    ) {
        if q.len() == 2 && k.len() == 2 && c.len() == 2 {
            dims = Dims {
                input_dim: q[0],
                d_model: q[0],
                layers: layers.max(1),
                classes: c[1],
                ..dims
            };
            let dh = dims.head_dim;
            if q[1] % dh == 0 && k[1] % dh == 0 {
                dims.q_heads = q[1] / dh;
                dims.kv_heads = k[1] / dh;
            }
        }
    }
    ModelMeta::v1_defaults(dims)
}

fn reorder(model: &mut ModelFile) -> Result<()> {
    // Canonical order; unknown names are reported by check_tensors.
    let mut rest = std::mem::take(&mut model.tensors);
    let mut ordered = Vec::with_capacity(rest.len());
    for spec in model.meta.tensor_specs() {
        let name = spec.name();
        match rest.iter().position(|t| t.name == name.as_str()) {
            Some(i) => ordered.push(rest.swap_remove(i)),
            None => bail!("missing tensor {name} (the metadata implies it)"),
        }
    }
    if let Some(t) = rest.first() {
        bail!(
            "tensor {} is not part of the model the metadata describes",
            t.name
        );
    }
    model.tensors = ordered;
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

fn yes(b: bool) -> Value {
    Value::Bool(b)
}

/// The model JSON document (dims, architecture, pattern, names, metadata).
pub fn meta_to_json(model: &ModelFile) -> Value {
    let m = &model.meta;
    let d = &m.dims;
    let a = &m.arch;
    let p = &m.pattern;
    json!({
        "dims": {
            "input_dim": d.input_dim, "d_model": d.d_model, "q_heads": d.q_heads,
            "kv_heads": d.kv_heads, "head_dim": d.head_dim, "layers": d.layers,
            "classes": d.classes, "mlp_hidden": d.mlp_hidden,
        },
        "architecture": {
            "input_norm": yes(a.input_norm), "embed": yes(a.embed),
            "positional": match a.positional { Positional::None => "none", Positional::Sinusoidal => "sinusoidal" },
            "pre_norm": yes(a.pre_norm), "biases": yes(a.biases), "final_norm": yes(a.final_norm),
            "pooling": match a.pooling { Pooling::Mean => "mean", Pooling::Last => "last" },
            "attention": match a.attention { AttentionBackend::Sparse => "sparse", AttentionBackend::Dense => "dense" },
            "running_norm": yes(a.running_norm),
        },
        "pattern": {
            "window": p.window, "block_size": p.block_size, "global_tokens": p.globals(),
            "causal": p.causal, "log_stride": p.log_stride, "landmarks": p.landmarks,
        },
        "class_names": model.class_names,
        "feature_names": model.feature_names,
        "metadata": model.metadata.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .with_context(|| format!("`{what}` must be a JSON object"))
}

fn get_usize(m: &Map<String, Value>, sec: &str, k: &str, slot: &mut usize) -> Result<()> {
    if let Some(v) = m.get(k) {
        *slot = v
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .with_context(|| format!("{sec}.{k} must be a non-negative integer"))?;
    }
    Ok(())
}

fn get_bool(m: &Map<String, Value>, sec: &str, k: &str, slot: &mut bool) -> Result<()> {
    if let Some(v) = m.get(k) {
        *slot = v
            .as_bool()
            .with_context(|| format!("{sec}.{k} must be true or false"))?;
    }
    Ok(())
}

fn get_enum<T: Copy>(
    m: &Map<String, Value>,
    sec: &str,
    k: &str,
    opts: &[(&str, T)],
    slot: &mut T,
) -> Result<()> {
    if let Some(v) = m.get(k) {
        let s = v
            .as_str()
            .with_context(|| format!("{sec}.{k} must be a string"))?;
        *slot = opts
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, t)| *t)
            .with_context(|| {
                let names: Vec<&str> = opts.iter().map(|(n, _)| *n).collect();
                format!("{sec}.{k}: {s:?} is not one of {}", names.join(", "))
            })?;
    }
    Ok(())
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>> {
    v.as_array()
        .with_context(|| format!("`{what}` must be an array of strings"))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(String::from)
                .with_context(|| format!("`{what}` must be an array of strings"))
        })
        .collect()
}

/// Applies (any subset of) the model JSON document to `model`, then puts the tensors in
/// canonical order for the resulting architecture.
pub fn apply_meta_json(model: &mut ModelFile, v: &Value) -> Result<()> {
    let top = obj(v, "metadata document")?;
    for k in top.keys() {
        if ![
            "dims",
            "architecture",
            "pattern",
            "class_names",
            "feature_names",
            "metadata",
            "format",
        ]
        .contains(&k.as_str())
        {
            bail!("unknown section `{k}` in the model JSON");
        }
    }
    let mut meta = model.meta;
    if let Some(d) = top.get("dims") {
        let d = obj(d, "dims")?;
        let x = &mut meta.dims;
        for (k, slot) in [
            ("input_dim", &mut x.input_dim),
            ("d_model", &mut x.d_model),
            ("q_heads", &mut x.q_heads),
            ("kv_heads", &mut x.kv_heads),
            ("head_dim", &mut x.head_dim),
            ("layers", &mut x.layers),
            ("classes", &mut x.classes),
            ("mlp_hidden", &mut x.mlp_hidden),
        ] {
            get_usize(d, "dims", k, slot)?;
        }
        if !d.contains_key("d_model") && !meta.arch.embed {
            meta.dims.d_model = meta.dims.input_dim;
        }
    }
    if let Some(a) = top.get("architecture") {
        let a = obj(a, "architecture")?;
        let x = &mut meta.arch;
        get_bool(a, "architecture", "input_norm", &mut x.input_norm)?;
        get_bool(a, "architecture", "embed", &mut x.embed)?;
        get_enum(
            a,
            "architecture",
            "positional",
            &[
                ("none", Positional::None),
                ("sinusoidal", Positional::Sinusoidal),
            ],
            &mut x.positional,
        )?;
        get_bool(a, "architecture", "pre_norm", &mut x.pre_norm)?;
        get_bool(a, "architecture", "biases", &mut x.biases)?;
        get_bool(a, "architecture", "final_norm", &mut x.final_norm)?;
        get_enum(
            a,
            "architecture",
            "pooling",
            &[("mean", Pooling::Mean), ("last", Pooling::Last)],
            &mut x.pooling,
        )?;
        get_enum(
            a,
            "architecture",
            "attention",
            &[
                ("sparse", AttentionBackend::Sparse),
                ("dense", AttentionBackend::Dense),
            ],
            &mut x.attention,
        )?;
        get_bool(a, "architecture", "running_norm", &mut x.running_norm)?;
    }
    if let Some(p) = top.get("pattern") {
        let p = obj(p, "pattern")?;
        let x = &mut meta.pattern;
        get_usize(p, "pattern", "window", &mut x.window)?;
        get_usize(p, "pattern", "block_size", &mut x.block_size)?;
        get_bool(p, "pattern", "causal", &mut x.causal)?;
        get_bool(p, "pattern", "log_stride", &mut x.log_stride)?;
        get_bool(p, "pattern", "landmarks", &mut x.landmarks)?;
        if let Some(g) = p.get("global_tokens") {
            let g: Vec<usize> = g
                .as_array()
                .context("pattern.global_tokens must be an array of integers")?
                .iter()
                .map(|x| {
                    x.as_u64()
                        .and_then(|x| usize::try_from(x).ok())
                        .context("pattern.global_tokens must be an array of integers")
                })
                .collect::<Result<_>>()?;
            x.set_globals(&g)?;
        }
    }
    if top.contains_key("dims") || top.contains_key("architecture") || top.contains_key("pattern") {
        meta.defaults_assumed = false;
    }
    meta.validate().context("model JSON")?;
    model.meta = meta;
    if let Some(v) = top.get("class_names") {
        model.class_names = strings(v, "class_names")?;
    }
    if let Some(v) = top.get("feature_names") {
        model.feature_names = strings(v, "feature_names")?;
    }
    if let Some(v) = top.get("metadata") {
        let arr = v
            .as_array()
            .context("`metadata` must be an array of [key, value] pairs")?;
        model.metadata = arr
            .iter()
            .map(|p| {
                let s = strings(p, "metadata entry")?;
                match <[String; 2]>::try_from(s) {
                    Ok([k, v]) => Ok((k, v)),
                    Err(_) => bail!("metadata entries must be [key, value] pairs"),
                }
            })
            .collect::<Result<_>>()?;
    }
    reorder(model)
}
