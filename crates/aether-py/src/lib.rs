//! # aether-py
//!
//! The Python module `aether` (native part `aether._aether`), a thin binding over the
//! Rust crates: no logic of its own beyond argument checks, every error mapped to a
//! Python exception class (`aether.errors`), the GIL released around compute, numpy
//! arrays in without a copy when they are C-contiguous float32.
//!
//! ```text
//! aether.Model.load(path) ─► Model ─► forward / predict_proba / embed / stream
//! aether.read_dataset(DIR) | aether.simulate(task) ─► Dataset ─► windows / train / evaluate / kfold
//! aether.features(capture) / aether.parse_capture(capture)
//! ```
//! Built by maturin (`pip install ./crates/aether-py`); API in docs/python.md.
#![deny(missing_docs)]

mod arrays;
mod data;
mod errors;
mod export;
mod limits;
mod model;
mod train;

use pyo3::prelude::*;

/// The native module `aether._aether`; `aether/__init__.py` re-exports it.
#[pymodule]
fn _aether(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<model::Model>()?;
    m.add_class::<model::Stream>()?;
    m.add_class::<data::Dataset>()?;
    m.add_function(wrap_pyfunction!(data::read_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(data::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(data::simulate_captures, m)?)?;
    m.add_function(wrap_pyfunction!(data::windows, m)?)?;
    m.add_function(wrap_pyfunction!(data::features, m)?)?;
    m.add_function(wrap_pyfunction!(data::parse_capture, m)?)?;
    m.add_function(wrap_pyfunction!(data::capture_report, m)?)?;
    m.add_function(wrap_pyfunction!(train::_train, m)?)?;
    m.add_function(wrap_pyfunction!(train::_cross_validate, m)?)?;
    m.add_function(wrap_pyfunction!(train::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(train::quantize, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
