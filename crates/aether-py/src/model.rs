//! `aether.Model` and `aether.Stream`: a `.rvne` model (float or int8) and its exact
//! streams, over the inference heads `aether classify` and `aether eval` run.

use std::path::PathBuf;

use aether_head::live::{KvPrecision, StreamSettings, DEFAULT_CAPACITY, DEFAULT_HORIZON};
use aether_head::math::{argmax, softmax};
use aether_head::{EvictionPolicy, HeadError, LiveStream, TemporalHead};
use aether_quant::{QLiveStream, QStream, QuantError, QuantHead};
use aether_rvne::BlobView;
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::arrays::{f32_array, frames_shape, to_numpy};
use crate::errors::{self, ConfigError, FormatError, ShapeError, StreamError};
use crate::export;

/// The head a model file runs on.
pub enum Head {
    /// A float model (`.rvne` v1 or v2, f32 or f16 weights).
    F32(Box<TemporalHead<'static>>),
    /// An int8 model (`aether quantize`): the integer head, logits `q · 2^-shift`.
    I8(Box<QuantHead<'static>>),
}

/// A failure of either head, mapped to its Python class by `From`.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The float head refused.
    Head(HeadError),
    /// The integer head refused.
    Quant(QuantError),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Head(e) => e.fmt(f),
            RunError::Quant(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {}

impl From<RunError> for PyErr {
    fn from(e: RunError) -> PyErr {
        match e {
            RunError::Head(e) => errors::head(e),
            RunError::Quant(e) => errors::quant(e),
        }
    }
}

impl Head {
    /// Logits of one sequence (`n·F` values).
    pub fn logits(&self, frames: &[f32]) -> Result<Vec<f32>, RunError> {
        match self {
            Head::F32(h) => h.forward(frames).map_err(RunError::Head),
            Head::I8(h) => {
                let q = h.forward(frames).map_err(RunError::Quant)?;
                let mut out = vec![0.0f32; q.len()];
                h.logits_to_f32(&q, &mut out);
                Ok(out)
            }
        }
    }

    /// Logits `[windows.len() · C]` flat, windows in parallel (as `aether eval` does).
    pub fn logits_batch(&self, windows: &[&[f32]]) -> Result<Vec<f32>, RunError> {
        let out: Vec<Result<Vec<f32>, RunError>> =
            windows.par_iter().map(|w| self.logits(w)).collect();
        let mut flat = Vec::new();
        for o in out {
            flat.extend(o?);
        }
        Ok(flat)
    }
}

/// A `.rvne` model, float or int8, with the metadata of its file.
#[pyclass(module = "aether", frozen)]
pub struct Model {
    bytes: Vec<u8>,
    pub(crate) head: Head,
    classes: Vec<String>,
    feature_names: Vec<String>,
    named_classes: bool,
    window: Option<(usize, usize)>,
    default_horizon: usize,
    features: usize,
    /// Where the model came from (its path when loaded from a file), for provenance.
    source: String,
}

impl Model {
    /// Builds a model from the bytes of a `.rvne` file (v1 or v2, float or int8).
    pub fn from_vec(bytes: Vec<u8>) -> PyResult<Self> {
        let view = BlobView::parse(&bytes).map_err(errors::rvne)?;
        let head = if view.is_int8() {
            Head::I8(Box::new(
                QuantHead::from_view(&view)
                    .map_err(errors::quant)?
                    .into_owned(),
            ))
        } else {
            Head::F32(Box::new(
                TemporalHead::from_view(&view)
                    .map_err(errors::head)?
                    .into_owned(),
            ))
        };
        let d = view.meta().dims;
        let classes = (0..d.classes)
            .map(|i| {
                view.class_name(i)
                    .map_or_else(|| format!("class{i}"), str::to_string)
            })
            .collect();
        let feature_names = if view.has_feature_names() {
            (0..d.input_dim)
                .map(|i| view.feature_name(i).unwrap_or("").to_string())
                .collect()
        } else {
            Vec::new()
        };
        // As `aether eval` reads the stored window, and `classify --stream` / `serve`
        // the default horizon.
        let window = aether_pipeline::stored_window(&view);
        let default_horizon = view
            .metadata_value("data.window")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&w| w >= 2)
            .unwrap_or(DEFAULT_HORIZON);
        let named_classes = view.has_class_names();
        Ok(Model {
            bytes,
            head,
            classes,
            feature_names,
            named_classes,
            window,
            default_horizon,
            features: d.input_dim,
            source: "<bytes>".to_string(),
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the model runs on the integer head.
    pub fn is_int8_model(&self) -> bool {
        matches!(self.head, Head::I8(_))
    }

    /// Where the model came from: its path when loaded from a file, else `<bytes>`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the file names its classes (v1 files do not).
    pub fn named_classes(&self) -> bool {
        self.named_classes
    }

    /// The stored training window and stride.
    pub fn stored_window(&self) -> Option<(usize, usize)> {
        self.window
    }

    /// Class names (from the file, else `class<i>`).
    pub fn class_list(&self) -> Vec<String> {
        self.classes.clone()
    }

    /// Feature names (empty when the file names none).
    pub fn feature_name_list(&self) -> Vec<String> {
        self.feature_names.clone()
    }

    /// Input features per frame.
    pub fn feature_count(&self) -> usize {
        self.features
    }

    /// Logits of `x`: `(C,)` for frames `(N, D)`, `(B, C)` for a batch `(B, N, D)`.
    fn run<'py>(&self, x: &Bound<'py, PyAny>, what: &str) -> PyResult<(Vec<f32>, Vec<usize>)> {
        let py = x.py();
        let arr = f32_array(x, what)?;
        let (batch, n) = frames_shape(arr.shape(), self.features, what)?;
        let c = self.classes.len();
        let values = arr.values();
        let per = n * self.features;
        let out = py.detach(|| match batch {
            None => self.head.logits(values),
            Some(_) => {
                let windows: Vec<&[f32]> = values.chunks_exact(per).collect();
                self.head.logits_batch(&windows)
            }
        })?;
        let shape = match batch {
            None => vec![c],
            Some(b) => vec![b, c],
        };
        Ok((out, shape))
    }

    fn info_json(&self) -> PyResult<Value> {
        let view = BlobView::parse(&self.bytes).map_err(errors::rvne)?;
        let m = view.meta();
        let metadata: serde_json::Map<String, Value> = view
            .metadata()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let mut doc = export::meta_sections(m);
        let rest = json!({
            "version": view.version(),
            "dtype": if view.is_int8() { "i8".to_string() } else { view.dtype().map_or_else(|| "f32".to_string(), |t| t.to_string()) },
            "int8": view.is_int8(),
            "bytes": self.bytes.len(),
            "crc32": view.crc(),
            "defaults_assumed": m.defaults_assumed,
            "class_names": self.classes,
            "named_classes": self.named_classes,
            "feature_names": self.feature_names,
            "window": self.window.map(|w| w.0),
            "stride": self.window.map(|w| w.1),
            "default_horizon": self.default_horizon,
            "metadata": metadata,
        });
        if let Value::Object(r) = rest {
            doc.extend(r);
        }
        Ok(Value::Object(doc))
    }
}

/// A JSON value as a Python object (dict, list, …).
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

/// `(start, frames)` of the windows of a `t`-frame recording, as
/// `aether_data::Dataset::windows` cuts them with the whole-window policy for short
/// recordings: starts `0, stride, …` while they fit, then one ending at the last frame.
pub fn window_starts(t: usize, len: usize, stride: usize) -> Vec<(usize, usize)> {
    if t < len {
        return vec![(0, t)];
    }
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        out.push((start, len));
        if start + len == t {
            break;
        }
        start = if start.saturating_add(stride).saturating_add(len) <= t {
            start + stride
        } else {
            t - len
        };
    }
    out
}

/// Softmax of each row of `logits` (`C` per row), the probabilities `aether classify` prints.
pub fn softmax_rows(logits: &[f32], c: usize) -> Vec<f32> {
    let mut p = vec![0.0f32; logits.len()];
    for (l, o) in logits
        .chunks_exact(c.max(1))
        .zip(p.chunks_exact_mut(c.max(1)))
    {
        softmax(l, o);
    }
    p
}

#[pymethods]
impl Model {
    /// Reads a `.rvne` model file (v1 or v2, float or int8).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let bytes = std::fs::read(&path).map_err(|e| errors::io(e, &path))?;
        let shown = path.display().to_string();
        let mut m = py
            .detach(|| Model::from_vec(bytes))
            .map_err(|e| prefix_err(py, e, &shown))?;
        m.source = shown;
        Ok(m)
    }

    /// Builds a model from the bytes of a `.rvne` file.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let bytes = data.to_vec();
        py.detach(|| Model::from_vec(bytes))
    }

    /// Class names (from the file, else `class0`, `class1`, …).
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    /// Number of classes `C`.
    #[getter]
    fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Input features per frame `D`.
    #[getter]
    fn features(&self) -> usize {
        self.features
    }

    /// Feature names (empty when the file names none, e.g. v1).
    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.feature_names.clone()
    }

