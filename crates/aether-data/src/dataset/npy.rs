//! The `.npy` dataset reader: `X.npy` `[n, N, D]` floats, `y.npy` `[n]` labels and an
//! optional `classes.txt`.

use std::path::Path;

use super::error::io_err;
use super::{DataError, Dataset, Recording};
use crate::npy::{parse_npy, NpyData};

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
