//! Every SIMD path against the scalar one and against f64, with the same property
//! battery (lengths 0..300, so every odd tail), plus path forcing: each available
//! level is forced in turn through an explicit `Exec`, the attention kernels must
//! actually run on it (their per-call report says so) and agree with the scalar path.
//! No process-wide switch exists, so these tests run in parallel.
//!
//! Set `AETHER_EXPECT_SIMD=avx512` (or `avx2+fma`) in CI to fail when detection
//! does not find a level the machine is known to have.

use aether_kernel::simd::{
    self, axpy_at, dot_at, exp_sub_sum_at, fast_exp, scale_at, Exec, SimdLevel,
    FAST_EXP_MAX_REL_ERR,
};
use aether_kernel::{
    dense_attention_at, dense_attention_into_with, dense_scratch_len, sparse_attention_at,
    sparse_attention_into_with, sparse_scratch_len, SparsePattern, Tensor3,
};
use proptest::prelude::*;

mod common;
use common::{max_diff, tensor};

fn available() -> Vec<SimdLevel> {
    SimdLevel::ALL
        .into_iter()
        .filter(|l| l.is_available())
        .collect()
}

fn vecs() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (0usize..300).prop_flat_map(|n| {
        (
            prop::collection::vec(-4.0f32..4.0, n),
            prop::collection::vec(-4.0f32..4.0, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn dot_every_level((a, b) in vecs()) {
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        let mag: f64 = a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs()).sum();
        let scalar = dot_at(SimdLevel::Scalar, &a, &b);
        for l in available() {
            let got = dot_at(l, &a, &b);
            prop_assert!((f64::from(got) - exact).abs() <= 1e-6 * (mag + 1.0), "{l:?}: {got} vs {exact}");
            prop_assert!((got - scalar).abs() as f64 <= 2e-6 * (mag + 1.0));
        }
    }

    #[test]
    fn axpy_and_scale_every_level((x, y) in vecs(), alpha in -3.0f32..3.0) {
        for l in available() {
            let mut y1 = y.clone();
            axpy_at(l, alpha, &x, &mut y1);
            let mut y2 = y.clone();
            scale_at(l, alpha, &mut y2);
            for i in 0..y.len() {
                let want = f64::from(y[i]) + f64::from(alpha) * f64::from(x[i]);
                prop_assert!((f64::from(y1[i]) - want).abs() <= 1e-5, "{l:?} axpy at {i}");
                prop_assert_eq!(y2[i], y[i] * alpha, "{:?} scale at {}", l, i);
            }
        }
    }

    #[test]
    fn exp_sub_sum_every_level(x in prop::collection::vec(-95.0f32..60.0, 0..300), m in -5.0f32..5.0) {
        for l in available() {
            let mut e = x.clone();
            let sum = exp_sub_sum_at(l, &mut e, m);
            let mut want_sum = 0.0f64;
            for i in 0..x.len() {
                let arg = x[i] - m;
                let want = f64::from(arg).exp();
                let arg_ok = (-87.3..=88.0).contains(&arg);
                if arg_ok {
                    prop_assert!(((f64::from(e[i]) - want) / want).abs() <= f64::from(FAST_EXP_MAX_REL_ERR),
                        "{l:?} exp({arg}) = {} vs {want}", e[i]);
                } else if arg < -87.3 {
                    prop_assert_eq!(e[i], 0.0);
                }
                want_sum += f64::from(e[i]);
            }
            prop_assert!((f64::from(sum) - want_sum).abs() <= 1e-5 * want_sum.max(1.0));
        }
    }
}

#[test]
fn fast_exp_bound_holds_on_every_level() {
    // A dense sweep of [-87.3, 88] through the slice path of every level.
    let xs: Vec<f32> = (0..400_000)
        .map(|i| -87.3 + (175.3 * i as f64 / 399_999.0) as f32)
        .collect();
    for l in available() {
        let mut e = xs.clone();
        exp_sub_sum_at(l, &mut e, 0.0);
        let worst = xs
            .iter()
            .zip(&e)
            .map(|(&x, &y)| {
                let w = f64::from(x).exp();
                ((f64::from(y) - w) / w).abs()
            })
            .fold(0.0, f64::max);
        assert!(
            worst <= f64::from(FAST_EXP_MAX_REL_ERR),
            "{l:?}: worst rel err {worst}"
        );
        // The scalar entry point agrees with the slice path.
        for &x in xs.iter().step_by(997) {
            let w = f64::from(x).exp();
            assert!(((f64::from(fast_exp(x)) - w) / w).abs() <= f64::from(FAST_EXP_MAX_REL_ERR));
        }
    }
    let mut special = vec![f32::NEG_INFINITY, -1e30, -88.0, 1e30];
    for l in available() {
        exp_sub_sum_at(l, &mut special, 0.0);
        assert_eq!(&special[..3], &[0.0, 0.0, 0.0]);
        assert!(special[3].is_finite());
        special = vec![f32::NEG_INFINITY, -1e30, -88.0, 1e30];
    }
}

#[test]
fn every_available_path_runs_the_kernels_when_forced() {
    let p = SparsePattern {
        window: 5,
        block_size: 8,
        global_tokens: vec![0, 3],
        causal: true,
        log_stride: true,
        landmarks: true,
    };
    let mut checked = 0;
    for (n, hq, hk, d) in [(77, 4, 2, 32), (40, 3, 1, 19), (129, 2, 2, 70)] {
        let (q, k, v) = (
            tensor(n, hq, d, 1, 1.0),
            tensor(n, hk, d, 2, 1.0),
            tensor(n, hk, d, 3, 1.0),
        );
        let s_ref = sparse_attention_at(SimdLevel::Scalar, &p, &q, &k, &v).unwrap();
        let d_ref = dense_attention_at(SimdLevel::Scalar, &q, &k, &v, false).unwrap();
        for l in available() {
            let exec = Exec::at(l);
            let mut s = Tensor3::zeros(n, hq, d).unwrap();
            let mut dn = Tensor3::zeros(n, hq, d).unwrap();
            let mut scratch = vec![f32::NAN; sparse_scratch_len(&p, n, hk, d).unwrap()];
            let ran = sparse_attention_into_with(exec, &p, &q, &k, &v, &mut s, &mut scratch);
            assert_eq!(ran.unwrap().level, l, "sparse never ran at {l:?}");
            let mut scratch = vec![f32::NAN; dense_scratch_len(n, hk, d).unwrap()];
            let ran = dense_attention_into_with(exec, &q, &k, &v, false, &mut dn, &mut scratch);
            assert_eq!(ran.unwrap().level, l, "dense never ran at {l:?}");
            assert!(max_diff(&s, &s_ref) <= 2e-6, "{l:?} sparse");
            assert!(max_diff(&dn, &d_ref) <= 2e-6, "{l:?} dense");
            checked += 1;
        }
    }
    assert!(checked >= 3);
}

#[test]
fn unavailable_levels_fall_back_and_detection_is_used_by_default() {
    for l in SimdLevel::ALL {
        assert_eq!(l.effective() == l, l.is_available());
        assert!(l.effective().is_available());
    }
    assert_eq!(simd::active_level(), SimdLevel::detect());
    assert_eq!(Exec::default(), Exec::at(SimdLevel::detect()));
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        let want = if avx2 && std::is_x86_feature_detected!("avx512f") {
            SimdLevel::Avx512
        } else if avx2 {
            SimdLevel::Avx2Fma
        } else {
            SimdLevel::Scalar
        };
        assert_eq!(SimdLevel::detect(), want, "runtime detection missed a path");
    }
    if let Ok(expect) = std::env::var("AETHER_EXPECT_SIMD") {
        let want = SimdLevel::ALL
            .into_iter()
            .find(|l| l.name() == expect)
            .expect("AETHER_EXPECT_SIMD names a level");
        assert!(
            SimdLevel::detect() >= want,
            "expected {expect}, detected {:?}",
            SimdLevel::detect()
        );
    }
}
