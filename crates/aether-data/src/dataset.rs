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

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::npy::{parse_npy, NpyData, NpyError};
use crate::rng::SplitMix64;
use crate::wire::RAW_CSI_MAGIC;

/// Errors reading, writing, windowing or splitting a dataset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
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

fn io_err(path: &Path, e: std::io::Error) -> DataError {
    DataError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

/// Whether `bytes` start like a raw CSI capture (the little-endian `0xC5110001` magic).
pub fn is_raw_capture(bytes: &[u8]) -> bool {
    bytes.starts_with(&RAW_CSI_MAGIC.to_le_bytes())
}

/// Whether the regular file at `path` starts like a raw CSI capture (false if
/// unreadable or not a regular file: a FIFO is never opened).
fn file_is_raw_capture(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && is_raw_capture(&head)
}

/// The one CSV dialect of every verb, read line by line (so a live pipe can be
/// classified as it arrives).
///
/// A UTF-8 byte-order mark at the start of line 1 is ignored, and so are blank
/// lines. The first other line is the header naming the columns (not all numeric,
/// no empty or repeated name); every further line is one frame of exactly as many
/// finite `f32` numbers. Cells may be `"quoted"` and padded with spaces. Errors
/// name the file, the row (1-based line number) and the column (1-based, with its
/// name).
#[derive(Debug, Clone)]
pub struct CsvReader {
    file: String,
    header: Option<Vec<String>>,
    line: usize,
}

impl CsvReader {
    /// A reader of the CSV `file` (the name used in errors).
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            header: None,
            line: 0,
        }
    }

    /// The file name used in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based number of the last line fed (0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&[String]> {
        self.header.as_deref()
    }

    /// The header at the end of the input; an input without one is an error.
    pub fn finish(&self) -> Result<&[String], DataError> {
        self.header().ok_or_else(|| DataError::EmptyFile {
            file: self.file.clone(),
        })
    }

    /// Reads the next line (a trailing `\n` or `\r\n` is ignored). Returns `true` when
    /// the line was a frame, whose values were appended to `out`; `false` for the
    /// header or a blank line. On an error `out` is left as it was.
    pub fn feed(&mut self, line: &str, out: &mut Vec<f32>) -> Result<bool, DataError> {
        self.line += 1;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut line = line.strip_suffix('\r').unwrap_or(line);
        if self.line == 1 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.trim().is_empty() {
            return Ok(false);
        }
        let Some(header) = &self.header else {
            self.header = Some(self.parse_header(line)?);
            return Ok(false);
        };
        let file = || self.file.clone();
        let row = self.line;
        let d = header.len();
        let cells = line.split(',').count();
        if cells != d {
            return Err(DataError::RaggedRow {
                file: file(),
                row,
                expected: d,
                got: cells,
            });
        }
        let start = out.len();
        for (c, cell) in line.split(',').enumerate() {
            let t = unquote(cell);
            let err = match t.parse::<f32>() {
                Ok(v) if v.is_finite() => {
                    out.push(v);
                    continue;
                }
                Ok(_) => DataError::NonFinite {
                    file: file(),
                    row,
                    col: c + 1,
                    column: header[c].clone(),
                    cell: t.to_string(),
                },
                Err(_) => DataError::NonNumeric {
                    file: file(),
                    row,
                    col: c + 1,
                    column: header[c].clone(),
                    cell: t.to_string(),
                },
            };
            out.truncate(start);
            return Err(err);
        }
        Ok(true)
    }

    fn parse_header(&self, line: &str) -> Result<Vec<String>, DataError> {
        let file = || self.file.clone();
        let header: Vec<String> = line.split(',').map(|c| unquote(c).to_string()).collect();
        if header.iter().all(|h| h.parse::<f64>().is_ok()) {
            return Err(DataError::MissingHeader { file: file() });
        }
        for (i, h) in header.iter().enumerate() {
            if h.is_empty() {
                return Err(DataError::EmptyColumnName {
                    file: file(),
                    col: i + 1,
                });
            }
            if header[..i].contains(h) {
                return Err(DataError::DuplicateColumn {
                    file: file(),
                    name: h.clone(),
                });
            }
        }
        Ok(header)
    }
}

/// Parses one recording CSV with [`CsvReader`]: returns the header and the `T × D`
/// frames; `file` names the source in errors.
pub fn parse_csv(text: &str, file: &str) -> Result<(Vec<String>, Vec<f32>), DataError> {
    let mut r = CsvReader::new(file);
    let mut frames = Vec::new();
    for line in text.split_inclusive('\n') {
        r.feed(line, &mut frames)?;
    }
    Ok((r.finish()?.to_vec(), frames))
}

