//! The mapping from every Rust error of the workspace to one Python exception class.
//!
//! The classes live in `aether/errors.py` (each derives from `AetherError` and from the
//! builtin exception its kind matches, e.g. `ShapeError(AetherError, ValueError)`);
//! this module imports them lazily with `import_exception!`. File-system errors stay
//! `OSError` (`FileNotFoundError`, …).

use aether_data::dataset::DataError as RsDataError;
use aether_data::features::FeatureError;
use aether_data::sim::SimError;
use aether_head::HeadError;
use aether_quant::QuantError;
use std::path::Path;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::{import_exception, PyErr};

import_exception!(aether.errors, AetherError);
import_exception!(aether.errors, FormatError);
import_exception!(aether.errors, ShapeError);
import_exception!(aether.errors, LayoutError);
import_exception!(aether.errors, DTypeError);
import_exception!(aether.errors, DataError);
import_exception!(aether.errors, CaptureError);
import_exception!(aether.errors, StreamError);
import_exception!(aether.errors, ConfigError);
import_exception!(aether.errors, TrainError);

/// The exception class of a `.rvne` format error.
pub fn rvne(e: aether_rvne::Error) -> PyErr {
    FormatError::new_err(format!("not a valid .rvne model: {e}"))
}

/// The exception class of a head error.
pub fn head(e: HeadError) -> PyErr {
    let msg = e.to_string();
    match e {
        HeadError::Format { .. }
        | HeadError::MissingTensor { .. }
        | HeadError::TensorShape { .. }
        | HeadError::NonFiniteWeight { .. } => FormatError::new_err(msg),
        HeadError::Config { .. } => ConfigError::new_err(msg),
        HeadError::FrameWidth { .. }
        | HeadError::EmptySequence
        | HeadError::TooLong { .. }
        | HeadError::OutputLen { .. }
        | HeadError::WorkspaceMismatch => ShapeError::new_err(msg),
        HeadError::NonFiniteInput { .. } | HeadError::NumericOverflow => DataError::new_err(msg),
        HeadError::CapacityExceeded { .. } | HeadError::StreamPoisoned | HeadError::NoFrames => {
            StreamError::new_err(msg)
        }
        _ => AetherError::new_err(msg),
    }
}

/// The exception class of an int8-head error.
pub fn quant(e: QuantError) -> PyErr {
    let msg = e.to_string();
    match e {
        QuantError::Format { .. } | QuantError::Unsupported { .. } => FormatError::new_err(msg),
        QuantError::FrameWidth { .. }
        | QuantError::EmptySequence
        | QuantError::TooLong { .. }
        | QuantError::OutputLen { .. }
        | QuantError::WorkspaceMismatch => ShapeError::new_err(msg),
        QuantError::NonFiniteInput { .. } => DataError::new_err(msg),
        QuantError::CapacityExceeded { .. } | QuantError::NotCausal => StreamError::new_err(msg),
        QuantError::Config { .. } => ConfigError::new_err(msg),
        _ => AetherError::new_err(msg),
    }
}

/// The exception class of a dataset error (I/O errors stay `OSError`).
pub fn data(e: RsDataError) -> PyErr {
    match e {
        RsDataError::Io { .. } | RsDataError::NotADirectory(_) => PyOSError::new_err(e.to_string()),
        _ => DataError::new_err(e.to_string()),
    }
}

/// The exception class of a feature-extraction error.
pub fn features(e: FeatureError) -> PyErr {
    match e {
        FeatureError::NoFrames => CaptureError::new_err(format!(
            "{e}: the capture holds no complete raw CSI frame (0xC5110001)"
        )),
        FeatureError::ZeroBands | FeatureError::TooManyMotionLags { .. } => {
            ConfigError::new_err(e.to_string())
        }
        _ => CaptureError::new_err(e.to_string()),
    }
}

/// The exception class of a simulator error.
pub fn sim(e: SimError) -> PyErr {
    ConfigError::new_err(e.to_string())
}

/// `ConfigError` unless `lo <= v <= hi` (the command line's ranges).
pub fn in_range(name: &str, v: usize, lo: usize, hi: usize) -> PyResult<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::new_err(format!(
            "{name} = {v}: must be in {lo}..={hi}"
        )))
    }
}

/// An I/O error as the matching `OSError` subclass (`FileNotFoundError`, …) naming `path`.
pub fn io(e: std::io::Error, path: &Path) -> PyErr {
    let errno = e.raw_os_error();
    let msg = e.to_string();
    let base = PyErr::from(e);
    Python::attach(|py| {
        let ty = base.get_type(py);
        let made = match errno {
            Some(n) => ty.call1((n, msg, path.display().to_string())),
            None => ty.call1((format!("{}: {msg}", path.display()),)),
        };
        made.map(PyErr::from_value).unwrap_or(base)
    })
}