    /// The training window length stored in the model (`data.window`), or None.
    #[getter]
    fn window(&self) -> Option<usize> {
        self.window.map(|w| w.0)
    }

    /// The training window stride stored in the model (`data.stride`), or None.
    #[getter]
    fn stride(&self) -> Option<usize> {
        self.window.map(|w| w.1)
    }

    /// The horizon `aether classify --stream` and `aether serve` use for this model.
    #[getter]
    fn default_horizon(&self) -> usize {
        self.default_horizon
    }

    /// Whether this is an int8 model (runs on the integer head).
    #[getter]
    fn is_int8(&self) -> bool {
        matches!(self.head, Head::I8(_))
    }

    /// Everything the file says: version, dtype, dims, architecture, pattern, names,
    /// stored window, metadata.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.info_json()?)
    }

    /// Logits: `(C,)` for frames `(N, D)`, `(B, C)` for a batch `(B, N, D)`.
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (out, shape) = self.run(x, "x")?;
        to_numpy(py, out, &shape)
    }

    /// Class probabilities (softmax of the logits), shaped like `forward`.
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (out, shape) = self.run(x, "x")?;
        let p = softmax_rows(&out, self.classes.len());
        to_numpy(py, p, &shape)
    }

    /// The predicted class index: an int for `(N, D)`, an int64 array `(B,)` for a batch.
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (out, shape) = self.run(x, "x")?;
        let c = self.classes.len();
        let idx: Vec<i64> = out.chunks_exact(c).map(|l| argmax(l) as i64).collect();
        if shape.len() == 1 {
            Ok(idx[0].into_pyobject(py)?.into_any())
        } else {
            Ok(to_numpy(py, idx, &[shape[0]])?.into_any())
        }
    }

    /// The pooled embedding (`d_model` values) of frames `(N, D)`, or `(B, d_model)`.
    fn embed<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let Head::F32(head) = &self.head else {
            return Err(FormatError::new_err(
                "embed: an int8 model has no float embedding; use the float model it was quantised from",
            ));
        };
        let arr = f32_array(x, "x")?;
        let (batch, n) = frames_shape(arr.shape(), self.features, "x")?;
        let values = arr.values();
        let per = n * self.features;
        let dm = head.config().d_model;
        let out = py
            .detach(|| -> Result<Vec<f32>, HeadError> {
                let mut flat = Vec::new();
                let parts: Vec<Result<Vec<f32>, HeadError>> = values
                    .par_chunks_exact(per)
                    .map(|w| head.embed(w))
                    .collect();
                for p in parts {
                    flat.extend(p?);
                }
                Ok(flat)
            })
            .map_err(errors::head)?;
        let shape = match batch {
            None => vec![dm],
            Some(b) => vec![b, dm],
        };
        to_numpy(py, out, &shape)
    }

    /// The logits `aether eval` gives a whole recording `(T, D)`: the recording cut into
    /// windows of `window` frames every `stride` frames (default: the model's stored
    /// window and stride; the whole recording without them; a recording shorter than the
    /// window is one window), the windows' logits averaged (in f64, in window order).
    #[pyo3(signature = (x, window=None, stride=None))]
    fn recording_logits<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        window: Option<usize>,
        stride: Option<usize>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let arr = f32_array(x, "x")?;
        let (batch, t) = frames_shape(arr.shape(), self.features, "x")?;
        if batch.is_some() {
            return Err(ShapeError::new_err(format!(
                "x: shape {:?}; expected one recording (T, {})",
                arr.shape(),
                self.features
            )));
        }
        let (len, stride) = match (window, self.window) {
            (Some(w), _) => (w, stride.unwrap_or(w)),
            (None, Some((w, s))) => (w, stride.unwrap_or(s)),
            (None, None) => (usize::MAX / 2, usize::MAX / 2),
        };
        if len == 0 || stride == 0 {
            return Err(ConfigError::new_err("window and stride must be positive"));
        }
        let f = self.features;
        let c = self.classes.len();
        let values = arr.values();
        let mean = py.detach(|| -> Result<Vec<f32>, RunError> {
            let starts = window_starts(t, len, stride);
            let windows: Vec<&[f32]> = starts
                .iter()
                .map(|&(s, n)| &values[s * f..(s + n) * f])
                .collect();
            let logits = self.head.logits_batch(&windows)?;
            let mut acc = vec![0.0f64; c];
            for row in logits.chunks_exact(c) {
                for (a, &z) in acc.iter_mut().zip(row) {
                    *a += f64::from(z);
                }
            }
            let n = windows.len() as f64;
            Ok(acc.iter().map(|&s| (s / n) as f32).collect())
        })?;
        to_numpy(py, mean, &[c])
    }

    /// A stream over this model. `horizon=0` (the default): one exact stream from the
    /// first frame, `push` returns the logits of every frame so far (equal to `forward`
    /// over them) until `capacity` positions, then `eviction` applies. `horizon=H ≥ 2`:
    /// the bounded live stream of `aether classify --stream` / `aether serve` (pass
    /// `horizon=model.default_horizon` for their defaults).
    #[pyo3(signature = (horizon=0, capacity=DEFAULT_CAPACITY, eviction="sliding", recent=64, kv="f32"))]
    fn stream(
        slf: &Bound<'_, Self>,
        horizon: usize,
        capacity: usize,
        eviction: &str,
        recent: usize,
        kv: &str,
    ) -> PyResult<Stream> {
        let m = slf.get();
        use crate::limits::MAX_POSITIONS;
        if horizon != 0 {
            errors::in_range("horizon", horizon, 2, MAX_POSITIONS)?;
        }
        errors::in_range("capacity", capacity, 1, MAX_POSITIONS)?;
        errors::in_range("recent", recent, 0, MAX_POSITIONS)?;
        let eviction = match eviction {
            "sliding" => EvictionPolicy::SlidingWindow,
            "error" => EvictionPolicy::Error,
            "heavy-hitter" | "heavy_hitter" => EvictionPolicy::HeavyHitter { recent },
            o => {
                return Err(ConfigError::new_err(format!(
                    "eviction {o:?}: expected \"sliding\", \"heavy-hitter\" or \"error\""
                )))
            }
        };
        let kv = match kv {
            "f32" => KvPrecision::F32,
            "f16" => KvPrecision::F16,
            o => {
                return Err(ConfigError::new_err(format!(
                    "kv {o:?}: expected \"f32\" or \"f16\""
                )))
            }
        };
        let state = match &m.head {
            Head::F32(h) => {
                let settings = StreamSettings {
                    horizon,
                    capacity,
                    eviction,
                    kv,
                };
                settings.validate().map_err(errors::head)?;
                StreamState::F32(Box::new(
                    LiveStream::new(h, settings).map_err(errors::head)?,
                ))
            }
            Head::I8(h) => {
                if kv != KvPrecision::F32
                    || !matches!(
                        eviction,
                        EvictionPolicy::SlidingWindow | EvictionPolicy::Error
                    ) && horizon == 0
                {
                    return Err(ConfigError::new_err(
                        "an int8 model streams through its own int8 caches: kv and heavy-hitter eviction do not apply",
                    ));
                }
                if horizon == 0 {
                    StreamState::I8(Box::new(QStream::new(h, capacity).map_err(errors::quant)?))
                } else {
                    StreamState::I8Live(Box::new(
                        QLiveStream::new(h, horizon).map_err(errors::quant)?,
                    ))
                }
            }
        };
        Ok(Stream {
            model: slf.clone().unbind(),
            state,
            logits: vec![0.0; m.classes.len()],
            pushed: 0,
        })
    }

    /// The model in another format as bytes: `"v2"` (default), `"v1"` or
    /// `"safetensors"`; `dtype` `"f32"` / `"f16"` (default: as stored); `strip_names`
    /// drops class/feature names and metadata (needed for v1 of a named model). The
    /// bytes equal `aether convert --to FORMAT [--dtype D] [--strip-names]`.
    #[pyo3(signature = (format="v2", dtype=None, strip_names=false))]
    fn to_bytes<'py>(
        &self,
        py: Python<'py>,
        format: &str,
        dtype: Option<&str>,
        strip_names: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let out = export::encode(
            &self.bytes,
            export::parse_format(format)?,
            export::parse_dtype(dtype)?,
            strip_names,
        )?;
        Ok(PyBytes::new(py, &out))
    }

    /// Writes the model to `path` (see `to_bytes` for the options).
    #[pyo3(signature = (path, format="v2", dtype=None, strip_names=false))]
    fn save(
        &self,
        path: PathBuf,
        format: &str,
        dtype: Option<&str>,
        strip_names: bool,
    ) -> PyResult<()> {
        let out = export::encode(
            &self.bytes,
            export::parse_format(format)?,
            export::parse_dtype(dtype)?,
            strip_names,
        )?;
        std::fs::write(&path, out).map_err(|e| errors::io(e, &path))?;
        Ok(())
    }

    /// Writes the model as safetensors (docs/model.md tensor names, the model JSON in
    /// the `aether` metadata entry), as `aether convert M.rvne M.safetensors`.
    #[pyo3(signature = (path, dtype=None))]
    fn to_safetensors(&self, path: PathBuf, dtype: Option<&str>) -> PyResult<()> {
        self.save(path, "safetensors", dtype, false)
    }

    /// Pickling: the model is rebuilt from its file's bytes.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let ctor = py.get_type::<Model>().getattr("from_bytes")?;
        let args = PyTuple::new(py, [PyBytes::new(py, &slf.get().bytes)])?;
        PyTuple::new(py, [ctor, args.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "aether.Model(features={}, classes={:?}, window={}, int8={})",
            self.features,
            self.classes,
            self.window
                .map_or_else(|| "None".to_string(), |w| w.0.to_string()),
            if self.is_int8() { "True" } else { "False" }
        )
    }
}

