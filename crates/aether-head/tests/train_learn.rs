//! End-to-end training behaviour: a small model learns a separable synthetic task,
//! results are identical for a seed whatever the thread count, early stopping restores
//! the best weights, and the callback can cancel.
#![cfg(feature = "train")]

use std::f32::consts::TAU;
use std::ops::ControlFlow;

use aether_head::train::{
    report_from_logits, train, Architecture, AttentionBackend, Augment, Model, Monitor,
    TrainConfig, TrainEvent, Window,
};
use aether_kernel::SparsePattern;

/// Two classes by frequency content: class 0 slow (0.02 cycles/frame), class 1 fast
/// (0.2 cycles/frame), random phase, amplitude and offset per feature, plus noise.
fn synthetic(count: usize, n: usize, f: usize, seed: u64) -> Vec<(Vec<f32>, usize)> {
    let mut s = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32
    };
    (0..count)
        .map(|i| {
            let label = i % 2;
            let freq = if label == 0 { 0.02 } else { 0.2 };
            let params: Vec<(f32, f32, f32)> = (0..f)
                .map(|_| (u() * TAU, 0.5 + u(), u() * 0.4 - 0.2))
                .collect();
            let mut x = Vec::with_capacity(n * f);
            for t in 0..n {
                for &(ph, amp, off) in &params {
                    let v = off + amp * (TAU * freq * t as f32 + ph).sin() + 0.2 * (u() - 0.5);
                    x.push(v * 10.0 + 3.0);
                }
            }
            (x, label)
        })
        .collect()
}

fn windows(d: &[(Vec<f32>, usize)]) -> Vec<Window<'_>> {
    d.iter()
        .map(|(x, y)| Window {
            frames: x,
            label: *y,
        })
        .collect()
}

fn small_arch(f: usize) -> Architecture {
    Architecture {
        d_model: 16,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 8,
        mlp_hidden: 16,
        ..Architecture::trainable(f, 2)
    }
}

#[test]
fn learns_separable_frequencies() {
    let data = synthetic(128, 48, 3, 1);
    let w = windows(&data);
    let cfg = TrainConfig {
        epochs: 6,
        batch_size: 8,
        learning_rate: 5e-3,
        seed: 3,
        ..TrainConfig::default()
    };
    let out = train(small_arch(3), &cfg, &w, &[], |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(out.history.len(), 6);
    let frames: Vec<&[f32]> = w.iter().map(|x| x.frames).collect();
    let labels: Vec<usize> = w.iter().map(|x| x.label).collect();
    let logits = out.model.logits_batch(&frames).unwrap();
    let rep = report_from_logits(&logits, &labels, 2).unwrap();
    assert!(rep.accuracy > 0.9, "training accuracy {}", rep.accuracy);
    assert!(out.history[5].train_loss < out.history[0].train_loss);
}

#[test]
fn bare_v1_learns_too() {
    let data = synthetic(64, 48, 4, 2);
    let w = windows(&data);
    let cfg = TrainConfig {
        epochs: 8,
        batch_size: 8,
        learning_rate: 1e-2,
        seed: 5,
        ..TrainConfig::default()
    };
    let arch = Architecture::bare(aether_head::Dims {
        input_dim: 4,
        d_model: 4,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 8,
        layers: 2,
        classes: 2,
        mlp_hidden: 0,
    });
    let out = train(arch, &cfg, &w, &[], |_| ControlFlow::Continue(())).unwrap();
    let first = out.history[0].train_loss;
    let last = out.history.last().unwrap().train_loss;
    assert!(last < first, "v1 loss {first} -> {last}");
}

#[test]
fn deterministic_for_a_seed_regardless_of_threads() {
    let data = synthetic(21, 20, 3, 7);
    let w = windows(&data);
    let run = |threads| {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 10,
            threads,
            seed: 9,
            augment: Augment {
                gain_std: 0.1,
                offset_std: 0.1,
                noise_std: 0.05,
                crop_min: 0.5,
                speed: 0.2,
                mask: 0.2,
            },
            ema: Some(0.9),
            label_smoothing: 0.1,
            mixup: 0.4,
            ..TrainConfig::default()
        };
        let arch = Architecture {
            attention: AttentionBackend::Dense,
            pattern: SparsePattern {
                causal: false,
                ..SparsePattern::default()
            },
            ..small_arch(3)
        };
        train(arch, &cfg, &w, &w[..5], |_| ControlFlow::Continue(()))
            .unwrap()
            .model
            .params()
            .to_vec()
    };
    let a = run(1);
    assert_eq!(a, run(2));
    assert_eq!(a, run(3));
    let other = {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 10,
            seed: 10,
            ..TrainConfig::default()
        };
        train(small_arch(3), &cfg, &w, &[], |_| ControlFlow::Continue(()))
            .unwrap()
            .model
            .params()
            .to_vec()
    };
    assert_ne!(a, other);
}

