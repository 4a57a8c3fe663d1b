//! Trained parameters → `.rvne` bytes → `TemporalHead::from_blob` gives the training
//! forward's logits, for every architecture option; v1 export of the bare architecture;
//! refusal of v1 for options v1 cannot express; import round trip.
#![cfg(feature = "train")]

use aether_head::train::{Architecture, AttentionBackend, ExportInfo, Model, Pooling, Positional};
use aether_head::TemporalHead;
use aether_kernel::SparsePattern;
use aether_rvne::{BlobView, DType, ModelFile};

fn frames(n: usize, f: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * f)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s % 2001) as f32 / 1000.0 - 1.0) * 2.0 + (i % f) as f32
        })
        .collect()
}

/// A model with non-trivial weights everywhere (biases and gains off their init).
fn model(arch: Architecture, seed: u64) -> Model {
    let f = arch.features;
    let mut m = Model::new(arch, seed).unwrap();
    for (i, p) in m.params_mut().iter_mut().enumerate() {
        *p += 0.05 * (((i * 7919) % 13) as f32 / 6.0 - 1.0);
    }
    let data = frames(40, f, seed + 100);
    let w = [aether_head::train::Window {
        frames: &data,
        label: 0,
    }];
    m.fit_input_norm(&w).unwrap();
    m
}

fn assert_same_logits(m: &Model, bytes: &[u8], label: &str) {
    let head = TemporalHead::from_blob(bytes).unwrap();
    for (n, seed) in [(1usize, 1u64), (7, 2), (64, 3), (150, 4)] {
        let x = frames(n, m.arch().features, seed);
        let want = m.logits(&x).unwrap();
        let got = head.forward(&x).unwrap();
        assert_eq!(want.len(), got.len());
        for (a, b) in want.iter().zip(&got) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                "{label} n {n}: training {a} vs head {b}"
            );
        }
    }
}

fn full(f: usize) -> Architecture {
    Architecture {
        d_model: 12,
        q_heads: 4,
        kv_heads: 2,
        head_dim: 6,
        mlp_hidden: 10,
        ..Architecture::trainable(f, 3)
    }
}

#[test]
fn v2_export_matches_head_for_every_option() {
    let b = full(5);
    let small = SparsePattern {
        window: 4,
        block_size: 5,
        global_tokens: vec![0, 3],
        causal: false,
        log_stride: true,
        landmarks: true,
    };
    // The ablation rows (all on, each option off, last pooling, dense causal, a bare v1
    // shape) plus a custom bidirectional pattern, dense non-causal and another v1 shape.
    let mut variants = b.ablations();
    variants.extend([
        (
            "custom sparse",
            Architecture {
                attention: AttentionBackend::Sparse,
                pattern: small,
                ..b.clone()
            },
        ),
        (
            "dense",
            Architecture {
                attention: AttentionBackend::Dense,
                pattern: SparsePattern {
                    causal: false,
                    ..SparsePattern::default()
                },
                ..b.clone()
            },
        ),
        (
            "bare v1 as v2",
            Architecture::bare(aether_head::Dims {
                input_dim: 5,
                d_model: 5,
                q_heads: 4,
                kv_heads: 1,
                head_dim: 8,
                layers: 2,
                classes: 3,
                mlp_hidden: 0,
            }),
        ),
        (
            "running norm",
            Architecture {
                running_norm: true,
                ..b.clone()
            },
        ),
        (
            "running norm, bare",
            Architecture {
                running_norm: true,
                ..Architecture::bare(aether_head::Dims {
                    input_dim: 5,
                    d_model: 5,
                    q_heads: 4,
                    kv_heads: 1,
                    head_dim: 8,
                    layers: 2,
                    classes: 3,
                    mlp_hidden: 0,
                })
            },
        ),
    ]);
    let info = ExportInfo {
        class_names: vec!["a".into(), "b".into(), "c".into()],
        feature_names: (0..5).map(|i| format!("f{i}")).collect(),
        metadata: vec![("train.seed".into(), "7".into())],
    };
    for (i, (label, arch)) in variants.into_iter().enumerate() {
        let m = model(arch, i as u64);
        let bytes = m.to_v2_bytes(&info, DType::F32).unwrap();
        assert_same_logits(&m, &bytes, label);
        let view = BlobView::parse(&bytes).unwrap();
        assert_eq!(view.version(), 2);
        assert_eq!(view.class_name(1), Some("b"));
        assert_eq!(view.feature_name(4), Some("f4"));
        // Import gives back the exact parameters and statistics.
        let back = Model::from_model_file(&ModelFile::from_bytes(&bytes).unwrap()).unwrap();
        assert_eq!(back.arch(), m.arch(), "{label}");
        assert_eq!(back.params(), m.params(), "{label}");
        if m.arch().input_norm {
            assert_eq!(back.input_mean(), m.input_mean());
            assert_eq!(back.input_std(), m.input_std());
        }
    }
}