/// `path: message` on the same exception class.
fn prefix_err(py: Python<'_>, e: PyErr, path: &str) -> PyErr {
    let msg = e.value(py).to_string();
    let ty = e.get_type(py);
    match ty.call1((format!("{path}: {msg}"),)) {
        Ok(v) => PyErr::from_value(v),
        Err(_) => e,
    }
}

/// What a stream runs on.
enum StreamState {
    F32(Box<LiveStream>),
    I8Live(Box<QLiveStream>),
    I8(Box<QStream>),
}

/// A stream over a model: `push(frame)` returns the logits after that frame.
#[pyclass(module = "aether")]
pub struct Stream {
    model: Py<Model>,
    state: StreamState,
    logits: Vec<f32>,
    pushed: u64,
}

impl Stream {
    fn push_one(
        model: &Model,
        state: &mut StreamState,
        frame: &[f32],
        out: &mut [f32],
    ) -> PyResult<()> {
        match (state, &model.head) {
            (StreamState::F32(s), Head::F32(h)) => {
                let l = s.push(h, frame).map_err(errors::head)?;
                out.copy_from_slice(l);
            }
            (StreamState::I8Live(s), Head::I8(h)) => {
                let q = s.push(h, frame).map_err(errors::quant)?;
                h.logits_to_f32(q, out);
            }
            (StreamState::I8(s), Head::I8(h)) => {
                let q = s.push(h, frame).map_err(errors::quant)?;
                h.logits_to_f32(q, out);
            }
            _ => return Err(StreamError::new_err("stream and model kinds differ")),
        }
        Ok(())
    }
}

