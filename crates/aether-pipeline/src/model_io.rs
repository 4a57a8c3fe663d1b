//! Models in and out: the `.rvne` bytes of a trained head, and a model file read back
//! to classify windows (float or int8, one loader for every caller).
//!
//! [`model_bytes`] writes a fitted head as `.rvne` v2 (class and feature names,
//! normalisation statistics, provenance metadata) or bare v1; [`quantize_bytes`]
//! turns those bytes into an int8 model; [`LoadedModel`] reads any of them back and
//! gives logits through the inference head a node runs.

use std::fs;
use std::path::Path;

use aether_data::dataset::{ShortPolicy, WindowConfig};
use aether_data::Dataset;
use aether_head::train::{provenance, Architecture, ExportInfo};
use aether_head::{AttentionBackend, Positional, TemporalHead};
use aether_quant::quantize::{quantize, QuantizeOptions};
use aether_quant::QuantHead;
use aether_rvne::{BlobView, DType, ModelFile};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use crate::fit::Fitted;

/// Metadata keys (`data.*`) the CLI adds to a model beside [`provenance`].
pub fn data_metadata(hash: &str, f: &Fitted, ds: &Dataset) -> Vec<(String, String)> {
    vec![
        ("data.sha256".into(), hash.to_string()),
        ("data.window".into(), f.window.len.to_string()),
        ("data.stride".into(), f.window.stride.to_string()),
        (
            "data.train_recordings".into(),
            f.train_recordings.len().to_string(),
        ),
        (
            "data.val_recordings".into(),
            f.val_recordings.len().to_string(),
        ),
        ("data.classes".into(), ds.classes.len().to_string()),
        ("train.arch".into(), arch_label(&f.arch)),
    ]
}

/// A short description of an architecture's options.
pub fn arch_label(a: &Architecture) -> String {
    let p = &a.pattern;
    let att = match a.attention {
        AttentionBackend::Sparse => format!(
            "sparse(w{} b{} g{:?} log{} lm{})",
            p.window, p.block_size, p.global_tokens, p.log_stride, p.landmarks
        ),
        AttentionBackend::Dense => format!("dense(causal {})", p.causal),
    };
    format!(
        "D{} L{} Hq{} Hkv{} dh{} mlp{} run{} norm{} embed{} pos{} prenorm{} bias{} final{} pool {:?} {att}",
        a.d_model,
        a.layers,
        a.q_heads,
        a.kv_heads,
        a.head_dim,
        a.mlp_hidden,
        a.running_norm as u8,
        a.input_norm as u8,
        a.embed as u8,
        (a.positional == Positional::Sinusoidal) as u8,
        a.pre_norm as u8,
        a.biases as u8,
        a.final_norm as u8,
        a.pooling
    )
}

/// The `.rvne` bytes of a fitted model: v2 (names, stats, provenance) or v1.
pub fn model_bytes(f: &Fitted, ds: &Dataset, hash: &str, v1: bool, f16: bool) -> Result<Vec<u8>> {
    let dtype = if f16 { DType::F16 } else { DType::F32 };
    if v1 {
        return Ok(f.outcome.model.to_v1_bytes(dtype)?);
    }
    let mut metadata = provenance(&f.config, &f.outcome);
    if f.qat_epochs > 0 {
        metadata.push(("train.qat_epochs".into(), f.qat_epochs.to_string()));
    }
    metadata.extend(data_metadata(hash, f, ds));
    let info = ExportInfo {
        class_names: ds.classes.clone(),
        feature_names: ds.feature_names.clone(),
        metadata,
    };
    Ok(f.outcome.model.to_v2_bytes(&info, dtype)?)
}

/// `take` indices spread evenly over `0..n` (all of them when `take ≥ n`).
pub fn spread(n: usize, take: usize) -> Vec<usize> {
    if take >= n {
        return (0..n).collect();
    }
    (0..take).map(|i| i * n / take).collect()
}

/// The stored window of a model (`data.window`, `data.stride` metadata).
pub fn stored_window(view: &BlobView<'_>) -> Option<(usize, usize)> {
    let num = |k| {
        view.metadata_value(k)
            .and_then(|v: &str| v.parse::<usize>().ok())
    };
    match (num("data.window"), num("data.stride")) {
        (Some(w), Some(s)) if w > 0 && s > 0 => Some((w, s)),
        (Some(w), None) if w > 0 => Some((w, w)),
        _ => None,
    }
}

/// Length of a window that holds any whole recording: a model without a stored window
/// is scored on each recording whole.
pub const WHOLE_RECORDING: usize = usize::MAX / 2;

/// The windows a model is scored with: `window` (stride `stride`, else `window`) when
/// given, else the model's `stored` window (stride `stride`, else the stored one), else
/// each recording whole ([`WHOLE_RECORDING`]).
pub fn scoring_window(
    window: Option<usize>,
    stride: Option<usize>,
    stored: Option<(usize, usize)>,
) -> WindowConfig {
    let (len, stride) = match (window, stored) {
        (Some(w), _) => (w, stride.unwrap_or(w)),
        (None, Some((w, s))) => (w, stride.unwrap_or(s)),
        (None, None) => (WHOLE_RECORDING, WHOLE_RECORDING),
    };
    WindowConfig {
        len,
        stride,
        short: ShortPolicy::Whole,
    }
}

/// Largest model file a reader accepts: the u32 length fields of `.rvne` cap a blob below
/// 4 GiB, and safetensors models of this head are far smaller.
pub const MAX_MODEL_FILE: u64 = u32::MAX as u64;

