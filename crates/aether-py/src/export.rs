//! Writing a model in another format: `.rvne` v1, `.rvne` v2 and safetensors, with the
//! same checks and the same bytes as `aether convert` (tested against it).

use aether_pipeline::model_formats::{self, check_weights, is_v1_names_refusal, WeightError};
pub use aether_pipeline::model_formats::{meta_sections, Format};
use aether_rvne::{BlobView, DType, ModelFile};
use pyo3::PyResult;

use crate::errors::{self, ConfigError, FormatError};

/// Parses `"v1"`, `"v2"` or `"safetensors"`.
pub fn parse_format(s: &str) -> PyResult<Format> {
    match s {
        "v1" => Ok(Format::V1),
        "v2" => Ok(Format::V2),
        "safetensors" => Ok(Format::Safetensors),
        _ => Err(ConfigError::new_err(format!(
            "format {s:?}: expected \"v1\", \"v2\" or \"safetensors\""
        ))),
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
/// --to FORMAT [--dtype D] [--strip-names]` does (the same code: `aether-pipeline`'s
/// `model_formats`).
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
    check_weights(&model, dtype).map_err(|e| {
        let hint = match e {
            WeightError::BeyondF16 { .. } => "; keep dtype f32",
            _ => "",
        };
        FormatError::new_err(format!("{e}{hint}"))
    })?;
    let out = model_formats::encode(&mut model, format, dtype, strip).map_err(|e| {
        if is_v1_names_refusal(&e) {
            FormatError::new_err(format!("{e:#} (pass strip_names=True to drop them)"))
        } else {
            match e.downcast::<aether_rvne::Error>() {
                Ok(r) => errors::rvne(r),
                Err(e) => FormatError::new_err(format!("{e:#}")),
            }
        }
    })?;
    if format != Format::Safetensors {
        aether_head::TemporalHead::from_blob(&out).map_err(|e| {
            FormatError::new_err(format!(
                "the converted model would not load in `aether classify` / `eval`: {e}"
            ))
        })?;
    }
    Ok(out)
}