#[pymethods]
impl Stream {
    /// Pushes one frame `(D,)` and returns the logits `(C,)` after it.
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        frame: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let arr = f32_array(frame, "frame")?;
        let m = self.model.get();
        if arr.shape() != [m.features] {
            return Err(ShapeError::new_err(format!(
                "frame: shape {:?}, expected ({},) for a model of {} features",
                arr.shape(),
                m.features,
                m.features
            )));
        }
        Stream::push_one(m, &mut self.state, arr.values(), &mut self.logits)?;
        self.pushed += 1;
        to_numpy(py, self.logits.clone(), &[self.logits.len()])
    }

    /// Pushes frames `(T, D)` in order and returns the logits after each, `(T, C)`.
    fn push_many<'py>(
        &mut self,
        py: Python<'py>,
        frames: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let arr = f32_array(frames, "frames")?;
        let m = self.model.get();
        let f = m.features;
        let t = match *arr.shape() {
            [t, d] if d == f => t,
            _ => {
                return Err(ShapeError::new_err(format!(
                    "frames: shape {:?}, expected (T, {f})",
                    arr.shape()
                )))
            }
        };
        let c = self.logits.len();
        let values = arr.values();
        let Stream {
            state,
            logits,
            pushed,
            ..
        } = self;
        let out = py.detach(|| -> PyResult<Vec<f32>> {
            let mut out = vec![0.0f32; t * c];
            for (frame, row) in values.chunks_exact(f).zip(out.chunks_exact_mut(c)) {
                Stream::push_one(m, state, frame, logits)?;
                *pushed += 1;
                row.copy_from_slice(logits);
            }
            Ok(out)
        })?;
        to_numpy(py, out, &[t, c])
    }

    /// The logits after the last push `(C,)` (zeros before the first).
    #[getter]
    fn logits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        to_numpy(py, self.logits.clone(), &[self.logits.len()])
    }

    /// Class probabilities after the last push (softmax of `logits`).
    #[getter]
    fn probabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let c = self.logits.len();
        to_numpy(py, softmax_rows(&self.logits, c), &[c])
    }

    /// Frames pushed since creation or the last reset.
    #[getter]
    fn position(&self) -> u64 {
        self.pushed
    }

    /// Frames behind the last output (its context).
    #[getter]
    fn context(&self) -> usize {
        match &self.state {
            StreamState::F32(s) => s.context(),
            StreamState::I8Live(s) => s.context(),
            StreamState::I8(s) => s.len(),
        }
    }

    /// Forgets every frame.
    fn reset(&mut self) {
        match &mut self.state {
            StreamState::F32(s) => s.reset(),
            StreamState::I8Live(s) => s.reset(),
            StreamState::I8(s) => s.reset(),
        }
        self.logits.iter_mut().for_each(|v| *v = 0.0);
        self.pushed = 0;
    }

    fn __repr__(&self) -> String {
        format!(
            "aether.Stream(position={}, context={})",
            self.pushed,
            self.context()
        )
    }
}
