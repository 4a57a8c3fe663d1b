//! The dataset-folder writer: names checked, one CSV per recording, exact round trip.

use super::{DataError, Dataset};

/// Checks that `name` can name a class directory of a dataset folder (not empty,
/// no leading `.`, no path separator or control character).
pub fn check_class_name(name: &str) -> Result<(), DataError> {
    check_name("class", name)
}

/// Checks that `name` can name a `what` (class, feature, recording) of a dataset folder.
pub(super) fn check_name(what: &'static str, name: &str) -> Result<(), DataError> {
    let bad = |reason| DataError::InvalidName {
        what,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.starts_with('.') {
        return Err(bad("starts with '.'"));
    }
    if name
        .chars()
        .any(|c| matches!(c, '/' | '\\' | '\0') || c.is_control())
    {
        return Err(bad("contains a path separator or control character"));
    }
    Ok(())
}

/// One file of a dataset folder: `<class>/<file_name>` with its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetFile {
    /// Class directory name.
    pub class: String,
    /// File name (`<recording>.csv`).
    pub file_name: String,
    /// CSV text.
    pub contents: String,
}

/// Formats one recording as CSV: the header, then one row per frame. Values
/// use Rust's shortest round-trip formatting, so reading it back is exact.
pub fn recording_csv(feature_names: &[String], frames: &[f32]) -> String {
    let d = feature_names.len().max(1);
    let mut s = feature_names.join(",");
    s.push('\n');
    for row in frames.chunks(d) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&v.to_string());
        }
        s.push('\n');
    }
    s
}

impl Dataset {
    /// The files of the dataset folder for this dataset, validated first like
    /// [`Dataset::validate`] except that one class is enough (a folder can be
    /// written class by class).
    pub fn to_files(&self) -> Result<Vec<DatasetFile>, DataError> {
        self.check(1)?;
        Ok(self
            .recordings
            .iter()
            .map(|r| DatasetFile {
                class: self.classes[r.class].clone(),
                file_name: format!("{}.csv", r.name),
                contents: recording_csv(&self.feature_names, &r.frames),
            })
            .collect())
    }
}
