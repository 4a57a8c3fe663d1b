//! The compact workspace (both layouts: absorbed layer inputs when `D < 2·Hkv·dh`,
//! stored keys/values otherwise) against the kernel-path `TemporalHead::forward`, over
//! random configurations of every docs/model.md option, and the compact rolling window.
#![allow(clippy::needless_range_loop)]

use aether_head::{
    AttentionBackend, HeadConfig, Pooling, Positional, RollingWindow, TemporalHead, Workspace,
};
use aether_kernel::SparsePattern;
use proptest::prelude::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0.wrapping_mul(2685821657736338717) >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// Random weights; `bias_scale` enlarges the biases (a large `bk` must cancel exactly).
fn random_head(cfg: HeadConfig, seed: u64, bias_scale: f32) -> TemporalHead<'static> {
    let mut r = Rng(seed | 1);
    let flat: Vec<f32> = cfg
        .tensor_shapes()
        .iter()
        .flat_map(|(name, n)| {
            let n = n.unwrap();
            if name.ends_with(".g") {
                (0..n).map(|_| 1.0 + r.next() * 0.4).collect::<Vec<_>>()
            } else if name == "input.std" {
                (0..n).map(|_| 0.5 + r.next().abs()).collect()
            } else if name.contains(".b") {
                r.vec(n, 0.8 * bias_scale)
            } else {
                r.vec(n, 0.8)
            }
        })
        .collect();
    TemporalHead::from_flat(cfg, &flat).unwrap().into_owned()
}

#[derive(Debug, Clone)]
struct Case {
    cfg: HeadConfig,
    seed: u64,
    n: usize,
    extra: usize,
    bias_scale: f32,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        (
            1usize..5,
            1usize..4,
            1usize..4,
            1usize..9,
            1usize..3,
            2usize..5,
            1usize..40,
        ),
        (
            0usize..2,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            0usize..12,
            1usize..8,
            proptest::option::of(0usize..6),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            1usize..70,
            0usize..5,
            prop_oneof![Just(1.0f32), Just(8.0f32)],
            any::<bool>(),
        ),
    )
        .prop_map(|(dims, opts, pat, rest)| {
            let (f, kvh, group, dh, layers, classes, dm) = dims;
            let (mlp, input_norm, embed, pos, pre_norm, biases, final_norm) = opts;
            let (window, bs, g, causal, log_stride, landmarks) = pat;
            let (last, dense, seed, n, extra, bias_scale, running_norm) = rest;
            let mut cfg = HeadConfig::bare(aether_head::Dims {
                input_dim: f,
                d_model: f,
                q_heads: kvh * group,
                kv_heads: kvh,
                head_dim: dh,
                layers,
                classes,
                mlp_hidden: 0,
            });
            cfg.mlp_hidden = mlp * 5;
            cfg.running_norm = running_norm;
            cfg.input_norm = input_norm;
            cfg.embed = embed;
            if embed {
                // Wide and narrow models: both compact layouts are drawn.
                cfg.d_model = dm;
            }
            cfg.positional = if pos {
                Positional::Sinusoidal
            } else {
                Positional::None
            };
            cfg.pre_norm = pre_norm;
            cfg.biases = biases;
            cfg.final_norm = final_norm;
            cfg.pooling = if last { Pooling::Last } else { Pooling::Mean };
            cfg.attention = if dense {
                AttentionBackend::Dense
            } else {
                AttentionBackend::Sparse
            };
            cfg.pattern = SparsePattern {
                window,
                block_size: bs,
                global_tokens: g.into_iter().collect(),
                causal,
                log_stride,
                landmarks,
            };
            Case {
                cfg,
                seed,
                n,
                extra,
                bias_scale,
            }
        })
}

