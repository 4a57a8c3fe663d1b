//! Reading a dataset and cutting it into windows: the first step of every run.
//!
//! [`load`] reads a dataset folder or `.npy` directory and validates it, [`data_hash`]
//! fingerprints it for provenance, [`select_groups`] picks the recordings of some
//! domains, [`derive_window`] chooses the window from the recording lengths and
//! [`WindowSet`] copies the windows out for training and scoring.

use std::path::Path;

use aether_data::dataset::{DataError, ShortPolicy, WindowConfig};
use aether_data::{Dataset, LoadReport};
use aether_head::train::Window;
use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

/// Longest recording (10th percentile of the lengths) still trained whole: such
/// recordings are segmented events (a gesture filling a 3 s recording must not be cut).
pub const MAX_WHOLE_WINDOW: usize = 512;
/// Default window for longer, continuous recordings: the node's deployed N (it fits the
/// 64 KB budget; a node chooses its own window at `ruv_temporal_init`).
pub const DEPLOYED_WINDOW: usize = 256;

/// Largest number of `f32` values the windows of one run may hold in memory (4 GiB).
pub const MAX_WINDOW_VALUES: usize = 1 << 30;

/// Prints what a dataset reader skipped (stderr), as `train`, `eval` and `gate` do.
pub fn print_skipped(data: &Path, rep: &LoadReport) {
    if !rep.skipped.is_empty() {
        eprintln!("{}: {rep}", data.display());
    }
}

/// A dataset reader's error that does not name the dataset, with the dataset's path in
/// front of it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DatasetError {
    /// The dataset's path, as given.
    pub path: String,
    /// The reader's error.
    #[source]
    pub source: DataError,
}

/// Reads a dataset (folder or `.npy` directory) and validates it; errors name the file
/// and keep the reader's error (and its OS error) as their source.
pub fn load(path: &Path) -> Result<(Dataset, LoadReport)> {
    let shown = path.display().to_string();
    // Most reader errors name the file already; the others get the dataset's path.
    let named = |e: DataError| {
        if e.to_string().contains(&shown) {
            anyhow::Error::new(e)
        } else {
            anyhow::Error::new(DatasetError {
                path: shown.clone(),
                source: e,
            })
        }
    };
    let (ds, rep) = aether_data::dataset::load_dataset(path).map_err(named)?;
    ds.validate().map_err(named)?;
    Ok((ds, rep))
}

