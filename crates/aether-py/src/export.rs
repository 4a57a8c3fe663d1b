//! Writing a model in another format: `.rvne` v1, `.rvne` v2 and safetensors, with the
//! same checks and the same bytes as `aether convert` (tested against it).

use std::collections::HashMap;

use aether_rvne::{AttentionBackend, BlobView, DType, ModelFile, Pooling, Positional};
use pyo3::PyResult;
use serde_json::{json, Value};

use crate::errors::{self, ConfigError, FormatError};

/// Key of the safetensors `__metadata__` entry holding the model JSON (as `aether convert`).
pub const SAFETENSORS_META_KEY: &str = "aether";

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.rvne` version 1.
    V1,
    /// `.rvne` version 2.
    V2,
    /// safetensors.
    Safetensors,
}

impl Format {
    /// Parses `"v1"`, `"v2"` or `"safetensors"`.
    pub fn parse(s: &str) -> PyResult<Self> {
        match s {
            "v1" => Ok(Format::V1),
            "v2" => Ok(Format::V2),
            "safetensors" => Ok(Format::Safetensors),
            _ => Err(ConfigError::new_err(format!(
                "format {s:?}: expected \"v1\", \"v2\" or \"safetensors\""
            ))),
        }
    }
}

/// Parses a dtype name (`"f32"`, `"f16"`, or `None`: keep the stored one).
pub fn parse_dtype(s: Option<&str>) -> PyResult<Option<DType>> {
    match s {
        None => Ok(None),
        Some("f32") | Some("float32") => Ok(Some(DType::F32)),
        Some("f16") | Some("float16") => Ok(Some(DType::F16)),
        Some(o) => Err(ConfigError::new_err(format!(
            "dtype {o:?}: expected \"f32\" or \"f16\""
        ))),
    }
}

/// Encodes the model in `bytes` (a valid `.rvne`) as `format`, as `aether convert IN OUT
/// --to FORMAT [--dtype D] [--strip-names]` does.
pub fn encode(
    bytes: &[u8],
    format: Format,
    dtype: Option<DType>,
    strip: bool,
) -> PyResult<Vec<u8>> {
    let view = BlobView::parse(bytes).map_err(errors::rvne)?;
    if view.is_int8() {
        if format == Format::V2 && dtype.is_none() && !strip {
            return Ok(bytes.to_vec());
        }
        return Err(FormatError::new_err(
            "an int8 model (written by `aether quantize`) is stored as .rvne v2 only: convert the float model, then quantize it again",
        ));
    }
    let mut model = ModelFile::from_view(&view).map_err(errors::rvne)?;
    let dtype = dtype.unwrap_or(model.dtype);
    check_weights(&model, dtype)?;
    let out = match format {
        Format::V1 => {
            if strip {
                model.class_names.clear();
                model.feature_names.clear();
                model.metadata.clear();
            }
            model.to_v1_bytes(dtype).map_err(|e| {
                let hint = if matches!(&e, aether_rvne::Error::NotV1Expressible { reason } if reason.contains("names")) {
                    " (pass strip_names=True to drop them)"
                } else {
                    ""
                };
                FormatError::new_err(format!("{e}{hint}"))
            })?
        }
        Format::V2 => model.to_v2_bytes(dtype).map_err(errors::rvne)?,
        Format::Safetensors => to_safetensors(&model, dtype)?,
    };
    if format != Format::Safetensors {
        aether_head::TemporalHead::from_blob(&out).map_err(|e| {
            FormatError::new_err(format!(
                "the converted model would not load in `aether classify` / `eval`: {e}"
            ))
        })?;
    }
    Ok(out)
}

/// Refuses weights a model cannot run with: NaN or infinite values, and with `f16`
/// storage values beyond its range (±65504).
fn check_weights(model: &ModelFile, dtype: DType) -> PyResult<()> {
    for t in &model.tensors {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(FormatError::new_err(format!(
                "tensor {}: value {} at index {i} is not finite; a model needs finite weights",
                t.name, t.data[i]
            )));
        }
        if dtype == DType::F16 {
            if let Some(i) = t
                .data
                .iter()
                .position(|v| v.abs() > f32::from(half::f16::MAX))
            {
                return Err(FormatError::new_err(format!(
                    "tensor {}: value {} at index {i} is beyond f16 range (±65504); keep dtype f32",
                    t.name, t.data[i]
                )));
            }
        }
    }
    Ok(())
}

fn to_safetensors(model: &ModelFile, dtype: DType) -> PyResult<Vec<u8>> {
    model.check_tensors().map_err(errors::rvne)?;
    let st_dtype = match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        other => {
            return Err(ConfigError::new_err(format!(
                "safetensors output stores f32 or f16, not {other}"
            )))
        }
    };
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .tensors
        .iter()
        .map(|t| {
            let b: Vec<u8> = if dtype == DType::F32 {
                t.data
                    .iter()
                    .flat_map(|v| v.to_bits().to_le_bytes())
                    .collect()
            } else {
                t.data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
                    .collect()
            };
            (t.name.clone(), t.shape.clone(), b)
        })
        .collect();
    let views = data
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(st_dtype, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| FormatError::new_err(format!("tensor {n}: {e:?}")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let mut md = HashMap::new();
    md.insert(
        SAFETENSORS_META_KEY.to_string(),
        meta_to_json(model).to_string(),
    );
    safetensors::serialize(views, &Some(md))
        .map_err(|e| FormatError::new_err(format!("safetensors: {e:?}")))
}

/// The model JSON document (dims, architecture, pattern, names, metadata), the one
/// `aether convert` stores in safetensors files.
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
        "class_names": model.class_names,
        "feature_names": model.feature_names,
        "metadata": model.metadata.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}
