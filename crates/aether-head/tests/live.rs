//! [`LiveStream`]: with a horizon, every output equals the whole forward over the
//! reporting stream's context; resumed streams become bit-identical after the horizon;
//! horizon 0 is a plain [`Stream`] with the same capacity and eviction.

use aether_head::{
    EvictionPolicy, HeadConfig, HeadError, KvPrecision, LiveStream, Pooling, Positional, Stream,
    StreamSettings, TemporalHead,
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

fn config(features: usize, running_norm: bool, last: bool, window: usize) -> HeadConfig {
    HeadConfig {
        d_model: 8,
        mlp_hidden: 12,
        running_norm,
        input_norm: true,
        embed: true,
        positional: Positional::Sinusoidal,
        pre_norm: true,
        biases: true,
        final_norm: true,
        pooling: if last { Pooling::Last } else { Pooling::Mean },
        pattern: SparsePattern {
            window,
            block_size: 4,
            global_tokens: vec![0],
            causal: true,
            log_stride: true,
            landmarks: true,
        },
        ..HeadConfig::bare(aether_head::Dims {
            input_dim: features,
            d_model: features,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 8,
            layers: 2,
            classes: 3,
            mlp_hidden: 0,
        })
    }
}

/// Restart of the stream that reports after frame `t` with horizon `h`.
fn reporting_start(t: usize, h: usize) -> usize {
    let a = t - t % h;
    let half = h / 2;
    if t >= half {
        a.min(t - (t - half) % h)
    } else {
        a
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn horizon_outputs_equal_forward_over_their_context(
        seed in any::<u64>(), h in 2usize..40, n in 1usize..100, rn in any::<bool>(),
        last in any::<bool>(), w in 1usize..6, f16 in any::<bool>(),
    ) {
        let head = random_head(config(3, rn, last, w), seed);
        let mut r = Rng(seed ^ 0x55);
        let frames = r.vec(n * 3, 2.0);
        let settings = StreamSettings {
            kv: if f16 { KvPrecision::F16 } else { KvPrecision::F32 },
            ..StreamSettings::with_horizon(h)
        };
        let mut s = LiveStream::new(&head, settings).unwrap();
        let tol = if f16 { 2e-2 } else { 1e-4 };
        for t in 0..n {
            let got = s.push(&head, &frames[t * 3..t * 3 + 3]).unwrap().to_vec();
            let start = reporting_start(t, h);
            prop_assert_eq!(s.context(), t - start + 1);
            prop_assert!(s.context() <= h);
            if t >= h {
                prop_assert!(s.context() > h / 2);
            }
            let want = head.forward(&frames[start * 3..(t + 1) * 3]).unwrap();
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= tol * (1.0 + w.abs()), "t {} {} vs {}", t, g, w);
            }
            prop_assert_eq!(s.position(), t as u64 + 1);
        }
    }

    #[test]
    fn resumed_stream_is_bit_identical_after_the_horizon(
        seed in any::<u64>(), h in 2usize..30, t0 in 0usize..90, rn in any::<bool>(),
    ) {
        let head = random_head(config(3, rn, false, 3), seed);
        let mut r = Rng(seed ^ 0x77);
        let n = t0 + 2 * h + 3;
        let frames = r.vec(n * 3, 2.0);
        let settings = StreamSettings::with_horizon(h);
        let mut full = LiveStream::new(&head, settings).unwrap();
        let outs: Vec<Vec<f32>> = frames
            .chunks(3)
            .map(|f| full.push(&head, f).unwrap().to_vec())
            .collect();
        let mut re = LiveStream::resume_at(&head, settings, t0 as u64).unwrap();
        for t in t0..n {
            let got = re.push(&head, &frames[t * 3..t * 3 + 3]).unwrap().to_vec();
            if t >= t0 + h {
                prop_assert!(re.is_exact());
                prop_assert_eq!(&got, &outs[t], "t {}", t);
            }
        }
    }
}

#[test]
fn horizon_zero_is_a_plain_stream() {
    let head = random_head(config(3, true, false, 4), 9);
    let mut r = Rng(99);
    let frames = r.vec(60 * 3, 2.0);
    for policy in [
        EvictionPolicy::SlidingWindow,
        EvictionPolicy::HeavyHitter { recent: 4 },
    ] {
        let settings = StreamSettings {
            horizon: 0,
            capacity: 16,
            eviction: policy,
            kv: KvPrecision::F32,
        };
        let mut live = LiveStream::new(&head, settings).unwrap();
        let mut plain = Stream::new(&head, 16, policy).unwrap();
        for (t, f) in frames.chunks(3).enumerate() {
            let a = live.push(&head, f).unwrap().to_vec();
            let b = plain.push(&head, f).unwrap().to_vec();
            assert_eq!(a, b, "{policy:?} t {t}");
            assert_eq!(live.context(), plain.len());
            assert_eq!(live.is_exact(), plain.is_exact());
        }
        assert!(!live.is_exact());
    }
    let err = LiveStream::resume_at(&head, StreamSettings::with_horizon(0), 5).unwrap_err();
    assert!(matches!(
        err,
        HeadError::Config {
            what: "horizon",
            ..
        }
    ));
    let mut full = LiveStream::new(
        &head,
        StreamSettings {
            eviction: EvictionPolicy::Error,
            capacity: 2,
            ..StreamSettings::with_horizon(0)
        },
    )
    .unwrap();
    full.push(&head, &frames[..3]).unwrap();
    full.push(&head, &frames[3..6]).unwrap();
    assert!(matches!(
        full.push(&head, &frames[6..9]),
        Err(HeadError::CapacityExceeded { capacity: 2 })
    ));
}

#[test]
fn bad_frames_and_settings_are_refused_without_changing_state() {
    let head = random_head(config(3, true, false, 4), 5);
    assert!(LiveStream::new(&head, StreamSettings::with_horizon(1)).is_err());
    assert!(LiveStream::new(
        &head,
        StreamSettings {
            capacity: 0,
            ..StreamSettings::with_horizon(0)
        }
    )
    .is_err());
    let mut s = LiveStream::new(&head, StreamSettings::with_horizon(8)).unwrap();
    s.push(&head, &[0.1, 0.2, 0.3]).unwrap();
    let before = s.logits().to_vec();
    assert!(matches!(
        s.push(&head, &[0.1, f32::NAN, 0.3]),
        Err(HeadError::NonFiniteInput { .. })
    ));
    assert!(matches!(
        s.push(&head, &[0.1, 0.3]),
        Err(HeadError::FrameWidth { .. })
    ));
    assert_eq!(s.logits(), &before[..]);
    assert_eq!(s.position(), 1);
    s.reset();
    assert_eq!(s.position(), 0);
    assert_eq!(s.context(), 0);
    let bytes = s.bytes();
    let one = Stream::new(&head, 8, EvictionPolicy::Error)
        .unwrap()
        .bytes();
    assert_eq!(bytes, 2 * one);
}