/// Agreement to float rounding. The absorbed path reassociates the attention sums
/// (`(Wk·q)·h` instead of `q·(h·Wk)`), and a LayerNorm over a tiny width (D = 2 in the
/// random configs) amplifies that rounding, so the bound is the project's streaming
/// bound, 1e-4 relative (the committed regression case differs by 1.8e-5).
fn close(got: &[f32], want: &[f32]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn compact_equals_forward(case in arb_case()) {
        let head = random_head(case.cfg.clone(), case.seed, case.bias_scale);
        let c = &case.cfg;
        let frames = Rng(case.seed ^ 0x5eed).vec(case.n * c.features, 3.0);
        let want = head.forward(&frames).unwrap();
        // The workspace may be longer than the sequence (window ≥ N).
        let mut ws = Workspace::compact(&head, case.n + case.extra).unwrap();
        prop_assert!(ws.is_compact());
        prop_assert_eq!(ws.is_absorbed(), c.d_model < 2 * c.kv_width());
        prop_assert_eq!(ws.is_absorbed(), Workspace::compact_absorbs(c));
        prop_assert!(!Workspace::new(&head, case.n).unwrap().is_absorbed());
        // The size queries agree with what the constructors allocate.
        prop_assert_eq!(Workspace::compact_bytes(&head, case.n + case.extra).unwrap(), ws.bytes());
        prop_assert_eq!(
            Workspace::new_bytes(&head, case.n).unwrap(),
            Workspace::new(&head, case.n).unwrap().bytes()
        );
        let mut got = vec![0.0; c.classes];
        head.forward_into(&frames, &mut ws, &mut got).unwrap();
        prop_assert!(close(&got, &want), "{got:?} vs {want:?} (absorbed {})", ws.is_absorbed());
        // The compact-only entry point gives the same bits and refuses a kernel workspace.
        let mut gc = vec![0.0; c.classes];
        head.forward_compact_into(&frames, &mut ws, &mut gc).unwrap();
        prop_assert_eq!(&gc, &got);
        let mut wk = Workspace::new(&head, case.n).unwrap();
        prop_assert_eq!(
            head.forward_compact_into(&frames, &mut wk, &mut gc),
            Err(aether_head::HeadError::WorkspaceMismatch)
        );
        // N = 1 and a shorter sequence through the same workspace.
        let one = head.forward(&frames[..c.features]).unwrap();
        head.forward_into(&frames[..c.features], &mut ws, &mut got).unwrap();
        prop_assert!(close(&got, &one), "N = 1: {got:?} vs {one:?}");
        // The pooled embedding too.
        let mut e = vec![0.0; c.d_model];
        head.embed_into(&frames, &mut ws, &mut e).unwrap();
        prop_assert!(close(&e, &head.embed(&frames).unwrap()));
        // The bytes follow the layout: the absorbed one holds no keys or values.
        if ws.is_absorbed() {
            let len = case.n + case.extra;
            // x and the layer inputs h, plus h's block means when the pattern has landmarks.
            let blocks = if c.pattern.landmarks { len.div_ceil(c.pattern.block_size) } else { 0 };
            let plain = (len * 2 + blocks) * c.d_model * 4;
            prop_assert!(ws.bytes() >= plain);
            // No keys or values: beyond that only row buffers and the candidate scratch.
            prop_assert!(
                ws.bytes() < plain + 4096 + len * 12 * 4,
                "{} bytes, layout implies {plain} + row buffers and scratch",
                ws.bytes()
            );
        }
    }

    #[test]
    fn compact_rolling_window_equals_forward_on_last_frames(case in arb_case(), win in 1usize..24) {
        let head = random_head(case.cfg.clone(), case.seed, case.bias_scale);
        let f = case.cfg.features;
        let frames = Rng(case.seed ^ 0x99).vec(case.n * f, 2.0);
        let mut rc = RollingWindow::compact(&head, win).unwrap();
        let mut got = vec![0.0; case.cfg.classes];
        for i in 0..case.n {
            rc.push(&frames[i * f..(i + 1) * f]).unwrap();
            if i % 3 == 0 || i + 1 == case.n {
                rc.classify(&head, &mut got).unwrap();
                let lo = (i + 1).saturating_sub(win);
                let want = head.forward(&frames[lo * f..(i + 1) * f]).unwrap();
                prop_assert!(close(&got, &want), "frame {i}: {got:?} vs {want:?}");
            }
        }
    }
}

#[test]
fn default_head_at_window_256_is_absorbed_exact_and_small() {
    let cfg = HeadConfig::aether_default();
    for seed in [1u64, 2, 3] {
        let head = random_head(cfg.clone(), seed, 1.0);
        let mut ws = Workspace::compact(&head, 256).unwrap();
        assert!(ws.is_absorbed());
        // x and h: 2 · 256 · 16 floats = 32 KB, plus landmarks, the candidate list, rows.
        assert!(
            ws.bytes() >= 32 * 1024 && ws.bytes() < 40 * 1024,
            "{}",
            ws.bytes()
        );
        assert_eq!(head.compact_workspace_bytes(256).unwrap(), ws.bytes());
        for n in [1usize, 100, 256] {
            let frames = Rng(seed ^ n as u64).vec(n * 16, 3.0);
            let want = head.forward(&frames).unwrap();
            let mut got = [0.0f32; 4];
            head.forward_into(&frames, &mut ws, &mut got).unwrap();
            assert!(close(&got, &want), "n {n}: {got:?} vs {want:?}");
        }
        // The compact rolling window holds the ring and no linear copy.
        let rw = RollingWindow::compact(&head, 256).unwrap();
        assert_eq!(rw.bytes(), 256 * 16 * 4 + ws.bytes());
        assert!(rw.bytes() < 64 * 1024);
    }
}

#[test]
fn wide_model_keeps_keys_and_values() {
    // D = 40 ≥ 2·Hkv·dh = 32: storing k, v is smaller than the layer inputs.
    let mut cfg = HeadConfig::bare(aether_head::Dims {
        input_dim: 16,
        d_model: 16,
        q_heads: 4,
        kv_heads: 2,
        head_dim: 8,
        layers: 2,
        classes: 4,
        mlp_hidden: 0,
    });
    cfg.embed = true;
    cfg.d_model = 40;
    let head = random_head(cfg, 7, 1.0);
    let mut ws = Workspace::compact(&head, 64).unwrap();
    assert!(ws.is_compact() && !ws.is_absorbed());
    let frames = Rng(11).vec(64 * 16, 3.0);
    let want = head.forward(&frames).unwrap();
    let mut got = [0.0f32; 4];
    head.forward_into(&frames, &mut ws, &mut got).unwrap();
    assert!(close(&got, &want), "{got:?} vs {want:?}");
}
