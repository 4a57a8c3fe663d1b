//! The errors of reading, validating, windowing and splitting a dataset.

use std::path::Path;
use std::sync::Arc;

use crate::npy::NpyError;

/// Errors reading, writing, windowing or splitting a dataset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: IoError,
    },
    /// The dataset path is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// No class directories were found.
    #[error("{0}: no class directories (expected DATA/<class>/<recording>.csv)")]
    NoClasses(String),
    /// Fewer than two classes.
    #[error("{path}: {found} class(es), need at least 2")]
    TooFewClasses {
        /// Dataset path.
        path: String,
        /// Classes found.
        found: usize,
    },
    /// A class without any usable recording.
    #[error("class `{class}` has no usable recordings")]
    EmptyClass {
        /// Class name.
        class: String,
    },
    /// A CSV without a header line.
    #[error("{file}: empty file (no header row)")]
    EmptyFile {
        /// File.
        file: String,
    },
    /// The first row is numeric: the header is missing.
    #[error("{file}: row 1 is numeric; the first row must name the feature columns")]
    MissingHeader {
        /// File.
        file: String,
    },
    /// A header cell is empty.
    #[error("{file}: header column {col} is empty")]
    EmptyColumnName {
        /// File.
        file: String,
        /// Column, 1-based.
        col: usize,
    },
    /// A header names the same column twice.
    #[error("{file}: header names column `{name}` twice")]
    DuplicateColumn {
        /// File.
        file: String,
        /// The name.
        name: String,
    },
    /// A row with the wrong number of cells.
    #[error("{file}: row {row} has {got} cells, the header has {expected}")]
    RaggedRow {
        /// File.
        file: String,
        /// Row (1-based line number).
        row: usize,
        /// Cells expected.
        expected: usize,
        /// Cells found.
        got: usize,
    },
    /// A cell that is not a number.
    #[error("{file}: row {row}, column {col} (`{column}`): `{cell}` is not a number")]
    NonNumeric {
        /// File.
        file: String,
        /// Row (1-based line number).
        row: usize,
        /// Column, 1-based.
        col: usize,
        /// Column name.
        column: String,
        /// Cell text.
        cell: String,
    },
    /// A NaN or infinite cell (or one outside the f32 range).
    #[error("{file}: row {row}, column {col} (`{column}`): `{cell}` is not finite")]
    NonFinite {
        /// File.
        file: String,
        /// Row (1-based line number).
        row: usize,
        /// Column, 1-based.
        col: usize,
        /// Column name.
        column: String,
        /// Cell text.
        cell: String,
    },
    /// A file's header differs from the first file's.
    #[error("{file}: header differs from {first_file}: {detail}")]
    HeaderMismatch {
        /// File.
        file: String,
        /// File whose header set the feature names.
        first_file: String,
        /// What differs.
        detail: String,
    },
    /// A malformed `.npy` file.
    #[error("{file}: {source}")]
    Npy {
        /// File.
        file: String,
        /// The cause.
        source: NpyError,
    },
    /// `.npy` arrays of the wrong shapes or types.
    #[error("{file}: {detail}")]
    NpyShape {
        /// File.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// A label outside `0..n_classes`.
    #[error("y.npy: label {label} of sample {index} is outside 0..{n_classes}")]
    LabelOutOfRange {
        /// Sample index.
        index: usize,
        /// Label.
        label: i64,
        /// Number of classes.
        n_classes: usize,
    },
    /// A class, recording or feature name unusable in a dataset folder.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `class`, `recording` or `feature`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A dataset whose parts disagree (in-memory construction).
    #[error("inconsistent dataset: {0}")]
    Inconsistent(String),
    /// Window length or stride of zero.
    #[error("window length and stride must be at least 1 (got length {len}, stride {stride})")]
    BadWindow {
        /// Window length.
        len: usize,
        /// Stride.
        stride: usize,
    },
    /// Split fractions outside `[0, 1)` or summing to ≥ 1.
    #[error("split fractions validation {val} and test {test} must be ≥ 0 with sum < 1")]
    BadFractions {
        /// Validation fraction.
        val: f64,
        /// Test fraction.
        test: f64,
    },
    /// k-fold with k < 2 or more folds than recordings.
    #[error("{k}-fold needs 2 ≤ k ≤ {recordings} (the number of recordings)")]
    BadFolds {
        /// Folds requested.
        k: usize,
        /// Recordings available.
        recordings: usize,
    },
    /// A recording name has fewer `_`-separated fields than the group field asked for.
    #[error("recording `{recording}` has no `_`-separated field {field} (counting from 0) to take its group from")]
    NoGroupField {
        /// The recording's name.
        recording: String,
        /// The field asked for (0-based).
        field: usize,
    },
    /// A group (file-name prefix) with no recordings.
    #[error("no recording belongs to group `{0}`")]
    UnknownGroup(String),
    /// A CSV file that is not UTF-8 text.
    #[error("{file}: not UTF-8 text (a CSV must be UTF-8)")]
    NotUtf8 {
        /// File.
        file: String,
    },
    /// A raw CSI capture where a dataset folder or a feature CSV is expected.
    #[error("{path}: a raw CSI capture (magic 0xC5110001), not feature CSVs: turn captures into a dataset folder with `aether features --input CAPTURES --out DIR` first")]
    RawCapture {
        /// The capture (or the directory expected to be a dataset).
        path: String,
    },
    /// A class directory holding raw CSI captures and no CSV recordings.
    #[error("class `{class}` holds raw CSI captures ({example}, …) and no CSV recordings: turn captures into a dataset folder with `aether features --input CAPTURES --out DIR` first")]
    OnlyRawCaptures {
        /// Class name.
        class: String,
        /// One of its captures.
        example: String,
    },
    /// One of `X.npy` and `y.npy` without the other.
    #[error("{dir}: {present} is there but {missing} is missing (a .npy dataset needs X.npy [n, N, D] floats and y.npy [n] integer labels)")]
    NpyMissing {
        /// The directory.
        dir: String,
        /// The file found.
        present: &'static str,
        /// The file missing.
        missing: &'static str,
    },
}

/// The OS error behind [`DataError::Io`], shared so the error stays `Clone`; two are
/// equal when their kind and message are.
#[derive(Debug, Clone)]
pub struct IoError(Arc<std::io::Error>);

impl IoError {
    /// The underlying OS error.
    pub fn get_ref(&self) -> &std::io::Error {
        &self.0
    }

    /// Its kind.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> Self {
        IoError(Arc::new(e))
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// [`DataError::Io`] of `path`.
pub(super) fn io_err(path: &Path, e: std::io::Error) -> DataError {
    DataError::Io {
        path: path.display().to_string(),
        source: e.into(),
    }
}
