//! Datasets, windows, the simulator, raw CSI captures and feature extraction.

use std::path::PathBuf;

use aether_data::dataset::{group_field, load_dataset, ShortPolicy, WindowConfig};
use aether_data::features::{capture_features, FeatureConfig, DEFAULT_BANDS, DEFAULT_MOTION_LAGS};
use aether_data::sim::{simulate as sim_simulate, Task};
use aether_data::wire::parse_capture as rs_parse_capture;
use aether_data::{Dataset as RsDataset, Recording};
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::arrays::{f32_array, to_numpy};
use crate::errors::{self, CaptureError, ConfigError, DataError, ShapeError};
use crate::limits as values;

/// A labelled dataset of recordings (the `DATA/<class>/<recording>.csv` folder in
/// memory): recordings `(T_i, D)` float32, a class index each, class and feature names,
/// recording names (their `_`-separated fields are the groups / domains).
#[pyclass(module = "aether", frozen)]
pub struct Dataset {
    pub(crate) inner: RsDataset,
    skipped: Vec<String>,
}

impl Dataset {
    /// Wraps a validated dataset.
    pub fn wrap(inner: RsDataset, skipped: Vec<String>) -> Self {
        Dataset { inner, skipped }
    }
}

/// Reads a dataset folder (`DATA/<class>/<recording>.csv`) or an `.npy` directory
/// (`X.npy`, `y.npy`, optional `classes.txt`) exactly as `aether train` and `aether eval`
/// read it, and validates it.
#[pyfunction]
pub fn read_dataset(py: Python<'_>, path: PathBuf) -> PyResult<Dataset> {
    let shown = path.display().to_string();
    let (ds, rep) = py
        .detach(|| {
            let (ds, rep) = load_dataset(&path)?;
            ds.validate()?;
            Ok((ds, rep))
        })
        .map_err(|e: aether_data::DataError| {
            let msg = e.to_string();
            let e2 = errors::data(e);
            if msg.contains(&shown) {
                e2
            } else {
                let ty = e2.get_type(py);
                ty.call1((format!("{shown}: {msg}"),))
                    .map(PyErr::from_value)
                    .unwrap_or(e2)
            }
        })?;
    let skipped = rep
        .skipped
        .iter()
        .map(|(p, r)| format!("{p}: {r}"))
        .collect();
    Ok(Dataset::wrap(ds, skipped))
}

/// The extractor configuration, in the command line's ranges (`--bands`, `--motion-lags`).
fn feature_config(bands: usize, gain: bool, motion: usize) -> PyResult<FeatureConfig> {
    errors::in_range("bands", bands, 1, values::MAX_BANDS)?;
    errors::in_range("motion", motion, 0, values::MAX_MOTION_LAGS)?;
    Ok(FeatureConfig {
        bands,
        gain,
        motion,
    })
}

/// Simulates a labelled dataset with the physical CSI simulator, as `aether simulate
/// --task TASK [--recordings N] [--seed S]` writes it (feature CSVs are exact, so the
/// values equal those the CLI's folder holds).
#[pyfunction]
#[pyo3(signature = (task, recordings=None, seed=0, bands=DEFAULT_BANDS, gain=true, motion=DEFAULT_MOTION_LAGS))]
pub fn simulate(
    py: Python<'_>,
    task: &str,
    recordings: Option<usize>,
    seed: u64,
    bands: usize,
    gain: bool,
    motion: usize,
) -> PyResult<Dataset> {
    let task = Task::parse(task).map_err(errors::sim)?;
    let n = recordings.unwrap_or_else(|| task.default_recordings());
    errors::in_range("recordings", n, 1, values::MAX_RECORDINGS)?;
    let cfg = feature_config(bands, gain, motion)?;
    let ds = py
        .detach(|| sim_simulate(task, n, seed, cfg))
        .map_err(errors::sim)?;
    Ok(Dataset::wrap(ds, Vec::new()))
}

