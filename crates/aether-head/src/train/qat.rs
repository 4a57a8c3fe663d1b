//! Quantisation-aware fine-tuning: the int8 weight grid of `aether-quant` simulated in
//! the float forward ("fake quantisation"), its gradient passed straight through.
//!
//! The grid is the integer head's (docs/int8.md, "The quantiser"): per output column
//! `o` of a weight matrix, scale `s_o = max_i |W[i, o]| / 127` and values
//! `round(W / s_o) · s_o`. A matrix already on its grid is a fixed point of the
//! projection, and `aether quantize` maps it to the same integers, so a fine-tuned
//! model's float weights are exactly the int8 model's weights (up to the scale
//! folding of the attention output, docs/int8.md).

use super::params::{Layout, ParamKind};

/// Projects every weight matrix of `params` (laid out by `layout`) onto its int8 grid
/// in place; biases and gains are untouched.
pub fn fake_quant_weights(layout: &Layout, params: &mut [f32]) {
    for s in layout.specs() {
        if s.kind != ParamKind::Weight || s.shape.len() != 2 {
            continue;
        }
        let cols = s.shape[1].max(1);
        project_columns(&mut params[s.range()], cols);
    }
}

/// Projects each column of the row-major `w` (`cols` wide) onto its symmetric int8 grid.
fn project_columns(w: &mut [f32], cols: usize) {
    let rows = w.len() / cols;
    for o in 0..cols {
        let m = (0..rows)
            .map(|i| f64::from(w[i * cols + o]).abs())
            .fold(0.0f64, f64::max);
        if !(m > 0.0 && m.is_finite()) {
            continue;
        }
        let scale = m / 127.0;
        for i in 0..rows {
            let x = &mut w[i * cols + o];
            let q = (f64::from(*x) / scale).round().clamp(-127.0, 127.0);
            *x = (q * scale) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_steps(w: &[f32], cols: usize, o: usize) -> Vec<f64> {
        let rows = w.len() / cols;
        let m = (0..rows)
            .map(|i| f64::from(w[i * cols + o]).abs())
            .fold(0.0, f64::max);
        (0..rows)
            .map(|i| f64::from(w[i * cols + o]) / (m / 127.0))
            .collect()
    }

    #[test]
    fn columns_land_on_integer_steps_and_projection_is_idempotent() {
        let (rows, cols) = (7, 5);
        let mut w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013 + (i as f32) * 1e-4)
            .collect();
        // One all-zero column stays zero.
        for i in 0..rows {
            w[i * cols + 2] = 0.0;
        }
        let orig = w.clone();
        project_columns(&mut w, cols);
        for o in 0..cols {
            for (i, k) in grid_steps(&w, cols, o).into_iter().enumerate() {
                if o == 2 {
                    assert_eq!(w[i * cols + o], 0.0);
                    continue;
                }
                assert!((k - k.round()).abs() < 1e-4, "column {o} row {i}: {k}");
                assert!(k.abs() <= 127.0 + 1e-4);
            }
        }
        // Each value moved by at most half a step of its column.
        for o in [0, 1, 3, 4] {
            let m = (0..rows)
                .map(|i| orig[i * cols + o].abs())
                .fold(0.0, f32::max);
            for i in 0..rows {
                let d = (w[i * cols + o] - orig[i * cols + o]).abs();
                assert!(d <= m / 127.0 * 0.5 * (1.0 + 1e-5), "{d}");
            }
        }
        let once = w.clone();
        project_columns(&mut w, cols);
        assert_eq!(once, w, "projecting twice changes nothing");
    }
}
