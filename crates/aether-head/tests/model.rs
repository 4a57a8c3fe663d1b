//! The head against a naive oracle (kernel reference attention + plain loops),
//! streaming exactness, rolling windows and input validation.
#![allow(clippy::needless_range_loop)]

use aether_head::{
    AttentionBackend, EvictionPolicy, HeadConfig, HeadError, Pooling, Positional, RollingWindow,
    Stream, StreamF16, TemporalHead, Workspace, RUNNING_NORM_FLOOR,
};
use aether_kernel::reference::{naive_dense_attention, naive_sparse_attention};
use aether_kernel::{SparsePattern, Tensor3};
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

fn random_head(cfg: HeadConfig, seed: u64) -> TemporalHead<'static> {
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
            } else {
                r.vec(n, 0.8)
            }
        })
        .collect();
    TemporalHead::from_flat(cfg, &flat).unwrap().into_owned()
}

fn ln(x: &[f64], g: &[f32], b: &[f32]) -> Vec<f64> {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n;
    x.iter()
        .zip(g.iter().zip(b))
        .map(|(a, (g, b))| (a - m) / (v + 1e-5).sqrt() * *g as f64 + *b as f64)
        .collect()
}

fn mm(x: &[f64], w: &[f32], b: Option<&[f32]>, out_w: usize) -> Vec<f64> {
    (0..out_w)
        .map(|o| {
            x.iter()
                .enumerate()
                .map(|(i, xi)| xi * w[i * out_w + o] as f64)
                .sum::<f64>()
                + b.map_or(0.0, |b| b[o] as f64)
        })
        .collect()
}

/// docs/model.md written out naively in f64 around the kernel's reference attention.
fn oracle(head: &TemporalHead<'_>, frames: &[f32]) -> Vec<f64> {
    let c = head.config();
    let w = head.weights();
    let (f, d) = (c.features, c.d_model);
    let n = frames.len() / f;
    let mut x: Vec<Vec<f64>> = (0..n)
        .map(|t| {
            let mut u: Vec<f64> = frames[t * f..(t + 1) * f]
                .iter()
                .map(|&v| v as f64)
                .collect();
            if c.running_norm {
                // two-pass mean and population std over frames 0..=t
                for (i, ui) in u.iter_mut().enumerate() {
                    let xs: Vec<f64> = (0..=t).map(|s| frames[s * f + i] as f64).collect();
                    let m = xs.iter().sum::<f64>() / xs.len() as f64;
                    let var = xs.iter().map(|v| (v - m).powi(2)).sum::<f64>() / xs.len() as f64;
                    *ui = (*ui - m) / var.sqrt().max(RUNNING_NORM_FLOOR);
                }
            }
            if let (Some(m), Some(s)) = (&w.input_mean, &w.input_std) {
                for i in 0..f {
                    u[i] = (u[i] - m[i] as f64) / s[i] as f64;
                }
            }
            let mut row = match &w.embed_w {
                Some(ew) => mm(&u, ew, w.embed_b.as_deref(), d),
                None => u,
            };
            if c.positional == Positional::Sinusoidal {
                for (i, r) in row.iter_mut().enumerate() {
                    let a = t as f64 / 10000f64.powf((i & !1) as f64 / d as f64);
                    *r += if i % 2 == 0 { a.sin() } else { a.cos() };
                }
            }
            row
        })
        .collect();
    for lw in &w.layers {
        let h: Vec<Vec<f64>> = x
            .iter()
            .map(|r| match &lw.ln1 {
                Some(nm) => ln(r, &nm.g, &nm.b),
                None => r.clone(),
            })
            .collect();
        let proj = |wm: &[f32], b: Option<&[f32]>, width: usize| -> Vec<f32> {
            h.iter()
                .flat_map(|r| mm(r, wm, b, width))
                .map(|v| v as f32)
                .collect()
        };
        let q = Tensor3::from_vec(
            proj(&lw.wq, lw.bq.as_deref(), c.q_width()),
            n,
            c.q_heads,
            c.head_dim,
        )
        .unwrap();
        let k = Tensor3::from_vec(
            proj(&lw.wk, lw.bk.as_deref(), c.kv_width()),
            n,
            c.kv_heads,
            c.head_dim,
        )
        .unwrap();
        let v = Tensor3::from_vec(
            proj(&lw.wv, lw.bv.as_deref(), c.kv_width()),
            n,
            c.kv_heads,
            c.head_dim,
        )
        .unwrap();
        let a = match c.attention {
            AttentionBackend::Sparse => naive_sparse_attention(&c.pattern, &q, &k, &v).unwrap(),
            AttentionBackend::Dense => naive_dense_attention(&q, &k, &v, c.pattern.causal).unwrap(),
        };
        for t in 0..n {
            let at: Vec<f64> = a.row(t).unwrap().iter().map(|&v| v as f64).collect();
            let o = mm(&at, &lw.wo, lw.bo.as_deref(), d);
            for i in 0..d {
                x[t][i] += o[i];
            }
            if let Some(m) = &lw.mlp {
                let h2 = match &lw.ln2 {
                    Some(nm) => ln(&x[t], &nm.g, &nm.b),
                    None => x[t].clone(),
                };
                let hid: Vec<f64> = mm(&h2, &m.w1, Some(&m.b1), c.mlp_hidden)
                    .into_iter()
                    .map(|z| {
                        0.5 * z
                            * (1.0
                                + ((2.0 / std::f64::consts::PI).sqrt()
                                    * (z + 0.044715 * z * z * z))
                                    .tanh())
                    })
                    .collect();
                let o = mm(&hid, &m.w2, Some(&m.b2), d);
                for i in 0..d {
                    x[t][i] += o[i];
                }
            }
        }
    }
    if let Some(nm) = &w.final_ln {
        for r in x.iter_mut() {
            *r = ln(r, &nm.g, &nm.b);
        }
    }
    let pooled: Vec<f64> = match c.pooling {
        Pooling::Mean => (0..d)
            .map(|i| x.iter().map(|r| r[i]).sum::<f64>() / n as f64)
            .collect(),
        Pooling::Last => x[n - 1].clone(),
    };
    mm(
        &pooled,
        &w.classifier_w,
        w.classifier_b.as_deref(),
        c.classes,
    )
}