/// SHA-256 (hex) of a dataset's classes, feature names, and each recording's name,
/// class and frame bytes, in order.
pub fn data_hash(ds: &Dataset) -> String {
    let mut h = Sha256::new();
    for c in &ds.classes {
        h.update(c.as_bytes());
        h.update([0u8]);
    }
    h.update([1u8]);
    for f in &ds.feature_names {
        h.update(f.as_bytes());
        h.update([0u8]);
    }
    for r in &ds.recordings {
        h.update([2u8]);
        h.update(r.name.as_bytes());
        h.update((r.class as u64).to_le_bytes());
        h.update((r.frames.len() as u64).to_le_bytes());
        for v in &r.frames {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Recording indices whose group (field `field` of the name split at `_`; field 0 is the
/// prefix) is in `groups` (all when empty).
pub fn select_groups(ds: &Dataset, groups: &[String], field: usize) -> Result<Vec<usize>> {
    if groups.is_empty() {
        return Ok((0..ds.recordings.len()).collect());
    }
    let all = ds.groups_by(field)?;
    let mut v = Vec::new();
    for g in groups {
        match all.get(g.as_str()) {
            Some(ix) => v.extend(ix),
            None => bail!(
                "group `{g}` has no recording (groups present: {})",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The default window of `indices`: the 10th percentile `p10` of their lengths when
/// `p10 ≤ 512` (short, segmented recordings train whole), else 256 (at least 1),
/// stride `max(1, len / 4)`; `window` / `stride` override either.
pub fn derive_window(
    ds: &Dataset,
    indices: &[usize],
    window: Option<usize>,
    stride: Option<usize>,
) -> Result<WindowConfig> {
    let mut lens: Vec<usize> = indices.iter().map(|&i| ds.len_of(i)).collect();
    if lens.is_empty() {
        bail!("no recordings to derive a window from");
    }
    lens.sort_unstable();
    let p10 = lens[lens.len() / 10];
    let len = window.unwrap_or(if p10 <= MAX_WHOLE_WINDOW {
        p10.max(1)
    } else {
        DEPLOYED_WINDOW
    });
    if len == 0 {
        bail!("--window must be positive");
    }
    let stride = stride.unwrap_or((len / 4).max(1));
    if stride == 0 {
        bail!("--stride must be positive");
    }
    Ok(WindowConfig {
        len,
        stride,
        short: ShortPolicy::Whole,
    })
}

/// Windows of some recordings, copied out as contiguous `len × D` buffers.
#[derive(Debug, Clone, Default)]
pub struct WindowSet {
    /// One buffer per window.
    pub frames: Vec<Vec<f32>>,
    /// Class of each window.
    pub labels: Vec<usize>,
    /// Recording index (into the dataset) of each window.
    pub recording: Vec<usize>,
}

impl WindowSet {
    /// Cuts the recordings `indices` of `ds` into windows.
    pub fn new(ds: &Dataset, indices: &[usize], cfg: WindowConfig) -> Result<Self> {
        let sub = ds.subset(indices);
        let (wins, _) = sub.windows(cfg)?;
        let values = wins.iter().fold(0usize, |a, w| {
            a.saturating_add(w.len.saturating_mul(ds.dim()))
        });
        if values > MAX_WINDOW_VALUES {
            bail!(
                "{} windows of up to {} frames would hold {values} values, more than the {MAX_WINDOW_VALUES} allowed in memory: raise --stride or lower --window",
                wins.len(),
                cfg.len
            );
        }
        let mut s = WindowSet::default();
        for w in &wins {
            let mut buf = Vec::new();
            sub.window_data(w, &mut buf);
            s.frames.push(buf);
            s.labels.push(sub.recordings[w.recording].class);
            s.recording.push(indices[w.recording]);
        }
        Ok(s)
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether there is no window.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Borrowed training windows.
    pub fn windows(&self) -> Vec<Window<'_>> {
        self.frames
            .iter()
            .zip(&self.labels)
            .map(|(f, &label)| Window { frames: f, label })
            .collect()
    }

    /// Borrowed frame buffers.
    pub fn slices(&self) -> Vec<&[f32]> {
        self.frames.iter().map(|f| f.as_slice()).collect()
    }

    /// Total frames over all windows.
    pub fn total_frames(&self, dim: usize) -> usize {
        self.frames.iter().map(|f| f.len() / dim.max(1)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_data::Recording;

    fn ds(lens: &[usize]) -> Dataset {
        Dataset {
            classes: vec!["a".into(), "b".into()],
            feature_names: vec!["x".into(), "y".into()],
            recordings: lens
                .iter()
                .enumerate()
                .map(|(i, &t)| Recording {
                    class: i % 2,
                    name: format!("r{i}"),
                    frames: (0..t * 2).map(|v| v as f32).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn load_errors_name_the_dataset_and_keep_their_source() {
        use aether_data::npy::{encode_npy, NpyData};
        let dir = tempfile::tempdir().unwrap();
        // One class: the reader accepts it, validation refuses it without naming the path.
        let x = encode_npy(&[2, 3, 1], &NpyData::Float(vec![0.0; 6]));
        let y = encode_npy(&[2], &NpyData::Int(vec![0, 0]));
        std::fs::write(dir.path().join("X.npy"), x).unwrap();
        std::fs::write(dir.path().join("y.npy"), y).unwrap();
        let e = load(dir.path()).unwrap_err();
        let shown = dir.path().display().to_string();
        assert!(e.to_string().starts_with(&format!("{shown}: ")), "{e}");
        assert!(e.downcast_ref::<DatasetError>().is_some());
        let missing = dir.path().join("missing");
        let e = load(&missing).unwrap_err();
        let data = e.downcast_ref::<DataError>().expect("the reader's error");
        assert!(matches!(data, DataError::Io { .. }), "{data}");
        let io = std::error::Error::source(data).expect("the OS error is kept");
        assert!(e.to_string().ends_with(&io.to_string()), "{e}");
    }

    #[test]
    fn window_derivation() {
        let d = ds(&[100; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!((w.len, w.stride), (100, 25));
        let d = ds(&[1000, 2000, 3000]);
        let w = derive_window(&d, &[0, 1, 2], None, None).unwrap();
        assert_eq!(
            (w.len, w.stride),
            (256, 64),
            "continuous recordings: the deployed N"
        );
        let d = ds(&[512; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!(w.len, 512);
        let d = ds(&[513; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!(w.len, 256);
        let d = ds(&[300; 10]);
        let w = derive_window(&d, &(0..10).collect::<Vec<_>>(), None, None).unwrap();
        assert_eq!((w.len, w.stride), (300, 75), "whole 3 s gesture recordings");
        let d = ds(&[1, 1]);
        let w = derive_window(&d, &[0, 1], None, None).unwrap();
        assert_eq!((w.len, w.stride), (1, 1));
        assert!(derive_window(&d, &[0], Some(0), None).is_err());
        assert!(derive_window(&d, &[], None, None).is_err());
    }

    #[test]
    fn hash_sees_every_value() {
        let a = ds(&[3, 4]);
        let mut b = a.clone();
        assert_eq!(data_hash(&a), data_hash(&b));
        b.recordings[1].frames[5] += 1.0;
        assert_ne!(data_hash(&a), data_hash(&b));
        let mut c = a.clone();
        c.recordings[0].name = "z".into();
        assert_ne!(data_hash(&a), data_hash(&c));
    }

    #[test]
    fn groups_select_and_refuse_unknown() {
        let mut d = ds(&[2, 2, 2]);
        d.recordings[0].name = "D1_a".into();
        d.recordings[1].name = "D2_a".into();
        d.recordings[2].name = "D1_b".into();
        assert_eq!(select_groups(&d, &["D1".into()], 0).unwrap(), vec![0, 2]);
        assert_eq!(select_groups(&d, &[], 0).unwrap(), vec![0, 1, 2]);
        let e = select_groups(&d, &["D9".into()], 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("D9") && e.contains("D1, D2"), "{e}");
    }
}