#[pymethods]
impl Dataset {
    /// A dataset from arrays: `recordings` a list of `(T_i, D)` float arrays, `labels`
    /// class indices, `classes` names (default `class0..`), `feature_names` (default
    /// `f0..`), `names` recording names (default `rec00000..`).
    #[new]
    #[pyo3(signature = (recordings, labels, classes=None, feature_names=None, names=None))]
    fn new(
        recordings: &Bound<'_, PyList>,
        labels: Vec<i64>,
        classes: Option<Vec<String>>,
        feature_names: Option<Vec<String>>,
        names: Option<Vec<String>>,
    ) -> PyResult<Self> {
        if recordings.len() != labels.len() {
            return Err(ShapeError::new_err(format!(
                "{} recordings but {} labels",
                recordings.len(),
                labels.len()
            )));
        }
        if let Some(n) = &names {
            if n.len() != labels.len() {
                return Err(ShapeError::new_err(format!(
                    "{} recordings but {} names",
                    labels.len(),
                    n.len()
                )));
            }
        }
        let mut d = None;
        let mut recs = Vec::with_capacity(labels.len());
        for (i, (obj, &label)) in recordings.iter().zip(&labels).enumerate() {
            let what = format!("recordings[{i}]");
            let a = f32_array(&obj, &what)?;
            let [_, w] = *a.shape() else {
                return Err(ShapeError::new_err(format!(
                    "{what}: shape {:?}, expected (T, D)",
                    a.shape()
                )));
            };
            if *d.get_or_insert(w) != w {
                return Err(ShapeError::new_err(format!(
                    "{what}: {w} features, recordings[0] has {}",
                    d.unwrap_or(0)
                )));
            }
            if label < 0 {
                return Err(DataError::new_err(format!(
                    "labels[{i}]: {label} is negative"
                )));
            }
            recs.push(Recording {
                class: label as usize,
                name: names
                    .as_ref()
                    .map_or_else(|| format!("rec{i:05}"), |n| n[i].clone()),
                frames: a.values().to_vec(),
            });
        }
        let d = d.unwrap_or(0);
        let n_classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let classes =
            classes.unwrap_or_else(|| (0..n_classes.max(2)).map(|c| format!("class{c}")).collect());
        let feature_names =
            feature_names.unwrap_or_else(|| (0..d).map(|f| format!("f{f}")).collect());
        if feature_names.len() != d {
            return Err(ShapeError::new_err(format!(
                "{} feature names for {d} features",
                feature_names.len()
            )));
        }
        let ds = RsDataset {
            classes,
            feature_names,
            recordings: recs,
        };
        ds.validate().map_err(errors::data)?;
        Ok(Dataset::wrap(ds, Vec::new()))
    }

    /// Class names.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.inner.classes.clone()
    }

    /// Feature names (`D` of them).
    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.inner.feature_names.clone()
    }

    /// Features per frame `D`.
    #[getter]
    fn n_features(&self) -> usize {
        self.inner.dim()
    }

    /// Recording names.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.inner
            .recordings
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Class index of each recording, int64 `(R,)`.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
        let l: Vec<i64> = self
            .inner
            .recordings
            .iter()
            .map(|r| r.class as i64)
            .collect();
        let n = l.len();
        to_numpy(py, l, &[n])
    }

    /// The recordings as a list of `(T_i, D)` float32 arrays (copies).
    #[getter]
    fn recordings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let d = self.inner.dim();
        let arrays = self
            .inner
            .recordings
            .iter()
            .map(|r| to_numpy(py, r.frames.clone(), &[r.frames.len() / d.max(1), d]))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, arrays)
    }

    /// The group (domain) of each recording: field `field` of its name split at `_`
    /// (0: the prefix, `D1_e06_…` → `D1`), as `aether train --group-field`.
    #[pyo3(signature = (field=0))]
    fn groups(&self, field: usize) -> PyResult<Vec<String>> {
        self.inner
            .recordings
            .iter()
            .map(|r| {
                group_field(&r.name, field)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        DataError::new_err(format!(
                            "recording `{}` has no field {field} (fields split at `_`)",
                            r.name
                        ))
                    })
            })
            .collect()
    }

    /// Entries the reader skipped (path: reason), as `aether train` lists them.
    #[getter]
    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    /// A dataset of the recordings at `indices` (same classes and features).
    fn subset(&self, indices: Vec<usize>) -> PyResult<Dataset> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.inner.recordings.len()) {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "recording index {i} out of range ({} recordings)",
                self.inner.recordings.len()
            )));
        }
        Ok(Dataset::wrap(self.inner.subset(&indices), Vec::new()))
    }

    /// Writes the dataset folder `path/<class>/<recording>.csv` (exact values), the
    /// interchange format of every `aether` command; `path` must be missing or empty.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        let io = |e| errors::io(e, &path);
        if path.exists() && std::fs::read_dir(&path).map_err(io)?.next().is_some() {
            return Err(pyo3::exceptions::PyFileExistsError::new_err(format!(
                "{}: exists and is not empty",
                path.display()
            )));
        }
        let files = self.inner.to_files().map_err(errors::data)?;
        for f in files {
            let dir = path.join(&f.class);
            std::fs::create_dir_all(&dir).map_err(|e| errors::io(e, &dir))?;
            let file = dir.join(&f.file_name);
            std::fs::write(&file, f.contents).map_err(|e| errors::io(e, &file))?;
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.inner.recordings.len()
    }

    /// `(frames (T, D), label)` of recording `i`.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        i: isize,
    ) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, usize)> {
        let n = self.inner.recordings.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if j < 0 || j >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "recording index {i} out of range ({n} recordings)"
            )));
        }
        let r = &self.inner.recordings[j as usize];
        let d = self.inner.dim();
        Ok((
            to_numpy(py, r.frames.clone(), &[r.frames.len() / d, d])?,
            r.class,
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "aether.Dataset({} recordings, classes={:?}, {} features)",
            self.inner.recordings.len(),
            self.inner.classes,
            self.inner.dim()
        )
    }
}