#[test]
fn early_stopping_restores_best_weights() {
    let data = synthetic(24, 16, 2, 11);
    let w = windows(&data);
    // Validation labels flipped: validation loss gets worse as training learns, so the
    // best epoch is early and patience stops the run.
    let flipped: Vec<(Vec<f32>, usize)> = data.iter().map(|(x, y)| (x.clone(), 1 - y)).collect();
    let v = windows(&flipped);
    let cfg = TrainConfig {
        epochs: 40,
        batch_size: 6,
        learning_rate: 1e-2,
        patience: Some(2),
        monitor: Monitor::ValLoss,
        seed: 1,
        ..TrainConfig::default()
    };
    let out = train(small_arch(2), &cfg, &w, &v, |_| ControlFlow::Continue(())).unwrap();
    assert!(out.stopped_early);
    assert_eq!(out.history.len(), out.best_epoch + 3);
    let best_loss = out.history[out.best_epoch].val_loss.unwrap();
    assert!(out.history.iter().all(|s| s.val_loss.unwrap() >= best_loss));
    let frames: Vec<&[f32]> = v.iter().map(|x| x.frames).collect();
    let labels: Vec<usize> = v.iter().map(|x| x.label).collect();
    let logits = out.model.logits_batch(&frames).unwrap();
    let restored = aether_head::train::mean_cross_entropy(&logits, &labels, 2).unwrap();
    assert!(
        (restored - best_loss).abs() < 1e-9,
        "{restored} vs {best_loss}"
    );
}