/// Reads a whole model file, refusing (before allocating) anything above
/// [`MAX_MODEL_FILE`] bytes.
pub fn read_model_file(path: &Path) -> Result<Vec<u8>> {
    let len = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_MODEL_FILE {
        bail!(
            "{}: {len} bytes, larger than any model file can be ({MAX_MODEL_FILE} bytes)",
            path.display()
        );
    }
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A model read from a file, ready to classify windows.
pub struct LoadedModel {
    bytes: Vec<u8>,
    /// Class names (from the file, else `class<i>`).
    pub classes: Vec<String>,
    /// Feature names (empty when the file has none).
    pub features: Vec<String>,
    /// Whether the file names its classes (v1 files do not).
    pub named_classes: bool,
    /// Stored window length and stride, if any.
    pub window: Option<(usize, usize)>,
    /// Input features per frame.
    pub feature_dim: usize,
    /// Whether this is an int8 model (runs on the integer head).
    pub int8: bool,
}

impl LoadedModel {
    /// Reads and validates a `.rvne` file.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let bytes = read_model_file(path)?;
        let name = path.display().to_string();
        let view =
            BlobView::parse(&bytes).with_context(|| format!("{name}: not a valid .rvne file"))?;
        if view.is_int8() {
            aether_quant::QuantHead::from_view(&view)
                .with_context(|| format!("{name}: cannot build the int8 model"))?;
        } else {
            TemporalHead::from_view(&view)
                .with_context(|| format!("{name}: cannot build the model"))?;
        }
        let d = view.meta().dims;
        let c = d.classes;
        let classes = (0..c)
            .map(|i| {
                view.class_name(i)
                    .map_or_else(|| format!("class{i}"), str::to_string)
            })
            .collect();
        let features = if view.has_feature_names() {
            (0..d.input_dim)
                .map(|i| view.feature_name(i).unwrap_or("").to_string())
                .collect()
        } else {
            Vec::new()
        };
        let window = stored_window(&view);
        Ok(Self {
            named_classes: view.has_class_names(),
            feature_dim: d.input_dim,
            int8: view.is_int8(),
            bytes,
            classes,
            features,
            window,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A view of the file (names, metadata, tensors).
    pub fn view(&self) -> Result<BlobView<'_>> {
        Ok(BlobView::parse(&self.bytes)?)
    }

    /// The inference head over the file's bytes (a float model).
    pub fn head(&self) -> Result<TemporalHead<'_>> {
        Ok(TemporalHead::from_blob(&self.bytes)?)
    }

    /// The integer head over the file's bytes (an int8 model).
    pub fn int8_head(&self) -> Result<QuantHead<'_>> {
        Ok(QuantHead::from_blob(&self.bytes)?)
    }

    /// Logits `[n, C]` flat of `windows`, in parallel, through the inference head (the
    /// integer head for an int8 model; its logits converted to f32 exactly).
    pub fn logits(
        &self,
        backend: Option<AttentionBackend>,
        windows: &[&[f32]],
    ) -> Result<Vec<f32>> {
        if self.int8 {
            if backend.is_some() {
                bail!("--backend cannot override the attention of an int8 model");
            }
            return int8_logits(&self.bytes)(windows);
        }
        let mut head = self.head()?;
        if let Some(b) = backend {
            head.set_backend(b);
        }
        let out: Vec<Result<Vec<f32>>> = windows.par_iter().map(|w| Ok(head.forward(w)?)).collect();
        let mut flat = Vec::with_capacity(windows.len() * self.classes.len());
        for o in out {
            flat.extend(o?);
        }
        Ok(flat)
    }
}

/// The int8 blob of a float blob, calibrated on (at most 512, evenly spread) `windows`:
/// what `aether train --int8` writes next to the float model.
pub fn quantize_bytes(float_blob: &[u8], windows: &[&[f32]]) -> Result<Vec<u8>> {
    let model = ModelFile::from_bytes(float_blob)?;
    let take = spread(windows.len(), 512);
    let calib: Vec<&[f32]> = take.iter().map(|&i| windows[i]).collect();
    let (q, _) = quantize(&model, &calib, &QuantizeOptions::default())?;
    Ok(q.to_v2_bytes()?)
}

/// Logits `[n, C]` flat of `windows` through the integer head of `blob` (parallel),
/// converted to f32 exactly.
pub fn int8_logits(blob: &[u8]) -> impl Fn(&[&[f32]]) -> Result<Vec<f32>> + '_ {
    move |windows| {
        let head = QuantHead::from_blob(blob)?;
        let out: Vec<Result<Vec<f32>>> = windows
            .par_iter()
            .map(|w| {
                let q = head.forward(w)?;
                let mut l = vec![0.0f32; q.len()];
                head.logits_to_f32(&q, &mut l);
                Ok(l)
            })
            .collect();
        let mut flat = Vec::with_capacity(windows.len() * head.classes());
        for o in out {
            flat.extend(o?);
        }
        Ok(flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_reads_are_capped_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.rvne");
        // A sparse file: no disk blocks, but its length exceeds the cap.
        fs::File::create(&p)
            .unwrap()
            .set_len(MAX_MODEL_FILE + 1)
            .unwrap();
        let e = read_model_file(&p).unwrap_err().to_string();
        assert!(e.contains("larger than any model file"), "{e}");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(read_model_file(&p).unwrap(), b"abc");
    }

    #[test]
    fn spread_is_even_and_complete() {
        assert_eq!(spread(10, 3), vec![0, 3, 6]);
        assert_eq!(spread(3, 10), vec![0, 1, 2]);
        assert_eq!(spread(5, 5), vec![0, 1, 2, 3, 4]);
    }
}