/// Cuts every recording into windows of `window` frames every `stride` frames (default
/// `window`), the windows `aether train` / `aether eval` cut: starts `0, stride, …` and a
/// last window ending at the last frame. A recording shorter than `window` is skipped
/// (`short="skip"`) or padded by repeating its last frame (`short="pad"`). Returns `X`
/// float32 `(M, window, D)`, `y` int64 `(M,)`, and with `return_recordings=True` the
/// recording index of each window.
#[pyfunction]
#[pyo3(signature = (ds, window, stride=None, short="skip", return_recordings=false))]
pub fn windows<'py>(
    py: Python<'py>,
    ds: &Dataset,
    window: usize,
    stride: Option<usize>,
    short: &str,
    return_recordings: bool,
) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
    let short = match short {
        "skip" => ShortPolicy::Skip,
        "pad" => ShortPolicy::Pad,
        o => {
            return Err(ConfigError::new_err(format!(
                "short {o:?}: expected \"skip\" or \"pad\" (windows of one length stack into one array)"
            )))
        }
    };
    let cfg = WindowConfig {
        len: window,
        stride: stride.unwrap_or(window),
        short,
    };
    let d = ds.inner.dim();
    let (wins, _) = ds.inner.windows(cfg).map_err(errors::data)?;
    let values = wins
        .len()
        .checked_mul(window)
        .and_then(|v| v.checked_mul(d))
        .filter(|&v| v <= aether_pipeline::MAX_WINDOW_VALUES)
        .ok_or_else(|| {
            ConfigError::new_err(format!(
                "{} windows of {window} frames × {d} features exceed the {} values allowed in memory: raise stride or lower window",
                wins.len(),
                aether_pipeline::MAX_WINDOW_VALUES
            ))
        })?;
    let (x, y, rec, m) = py
        .detach(|| -> Result<_, aether_data::DataError> {
            let mut x = Vec::with_capacity(values);
            let mut buf = Vec::new();
            let mut y = Vec::with_capacity(wins.len());
            let mut rec = Vec::with_capacity(wins.len());
            for w in &wins {
                ds.inner.window_data(w, &mut buf);
                x.extend_from_slice(&buf);
                y.push(ds.inner.recordings[w.recording].class as i64);
                rec.push(w.recording as i64);
            }
            Ok((x, y, rec, wins.len()))
        })
        .map_err(errors::data)?;
    let xa = to_numpy(py, x, &[m, window, d])?.into_any();
    let ya = to_numpy(py, y, &[m])?.into_any();
    if return_recordings {
        let ra = to_numpy(py, rec, &[m])?.into_any();
        pyo3::types::PyTuple::new(py, [xa, ya, ra])
    } else {
        pyo3::types::PyTuple::new(py, [xa, ya])
    }
}

/// Bytes of a capture given as `bytes`, `bytearray`, `memoryview` or a path.
fn capture_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<pyo3::types::PyByteArray>() {
        return Ok(b.to_vec());
    }
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.hasattr("__fspath__")? {
        let p: PathBuf = obj.extract()?;
        return std::fs::read(&p).map_err(|e| errors::io(e, &p));
    }
    if obj.is_instance_of::<pyo3::types::PyMemoryView>() {
        let b = obj
            .py()
            .import("builtins")?
            .getattr("bytes")?
            .call1((obj,))?;
        return Ok(b.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "capture: expected bytes, bytearray, memoryview or a path, got {}",
        obj.get_type().name()?
    )))
}