#[derive(Debug, Clone)]
struct Case {
    cfg: HeadConfig,
    seed: u64,
    n: usize,
}

fn arb_case(causal_only: bool) -> impl Strategy<Value = Case> {
    (
        (
            1usize..5,
            1usize..4,
            1usize..4,
            1usize..6,
            1usize..3,
            2usize..5,
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
            any::<bool>(),
        ),
    )
        .prop_map(move |(dims, opts, pat, rest)| {
            let (f, kvh, group, dh, layers, classes) = dims;
            let (mlp, input_norm, embed, pos, pre_norm, biases, final_norm) = opts;
            let (window, bs, g, causal, log_stride, landmarks) = pat;
            let (last, dense, seed, n, running_norm) = rest;
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
                cfg.d_model = 3 + (seed % 5) as usize;
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
                causal: causal || causal_only,
                log_stride,
                landmarks,
            };
            Case { cfg, seed, n }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn forward_matches_naive_oracle(case in arb_case(false)) {
        let head = random_head(case.cfg.clone(), case.seed);
        let frames = Rng(case.seed ^ 0xabcdef).vec(case.n * case.cfg.features, 3.0);
        let got = head.forward(&frames).unwrap();
        let want = oracle(&head, &frames);
        for (a, b) in got.iter().zip(&want) {
            prop_assert!((*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()), "{got:?} vs {want:?}");
        }
        // The compact (row-wise) workspace agrees with the kernel path.
        let mut ws = Workspace::compact(&head, case.n).unwrap();
        let mut lc = vec![0.0; case.cfg.classes];
        head.forward_into(&frames, &mut ws, &mut lc).unwrap();
        for (a, b) in got.iter().zip(&lc) {
            prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{got:?} vs compact {lc:?}");
        }
        // batch and embed agree with forward
        let batch = head.forward_batch(&[&frames, &frames[..case.cfg.features]]).unwrap();
        prop_assert_eq!(&batch[0], &got);
        prop_assert_eq!(&batch[1], &head.forward(&frames[..case.cfg.features]).unwrap());
        let e = head.embed(&frames).unwrap();
        let mut l2 = vec![0.0; case.cfg.classes];
        head.classify_pooled(&e, &mut l2);
        prop_assert_eq!(l2, got);
    }

    #[test]
    fn stream_equals_forward_on_every_prefix(case in arb_case(true)) {
        let head = random_head(case.cfg.clone(), case.seed);
        let f = case.cfg.features;
        let frames = Rng(case.seed ^ 0x1234).vec(case.n * f, 3.0);
        let mut s = Stream::new(&head, case.n, EvictionPolicy::Error).unwrap();
        let mut ws = Workspace::new(&head, case.n).unwrap();
        let mut want = vec![0.0; case.cfg.classes];
        for i in 0..case.n {
            let got = s.push(&head, &frames[i * f..(i + 1) * f]).unwrap().to_vec();
            head.forward_into(&frames[..(i + 1) * f], &mut ws, &mut want).unwrap();
            for (a, b) in got.iter().zip(&want) {
                prop_assert!((a - b).abs() <= 1e-4, "frame {i}: {got:?} vs {want:?}");
            }
        }
        prop_assert!(s.is_exact());
        // Full: refused, state unchanged.
        let before = s.logits().to_vec();
        prop_assert_eq!(s.push(&head, &frames[..f]), Err(HeadError::CapacityExceeded { capacity: case.n }));
        prop_assert_eq!(s.logits(), &before[..]);
        // Reset replays identically.
        s.reset();
        let first = s.push(&head, &frames[..f]).unwrap().to_vec();
        prop_assert_eq!(first, head.forward(&frames[..f]).unwrap());
    }

    #[test]
    fn rolling_window_equals_forward_on_last_frames(case in arb_case(false), win in 1usize..20) {
        let head = random_head(case.cfg.clone(), case.seed);
        let f = case.cfg.features;
        let frames = Rng(case.seed ^ 0x77).vec(case.n * f, 2.0);
        let mut rw = RollingWindow::new(&head, win).unwrap();
        let mut rc = RollingWindow::compact(&head, win).unwrap();
        let mut got = vec![0.0; case.cfg.classes];
        let mut gotc = vec![0.0; case.cfg.classes];
        let mut ws = Workspace::compact(&head, win).unwrap();
        let mut wantc = vec![0.0; case.cfg.classes];
        for i in 0..case.n {
            rw.push(&frames[i * f..(i + 1) * f]).unwrap();
            rc.push(&frames[i * f..(i + 1) * f]).unwrap();
            rw.classify(&head, &mut got).unwrap();
            rc.classify(&head, &mut gotc).unwrap();
            let lo = (i + 1).saturating_sub(win);
            let want = head.forward(&frames[lo * f..(i + 1) * f]).unwrap();
            prop_assert_eq!(&got, &want);
            head.forward_into(&frames[lo * f..(i + 1) * f], &mut ws, &mut wantc).unwrap();
            prop_assert_eq!(&gotc, &wantc);
        }
    }
}

#[test]
fn dense_override_is_dense_attention_and_saturated_sparse_agrees() {
    let mut cfg = HeadConfig::bare(aether_head::Dims {
        input_dim: 4,
        d_model: 4,
        q_heads: 4,
        kv_heads: 2,
        head_dim: 8,
        layers: 2,
        classes: 3,
        mlp_hidden: 0,
    });
    cfg.pattern.landmarks = false;
    cfg.pattern.window = 64;
    let head = random_head(cfg, 5);
    let frames = Rng(9).vec(40 * 4, 2.0);
    let sparse = head.forward(&frames).unwrap();
    let dense_head = head.clone().with_backend(AttentionBackend::Dense);
    let dense = dense_head.forward(&frames).unwrap();
    let want = oracle(&dense_head, &frames);
    for ((s, d), w) in sparse.iter().zip(&dense).zip(&want) {
        assert!((s - d).abs() < 1e-5 && (*d as f64 - w).abs() < 1e-4);
    }
    // With the default (narrow) pattern the two differ.
    let mut cfg = HeadConfig::bare(aether_head::Dims {
        input_dim: 4,
        d_model: 4,
        q_heads: 4,
        kv_heads: 2,
        head_dim: 8,
        layers: 2,
        classes: 3,
        mlp_hidden: 0,
    });
    cfg.pattern.window = 2;
    let head = random_head(cfg, 5);
    let frames = Rng(9).vec(200 * 4, 2.0);
    let s = head.forward(&frames).unwrap();
    let d = head
        .clone()
        .with_backend(AttentionBackend::Dense)
        .forward(&frames)
        .unwrap();
    assert!(s.iter().zip(&d).any(|(a, b)| (a - b).abs() > 1e-4));
}

#[test]
fn invalid_input_is_refused_and_state_is_unchanged() {
    let head = random_head(
        HeadConfig::bare(aether_head::Dims {
            input_dim: 3,
            d_model: 3,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
            layers: 2,
            classes: 2,
            mlp_hidden: 0,
        }),
        11,
    );
    let mut s = Stream::new(&head, 8, EvictionPolicy::Error).unwrap();
    let mut fresh = Stream::new(&head, 8, EvictionPolicy::Error).unwrap();
    s.push(&head, &[0.1, 0.2, 0.3]).unwrap();
    fresh.push(&head, &[0.1, 0.2, 0.3]).unwrap();
    assert_eq!(
        s.push(&head, &[0.1, 0.2]),
        Err(HeadError::FrameWidth {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        s.push(&head, &[0.1, f32::NAN, 0.3]),
        Err(HeadError::NonFiniteInput {
            frame: 0,
            feature: 1
        })
    );
    assert_eq!(
        s.push(&head, &[0.1, 0.0, f32::NEG_INFINITY]),
        Err(HeadError::NonFiniteInput {
            frame: 0,
            feature: 2
        })
    );
    assert_eq!(s.len(), 1);
    let a = s.push(&head, &[1.0, -1.0, 0.5]).unwrap().to_vec();
    let b = fresh.push(&head, &[1.0, -1.0, 0.5]).unwrap().to_vec();
    assert_eq!(a, b);

    assert_eq!(
        head.forward(&[1.0, 2.0]),
        Err(HeadError::FrameWidth {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(head.forward(&[]), Err(HeadError::EmptySequence));
    assert_eq!(
        head.forward(&[0.0, 0.0, 0.0, 1.0, f32::INFINITY, 0.0]),
        Err(HeadError::NonFiniteInput {
            frame: 1,
            feature: 1
        })
    );
    let mut ws = Workspace::new(&head, 2).unwrap();
    let mut l = [0.0; 2];
    assert_eq!(
        head.forward_into(&[0.0; 9], &mut ws, &mut l),
        Err(HeadError::TooLong { max: 2, got: 3 })
    );
    assert!(matches!(
        head.forward_into(&[0.0; 3], &mut ws, &mut [0.0; 3]),
        Err(HeadError::OutputLen { .. })
    ));
    let other = random_head(
        HeadConfig::bare(aether_head::Dims {
            input_dim: 3,
            d_model: 3,
            q_heads: 2,
            kv_heads: 2,
            head_dim: 4,
            layers: 2,
            classes: 2,
            mlp_hidden: 0,
        }),
        1,
    );
    assert_eq!(
        other.forward_into(&[0.0; 3], &mut ws, &mut l),
        Err(HeadError::WorkspaceMismatch)
    );
    assert_eq!(s.push(&other, &[0.0; 3]), Err(HeadError::WorkspaceMismatch));

    let mut rw = RollingWindow::new(&head, 4).unwrap();
    assert_eq!(rw.classify(&head, &mut l), Err(HeadError::NoFrames));
    assert!(rw.push(&[f32::NAN, 0.0, 0.0]).is_err());
    assert!(rw.is_empty());

    let mut cfg = HeadConfig::bare(aether_head::Dims {
        input_dim: 3,
        d_model: 3,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 4,
        layers: 2,
        classes: 2,
        mlp_hidden: 0,
    });
    cfg.pattern.causal = false;
    assert!(matches!(
        Stream::new(&random_head(cfg, 3), 8, EvictionPolicy::Error),
        Err(HeadError::Config { .. })
    ));
    assert!(Stream::new(&head, 0, EvictionPolicy::Error).is_err());
}

#[test]
fn huge_finite_input_is_an_error_not_nan() {
    let head = random_head(
        HeadConfig::bare(aether_head::Dims {
            input_dim: 3,
            d_model: 3,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
            layers: 2,
            classes: 2,
            mlp_hidden: 0,
        }),
        11,
    );
    match head.forward(&[3e38, -3e38, 3e38, 3e38, 3e38, -3e38]) {
        Ok(l) => assert!(l.iter().all(|x| x.is_finite())),
        Err(e) => assert_eq!(e, HeadError::NumericOverflow),
    }
}

#[test]
fn sliding_stream_keeps_going_and_is_exact_until_eviction() {
    let head = random_head(HeadConfig::aether_default(), 3);
    let f = 16;
    let frames = Rng(4).vec(300 * f, 1.0);
    let mut s = Stream::new(&head, 100, EvictionPolicy::SlidingWindow).unwrap();
    for i in 0..300 {
        let l = s.push(&head, &frames[i * f..(i + 1) * f]).unwrap().to_vec();
        assert!(l.iter().all(|x| x.is_finite()));
        if i == 99 {
            let want = head.forward(&frames[..100 * f]).unwrap();
            assert!(l.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
            assert!(s.is_exact());
        }
    }
    assert!(!s.is_exact());
    assert_eq!(s.len(), 300);
}

#[test]
fn f16_and_heavy_hitter_streams_run_through_the_kernel_caches() {
    let head = random_head(HeadConfig::aether_default(), 8);
    let f = 16;
    let frames = Rng(12).vec(120 * f, 1.0);
    let want = head.forward(&frames).unwrap();
    let mut s16 = StreamF16::new(&head, 120, EvictionPolicy::Error).unwrap();
    for fr in frames.chunks(f) {
        s16.push(&head, fr).unwrap();
    }
    assert!(s16
        .logits()
        .iter()
        .zip(&want)
        .all(|(a, b)| (a - b).abs() < 1e-2));
    let s32 = Stream::new(&head, 120, EvictionPolicy::Error).unwrap();
    assert!(s16.bytes() < s32.bytes());
    let mut hh = Stream::new(&head, 40, EvictionPolicy::HeavyHitter { recent: 16 }).unwrap();
    for fr in frames.chunks(f) {
        assert!(hh.push(&head, fr).unwrap().iter().all(|x| x.is_finite()));
    }
    assert_eq!(hh.len(), 120);
    assert!(!hh.is_exact());
    assert_eq!(hh.policy(), EvictionPolicy::HeavyHitter { recent: 16 });
}

#[test]
fn workspace_and_stream_report_bytes() {
    let head = random_head(HeadConfig::aether_default(), 3);
    let ws = Workspace::compact(&head, 256).unwrap();
    assert!(ws.is_compact() && ws.is_absorbed());
    assert!(Workspace::new(&head, 256).unwrap().bytes() > ws.bytes());
    // D = 16 < 2·Hkv·dh = 64: x and the layer inputs h dominate, 256 · (16 + 16) floats.
    assert!(ws.bytes() >= 256 * (16 + 16) * 4);
    // plus landmarks (16 blocks · 16 floats) and one candidate list (≤ 256 entries).
    assert!(
        ws.bytes() < 256 * (16 + 16) * 4 + 12 * 1024,
        "{}",
        ws.bytes()
    );
    assert_eq!(
        head.workspace_bytes(256).unwrap(),
        Workspace::new(&head, 256).unwrap().bytes()
    );
    assert_eq!(head.compact_workspace_bytes(256).unwrap(), ws.bytes());
    let s = Stream::new(&head, 1000, EvictionPolicy::Error).unwrap();
    assert!(s.bytes() >= 2 * 2 * 1000 * 32 * 4);
    assert_eq!(head.weight_bytes(), 41_216);
    assert!(head.owned_weight_bytes() == 41_216 && !head.is_zero_copy());
    let flat = vec![0.01f32; 10_304];
    let borrowed = TemporalHead::from_flat(HeadConfig::aether_default(), &flat).unwrap();
    assert!(borrowed.is_zero_copy());
}

#[test]
fn a_workspace_the_allocator_refuses_is_a_typed_error_not_an_abort() {
    let head = random_head(HeadConfig::aether_default(), 3);
    // 2⁴⁶ frames: every size fits in usize, but no machine has the memory.
    for compact in [false, true] {
        let r = if compact {
            Workspace::compact(&head, 1 << 46)
        } else {
            Workspace::new(&head, 1 << 46)
        };
        match r {
            Err(HeadError::NoMemory { what, bytes }) => {
                assert!(what.starts_with("workspace"), "{what}");
                assert!(bytes.is_some_and(|b| b >= 1 << 40), "{bytes:?}");
            }
            Err(HeadError::Kernel { .. } | HeadError::Config { .. }) if !compact => {}
            other => panic!("compact {compact}: {other:?}"),
        }
    }
}
