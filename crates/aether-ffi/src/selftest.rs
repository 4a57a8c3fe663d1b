//! `ruv_temporal_kernel_self_test`: a tiny known-answer forward.
//!
//! A v1 head with `F = D = 2`, `Hq = 2`, `Hkv = 1` (MQA), `dh = 2`, `L = 1`, `C = 2`
//! and the AETHER default pattern, weights `w[i] = ((7·i mod 11) − 5) / 10` in v1
//! order (28 values), three frames [`SELF_TEST_FRAMES`]. The expected logits
//! [`SELF_TEST_LOGITS`] come from an independent f64 oracle (causal softmax attention
//! over every earlier frame — the sparse pattern covers all of them at N = 3 — and mean
//! pooling), checked by this module's tests. The run goes through the same path as
//! `ruv_temporal_classify`: aether-head's compact workspace and
//! `TemporalHead::forward_compact_into`.

use alloc::vec::Vec;

use aether_head::{HeadConfig, TemporalHead, Workspace};

use crate::status::Error;

/// Frames of the self test (3 frames of 2 features).
pub const SELF_TEST_FRAMES: [f32; 6] = [0.5, -1.0, 0.25, 0.75, -0.5, 1.5];

/// Logits the self test must reproduce (to 1e-5).
pub const SELF_TEST_LOGITS: [f32; 2] = [0.020_052_387, -0.071_561_88];

const TOLERANCE: f32 = 1e-5;

fn self_test_config() -> HeadConfig {
    HeadConfig::bare(aether_head::Dims {
        input_dim: 2,
        d_model: 2,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 2,
        layers: 1,
        classes: 2,
        mlp_hidden: 0,
    })
}

fn self_test_weights(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((7 * i % 11) as f32 - 5.0) / 10.0).collect()
}

/// The self test's logits (no comparison).
fn run() -> Result<[f32; 2], Error> {
    let cfg = self_test_config();
    let n = cfg.num_weights().ok_or(Error::NoMem { bytes: None })?;
    let w = self_test_weights(n);
    let head = TemporalHead::from_flat(cfg, &w)?;
    let mut ws = Workspace::compact(&head, SELF_TEST_FRAMES.len() / 2)?;
    let mut logits = [0.0f32; 2];
    head.forward_compact_into(&SELF_TEST_FRAMES, &mut ws, &mut logits)?;
    Ok(logits)
}

/// Runs the known-answer forward; `Err(Error::Head(NumericOverflow))`-style errors pass
/// through, a wrong answer is [`Error::SelfTest`].
pub fn kernel_self_test() -> Result<(), Error> {
    let got = run()?;
    for (i, (g, w)) in got.iter().zip(SELF_TEST_LOGITS).enumerate() {
        if g.is_nan() || (g - w).abs() > TOLERANCE {
            return Err(Error::SelfTest { class: i });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent f64 forward of a v1 head (no options, mean pooling) with causal
    /// attention over every earlier frame.
    #[allow(clippy::too_many_arguments)]
    fn oracle(
        f: usize,
        hq: usize,
        hkv: usize,
        dh: usize,
        c: usize,
        w: &[f64],
        frames: &[f64],
    ) -> Vec<f64> {
        let n = frames.len() / f;
        let (qw, kw) = (hq * dh, hkv * dh);
        let mut x: Vec<Vec<f64>> = frames.chunks(f).map(|r| r.to_vec()).collect();
        let wq = &w[0..f * qw];
        let wk = &w[f * qw..f * qw + f * kw];
        let wv = &w[f * qw + f * kw..f * qw + 2 * f * kw];
        let wo_at = f * qw + 2 * f * kw;
        let wo = &w[wo_at..wo_at + qw * f];
        let wc = &w[wo_at + qw * f..wo_at + qw * f + f * c];
        let mm = |row: &[f64], m: &[f64], cols: usize| -> Vec<f64> {
            (0..cols)
                .map(|j| {
                    row.iter()
                        .enumerate()
                        .map(|(i, r)| r * m[i * cols + j])
                        .sum()
                })
                .collect()
        };
        let q: Vec<Vec<f64>> = x.iter().map(|r| mm(r, wq, qw)).collect();
        let k: Vec<Vec<f64>> = x.iter().map(|r| mm(r, wk, kw)).collect();
        let v: Vec<Vec<f64>> = x.iter().map(|r| mm(r, wv, kw)).collect();
        for i in 0..n {
            let mut att = vec![0.0; qw];
            for h in 0..hq {
                let kh = h / (hq / hkv);
                let s: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..dh)
                            .map(|e| q[i][h * dh + e] * k[j][kh * dh + e])
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for (j, sj) in s.iter().enumerate() {
                    let p = (sj - m).exp() / z;
                    for e in 0..dh {
                        att[h * dh + e] += p * v[j][kh * dh + e];
                    }
                }
            }
            let o = mm(&att, wo, f);
            for (xv, ov) in x[i].iter_mut().zip(o) {
                *xv += ov;
            }
        }
        let pooled: Vec<f64> = (0..f)
            .map(|e| x.iter().map(|r| r[e]).sum::<f64>() / n as f64)
            .collect();
        mm(&pooled, wc, c)
    }

    #[test]
    fn committed_logits_match_the_f64_oracle() {
        let cfg = self_test_config();
        let n = cfg.num_weights().unwrap();
        assert_eq!(n, 28);
        let w: Vec<f64> = self_test_weights(n).iter().map(|&v| v as f64).collect();
        let frames: Vec<f64> = SELF_TEST_FRAMES.iter().map(|&v| v as f64).collect();
        let want = oracle(2, 2, 1, 2, 2, &w, &frames);
        for (a, b) in want.iter().zip(SELF_TEST_LOGITS) {
            assert!(
                (a - b as f64).abs() < 1e-6,
                "oracle {want:?} vs committed {SELF_TEST_LOGITS:?}"
            );
        }
        assert_eq!(kernel_self_test(), Ok(()));
    }

    #[test]
    fn the_committed_logits_are_not_trivial() {
        assert!(SELF_TEST_LOGITS.iter().all(|l| l.abs() > 1e-3));
        assert!((SELF_TEST_LOGITS[0] - SELF_TEST_LOGITS[1]).abs() > 1e-3);
    }
}