/// Per-frame features `(T, D)` float32 of a raw CSI capture (node frames `0xC5110001`
/// back to back; bytes or a path), the frames of its most common shape through the
/// extractor of `aether features`; with `return_names=True` also the feature names.
#[pyfunction]
#[pyo3(signature = (capture, bands=DEFAULT_BANDS, gain=true, motion=DEFAULT_MOTION_LAGS, return_names=false))]
pub fn features<'py>(
    py: Python<'py>,
    capture: &Bound<'py, PyAny>,
    bands: usize,
    gain: bool,
    motion: usize,
    return_names: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = feature_config(bands, gain, motion)?;
    let bytes = capture_bytes(capture)?;
    let cf = py
        .detach(|| capture_features(&bytes, cfg))
        .map_err(errors::features)?;
    let t = cf.frames();
    let d = cf.feature_names.len();
    let x = to_numpy(py, cf.features, &[t, d])?.into_any();
    if return_names {
        Ok(
            pyo3::types::PyTuple::new(py, [x, PyList::new(py, cf.feature_names)?.into_any()])?
                .into_any(),
        )
    } else {
        Ok(x)
    }
}

/// The frames of a raw CSI capture: a list of dicts with the header fields (`node_id`,
/// `n_antennas`, `n_subcarriers`, `freq_mhz`, `seq`, `rssi`, `noise_floor`) and `iq`, an
/// int8 array `(n_antennas, n_subcarriers, 2)` of (I, Q). Malformed or truncated frames
/// are skipped and counted (`capture_report`); `strict=True` raises `CaptureError` if any
/// was. A non-empty capture without a single complete frame raises `CaptureError`.
#[pyfunction]
#[pyo3(signature = (capture, strict=false))]
pub fn parse_capture<'py>(
    py: Python<'py>,
    capture: &Bound<'py, PyAny>,
    strict: bool,
) -> PyResult<Bound<'py, PyList>> {
    let bytes = capture_bytes(capture)?;
    let (frames, rep) = py.detach(|| rs_parse_capture(&bytes));
    if frames.is_empty() && !bytes.is_empty() {
        return Err(CaptureError::new_err(format!(
            "no complete raw CSI frame (0xC5110001) in {} bytes: {rep}",
            bytes.len()
        )));
    }
    if strict && (rep.skipped() > 0 || rep.garbage_bytes > 0) {
        return Err(CaptureError::new_err(format!("capture not clean: {rep}")));
    }
    let list = PyList::empty(py);
    for f in frames {
        let d = PyDict::new(py);
        d.set_item("node_id", f.node_id)?;
        d.set_item("n_antennas", f.n_antennas)?;
        d.set_item("n_subcarriers", f.n_subcarriers)?;
        d.set_item("freq_mhz", f.freq_mhz)?;
        d.set_item("seq", f.seq)?;
        d.set_item("rssi", f.rssi)?;
        d.set_item("noise_floor", f.noise_floor)?;
        let shape = [f.n_antennas as usize, f.n_subcarriers as usize, 2];
        d.set_item("iq", to_numpy(py, f.iq, &shape)?)?;
        list.append(d)?;
    }
    Ok(list)
}

/// What parsing a capture read and skipped: `frames`, `bad_header`, `truncated`,
/// `garbage_bytes`.
#[pyfunction]
pub fn capture_report<'py>(
    py: Python<'py>,
    capture: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let bytes = capture_bytes(capture)?;
    let (_, rep) = py.detach(|| rs_parse_capture(&bytes));
    let d = PyDict::new(py);
    d.set_item("frames", rep.frames)?;
    d.set_item("bad_header", rep.bad_header)?;
    d.set_item("truncated", rep.truncated)?;
    d.set_item("garbage_bytes", rep.garbage_bytes)?;
    Ok(d)
}

/// Simulated raw CSI captures (bytes, as `aether simulate --raw` writes them), one per
/// recording: a list of `(class name, recording name, bytes)`.
#[pyfunction]
#[pyo3(signature = (task, recordings=1, seed=0))]
pub fn simulate_captures<'py>(
    py: Python<'py>,
    task: &str,
    recordings: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyList>> {
    let task = Task::parse(task).map_err(errors::sim)?;
    let out = py
        .detach(|| -> Result<Vec<(String, String, Vec<u8>)>, String> {
            let mut v = Vec::new();
            for (class, cname) in task.classes().iter().enumerate() {
                for index in 0..recordings {
                    let frames = aether_data::sim::simulate_frames(task, class, index, seed);
                    let bytes =
                        aether_data::wire::encode_capture(&frames).map_err(|e| e.to_string())?;
                    v.push((
                        cname.to_string(),
                        aether_data::sim::recording_name(task, class, index, seed),
                        bytes,
                    ));
                }
            }
            Ok(v)
        })
        .map_err(CaptureError::new_err)?;
    let list = PyList::empty(py);
    for (c, n, b) in out {
        list.append((c, n, PyBytes::new(py, &b)))?;
    }
    Ok(list)
}
