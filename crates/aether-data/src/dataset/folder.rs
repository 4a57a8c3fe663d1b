//! The dataset-folder reader: class directories, recording CSVs, and what is skipped.

use std::path::Path;

use super::csv::{header_detail, parse_csv};
use super::error::io_err;
use super::{DataError, Dataset, LoadReport, Recording, SkipReason};
use crate::wire::RAW_CSI_MAGIC;

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