fn header_detail(a: &[String], b: &[String]) -> String {
    if a.len() != b.len() {
        return format!("{} columns instead of {}", b.len(), a.len());
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
    format!("column {} is `{}` instead of `{}`", i + 1, b[i], a[i])
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>, DataError> {
    let mut v = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_err(dir, e))?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// Reads a dataset folder (see the module docs for layout and policy).
pub fn read_dataset_dir(root: &Path) -> Result<(Dataset, LoadReport), DataError> {
    let meta = std::fs::metadata(root).map_err(|e| io_err(root, e))?;
    if !meta.is_dir() {
        if file_is_raw_capture(root) {
            return Err(DataError::RawCapture {
                path: root.display().to_string(),
            });
        }
        return Err(DataError::NotADirectory(root.display().to_string()));
    }
    let mut report = LoadReport::default();
    let mut classes = Vec::new();
    let mut recordings = Vec::new();
    let mut feature_names: Option<(Vec<String>, String)> = None;
    for entry in sorted_entries(root)? {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = std::fs::metadata(&path)
            .map_err(|e| io_err(&path, e))?
            .is_dir();
        if name.starts_with('.') {
            report
                .skipped
                .push((path.display().to_string(), SkipReason::Hidden));
            continue;
        }
        if !is_dir {
            if name == "README.txt" {
                report.readme = Some(path.display().to_string());
            } else {
                report
                    .skipped
                    .push((path.display().to_string(), SkipReason::TopLevelFile));
            }
            continue;
        }
        let class = classes.len();
        let mut n_in_class = 0;
        let mut raw_capture = None;
        for f in sorted_entries(&path)? {
            let fpath = f.path();
            let fname = f.file_name().to_string_lossy().into_owned();
            let shown = fpath.display().to_string();
            if fname.starts_with('.') {
                report.skipped.push((shown, SkipReason::Hidden));
                continue;
            }
            if std::fs::metadata(&fpath)
                .map_err(|e| io_err(&fpath, e))?
                .is_dir()
            {
                report.skipped.push((shown, SkipReason::NestedDirectory));
                continue;
            }
            let csv = fname.strip_suffix(".csv");
            if csv.is_none() && !file_is_raw_capture(&fpath) {
                report.skipped.push((shown, SkipReason::NotCsv));
                continue;
            }
            let bytes = match csv {
                Some(_) => std::fs::read(&fpath).map_err(|e| io_err(&fpath, e))?,
                None => Vec::new(),
            };
            let Some(stem) = csv.filter(|_| !is_raw_capture(&bytes)) else {
                raw_capture.get_or_insert_with(|| shown.clone());
                report.skipped.push((shown, SkipReason::RawCapture));
                continue;
            };
            let text = String::from_utf8(bytes).map_err(|_| DataError::NotUtf8 {
                file: shown.clone(),
            })?;
            let (header, frames) = parse_csv(&text, &shown)?;
            match &feature_names {
                None => feature_names = Some((header, shown.clone())),
                Some((first, first_file)) if *first != header => {
                    return Err(DataError::HeaderMismatch {
                        detail: header_detail(first, &header),
                        file: shown,
                        first_file: first_file.clone(),
                    })
                }
                Some(_) => {}
            }
            if frames.is_empty() {
                report.skipped.push((shown, SkipReason::NoFrames));
                continue;
            }
            n_in_class += 1;
            recordings.push(Recording {
                class,
                name: stem.to_string(),
                frames,
            });
        }
        if n_in_class == 0 {
            return Err(match raw_capture {
                Some(example) => DataError::OnlyRawCaptures {
                    class: name,
                    example,
                },
                None => DataError::EmptyClass { class: name },
            });
        }
        classes.push(name);
    }
    if classes.is_empty() {
        return Err(DataError::NoClasses(root.display().to_string()));
    }
    if classes.len() < 2 {
        return Err(DataError::TooFewClasses {
            path: root.display().to_string(),
            found: classes.len(),
        });
    }
    let feature_names = feature_names.map(|(f, _)| f).unwrap_or_default();
    Ok((
        Dataset {
            classes,
            feature_names,
            recordings,
        },
        report,
    ))
}

/// Builds a dataset from `.npy` buffers (`X [n, N, D]` floats, `y [n]`
/// integers) and optional `classes.txt` text. Without class names, classes are
/// `class0 ..= class{max(y)}`.
pub fn dataset_from_npy(
    x: &[u8],
    y: &[u8],
    classes_txt: Option<&str>,
) -> Result<Dataset, DataError> {
    let xa = parse_npy(x).map_err(|source| DataError::Npy {
        file: "X.npy".into(),
        source,
    })?;
    let ya = parse_npy(y).map_err(|source| DataError::Npy {
        file: "y.npy".into(),
        source,
    })?;
    let shape_err = |file: &str, detail: String| DataError::NpyShape {
        file: file.into(),
        detail,
    };
    let [n, t, d] = xa.shape[..] else {
        return Err(shape_err(
            "X.npy",
            format!("shape {:?}, expected [n, N, D]", xa.shape),
        ));
    };
    let NpyData::Float(xv) = xa.data else {
        return Err(shape_err(
            "X.npy",
            "integer dtype, expected f4 or f8".into(),
        ));
    };
    if ya.shape.len() != 1 || ya.shape[0] != n {
        return Err(shape_err(
            "y.npy",
            format!("shape {:?}, expected [{n}] to match X", ya.shape),
        ));
    }
    let NpyData::Int(yv) = ya.data else {
        return Err(shape_err(
            "y.npy",
            "float dtype, expected an integer dtype".into(),
        ));
    };
    if d == 0 || t == 0 {
        return Err(shape_err(
            "X.npy",
            format!("shape [{n}, {t}, {d}] has no frames or no features"),
        ));
    }
    let classes: Vec<String> = match classes_txt {
        Some(txt) => txt
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => {
            let max = yv.iter().copied().max().unwrap_or(-1).clamp(-1, 65_535);
            (0..=max).map(|k| format!("class{k}")).collect()
        }
    };
    let mut recordings = Vec::with_capacity(n);
    for (i, &label) in yv.iter().enumerate() {
        if label < 0 || label as u64 >= classes.len() as u64 {
            return Err(DataError::LabelOutOfRange {
                index: i,
                label,
                n_classes: classes.len(),
            });
        }
        let frames: Vec<f32> = xv[i * t * d..(i + 1) * t * d]
            .iter()
            .map(|&v| v as f32)
            .collect();
        if let Some(p) = frames.iter().position(|v| !v.is_finite()) {
            return Err(shape_err(
                "X.npy",
                format!(
                    "sample {i}, frame {}, feature {}: value is not finite (in f32)",
                    p / d,
                    p % d
                ),
            ));
        }
        recordings.push(Recording {
            class: label as usize,
            name: format!("sample{i:05}"),
            frames,
        });
    }
    let ds = Dataset {
        classes,
        feature_names: (0..d).map(|k| format!("f{k}")).collect(),
        recordings,
    };
    ds.check_classes_nonempty()?;
    Ok(ds)
}

/// Reads `X.npy`, `y.npy` and (if present) `classes.txt` from `dir`.
pub fn read_npy_dir(dir: &Path) -> Result<Dataset, DataError> {
    let read = |n: &str| std::fs::read(dir.join(n)).map_err(|e| io_err(&dir.join(n), e));
    let x = read("X.npy")?;
    let y = read("y.npy")?;
    let cpath = dir.join("classes.txt");
    let classes = if cpath.exists() {
        Some(std::fs::read_to_string(&cpath).map_err(|e| io_err(&cpath, e))?)
    } else {
        None
    };
    dataset_from_npy(&x, &y, classes.as_deref())
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

/// Checks that `name` can name a class directory of a dataset folder (not empty,
/// no leading `.`, no path separator or control character).
pub fn check_class_name(name: &str) -> Result<(), DataError> {
    check_name("class", name)
}

fn check_name(what: &'static str, name: &str) -> Result<(), DataError> {
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

    /// Cuts every recording into windows (see [`WindowConfig`]).
    pub fn windows(&self, cfg: WindowConfig) -> Result<(Vec<Window>, Vec<usize>), DataError> {
        if cfg.len == 0 || cfg.stride == 0 {
            return Err(DataError::BadWindow {
                len: cfg.len,
                stride: cfg.stride,
            });
        }
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for (i, _) in self.recordings.iter().enumerate() {
            let t = self.len_of(i);
            if t < cfg.len {
                match cfg.short {
                    ShortPolicy::Skip => skipped.push(i),
                    ShortPolicy::Whole => out.push(Window {
                        recording: i,
                        start: 0,
                        frames: t,
                        len: t,
                    }),
                    ShortPolicy::Pad => out.push(Window {
                        recording: i,
                        start: 0,
                        frames: t,
                        len: cfg.len,
                    }),
                }
                continue;
            }
            let mut start = 0;
            loop {
                out.push(Window {
                    recording: i,
                    start,
                    frames: cfg.len,
                    len: cfg.len,
                });
                if start + cfg.len == t {
                    break;
                }
                start = if start + cfg.stride + cfg.len <= t {
                    start + cfg.stride
                } else {
                    t - cfg.len
                };
            }
        }
        Ok((out, skipped))
    }

    /// Copies window `w` into `out` as `w.len × D` row-major; a padded window
    /// repeats its last frame.
    pub fn window_data(&self, w: &Window, out: &mut Vec<f32>) {
        let d = self.dim();
        let r = &self.recordings[w.recording];
        out.clear();
        out.extend_from_slice(&r.frames[w.start * d..(w.start + w.frames) * d]);
        if w.frames > 0 {
            let last = (w.start + w.frames - 1) * d;
            for _ in w.frames..w.len {
                out.extend_from_slice(&r.frames[last..last + d]);
            }
        }
    }

    /// Train / validation / test split by recording, stratified by class and
    /// seeded. Per class of `n` recordings (shuffled): `n_test = round(n·test)`,
    /// `n_val = round(n·val)`; at least one test recording when `test > 0` and
    /// `n ≥ 2`, at least one validation recording when `val > 0` and `n ≥ 3`;
    /// training always keeps at least one (validation gives way first).
    pub fn split(&self, val: f64, test: f64, seed: u64) -> Result<Split, DataError> {
        let ok = |f: f64| f.is_finite() && (0.0..1.0).contains(&f);
        if !ok(val) || !ok(test) || val + test >= 1.0 {
            return Err(DataError::BadFractions { val, test });
        }
        let mut s = Split::default();
        for (c, mut members) in self.by_class().into_iter().enumerate() {
            SplitMix64::derive(seed, &[0x5B11, c as u64]).shuffle(&mut members);
            let n = members.len();
            let mut n_test = (n as f64 * test).round() as usize;
            let mut n_val = (n as f64 * val).round() as usize;
            if test > 0.0 && n >= 2 {
                n_test = n_test.max(1);
            }
            if val > 0.0 && n >= 3 {
                n_val = n_val.max(1);
            }
            while n_test + n_val >= n && n_val > 0 {
                n_val -= 1;
            }
            while n_test + n_val >= n && n_test > 0 {
                n_test -= 1;
            }
            s.test.extend(&members[..n_test]);
            s.val.extend(&members[n_test..n_test + n_val]);
            s.train.extend(&members[n_test + n_val..]);
        }
        s.train.sort_unstable();
        s.val.sort_unstable();
        s.test.sort_unstable();
        Ok(s)
    }

    /// Recording indices of each class, in order.
    pub fn by_class(&self) -> Vec<Vec<usize>> {
        let mut v = vec![Vec::new(); self.classes.len()];
        for (i, r) in self.recordings.iter().enumerate() {
            if let Some(x) = v.get_mut(r.class) {
                x.push(i);
            }
        }
        v
    }

    /// Stratified k-fold by recording, seeded: each class's recordings are
    /// shuffled and dealt round-robin to the folds, continuing where the
    /// previous class stopped so fold sizes differ by at most one. Fold `f`
    /// tests on its recordings and trains on all others. A class with fewer
    /// than `k` recordings is absent from some test folds.
    pub fn kfold(&self, k: usize, seed: u64) -> Result<Vec<Split>, DataError> {
        let n = self.recordings.len();
        if k < 2 || k > n {
            return Err(DataError::BadFolds { k, recordings: n });
        }
        let mut fold_of = vec![0usize; n];
        let mut next = 0usize;
        for (c, mut members) in self.by_class().into_iter().enumerate() {
            SplitMix64::derive(seed, &[0xF01D, c as u64]).shuffle(&mut members);
            for m in members {
                fold_of[m] = next % k;
                next += 1;
            }
        }
        Ok((0..k)
            .map(|f| Split {
                train: (0..n).filter(|&i| fold_of[i] != f).collect(),
                val: Vec::new(),
                test: (0..n).filter(|&i| fold_of[i] == f).collect(),
            })
            .collect())
    }

    /// Recordings grouped by [`group_key`] of their names (e.g. session `D1`).
    pub fn groups(&self) -> BTreeMap<String, Vec<usize>> {
        let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.recordings.iter().enumerate() {
            m.entry(group_key(&r.name).to_string()).or_default().push(i);
        }
        m
    }

    /// Recording indices by [`group_field`] `field` of their names; the first recording
    /// whose name has fewer fields is named in the error.
    pub fn groups_by(&self, field: usize) -> Result<BTreeMap<String, Vec<usize>>, DataError> {
        let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.recordings.iter().enumerate() {
            let g = group_field(&r.name, field).ok_or_else(|| DataError::NoGroupField {
                recording: r.name.clone(),
                field,
            })?;
            m.entry(g.to_string()).or_default().push(i);
        }
        Ok(m)
    }

    /// Train on the recordings of `train` groups, test on those of `test`
    /// groups (e.g. train `["D1"]`, test `["D2"]`); every group must exist.
    pub fn split_by_groups(&self, train: &[&str], test: &[&str]) -> Result<Split, DataError> {
        let g = self.groups();
        let pick = |names: &[&str]| -> Result<Vec<usize>, DataError> {
            let mut v = Vec::new();
            for n in names {
                v.extend(
                    g.get(*n)
                        .ok_or_else(|| DataError::UnknownGroup(n.to_string()))?,
                );
            }
            v.sort_unstable();
            v.dedup();
            Ok(v)
        };
        Ok(Split {
            train: pick(train)?,
            val: Vec::new(),
            test: pick(test)?,
        })
    }
}

/// The group of a recording name: the prefix before the first `_` (the whole
/// name if it has none). `D1_e06_tx_rx_s5` → `D1`.
pub fn group_key(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

/// Field `field` (0-based) of a recording name split at `_`, e.g. the chip `c3` is
/// field 1 of `baseline_c3_64sc_20260329_130303`; `None` if the name has fewer fields.
pub fn group_field(name: &str, field: usize) -> Option<&str> {
    name.split('_').nth(field)
}

/// Recording indices of a split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Training recordings.
    pub train: Vec<usize>,
    /// Validation recordings.
    pub val: Vec<usize>,
    /// Test recordings.
    pub test: Vec<usize>,
}

/// What to do with a recording shorter than the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortPolicy {
    /// Skip it (its index is returned by [`Dataset::windows`]).
    Skip,
    /// One window of the whole recording (shorter than `len`).
    #[default]
    Whole,
    /// One window padded to `len` by repeating the last frame.
    Pad,
}

/// Window length, stride and the short-recording policy.
///
/// Windows start at `0, stride, 2·stride, …` while they fit; if frames remain
/// after the last one, a final window ending at the last frame is added, so
/// every frame is covered when `stride ≤ len` (and the last frame always is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Window length in frames.
    pub len: usize,
    /// Stride in frames.
    pub stride: usize,
    /// Policy for recordings shorter than `len`.
    pub short: ShortPolicy,
}

/// One window: frames `start .. start + frames` of a recording, presented as
/// `len` frames (`len > frames` only when padded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Recording index.
    pub recording: usize,
    /// First frame.
    pub start: usize,
    /// Frames taken from the recording.
    pub frames: usize,
    /// Frames presented (after padding).
    pub len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn small() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a/r1.csv", "x,y\n1,2\n3,4\n");
        write(d.path(), "a/r2.csv", "x,y\r\n5,6\r\n\r\n");
        write(d.path(), "b/D1_r.csv", "\"x\",\"y\"\n7,8e-1\n");
        d
    }

    #[test]
    fn reads_folder_and_reports_skips() {
        let d = small();
        write(d.path(), "README.txt", "synthetic");
        write(d.path(), "NOTES.md", "x");
        write(d.path(), "b/notes.txt", "x");
        write(d.path(), "b/empty.csv", "x,y\n");
        write(d.path(), "b/.hidden.csv", "x,y\n1,2\n");
        std::fs::create_dir_all(d.path().join("b/sub")).unwrap();
        let (ds, rep) = read_dataset_dir(d.path()).unwrap();
        assert_eq!(ds.classes, ["a", "b"]);
        assert_eq!(ds.feature_names, ["x", "y"]);
        assert_eq!(ds.recordings.len(), 3);
        assert_eq!(ds.recordings[0].frames, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ds.recordings[2].name, "D1_r");
        assert_eq!(ds.recordings[2].frames, vec![7.0, 0.8]);
        let reasons: Vec<SkipReason> = rep.skipped.iter().map(|s| s.1).collect();
        assert_eq!(
            reasons,
            [
                SkipReason::TopLevelFile,
                SkipReason::Hidden,
                SkipReason::NoFrames,
                SkipReason::NotCsv,
                SkipReason::NestedDirectory
            ]
        );
        assert!(rep.to_string().contains("5 entries skipped"));
        assert!(rep.readme.as_deref().unwrap().ends_with("README.txt"));
        assert!(!rep.to_string().contains("README.txt"));
    }

    #[test]
    fn csv_reader_reads_line_by_line_with_line_numbers() {
        let mut r = CsvReader::new("live");
        let mut out = Vec::new();
        assert!(!r.feed("\u{feff}a,\"b\"\r\n", &mut out).unwrap());
        assert_eq!(r.header().unwrap(), ["a", "b"]);
        assert!(!r.feed("\n", &mut out).unwrap());
        assert!(r.feed(" 1, 2\r\n", &mut out).unwrap());
        assert!(r.feed("3,4", &mut out).unwrap());
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(r.line(), 4);
        let e = r.feed("5,x\n", &mut out).unwrap_err();
        assert_eq!(out.len(), 4, "a refused row leaves the output as it was");
        assert!(
            matches!(&e, DataError::NonNumeric { row: 5, col: 2, column, .. } if column == "b"),
            "{e}"
        );
        let e = r.feed("5\n", &mut out).unwrap_err();
        assert!(
            matches!(e, DataError::RaggedRow { row: 6, got: 1, .. }),
            "{e}"
        );
        assert!(CsvReader::new("f").finish().is_err());
        // the byte-order mark is only skipped at the very start of the input
        let e = parse_csv("a\n\u{feff}1\n", "f").unwrap_err();
        assert!(matches!(e, DataError::NonNumeric { row: 2, .. }), "{e}");
        let (h, v) = parse_csv("\u{feff}a0_b00,x\n1,2\n", "f").unwrap();
        assert_eq!((h, v), (vec!["a0_b00".into(), "x".into()], vec![1.0, 2.0]));
    }

    #[test]
    fn raw_captures_and_half_npy_pairs_are_named() {
        let magic = RAW_CSI_MAGIC.to_le_bytes();
        let d = tempfile::tempdir().unwrap();
        for c in ["a", "b"] {
            std::fs::create_dir_all(d.path().join(c)).unwrap();
            std::fs::write(d.path().join(c).join("cap.bin"), magic).unwrap();
        }
        let e = read_dataset_dir(d.path()).unwrap_err();
        assert!(
            matches!(&e, DataError::OnlyRawCaptures { class, example } if class == "a" && example.ends_with("cap.bin")),
            "{e}"
        );
        assert!(e.to_string().contains("aether features"), "{e}");
        write(d.path(), "a/r.csv", "x\n1\n");
        write(d.path(), "b/r.csv", "x\n2\n");
        std::fs::write(d.path().join("b").join("cap.csv"), magic).unwrap();
        let (ds, rep) = read_dataset_dir(d.path()).unwrap();
        assert_eq!(ds.recordings.len(), 2);
        let reasons: Vec<SkipReason> = rep.skipped.iter().map(|s| s.1).collect();
        assert_eq!(reasons, [SkipReason::RawCapture; 3]);
        let e = read_dataset_dir(&d.path().join("a").join("cap.bin")).unwrap_err();
        assert!(matches!(e, DataError::RawCapture { .. }), "{e}");
        std::fs::write(d.path().join("b").join("z.csv"), [0xffu8, 0xfe, b'\n']).unwrap();
        let e = read_dataset_dir(d.path()).unwrap_err();
        assert!(matches!(e, DataError::NotUtf8 { .. }), "{e}");

        let n = tempfile::tempdir().unwrap();
        std::fs::write(n.path().join("X.npy"), b"").unwrap();
        let e = load_dataset(n.path()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::NpyMissing {
                    missing: "y.npy",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("y.npy is missing"), "{e}");
        std::fs::rename(n.path().join("X.npy"), n.path().join("y.npy")).unwrap();
        let e = load_dataset(n.path()).unwrap_err();
        assert!(matches!(
            e,
            DataError::NpyMissing {
                missing: "X.npy",
                ..
            }
        ));
    }

    fn err_of(files: &[(&str, &str)]) -> DataError {
        let d = tempfile::tempdir().unwrap();
        for (p, t) in files {
            write(d.path(), p, t);
        }
        read_dataset_dir(d.path()).unwrap_err()
    }

    #[test]
    fn error_paths_name_file_row_column() {
        let ok = ("z/ok.csv", "x,y\n1,2\n");
        let e = err_of(&[("a/r.csv", "x,y\n1,2\n3\n"), ok]);
        assert!(
            matches!(
                e,
                DataError::RaggedRow {
                    row: 3,
                    expected: 2,
                    got: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("r.csv: row 3 has 1 cells"));
        let e = err_of(&[("a/r.csv", "x,y\n1,abc\n"), ok]);
        assert!(
            matches!(&e, DataError::NonNumeric { row: 2, col: 2, column, cell, .. } if column == "y" && cell == "abc"),
            "{e}"
        );
        let e = err_of(&[("a/r.csv", "x,y\n1,2\nNaN,1\n"), ok]);
        assert!(
            matches!(&e, DataError::NonFinite { row: 3, col: 1, .. }),
            "{e}"
        );
        let e = err_of(&[("a/r.csv", "x,y\n1,inf\n"), ok]);
        assert!(matches!(&e, DataError::NonFinite { row: 2, col: 2, .. }));
        let e = err_of(&[("a/r.csv", "x,y\n1,1e39\n"), ok]);
        assert!(matches!(&e, DataError::NonFinite { .. }));
        let e = err_of(&[("a/r.csv", "x,z\n1,2\n"), ok]);
        assert!(
            matches!(&e, DataError::HeaderMismatch { detail, .. } if detail.contains("column 2")),
            "{e}"
        );
        let e = err_of(&[("a/r.csv", "x\n1\n"), ok]);
        assert!(
            matches!(&e, DataError::HeaderMismatch { detail, .. } if detail.contains("columns instead of"))
        );
        let e = err_of(&[("a/r.csv", ""), ok]);
        assert!(matches!(e, DataError::EmptyFile { .. }));
        let e = err_of(&[("a/r.csv", "1,2\n3,4\n"), ok]);
        assert!(matches!(e, DataError::MissingHeader { .. }));
        let e = err_of(&[("a/r.csv", "x,,y\n1,2,3\n"), ok]);
        assert!(matches!(e, DataError::EmptyColumnName { col: 2, .. }));
        let e = err_of(&[("a/r.csv", "x,x\n1,2\n"), ok]);
        assert!(matches!(e, DataError::DuplicateColumn { .. }));
        let e = err_of(&[("a/r.csv", "x,y\n"), ok]);
        assert_eq!(e, DataError::EmptyClass { class: "a".into() });
        let e = err_of(&[("a/r.txt", "x,y\n1,2\n"), ok]);
        assert_eq!(e, DataError::EmptyClass { class: "a".into() });
        let e = err_of(&[ok]);
        assert!(matches!(e, DataError::TooFewClasses { found: 1, .. }));
        let e = err_of(&[("README.txt", "x")]);
        assert!(matches!(e, DataError::NoClasses(_)));
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_dataset_dir(&d.path().join("missing")),
            Err(DataError::Io { .. })
        ));
        write(d.path(), "f", "x");
        assert!(matches!(
            read_dataset_dir(&d.path().join("f")),
            Err(DataError::NotADirectory(_))
        ));
    }

    fn ds(counts: &[usize], t: usize) -> Dataset {
        let mut recordings = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            for i in 0..n {
                recordings.push(Recording {
                    class: c,
                    name: format!("G{}_c{c}_r{i}", i % 2),
                    frames: (0..t * 2).map(|v| v as f32).collect(),
                });
            }
        }
        Dataset {
            classes: (0..counts.len()).map(|c| format!("c{c}")).collect(),
            feature_names: vec!["u".into(), "v".into()],
            recordings,
        }
    }

    #[test]
    fn npy_input() {
        use crate::npy::encode_npy;
        let x = encode_npy(
            &[3, 2, 2],
            &NpyData::Float((0..12).map(|v| v as f64).collect()),
        );
        let y = encode_npy(&[3], &NpyData::Int(vec![0, 1, 1]));
        let d = dataset_from_npy(&x, &y, None).unwrap();
        assert_eq!(d.classes, ["class0", "class1"]);
        assert_eq!(d.recordings[2].frames, vec![8.0, 9.0, 10.0, 11.0]);
        assert_eq!(d.recordings[1].name, "sample00001");
        let d = dataset_from_npy(&x, &y, Some("still\nmove\n")).unwrap();
        assert_eq!(d.classes, ["still", "move"]);
        assert!(matches!(
            dataset_from_npy(&x, &y, Some("one\n")),
            Err(DataError::LabelOutOfRange {
                index: 1,
                label: 1,
                n_classes: 1
            })
        ));
        let y3 = encode_npy(&[3], &NpyData::Int(vec![0, 2, 2]));
        assert_eq!(
            dataset_from_npy(&x, &y3, None).unwrap_err(),
            DataError::EmptyClass {
                class: "class1".into()
            }
        );
        let yneg = encode_npy(&[3], &NpyData::Int(vec![0, -1, 1]));
        assert!(matches!(
            dataset_from_npy(&x, &yneg, None),
            Err(DataError::LabelOutOfRange { .. })
        ));
        let y2 = encode_npy(&[2], &NpyData::Int(vec![0, 1]));
        assert!(matches!(
            dataset_from_npy(&x, &y2, None),
            Err(DataError::NpyShape { .. })
        ));
        let x2 = encode_npy(&[3, 4], &NpyData::Float(vec![0.0; 12]));
        assert!(matches!(
            dataset_from_npy(&x2, &y, None),
            Err(DataError::NpyShape { .. })
        ));
        let xi = encode_npy(&[3, 2, 2], &NpyData::Int(vec![0; 12]));
        assert!(matches!(
            dataset_from_npy(&xi, &y, None),
            Err(DataError::NpyShape { .. })
        ));
        let xn = encode_npy(&[3, 2, 2], &NpyData::Float(vec![f64::NAN; 12]));
        assert!(matches!(
            dataset_from_npy(&xn, &y, None),
            Err(DataError::NpyShape { .. })
        ));
        assert!(matches!(
            dataset_from_npy(b"nope", &y, None),
            Err(DataError::Npy { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("X.npy"), &x).unwrap();
        std::fs::write(dir.path().join("y.npy"), &y).unwrap();
        std::fs::write(dir.path().join("classes.txt"), "p\nq\n").unwrap();
        let (d, _) = load_dataset(dir.path()).unwrap();
        assert_eq!(d.classes, ["p", "q"]);
    }

    #[test]
    fn windows_policy() {
        let mut d = ds(&[1, 1], 10);
        d.recordings[1].frames.truncate(6); // 3 frames
        let cfg = WindowConfig {
            len: 4,
            stride: 4,
            short: ShortPolicy::Whole,
        };
        let (w, skipped) = d.windows(cfg).unwrap();
        assert!(skipped.is_empty());
        let starts: Vec<(usize, usize, usize)> =
            w.iter().map(|w| (w.recording, w.start, w.len)).collect();
        assert_eq!(starts, [(0, 0, 4), (0, 4, 4), (0, 6, 4), (1, 0, 3)]);
        let (w, skipped) = d
            .windows(WindowConfig {
                short: ShortPolicy::Skip,
                ..cfg
            })
            .unwrap();
        assert_eq!((w.len(), skipped), (3, vec![1]));
        let (w, _) = d
            .windows(WindowConfig {
                short: ShortPolicy::Pad,
                ..cfg
            })
            .unwrap();
        let mut buf = Vec::new();
        d.window_data(&w[3], &mut buf);
        assert_eq!(buf, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 5.0]);
        assert!(matches!(
            d.windows(WindowConfig { len: 0, ..cfg }),
            Err(DataError::BadWindow { .. })
        ));
    }

    #[test]
    fn splits() {
        let d = ds(&[10, 3, 2, 1], 2);
        let s = d.split(0.2, 0.2, 7).unwrap();
        let mut all: Vec<usize> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..16).collect::<Vec<_>>());
        let count =
            |v: &[usize], c: usize| v.iter().filter(|&&i| d.recordings[i].class == c).count();
        assert_eq!(
            (count(&s.train, 0), count(&s.val, 0), count(&s.test, 0)),
            (6, 2, 2)
        );
        assert_eq!(
            (count(&s.train, 1), count(&s.val, 1), count(&s.test, 1)),
            (1, 1, 1)
        );
        assert_eq!(
            (count(&s.train, 2), count(&s.val, 2), count(&s.test, 2)),
            (1, 0, 1)
        );
        assert_eq!(
            (count(&s.train, 3), count(&s.val, 3), count(&s.test, 3)),
            (1, 0, 0)
        );
        assert_eq!(s, d.split(0.2, 0.2, 7).unwrap());
        assert_ne!(s, d.split(0.2, 0.2, 8).unwrap());
        assert!(d.split(0.5, 0.5, 1).is_err());
        assert!(d.split(-0.1, 0.2, 1).is_err());
        assert!(d.split(f64::NAN, 0.2, 1).is_err());

        let folds = d.kfold(5, 3).unwrap();
        let mut tested: Vec<usize> = folds.iter().flat_map(|f| f.test.clone()).collect();
        tested.sort_unstable();
        assert_eq!(tested, (0..16).collect::<Vec<_>>());
        for f in &folds {
            assert!(f.test.len() == 3 || f.test.len() == 4);
            assert_eq!(f.train.len() + f.test.len(), 16);
            assert!(f.train.iter().all(|i| !f.test.contains(i)));
        }
        assert_eq!(
            d.kfold(1, 0).unwrap_err(),
            DataError::BadFolds {
                k: 1,
                recordings: 16
            }
        );
        assert!(d.kfold(17, 0).is_err());

        let g = d.groups();
        assert_eq!(g.keys().collect::<Vec<_>>(), ["G0", "G1"]);
        let s = d.split_by_groups(&["G0"], &["G1"]).unwrap();
        assert!(s
            .train
            .iter()
            .all(|&i| d.recordings[i].name.starts_with("G0_")));
        assert!(s
            .test
            .iter()
            .all(|&i| d.recordings[i].name.starts_with("G1_")));
        assert_eq!(s.train.len() + s.test.len(), 16);
        assert_eq!(
            d.split_by_groups(&["G0"], &["D9"]).unwrap_err(),
            DataError::UnknownGroup("D9".into())
        );
        assert_eq!(group_key("D1_e06_tx"), "D1");
        assert_eq!(group_key("plain"), "plain");
    }

    #[test]
    fn writer_validates_names() {
        let mut d = ds(&[1, 1], 2);
        d.classes[0] = "../evil".into();
        assert!(matches!(
            d.to_files(),
            Err(DataError::InvalidName { what: "class", .. })
        ));
        let mut d = ds(&[1, 1], 2);
        d.recordings[0].name = ".x".into();
        assert!(matches!(
            d.to_files(),
            Err(DataError::InvalidName {
                what: "recording",
                ..
            })
        ));
        let mut d = ds(&[1, 1], 2);
        d.feature_names[0] = "a,b".into();
        assert!(matches!(
            d.to_files(),
            Err(DataError::InvalidName {
                what: "feature",
                ..
            })
        ));
        let mut d = ds(&[1, 1], 2);
        d.recordings[0].frames.pop();
        assert!(matches!(d.to_files(), Err(DataError::Inconsistent(_))));
        let mut d = ds(&[2, 1], 2);
        d.recordings[1].name = d.recordings[0].name.clone();
        assert!(matches!(d.to_files(), Err(DataError::Inconsistent(_))));
        let mut d = ds(&[1, 1], 2);
        d.recordings[1].class = 0;
        assert!(matches!(d.to_files(), Err(DataError::EmptyClass { .. })));
        let mut one = ds(&[2], 2);
        assert_eq!(one.to_files().unwrap().len(), 2);
        assert!(matches!(one.validate(), Err(DataError::Inconsistent(_))));
        one.classes.clear();
        assert!(matches!(one.to_files(), Err(DataError::Inconsistent(_))));
    }

    proptest! {
        #[test]
        fn csv_round_trip(n_classes in 2usize..4, per in 1usize..4, t in 1usize..6,
                          d in 1usize..5, seed in any::<u64>()) {
            let mut r = SplitMix64::new(seed);
            let mut recordings = Vec::new();
            for c in 0..n_classes {
                for i in 0..per {
                    let frames = (0..t * d).map(|_| {
                        let x = (r.normal() * 10f64.powi(r.below(12) as i32 - 6)) as f32;
                        if r.below(10) == 0 { 0.0 } else { x }
                    }).collect();
                    recordings.push(Recording { class: c, name: format!("rec{i}"), frames });
                }
            }
            let ds = Dataset {
                classes: (0..n_classes).map(|c| format!("class {c}")).collect(),
                feature_names: (0..d).map(|k| format!("f{k}")).collect(),
                recordings,
            };
            let dir = tempfile::tempdir().unwrap();
            for f in ds.to_files().unwrap() {
                write(dir.path(), &format!("{}/{}", f.class, f.file_name), &f.contents);
            }
            let (back, rep) = read_dataset_dir(dir.path()).unwrap();
            prop_assert!(rep.skipped.is_empty());
            prop_assert_eq!(back, ds);
        }

        #[test]
        fn parse_csv_never_panics(s in "[0-9a-z,.\\-\\n\" ]{0,80}") {
            let _ = parse_csv(&s, "f.csv");
        }

        #[test]
        fn windows_cover_every_frame(t in 1usize..40, len in 1usize..12, stride in 1usize..12) {
            let d = ds(&[1, 1], t);
            let (w, _) = d.windows(WindowConfig { len, stride, short: ShortPolicy::Whole }).unwrap();
            let mut covered = vec![false; t];
            for x in w.iter().filter(|w| w.recording == 0) {
                prop_assert!(x.start + x.frames <= t);
                prop_assert_eq!(x.frames, len.min(t));
                for c in &mut covered[x.start..x.start + x.frames] { *c = true; }
            }
            if stride <= len {
                prop_assert!(covered.iter().all(|&c| c));
            }
            prop_assert!(covered[0] && covered[t - 1]);
        }

        #[test]
        fn split_is_a_partition(counts in proptest::collection::vec(1usize..9, 2..5),
                                val in 0.0f64..0.4, test in 0.0f64..0.4, seed in any::<u64>()) {
            let d = ds(&counts, 1);
            let s = d.split(val, test, seed).unwrap();
            let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..d.recordings.len()).collect::<Vec<_>>());
            for c in 0..counts.len() {
                prop_assert!(s.train.iter().any(|&i| d.recordings[i].class == c));
            }
        }
    }
}