#[test]
fn callback_sees_batches_and_can_cancel() {
    let data = synthetic(20, 12, 2, 4);
    let w = windows(&data);
    let cfg = TrainConfig {
        epochs: 5,
        batch_size: 5,
        ..TrainConfig::default()
    };
    let (mut batches, mut epochs) = (0, 0);
    let out = train(small_arch(2), &cfg, &w, &[], |e| {
        match e {
            TrainEvent::Batch { batches: total, .. } => {
                assert_eq!(total, 4);
                batches += 1;
            }
            TrainEvent::Epoch(s) => {
                epochs += 1;
                assert!(s.windows_per_sec > 0.0 && s.learning_rate > 0.0);
                if s.epoch == 1 {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(out.cancelled);
    assert_eq!(
        (batches, epochs, out.history.len(), out.steps),
        (8, 2, 2, 8)
    );
}

#[test]
fn bad_input_is_refused() {
    let good = vec![0.0f32; 6];
    let arch = small_arch(3);
    let cfg = TrainConfig::default();
    let go = |w: &[Window]| train(arch.clone(), &cfg, w, &[], |_| ControlFlow::Continue(()));
    assert!(go(&[]).is_err());
    assert!(go(&[Window {
        frames: &good[..5],
        label: 0
    }])
    .is_err());
    assert!(go(&[Window {
        frames: &good,
        label: 2
    }])
    .is_err());
    let nan = vec![f32::NAN; 6];
    assert!(go(&[Window {
        frames: &nan,
        label: 0
    }])
    .is_err());
    let bad_cfg = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    assert!(train(
        arch.clone(),
        &bad_cfg,
        &[Window {
            frames: &good,
            label: 0
        }],
        &[],
        |_| ControlFlow::Continue(())
    )
    .is_err());
    assert!(Model::new(
        Architecture {
            kv_heads: 3,
            ..arch.clone()
        },
        0
    )
    .is_err());
    assert!(Model::new(
        Architecture {
            embed: false,
            ..arch
        },
        0
    )
    .is_err());
}

/// An EMA decay of 0 averages nothing: the result equals training without EMA, bit for
/// bit; a real decay gives other (averaged) weights that still learn.
#[test]
fn ema_zero_is_no_ema_and_averaging_still_learns() {
    let data = synthetic(64, 32, 3, 21);
    let w = windows(&data);
    let run = |ema| {
        let cfg = TrainConfig {
            epochs: 5,
            batch_size: 8,
            learning_rate: 5e-3,
            seed: 4,
            ema,
            ..TrainConfig::default()
        };
        train(small_arch(3), &cfg, &w, &w[..16], |_| {
            ControlFlow::Continue(())
        })
        .unwrap()
    };
    let plain = run(None);
    assert_eq!(plain.model.params(), run(Some(0.0)).model.params());
    let avg = run(Some(0.9));
    assert_ne!(plain.model.params(), avg.model.params());
    let frames: Vec<&[f32]> = w.iter().map(|x| x.frames).collect();
    let labels: Vec<usize> = w.iter().map(|x| x.label).collect();
    let rep = report_from_logits(&avg.model.logits_batch(&frames).unwrap(), &labels, 2).unwrap();
    assert!(rep.accuracy > 0.85, "EMA model accuracy {}", rep.accuracy);
}

/// Label smoothing, mixup and crops with time warp train to a working model too, and a
/// crop-trained model classifies crops of half the window.
#[test]
fn soft_targets_and_crops_learn() {
    let data = synthetic(96, 48, 3, 31);
    let w = windows(&data);
    let cfg = TrainConfig {
        epochs: 8,
        batch_size: 8,
        learning_rate: 5e-3,
        seed: 6,
        label_smoothing: 0.1,
        mixup: 0.3,
        augment: Augment {
            crop_min: 0.5,
            speed: 0.2,
            ..Augment::default()
        },
        ..TrainConfig::default()
    };
    let out = train(small_arch(3), &cfg, &w, &[], |_| ControlFlow::Continue(())).unwrap();
    let halves: Vec<&[f32]> = w.iter().map(|x| &x.frames[x.frames.len() / 2..]).collect();
    let labels: Vec<usize> = w.iter().map(|x| x.label).collect();
    let rep = report_from_logits(&out.model.logits_batch(&halves).unwrap(), &labels, 2).unwrap();
    assert!(
        rep.accuracy > 0.85,
        "accuracy on half windows {}",
        rep.accuracy
    );
}

#[test]
fn crop_lengths_are_bounded_multiples() {
    let a = Augment {
        crop_min: 0.5,
        ..Augment::default()
    };
    assert_eq!(a.crop_lengths(100), vec![56, 64, 72, 80, 88, 96, 100]);
    assert_eq!(a.crop_lengths(8), vec![8]);
    assert_eq!(Augment::default().crop_lengths(100), vec![100]);
    let bad = TrainConfig {
        augment: Augment {
            crop_min: 0.0,
            ..Augment::default()
        },
        ..TrainConfig::default()
    };
    assert!(bad.validate().is_err());
    for cfg in [
        TrainConfig {
            ema: Some(1.0),
            ..TrainConfig::default()
        },
        TrainConfig {
            label_smoothing: 1.0,
            ..TrainConfig::default()
        },
        TrainConfig {
            mixup: f32::NAN,
            ..TrainConfig::default()
        },
    ] {
        assert!(cfg.validate().is_err());
    }
}

/// Whether every weight matrix of `m` is on its int8 grid (projection changes nothing).
fn on_int8_grid(m: &Model) -> bool {
    let mut p = m.params().to_vec();
    aether_head::train::fake_quant_weights(m.layout(), &mut p);
    p == m.params()
}

#[test]
fn quantisation_aware_training_learns_and_ends_on_the_int8_grid() {
    let data = synthetic(128, 48, 3, 1);
    let w = windows(&data);
    let val = synthetic(32, 48, 3, 9);
    let v = windows(&val);
    let cfg = TrainConfig {
        epochs: 6,
        batch_size: 8,
        learning_rate: 5e-3,
        seed: 3,
        ..TrainConfig::default()
    };
    let plain = train(small_arch(3), &cfg, &w, &v, |_| ControlFlow::Continue(())).unwrap();
    assert!(
        !on_int8_grid(&plain.model),
        "float training is off the grid"
    );
    // Fine-tuning from the trained model, as `aether train --qat-epochs` does.
    let qcfg = TrainConfig {
        epochs: 3,
        learning_rate: 5e-4,
        fake_quant: true,
        ..cfg.clone()
    };
    let mut seen = Vec::new();
    let q = aether_head::train::train_model(plain.model.clone(), &qcfg, &w, &v, |e| {
        if let TrainEvent::Epoch(s) = e {
            seen.push(s.val_loss.unwrap());
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(on_int8_grid(&q.model), "the result is on the grid");
    // Validation judged the projected weights: the kept epoch's loss is the projected
    // model's loss on the validation windows.
    let frames: Vec<&[f32]> = v.iter().map(|x| x.frames).collect();
    let labels: Vec<usize> = v.iter().map(|x| x.label).collect();
    let logits = q.model.logits_batch(&frames).unwrap();
    let loss = aether_head::train::mean_cross_entropy(&logits, &labels, 2).unwrap();
    assert!(
        (loss - seen[q.best_epoch]).abs() < 1e-9,
        "{loss} vs {}",
        seen[q.best_epoch]
    );
    assert!(report_from_logits(&logits, &labels, 2).unwrap().accuracy > 0.9);
    // The straight-through steps moved the float weights, not only projected them.
    let mut projected = plain.model.params().to_vec();
    aether_head::train::fake_quant_weights(plain.model.layout(), &mut projected);
    assert_ne!(projected, q.model.params());
    // Same seed, same result.
    let again =
        aether_head::train::train_model(plain.model, &qcfg, &w, &v, |_| ControlFlow::Continue(()))
            .unwrap();
    assert_eq!(again.model.params(), q.model.params());
}
