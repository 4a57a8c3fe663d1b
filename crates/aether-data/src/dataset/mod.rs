//! Datasets: the dataset folder, `.npy` input, the CSV writer, windowing and
//! splits by recording.
//!
//! Dataset folder: `DATA/<class>/<recording>.csv`, a header row naming the `D`
//! feature columns, then one row of `D` numbers per frame. Classes are the
//! sub-directories, sorted by name (class index = position); recordings are
//! sorted by file name. A top-level `README.txt` is the dataset's description
//! (`aether simulate` writes one) and is recorded in [`LoadReport::readme`].
//! Other non-directory entries at the top, hidden entries, non-`.csv` files
//! (raw CSI captures among them, with their own reason) and nested directories
//! are skipped and listed in the [`LoadReport`], as are recordings with a
//! header but no rows; nothing is dropped silently. A class holding only raw
//! captures, or a raw capture given where a dataset is expected, is an error
//! that says to run `aether features` first. Malformed content is an error
//! naming file, row (1-based line number) and column (1-based, with its name).
//!
//! Every CSV (dataset folders, `aether classify` input, amplitude CSVs) is read
//! by the one [`CsvReader`], line by line.
//!
//! `.npy` input: `X.npy` `[n, N, D]` floats and `y.npy` `[n]` integers in one
//! directory, optional `classes.txt` (one name per line); sample `i` becomes
//! the recording `sample{i:05}` of class `y[i]`. One of the two without the
//! other is an error naming the missing file.
//!
//! Frames are stored row-major: `frames[t·D + d]`.
//!
//! One job per file: `csv` (the CSV dialect: [`CsvReader`], [`parse_csv`]), `folder`
//! ([`read_dataset_dir`]), `npy` ([`read_npy_dir`]), `write` ([`Dataset::to_files`],
//! [`recording_csv`]), `window` ([`Dataset::windows`]), `split` ([`Dataset::split`],
//! [`Dataset::kfold`], groups) and `error` ([`DataError`]); this file holds the types
//! and [`load_dataset`]. Every item is re-exported here, so its path stays
//! `aether_data::dataset::…`.

use std::fmt;
use std::path::Path;

mod csv;
mod error;
mod folder;
mod npy;
mod split;
mod window;
mod write;

pub use csv::{parse_csv, CsvReader};
pub use error::{DataError, IoError};
pub use folder::{is_raw_capture, read_dataset_dir};
pub use npy::{dataset_from_npy, read_npy_dir};
pub use split::{group_field, group_key, Split};
pub use window::{ShortPolicy, Window, WindowConfig};
pub use write::{check_class_name, recording_csv, DatasetFile};

use write::check_name;

/// One recording: `T` frames of `D` features of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Class index into [`Dataset::classes`].
    pub class: usize,
    /// Recording name (file stem).
    pub name: String,
    /// Frames, `T × D` row-major.
    pub frames: Vec<f32>,
}

impl Recording {
    /// Number of frames `T` given the feature count `dim`.
    pub fn len(&self, dim: usize) -> usize {
        self.frames.len().checked_div(dim).unwrap_or(0)
    }

    /// Whether it has no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A labelled dataset of recordings.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Class names; a recording's `class` indexes this.
    pub classes: Vec<String>,
    /// The `D` feature names.
    pub feature_names: Vec<String>,
    /// Recordings, grouped by class then sorted by name when read from disk.
    pub recordings: Vec<Recording>,
}

/// Why an entry was skipped while reading a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A file at the top level (only directories are classes).
    TopLevelFile,
    /// A hidden entry (name starts with `.`).
    Hidden,
    /// A file in a class directory without the `.csv` extension.
    NotCsv,
    /// A directory inside a class directory.
    NestedDirectory,
    /// A CSV with a header and no rows.
    NoFrames,
    /// A raw CSI capture (not a CSV; `aether features` converts it).
    RawCapture,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::TopLevelFile => "file at the top level (only class directories are read)",
            SkipReason::Hidden => "hidden entry",
            SkipReason::NotCsv => "not a .csv file",
            SkipReason::NestedDirectory => "directory inside a class directory",
            SkipReason::NoFrames => "header only, no frames",
            SkipReason::RawCapture => "raw CSI capture, not a CSV (`aether features` converts it)",
        })
    }
}

