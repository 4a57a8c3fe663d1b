//! Arrays in and out.
//!
//! Input rule (docs/python.md): a C-contiguous `float32` array is read in place (no
//! copy); another floating dtype (`float16`, `float64`, `longdouble`) is converted to
//! `float32` by rounding to nearest, as `numpy.asarray(x, dtype=numpy.float32)` does (a
//! finite value beyond the float32 range becomes infinite and is then refused as not
//! finite); a non-array (list, tuple) goes through `numpy.asarray` first. Any other dtype
//! (integers, bool, complex, object, strings) raises `DTypeError`; an array that is not
//! C-contiguous raises `LayoutError`; NaN or infinite values are refused by the model
//! with `DataError` naming the frame and feature.

use numpy::ndarray::{Array, IxDyn};
use numpy::{
    IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::{DTypeError, LayoutError, ShapeError};

/// A float32 array read from Python: borrowed in place or converted.
pub struct F32In<'py> {
    array: PyReadonlyArrayDyn<'py, f32>,
    shape: Vec<usize>,
}

impl F32In<'_> {
    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        // A C-contiguous array (checked in `f32_array`) always has a slice.
        self.array.as_slice().unwrap_or(&[])
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// Reads `obj` as a float32 array under the input rule of this module; `what` names it
/// in error messages.
pub fn f32_array<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<F32In<'py>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr: Bound<'py, PyUntypedArray> = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => {
            let a = np.call_method1("asarray", (obj,)).map_err(|e| {
                DTypeError::new_err(format!("{what}: cannot be read as an array ({e})"))
            })?;
            a.cast_into::<PyUntypedArray>()
                .map_err(|_| DTypeError::new_err(format!("{what}: cannot be read as an array")))?
        }
    };
    let dtype = arr.dtype();
    let kind: char = dtype.getattr("kind")?.extract()?;
    let name: String = dtype.str()?.extract()?;
    if kind != 'f' {
        return Err(DTypeError::new_err(format!(
            "{what}: dtype {name} is not a floating-point type (float32, or float16/float64 converted to float32)"
        )));
    }
    if !arr.is_c_contiguous() {
        return Err(LayoutError::new_err(format!(
            "{what}: array of shape {:?} is not C-contiguous; pass numpy.ascontiguousarray(x)",
            arr.shape()
        )));
    }
    let shape = arr.shape().to_vec();
    // A misaligned buffer (e.g. `numpy.frombuffer` at an odd offset) cannot be read as
    // `&[f32]`: it is copied by `astype`, which always returns an aligned array.
    let aligned: bool = arr.getattr("flags")?.getattr("aligned")?.extract()?;
    let as_f32 = || -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        arr.call_method1("astype", (np.getattr("float32")?,))?
            .cast_into::<PyArrayDyn<f32>>()
            .map_err(|_| DTypeError::new_err(format!("{what}: conversion to float32 failed")))
    };
    let typed = match (arr.cast::<PyArrayDyn<f32>>(), arr.cast::<PyArrayDyn<f64>>()) {
        (Ok(a), _) if aligned => a.clone(),
        (_, Ok(a)) if aligned => {
            // Round to nearest; beyond the f32 range a value becomes infinite (refused later).
            let ro = a.try_readonly().map_err(|e| {
                LayoutError::new_err(format!(
                    "{what}: the array is being written elsewhere ({e})"
                ))
            })?;
            let v: Vec<f32> = ro
                .as_slice()
                .unwrap_or(&[])
                .iter()
                .map(|&x| x as f32)
                .collect();
            to_numpy(py, v, &shape)?
        }
        _ => as_f32()?,
    };
    let array = typed.try_readonly().map_err(|e| {
        LayoutError::new_err(format!(
            "{what}: the array is being written elsewhere ({e})"
        ))
    })?;
    Ok(F32In { array, shape })
}

/// Frames `(N, D)` of `D == width`, or a batch `(B, N, D)`; returns `(batch, n)` where
/// `batch` is `None` for one sequence.
pub fn frames_shape(shape: &[usize], width: usize, what: &str) -> PyResult<(Option<usize>, usize)> {
    let (batch, n, d) = match *shape {
        [n, d] => (None, n, d),
        [b, n, d] => (Some(b), n, d),
        _ => {
            return Err(ShapeError::new_err(format!(
                "{what}: shape {shape:?}; expected (N, {width}) frames or a batch (B, N, {width})"
            )))
        }
    };
    if d != width {
        return Err(ShapeError::new_err(format!(
            "{what}: {d} features per frame (shape {shape:?}), the model takes {width}"
        )));
    }
    if n == 0 {
        return Err(ShapeError::new_err(format!(
            "{what}: no frames (shape {shape:?})"
        )));
    }
    if batch == Some(0) {
        return Err(ShapeError::new_err(format!(
            "{what}: empty batch (shape {shape:?})"
        )));
    }
    Ok((batch, n))
}

/// An owned float32 array of `shape` (its product must equal `data.len()`).
pub fn to_numpy<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let a = Array::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| ShapeError::new_err(format!("internal shape mismatch: {e}")))?;
    Ok(a.into_pyarray(py))
}