#[test]
fn v1_export_of_the_bare_architecture() {
    let m = model(
        Architecture::bare(aether_head::Dims {
            input_dim: 16,
            d_model: 16,
            q_heads: 4,
            kv_heads: 1,
            head_dim: 32,
            layers: 2,
            classes: 4,
            mlp_hidden: 0,
        }),
        9,
    );
    let bytes = m.to_v1_bytes(DType::F32).unwrap();
    assert_eq!(BlobView::parse(&bytes).unwrap().version(), 1);
    assert_eq!(bytes.len(), 28 + 4 * m.params().len());
    assert_same_logits(&m, &bytes, "v1");
}

#[test]
fn v1_export_refuses_what_v1_cannot_express() {
    let b = Architecture::bare(aether_head::Dims {
        input_dim: 4,
        d_model: 4,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 4,
        layers: 1,
        classes: 2,
        mlp_hidden: 0,
    });
    let refused = [
        Architecture {
            biases: true,
            ..b.clone()
        },
        Architecture {
            mlp_hidden: 3,
            ..b.clone()
        },
        Architecture {
            pooling: Pooling::Last,
            ..b.clone()
        },
        Architecture {
            running_norm: true,
            ..b.clone()
        },
        Architecture {
            attention: AttentionBackend::Dense,
            pattern: SparsePattern {
                causal: true,
                ..SparsePattern::default()
            },
            ..b.clone()
        },
        Architecture {
            attention: AttentionBackend::Sparse,
            pattern: SparsePattern {
                window: 8,
                ..SparsePattern::default()
            },
            ..b.clone()
        },
        full(4),
    ];
    for arch in refused {
        let m = Model::new(arch.clone(), 0).unwrap();
        assert!(m.to_v1_bytes(DType::F32).is_err(), "{arch:?}");
        assert!(m.to_v2_bytes(&ExportInfo::default(), DType::F32).is_ok());
    }
    let bad_names = ExportInfo {
        class_names: vec!["x".into()],
        ..ExportInfo::default()
    };
    assert!(Model::new(b, 0)
        .unwrap()
        .to_v2_bytes(&bad_names, DType::F32)
        .is_err());
}

#[test]
fn f16_export_stays_close() {
    let m = model(full(3), 4);
    let bytes = m.to_v2_bytes(&ExportInfo::default(), DType::F16).unwrap();
    let head = TemporalHead::from_blob(&bytes).unwrap();
    let x = frames(32, 3, 5);
    let want = m.logits(&x).unwrap();
    for (a, b) in want.iter().zip(head.forward(&x).unwrap()) {
        assert!((a - b).abs() < 2e-2 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

mod random_architectures {
    use super::*;
    use proptest::prelude::*;

    fn arch_strategy() -> impl Strategy<Value = Architecture> {
        (
            (1usize..7, 1usize..4, 1usize..3, 1usize..4, 1usize..3),
            (
                0usize..12,
                2usize..5,
                proptest::collection::vec(any::<bool>(), 9),
            ),
            (
                1usize..9,
                1usize..9,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |((f, hkv, group, dh, layers), (mlp, classes, o), (w, bs, causal, ls, lm))| {
                    let embed = o[0];
                    let d = if embed { 2 + (f * 3) % 7 } else { f };
                    Architecture {
                        features: f,
                        d_model: d,
                        layers,
                        q_heads: hkv * group,
                        kv_heads: hkv,
                        head_dim: dh,
                        classes,
                        mlp_hidden: mlp,
                        running_norm: o[1],
                        input_norm: o[2],
                        embed,
                        positional: if o[3] {
                            Positional::Sinusoidal
                        } else {
                            Positional::None
                        },
                        pre_norm: o[4],
                        biases: o[5],
                        final_norm: o[6],
                        pooling: if o[7] { Pooling::Last } else { Pooling::Mean },
                        attention: if o[8] {
                            AttentionBackend::Dense
                        } else {
                            AttentionBackend::Sparse
                        },
                        pattern: if o[8] {
                            SparsePattern {
                                causal,
                                ..SparsePattern::default()
                            }
                        } else {
                            SparsePattern {
                                window: w,
                                block_size: bs,
                                global_tokens: vec![0],
                                causal,
                                log_stride: ls,
                                landmarks: lm,
                            }
                        },
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The training forward that picks the best weights is the forward that is
        /// deployed: the exported blob gives the same logits to 1e-6 (relative), for random
        /// shapes and every option on or off.
        #[test]
        fn training_forward_equals_deployed_forward(arch in arch_strategy(), seed in 0u64..1000, n in 1usize..90) {
            let m = model(arch, seed);
            let bytes = m.to_v2_bytes(&ExportInfo::default(), DType::F32).unwrap();
            let head = TemporalHead::from_blob(&bytes).unwrap();
            let x = frames(n, m.arch().features, seed + 7);
            let want = m.logits(&x).unwrap();
            let got = head.forward(&x).unwrap();
            for (a, b) in want.iter().zip(&got) {
                prop_assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "training {} vs head {}", a, b);
            }
        }
    }
}
