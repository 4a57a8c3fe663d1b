//! Whole-model gradients against central finite differences, for every tensor kind,
//! every architecture option on and off, sparse and dense attention, and GQA.
#![cfg(feature = "train")]

use aether_head::train::{Architecture, AttentionBackend, Model, Pooling, Positional, Window};
use aether_kernel::SparsePattern;

fn frames(n: usize, f: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * f)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s % 2001) as f32 / 1000.0 - 1.0) * 1.5 + 0.3 * (i % f) as f32
        })
        .collect()
}

fn small_pattern(causal: bool) -> SparsePattern {
    SparsePattern {
        window: 2,
        block_size: 3,
        global_tokens: vec![0],
        causal,
        log_stride: true,
        landmarks: true,
    }
}

fn base() -> Architecture {
    Architecture {
        features: 3,
        d_model: 4,
        layers: 2,
        q_heads: 4,
        kv_heads: 2,
        head_dim: 3,
        classes: 3,
        mlp_hidden: 5,
        running_norm: true,
        input_norm: true,
        embed: true,
        positional: Positional::Sinusoidal,
        pre_norm: true,
        biases: true,
        final_norm: true,
        pooling: Pooling::Mean,
        attention: AttentionBackend::Sparse,
        pattern: small_pattern(true),
    }
}

/// Checks every parameter of `arch` (or a strided sample when large).
fn check(arch: Architecture, weights: Option<&[f32]>, label: &str) {
    let n = 10;
    let data: Vec<Vec<f32>> = (0..3)
        .map(|s| frames(n - s, arch.features, s as u64 + 1))
        .collect();
    let windows: Vec<Window> = data
        .iter()
        .enumerate()
        .map(|(i, f)| Window {
            frames: f,
            label: i % arch.classes,
        })
        .collect();
    let mut model = Model::new(arch, 11).unwrap();
    model.fit_input_norm(&windows).unwrap();
    // Bump every parameter off its initial value so zero biases and unit gains are tested
    // at generic points.
    for (i, p) in model.params_mut().iter_mut().enumerate() {
        *p += 0.05 * (((i * 7919) % 13) as f32 / 6.0 - 1.0);
    }
    let (_, grad) = model.loss_and_gradient(&windows, weights).unwrap();
    let specs = model.layout().specs().to_vec();
    let mut worst = 0.0f64;
    for spec in &specs {
        let r = spec.range();
        let step = (r.len() / 12).max(1);
        for idx in r.clone().step_by(step) {
            let orig = model.params()[idx];
            let h = 2e-3f32;
            model.params_mut()[idx] = orig + h;
            let (lp, _) = model.loss_and_gradient(&windows, weights).unwrap();
            model.params_mut()[idx] = orig - h;
            let (lm, _) = model.loss_and_gradient(&windows, weights).unwrap();
            model.params_mut()[idx] = orig;
            let fd = (f64::from(lp) - f64::from(lm)) / (2.0 * f64::from(h));
            let an = f64::from(grad[idx]);
            let err = (fd - an).abs() / (fd.abs().max(an.abs()) + 2e-2);
            worst = worst.max(err);
            assert!(
                err < 1e-2,
                "{label}: {} [{}]: analytic {an} vs numeric {fd}",
                spec.name,
                idx - r.start
            );
        }
    }
    assert!(worst.is_finite());
}

#[test]
fn full_model_sparse_gqa() {
    check(base(), None, "full");
}

#[test]
fn full_model_with_class_weights() {
    check(base(), Some(&[0.5, 2.0, 1.25]), "weighted");
}

#[test]
fn each_option_off() {
    let b = base();
    // The ablation rows (each option off, last pooling, dense, bare v1) plus shapes they
    // do not cover; "full" is `full_model_sparse_gqa`.
    let mut variants: Vec<(&str, Architecture)> = b
        .ablations()
        .into_iter()
        .filter(|(name, _)| *name != "full")
        .collect();
    variants.extend([
        (
            "mlp without pre_norm",
            Architecture {
                pre_norm: false,
                final_norm: false,
                ..b.clone()
            },
        ),
        (
            "mha",
            Architecture {
                kv_heads: 4,
                ..b.clone()
            },
        ),
        (
            "mqa, one layer",
            Architecture {
                kv_heads: 1,
                layers: 1,
                ..b.clone()
            },
        ),
        (
            "odd width",
            Architecture {
                d_model: 5,
                head_dim: 1,
                ..b.clone()
            },
        ),
    ]);
    for (name, arch) in variants {
        check(arch, None, name);
    }
}

#[test]
fn attention_variants() {
    let b = base();
    let dense = |causal| SparsePattern {
        causal,
        ..SparsePattern::default()
    };
    let kinds = [
        (
            "sparse non-causal",
            AttentionBackend::Sparse,
            small_pattern(false),
        ),
        (
            "sparse default",
            AttentionBackend::Sparse,
            SparsePattern::default(),
        ),
        (
            "sparse block 1, no log-stride",
            AttentionBackend::Sparse,
            SparsePattern {
                block_size: 1,
                log_stride: false,
                ..small_pattern(true)
            },
        ),
        ("dense causal", AttentionBackend::Dense, dense(true)),
        ("dense", AttentionBackend::Dense, dense(false)),
    ];
    for (name, attention, pattern) in kinds {
        check(
            Architecture {
                attention,
                pattern,
                ..b.clone()
            },
            None,
            name,
        );
    }
}

#[test]
fn bare_v1_architecture() {
    let arch = Architecture::bare(aether_head::Dims {
        input_dim: 3,
        d_model: 3,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 4,
        layers: 2,
        classes: 2,
        mlp_hidden: 0,
    });
    assert!(arch.is_v1_compatible());
    check(arch, None, "v1");
}
