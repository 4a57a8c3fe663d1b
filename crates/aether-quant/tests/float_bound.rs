//! The calibration float reference against aether-head, and the quantised head against
//! the float model within the bound docs/int8.md states.

mod common;

use aether_head::TemporalHead;
use aether_quant::quantize::{
    error_report, multiplier_value, quantize, quantize_multiplier, FloatRef, QuantizeOptions,
};
use aether_quant::QuantHead;
use aether_rvne::DType;
use common::*;

#[test]
fn float_reference_matches_aether_head() {
    for (name, meta) in variants() {
        let m = float_model(&meta, 21);
        let fr = FloatRef::new(&m).unwrap();
        let blob = m.to_v2_bytes(DType::F32).unwrap();
        let head = TemporalHead::from_blob(&blob).unwrap();
        for n in [1usize, 9, 40] {
            let x = frames(n, meta.dims.input_dim, n as u64);
            let a = fr.forward(&x, None);
            let b = head.forward(&x).unwrap();
            for (u, v) in a.iter().zip(&b) {
                assert!(
                    (u - v).abs() <= 1e-4 * v.abs().max(1.0),
                    "{name} n {n}: {a:?} vs {b:?}"
                );
            }
        }
    }
}

#[test]
fn multipliers_round_trip() {
    for real in [
        1e-12,
        3.3e-7,
        0.25,
        0.5,
        0.999_999_9,
        1.0,
        1.5,
        12345.678,
        -0.3,
        -7.0e-5,
    ] {
        let (m, s) = quantize_multiplier(real);
        let back = multiplier_value(m, s);
        assert!(
            (back - real).abs() <= real.abs() * 1e-9 + 2f64.powi(-62),
            "{real}: {m} {s} -> {back}"
        );
    }
    assert_eq!(quantize_multiplier(0.0), (0, 0));
    assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
}

/// docs/int8.md: on held-out frames the integer logits stay within 5 % (relative RMS
/// over all logits) of the float model's for every option, and the argmax agrees on at
/// least 90 % of the windows.
#[test]
fn quantised_logits_track_the_float_model() {
    for (name, meta) in variants() {
        let m = float_model(&meta, 31);
        let w = calib_windows(&meta, 31);
        let refs: Vec<&[f32]> = w.iter().map(|v| v.as_slice()).collect();
        let (q, _) = quantize(&m, &refs, &QuantizeOptions::default()).unwrap();
        let blob = q.to_v2_bytes().unwrap();
        let head = QuantHead::from_blob(&blob).unwrap();
        let fr = FloatRef::new(&m).unwrap();
        let test: Vec<Vec<f32>> = (0..20)
            .map(|i| frames(15 + i, meta.dims.input_dim, 500 + i as u64))
            .collect();
        let trefs: Vec<&[f32]> = test.iter().map(|v| v.as_slice()).collect();
        let rep = error_report(&fr, &head, &trefs).unwrap();
        let logit_err = rep.rows.last().unwrap().1;
        eprintln!("{name}: {:?} agreement {}", rep.rows, rep.agreement);
        assert!(logit_err < 0.05, "{name}: logits rel. error {logit_err}");
        assert!(rep.agreement >= 0.9, "{name}: agreement {}", rep.agreement);
    }
}
