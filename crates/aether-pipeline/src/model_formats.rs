//! Model files in every format: `.rvne` v1 / v2 and safetensors in and out, the weight
//! checks a written model must pass, and the model JSON document (dims, architecture,
//! pattern, names, metadata) that travels with them.
//!
//! `aether convert` / `inspect` and the Python package's `Model.save` / `info` all come
//! here, so they agree on every byte and every field.

use std::collections::HashMap;

use aether_rvne::{
    AttentionBackend, BlobView, DType, Dims, ModelFile, ModelMeta, Pooling, Positional, Tensor,
    MAGIC,
};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

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

/// The safetensors bytes of `model` (docs/model.md tensor names, the model JSON under
/// the `aether` metadata key) with weights stored as `dtype`.
pub fn to_safetensors(model: &ModelFile, dtype: DType) -> Result<Vec<u8>> {
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

/// An output format of [`encode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `.rvne` version 1 (fixed architecture; refused if the model needs more).
    V1,
    /// `.rvne` version 2 (self-describing).
    V2,
    /// safetensors (docs/model.md tensor names, model JSON in the metadata map).
    Safetensors,
}

/// Why [`check_weights`] refuses a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WeightError {
    /// A NaN or infinite weight.
    #[error("tensor {tensor}: value {value} at index {index} is not finite; a model needs finite weights")]
    NotFinite {
        /// Tensor name.
        tensor: String,
        /// Element index.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A weight beyond the f16 range, for f16 storage.
    #[error("tensor {tensor}: value {value} at index {index} is beyond f16 range (±65504)")]
    BeyondF16 {
        /// Tensor name.
        tensor: String,
        /// Element index.
        index: usize,
        /// The value.
        value: f32,
    },
}

/// Refuses weights a model cannot run with: NaN or infinite values, and with `f16`
/// storage, values beyond its range (±65504).
pub fn check_weights(model: &ModelFile, dtype: DType) -> std::result::Result<(), WeightError> {
    for t in &model.tensors {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(WeightError::NotFinite {
                tensor: t.name.clone(),
                index: i,
                value: t.data[i],
            });
        }
        if dtype == DType::F16 {
            if let Some(i) = t
                .data
                .iter()
                .position(|v| v.abs() > f32::from(half::f16::MAX))
            {
                return Err(WeightError::BeyondF16 {
                    tensor: t.name.clone(),
                    index: i,
                    value: t.data[i],
                });
            }
        }
    }
    Ok(())
}

/// Encodes `model` in `format` with weights stored as `dtype`; `strip` drops class and
/// feature names and free metadata for v1 (which cannot hold them). Format errors keep
/// their `aether_rvne::Error` as the source (callers add hints, e.g. for
/// `NotV1Expressible`). Check the weights first ([`check_weights`]).
pub fn encode(model: &mut ModelFile, format: Format, dtype: DType, strip: bool) -> Result<Vec<u8>> {
    Ok(match format {
        Format::V1 => {
            if strip {
                model.class_names.clear();
                model.feature_names.clear();
                model.metadata.clear();
            }
            model.to_v1_bytes(dtype)?
        }
        Format::V2 => model.to_v2_bytes(dtype)?,
        Format::Safetensors => to_safetensors(model, dtype)?,
    })
}

/// Whether `e` is the v1 writer refusing class or feature names (v1 cannot hold them).
pub fn is_v1_names_refusal(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<aether_rvne::Error>(),
        Some(aether_rvne::Error::NotV1Expressible { reason }) if reason.contains("names"))
}

/// The `dims`, `architecture` and `pattern` sections of the model JSON document.
pub fn meta_sections(m: &ModelMeta) -> Map<String, Value> {
    let (d, a, p) = (&m.dims, &m.arch, &m.pattern);
    let v = json!({
        "dims": {
            "input_dim": d.input_dim, "d_model": d.d_model, "q_heads": d.q_heads,
            "kv_heads": d.kv_heads, "head_dim": d.head_dim, "layers": d.layers,
            "classes": d.classes, "mlp_hidden": d.mlp_hidden,
        },
        "architecture": {
            "input_norm": a.input_norm, "embed": a.embed,
            "positional": match a.positional { Positional::None => "none", Positional::Sinusoidal => "sinusoidal" },
            "pre_norm": a.pre_norm, "biases": a.biases, "final_norm": a.final_norm,
            "pooling": match a.pooling { Pooling::Mean => "mean", Pooling::Last => "last" },
            "attention": match a.attention { AttentionBackend::Sparse => "sparse", AttentionBackend::Dense => "dense" },
            "running_norm": a.running_norm,
        },
        "pattern": {
            "window": p.window, "block_size": p.block_size, "global_tokens": p.globals(),
            "causal": p.causal, "log_stride": p.log_stride, "landmarks": p.landmarks,
        },
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The model JSON document (dims, architecture, pattern, names, metadata).
pub fn meta_to_json(model: &ModelFile) -> Value {
    let mut doc = meta_sections(&model.meta);
    doc.insert("class_names".into(), json!(model.class_names));
    doc.insert("feature_names".into(), json!(model.feature_names));
    doc.insert(
        "metadata".into(),
        model.metadata.iter().map(|(k, v)| json!([k, v])).collect(),
    );
    Value::Object(doc)
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