/// What a reader skipped, each with its reason, and the description it recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// `(path, reason)` per skipped entry.
    pub skipped: Vec<(String, SkipReason)>,
    /// Path of the top-level `README.txt` (the dataset's description), if any.
    pub readme: Option<String>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} entries skipped", self.skipped.len())?;
        for (p, r) in &self.skipped {
            write!(f, "\n  {p}: {r}")?;
        }
        Ok(())
    }
}

/// Reads a dataset from `path`: a directory holding `X.npy` and `y.npy` is read
/// as `.npy`, any other directory as a dataset folder.
pub fn load_dataset(path: &Path) -> Result<(Dataset, LoadReport), DataError> {
    let missing = |present, missing| DataError::NpyMissing {
        dir: path.display().to_string(),
        present,
        missing,
    };
    match (path.join("X.npy").is_file(), path.join("y.npy").is_file()) {
        (true, true) => Ok((read_npy_dir(path)?, LoadReport::default())),
        (true, false) => Err(missing("X.npy", "y.npy")),
        (false, true) => Err(missing("y.npy", "X.npy")),
        (false, false) => read_dataset_dir(path),
    }
}

impl Dataset {
    /// Feature count `D`.
    pub fn dim(&self) -> usize {
        self.feature_names.len()
    }

    /// Number of frames of recording `i`.
    pub fn len_of(&self, i: usize) -> usize {
        self.recordings[i].len(self.dim())
    }

    /// Recordings per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for r in &self.recordings {
            if let Some(x) = c.get_mut(r.class) {
                *x += 1;
            }
        }
        c
    }

    fn check_classes_nonempty(&self) -> Result<(), DataError> {
        if let Some(k) = self.class_counts().iter().position(|&c| c == 0) {
            return Err(DataError::EmptyClass {
                class: self.classes[k].clone(),
            });
        }
        Ok(())
    }

    /// Checks internal consistency: at least two classes, names valid and
    /// unique, labels in range, frames a non-empty multiple of `D`, finite, no
    /// empty class.
    pub fn validate(&self) -> Result<(), DataError> {
        self.check(2)
    }

    fn check(&self, min_classes: usize) -> Result<(), DataError> {
        if self.classes.len() < min_classes {
            return Err(DataError::Inconsistent(format!(
                "{} class(es), need at least {min_classes}",
                self.classes.len()
            )));
        }
        if self.feature_names.is_empty() {
            return Err(DataError::Inconsistent("no feature names".into()));
        }
        for c in &self.classes {
            check_name("class", c)?;
        }
        for f in &self.feature_names {
            check_name("feature", f)?;
            if f.contains(',') || f.contains('"') {
                return Err(DataError::InvalidName {
                    what: "feature",
                    name: f.clone(),
                    reason: "contains ',' or '\"'",
                });
            }
        }
        let d = self.dim();
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.recordings {
            check_name("recording", &r.name)?;
            if r.class >= self.classes.len() {
                return Err(DataError::Inconsistent(format!(
                    "recording `{}` has class {} of {}",
                    r.name,
                    r.class,
                    self.classes.len()
                )));
            }
            if !seen.insert((r.class, r.name.as_str())) {
                return Err(DataError::Inconsistent(format!(
                    "recording `{}` appears twice in class `{}`",
                    r.name, self.classes[r.class]
                )));
            }
            if r.frames.is_empty() || r.frames.len() % d != 0 {
                return Err(DataError::Inconsistent(format!(
                    "recording `{}` has {} values, not a positive multiple of D = {d}",
                    r.name,
                    r.frames.len()
                )));
            }
            if r.frames.iter().any(|v| !v.is_finite()) {
                return Err(DataError::Inconsistent(format!(
                    "recording `{}` has a non-finite value",
                    r.name
                )));
            }
        }
        self.check_classes_nonempty()
    }

    /// A dataset holding only the recordings at `indices` (same classes).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            classes: self.classes.clone(),
            feature_names: self.feature_names.clone(),
            recordings: indices
                .iter()
                .map(|&i| self.recordings[i].clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
